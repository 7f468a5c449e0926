'use strict';
// pubsub_subscriber_info (nchan's nchan_subscriber_info): a GET asks every
// subscriber of a channel, on every worker (memory engine) and every nginx
// sharing a Redis, for the string its location's
// pubsub_subscriber_info_string made when it subscribed.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { useNginx, useRedisNginxes } = require('./lib/nginx');
const { waitUntil } = require('./lib/util');
const C = require('./lib/clients');

let seq = 0;
const chan = () => `si${Date.now() % 100000}x${++seq}`;

const locations = `
    add_header X-Worker $pid always;
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_info_string "$pubsub_subscriber_type $arg_name $http_user_agent $pid";
    }
    location ~ ^/big/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_info_string $arg_blob;
    }
    location ~ ^/nl/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_info_string "one\\r\\ntwo";
    }
    # subscribers here do not report
    location ~ ^/quiet/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
    }
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
    }
    location ~ ^/info/(\\w+)$ {
        pubsub_subscriber_info;
        pubsub_channel_id $1;
    }
`;

async function subscribers(port, ch) {
    const r = await C.httpRequest({ port, path: `/pub/${ch}`, headers: { Accept: 'application/json' } });
    return r.status === 200 ? JSON.parse(r.text).subscribers : 0;
}

async function ask(port, ch, accept) {
    const r = await C.httpRequest({ port, path: `/info/${ch}`,
        headers: accept ? { Accept: accept } : {} });
    assert.equal(r.status, 200, r.text);
    return r;
}

const lines = (text) => text.split('\n').filter((l) => l !== '');

// SSE subscribers until both workers have one (reuseport spreads them)
async function sseOnEveryWorker(port, ch, workers = 2) {
    const streams = [];
    const pids = new Set();
    for (let i = 0; pids.size < workers && i < 40; i++) {
        const s = C.sseStream({ port, path: `/sub/${ch}?name=sse${i}`,
            headers: { 'User-Agent': 'es-client' } });
        const res = await s.response;
        assert.equal(res.status, 200);
        pids.add(res.headers['x-worker']);
        streams.push(s);
    }
    assert.equal(pids.size, workers, 'SSE subscribers on every worker');
    return { streams, pids };
}

