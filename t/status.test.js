'use strict';
// pubsub_status (SPEC section 9): JSON and Prometheus text exposition,
// counted across workers in shared memory.  See docs/operations.md.

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, it } = require('node:test');
const { useNginx } = require('./lib/nginx');
const C = require('./lib/clients');

const conf = `
server {
    listen 127.0.0.1:%%PORT%%;
    location = /status { pubsub_status; }
    location ~ ^/pub/(\\w+)$ { pubsub_publisher; pubsub_channel_id $1; }
    location ~ ^/sub/(\\w+)$ { pubsub_subscriber; pubsub_channel_id $1; }
    location ~ ^/raw/(\\w+)$ { pubsub_subscriber rawstream; pubsub_channel_id $1; }
    location ~ ^/authsub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_authorize_request /auth;
    }
    location ~ ^/failsub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_authorize_request /authfail;
    }
    location ~ ^/room/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_leave_delay 0;
    }
    location = /auth { internal; return 204; }
    location = /authfail { internal; return 503; }
}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function status(ngx) {
    const r = await C.httpRequest({ port: ngx.port, path: '/status' });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    return JSON.parse(r.text);
}

// Polls until pred(status) holds (counters of other workers move async).
async function statusUntil(ngx, pred, what, ms = 5000) {
    const end = Date.now() + ms;
    let s;
    for (;;) {
        s = await status(ngx);
        if (pred(s)) return s;
        if (Date.now() > end) {
            assert.fail(`timed out waiting for ${what}; last status: ${JSON.stringify(s)}`);
        }
        await sleep(50);
    }
}

// A strict-enough reader of the Prometheus text format (version 0.0.4).
function parseExposition(text) {
    assert.ok(text.endsWith('\n'), 'ends with a newline');
    const help = new Map();
    const type = new Map();
    const samples = [];
    for (const line of text.split('\n').slice(0, -1)) {
        let m;
        if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line))) {
            assert.ok(!help.has(m[1]), `one HELP for ${m[1]}`);
            help.set(m[1], m[2]);
        } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
            assert.ok(!type.has(m[1]), `one TYPE for ${m[1]}`);
            assert.ok(help.has(m[1]), `HELP before TYPE for ${m[1]}`);
            type.set(m[1], m[2]);
        } else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*)\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[+-]Inf)$/.exec(line))) {
            assert.ok(type.has(m[1]), `TYPE before the sample of ${m[1]}`);
            samples.push({ name: m[1], labels: m[3] || '', value: Number(m[5]) });
        } else {
            assert.fail(`not an exposition line: ${JSON.stringify(line)}`);
        }
    }
    for (const [name, t] of type) {
        assert.match(name, /^pubsub_[a-z_]+$/, 'metric names are pubsub_*');
        if (t === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
        assert.ok(samples.some((s) => s.name === name), `a sample for ${name}`);
    }
    const get = (name, labels = '') => {
        const s = samples.find((x) => x.name === name && x.labels === labels);
        assert.ok(s, `sample ${name}{${labels}}`);
        return s.value;
    };
    return { help, type, samples, get };
}

describe('pubsub_status', () => {
    const ngx = useNginx({ conf, workers: 2 });

    it('answers JSON with every field of SPEC section 9', async () => {
        const s = await status(ngx);
        for (const k of ['channels', 'subscriptions', 'messages', 'message_bytes',
            'published', 'delivered', 'workers', 'uptime', 'reloads']) {
            assert.equal(typeof s[k], 'number', k);
        }
        assert.equal(s.workers, 2);
        assert.equal(typeof s.generation, 'number');
        assert.equal(typeof s.worker.pid, 'number');
        assert.deepEqual(Object.keys(s.subscribers).sort(),
            ['chunked', 'eventsource', 'intervalpoll', 'longpoll', 'multipart', 'rawstream',
                'total', 'websocket']);
        assert.equal(s.shm.used + s.shm.free, s.shm.size);
        assert.ok(s.shm.size >= 128 * 1024 * 1024);
        assert.equal(typeof s.presence.members, 'number');
        assert.equal(typeof s.presence.connections, 'number');
        for (const h of ['authorize', 'subscribe', 'unsubscribe', 'publisher_upstream', 'presence']) {
            assert.equal(typeof s.hooks[h].calls, 'number');
            assert.equal(typeof s.hooks[h].failures, 'number');
        }
        // no Redis upstream here
        assert.equal(s.redis.enabled, false);
        assert.equal(s.redis.links, 0);
        assert.equal(s.redis.connected, false);
        assert.equal(s.redis.latency_ms, null);
    });

    it('counts channels, messages and publishes', async () => {
        const before = await status(ngx);
        for (let i = 0; i < 3; i++) {
            assert.equal((await C.publish({ port: ngx.port, path: '/pub/cnta' }, `m${i}`)).status, 202);
        }
        assert.equal((await C.publish({ port: ngx.port, path: '/pub/cntb' }, 'x'.repeat(1000))).status, 202);
        const s = await status(ngx);
        assert.equal(s.channels, before.channels + 2);
        assert.equal(s.messages, before.messages + 4);
        assert.equal(s.published, before.published + 4);
        assert.ok(s.message_bytes >= before.message_bytes + 1003);
        // DELETE removes the channel and its messages
        const d = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: '/pub/cntb' });
        assert.equal(d.status, 200);
        const s2 = await status(ngx);
        assert.equal(s2.channels, s.channels - 1);
        assert.equal(s2.messages, s.messages - 1);
    });

    it('counts subscribers by transport across workers, and deliveries', async () => {
        const base = await status(ngx);
        const path = '/sub/subs';
        const sse1 = C.sseStream({ port: ngx.port, path });
        const sse2 = C.sseStream({ port: ngx.port, path });
        const chunked = C.chunkedStream({ port: ngx.port, path });
        const mp = C.multipartStream({ port: ngx.port, path });
        const raw = C.rawStream({ port: ngx.port, path: '/raw/subs' });
        const ws = await C.wsConnect(ngx.wsUrl(path));
        await Promise.all([sse1.response, sse2.response, chunked.response, mp.response,
            raw.response]);
        const lp = C.httpRequest({ port: ngx.port, path, timeout: 10000 });

        const s = await statusUntil(ngx, (x) => x.subscribers.total === base.subscribers.total + 7,
            'seven subscribers');
        assert.equal(s.subscribers.eventsource, base.subscribers.eventsource + 2);
        assert.equal(s.subscribers.websocket, base.subscribers.websocket + 1);
        assert.equal(s.subscribers.chunked, base.subscribers.chunked + 1);
        assert.equal(s.subscribers.multipart, base.subscribers.multipart + 1);
        assert.equal(s.subscribers.longpoll, base.subscribers.longpoll + 1);
        assert.equal(s.subscribers.rawstream, base.subscribers.rawstream + 1);
        assert.equal(s.subscriptions, base.subscriptions + 7);

        assert.equal((await C.publish({ port: ngx.port, path: '/pub/subs' }, 'hello')).status, 201);
        assert.equal((await sse1.next(3000)).data, 'hello');
        assert.equal((await sse2.next(3000)).data, 'hello');
        assert.equal((await ws.messages.next(3000)).text, 'hello');
        assert.equal((await lp).status, 200);

        const after = await statusUntil(ngx, (x) => x.delivered >= base.delivered + 7,
            'seven deliveries');
        assert.equal(after.delivered, base.delivered + 7);
        // the long-poll answered: it is no longer counted
        assert.equal(after.subscribers.longpoll, base.subscribers.longpoll);

        await sse1.close();
        await sse2.close();
        await chunked.close();
        await mp.close();
        await raw.close();
        ws.close();
        await statusUntil(ngx, (x) => x.subscribers.total === base.subscribers.total
            && x.subscriptions === base.subscriptions, 'subscribers back to the baseline');
    });

    it('counts presence members and connections', async () => {
        const base = await status(ngx);
        const subs = ['a', 'a', 'b'].map((u) => C.sseStream({ port: ngx.port, path: `/room/pres?user=${u}` }));
        await Promise.all(subs.map((x) => x.response));
        const s = await statusUntil(ngx, (x) => x.presence.connections === base.presence.connections + 3,
            'three presence connections');
        assert.equal(s.presence.members, base.presence.members + 2);
        await Promise.all(subs.map((x) => x.close()));
        await statusUntil(ngx, (x) => x.presence.members === base.presence.members
            && x.presence.connections === base.presence.connections, 'members gone');
    });

    it('counts hook calls and failures in shared memory', async () => {
        const base = await status(ngx);
        const ok = C.sseStream({ port: ngx.port, path: '/authsub/hk' });
        assert.equal((await ok.response).status, 200);
        await ok.close();
        const bad = await C.httpRequest({ port: ngx.port, path: '/failsub/hk',
            headers: { Accept: 'text/event-stream' } });
        assert.equal(bad.status, 503);
        const s = await status(ngx);
        assert.equal(s.hooks.authorize.calls, base.hooks.authorize.calls + 2);
        assert.equal(s.hooks.authorize.failures, base.hooks.authorize.failures + 1);
    });

    it('answers Prometheus text for ?format=prometheus and Accept: text/plain', async () => {
        await C.publish({ port: ngx.port, path: '/pub/prom' }, 'p');
        const js = await status(ngx);
        const r = await C.httpRequest({ port: ngx.port, path: '/status?format=prometheus' });
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
        const p = parseExposition(r.text);
        assert.equal(p.type.get('pubsub_published_messages_total'), 'counter');
        assert.equal(p.type.get('pubsub_subscribers'), 'gauge');
        assert.equal(p.get('pubsub_channels'), js.channels);
        assert.equal(p.get('pubsub_published_messages_total'), js.published);
        assert.equal(p.get('pubsub_subscribers', 'transport="websocket"'), 0);
        assert.ok(p.get('pubsub_hook_calls_total', 'hook="authorize"') >= 2);
        assert.equal(p.get('pubsub_shm_size_bytes'), js.shm.size);
        assert.equal(p.get('pubsub_redis_links'), 0);
        assert.equal(p.get('pubsub_redis_connected_links'), 0);

        // what Prometheus itself sends
        const r2 = await C.httpRequest({ port: ngx.port, path: '/status', headers: {
            Accept: 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
                + 'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' } });
        assert.match(r2.headers['content-type'], /^text\/plain; version=0\.0\.4/);
        parseExposition(r2.text);

        // a browser or curl gets JSON; ?format=json wins over Accept
        const r3 = await C.httpRequest({ port: ngx.port, path: '/status',
            headers: { Accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
        assert.match(r3.headers['content-type'], /^application\/json/);
        const r4 = await C.httpRequest({ port: ngx.port, path: '/status?format=json',
            headers: { Accept: 'text/plain' } });
        assert.match(r4.headers['content-type'], /^application\/json/);
    });

    it('drops subscribers whose client closed right after its request', async () => {
        // Found by t/soak.js: the end of stream arrived with the request and
        // was consumed with it, so a long-poll (which sends nothing that
        // could fail) waited for ever.
        const base = await status(ngx);
        for (const hdr of ['', 'Accept: text/event-stream\r\n', 'TE: chunked\r\n']) {
            for (let i = 0; i < 10; i++) {
                const s = net.connect(ngx.port, '127.0.0.1', () => {
                    s.end(`GET /sub/gone${i} HTTP/1.1\r\nHost: x\r\n${hdr}\r\n`);
                    s.destroy();
                });
                s.on('error', () => {});
            }
        }
        await sleep(500);
        await statusUntil(ngx, (x) => x.subscribers.total === base.subscribers.total
            && x.subscriptions === base.subscriptions, 'the closed subscribers gone', 3000);
    });

    it('refuses other methods with 405 and Allow', async () => {
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: '/status', body: 'x' });
        assert.equal(r.status, 405);
        assert.equal(r.headers.allow, 'GET, HEAD');
        const h = await C.httpRequest({ port: ngx.port, method: 'HEAD', path: '/status' });
        assert.equal(h.status, 200);
    });

    it('keeps its totals over a reload', async () => {
        await C.publish({ port: ngx.port, path: '/pub/reload' }, 'r');
        const before = await status(ngx);
        await ngx.reload();
        const s = await status(ngx);
        assert.equal(s.reloads, before.reloads + 1);
        assert.equal(s.published, before.published);
        assert.equal(s.hooks.authorize.calls, before.hooks.authorize.calls);
        assert.ok(s.delivered >= before.delivered);
        assert.equal(s.workers, 2, 'old workers are not counted once gone');
    });
});

describe('pubsub_status with two workers', () => {
    const ngx = useNginx({ conf, workers: 2 });

    it('sums the subscribers of every worker', async () => {
        const base = await status(ngx);
        assert.equal(base.workers, 2);
        // fresh connections: the kernel spreads them over both workers
        const subs = [];
        for (let i = 0; i < 8; i++) {
            subs.push(C.sseStream({ port: ngx.port, path: `/sub/two${i % 2}` }));
        }
        await Promise.all(subs.map((x) => x.response));
        // every worker answers /status with the same cluster-wide numbers
        for (let i = 0; i < 4; i++) {
            const s = await statusUntil(ngx, (x) => x.subscribers.eventsource === 8, 'eight subscribers');
            assert.equal(s.subscribers.total, 8);
            assert.equal(s.subscriptions, base.subscriptions + 8);
        }
        await Promise.all(subs.map((x) => x.close()));
        await statusUntil(ngx, (x) => x.subscribers.total === 0, 'no subscribers');
    });
});