describe('pubsub_subscriber_info (memory, 2 workers)', () => {
    const ngx = useNginx({ conf: `
server {
    listen 127.0.0.1:%%PORT%% reuseport;
${locations}
}`, workers: 2, before, after });

    it('SSE, WebSocket and long-poll subscribers on every worker report', async () => {
        const ch = chan();
        const { streams, pids } = await sseOnEveryWorker(ngx.port, ch);
        const wss = [];
        for (let i = 0; i < 3; i++) {
            wss.push(await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/${ch}?name=ws${i}`,
                { headers: { 'User-Agent': 'ws-client' } }));
        }
        const lp = C.longPoll({ port: ngx.port, path: `/sub/${ch}?name=lp`, pollTimeout: 20000,
            headers: { 'User-Agent': 'lp-client' } });
        const total = streams.length + wss.length + 1;
        await waitUntil(async () => (await subscribers(ngx.port, ch)) === total,
            { what: `${total} subscribers` });

        const text = await ask(ngx.port, ch);
        assert.equal(text.headers['content-type'], 'text/plain');
        const got = lines(text.text).sort();
        assert.equal(got.length, total, text.text);
        const want = [
            ...streams.map((_, i) => `eventsource sse${i} es-client`),
            ...wss.map((_, i) => `websocket ws${i} ws-client`),
            'longpoll lp lp-client',
        ];
        assert.deepEqual(got.map((l) => l.replace(/ \d+$/, '')).sort(), want.sort());
        // each reported from its own worker: both are there
        assert.deepEqual(new Set(got.map((l) => l.split(' ').pop())), pids);

        // JSON by Accept: an array of the strings
        const json = JSON.parse((await ask(ngx.port, ch, 'application/json')).text);
        assert.deepEqual(json.sort(), got);

        // the question is never delivered to a client: the next message
        // is the first thing each subscriber gets
        const p = await C.publish({ port: ngx.port, path: `/pub/${ch}` }, 'after');
        assert.equal(p.status, 201);
        for (const s of streams) {
            assert.equal((await s.next(5000)).data, 'after');
        }
        for (const w of wss) {
            assert.equal((await w.messages.next(5000)).text, 'after');
        }
        assert.equal((await lp.next(5000)).text, 'after');
        for (const s of streams) {
            s.close();
        }
        for (const w of wss) {
            await w.close();
        }
        await lp.stop();
    });

    it('answers at once for a channel without subscribers', async () => {
        const r = await ask(ngx.port, chan());
        assert.equal(r.text, '');
        const j = await ask(ngx.port, chan(), 'application/json');
        assert.equal(j.text, '[]\n');
    });

    it('a huge string is cut to 1024 bytes, line breaks become spaces; a location without the string does not report', async () => {
        const ch = chan();
        const big = C.sseStream({ port: ngx.port, path: `/big/${ch}?blob=${'a'.repeat(6000)}` });
        const nl = C.sseStream({ port: ngx.port, path: `/nl/${ch}` });
        assert.equal((await nl.response).status, 200);
        assert.equal((await big.response).status, 200);
        const quiet = C.sseStream({ port: ngx.port, path: `/quiet/${ch}` });
        assert.equal((await quiet.response).status, 200);
        await waitUntil(async () => (await subscribers(ngx.port, ch)) === 3,
            { what: '3 subscribers' });
        // the quiet one never answers: the request ends at its bound; a
        // line break in a report becomes a space
        const r = await ask(ngx.port, ch);
        assert.deepEqual(lines(r.text).sort(), ['a'.repeat(1024), 'one  two'].sort());
        big.close();
        nl.close();
        quiet.close();
    });

    it('only GET', async () => {
        const r = await C.httpRequest({ port: ngx.port, path: `/info/${chan()}`, method: 'POST',
            body: 'x' });
        assert.equal(r.status, 405);
    });
});

describe('pubsub_subscriber_info (Redis, two nginx)', () => {
    const env = useRedisNginxes(2, { conf: `
upstream redis_up {
    pubsub_redis_server %%REDIS_URL%%;
}
server {
    listen 127.0.0.1:%%PORT%% reuseport;
    pubsub_redis_pass redis_up;
${locations}
}`, workers: 2 });

    it('subscribers of every instance report to either', async () => {
        const [a, b] = env.ngxs;
        const ch = chan();
        const sa = await sseOnEveryWorker(a.port, ch);
        const wb = await C.wsConnect(`ws://127.0.0.1:${b.port}/sub/${ch}?name=wsb`,
            { headers: { 'User-Agent': 'ws-client' } });
        const lb = C.longPoll({ port: b.port, path: `/sub/${ch}?name=lpb`, pollTimeout: 20000,
            headers: { 'User-Agent': 'lp-client' } });
        const total = sa.streams.length + 2;
        await waitUntil(async () => (await subscribers(a.port, ch)) === total,
            { what: `${total} subscribers in Redis` });
        for (const n of [a, b]) {
            const got = lines((await ask(n.port, ch)).text);
            assert.equal(got.length, total, got.join('\n'));
            const names = got.map((l) => l.split(' ')[1]).sort();
            assert.deepEqual(names, [...sa.streams.map((_, i) => `sse${i}`), 'lpb', 'wsb'].sort());
        }
        // no subscribers: at once
        assert.equal((await ask(b.port, chan())).text, '');
        // messages still flow, with nothing in between
        const p = await C.publish({ port: b.port, path: `/pub/${ch}` }, 'after');
        assert.equal(p.status, 201);
        for (const s of sa.streams) {
            assert.equal((await s.next(5000)).data, 'after');
            s.close();
        }
        assert.equal((await wb.messages.next(5000)).text, 'after');
        assert.equal((await lb.next(5000)).text, 'after');
        await wb.close();
        await lb.stop();
    });
});
