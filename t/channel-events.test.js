'use strict';
// Channel events (SPEC section 3: pubsub_channel_events_channel_id,
// pubsub_channel_event_string, $pubsub_channel_event): subscriber
// enqueue/dequeue on every transport, channel_publish, channel_delete,
// published to meta/<id> and read by an ordinary subscriber location with
// pubsub_channel_group meta. Memory and Redis stores; bad meta ids.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { useNginx, startNginx, nginxCheck } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const { sleep } = require('./lib/util');
const C = require('./lib/clients');

const locations = (extra) => `
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id ev_$1;
        ${extra}
    }
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id ev_$1;
        ${extra}
    }
    location ~ ^/ps/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id ev_$1;
        ${extra}
    }
    location ~ ^/msub/(\\w+)/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1 $2;
        pubsub_channel_events_channel_id mx_$1;
        ${extra}
    }
    location ~ ^/meta/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_group meta;
        pubsub_channel_id $1;
        ${extra}
    }
    location ~ ^/metainfo/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_group meta;
        pubsub_channel_id $1;
        ${extra}
    }`;

const conf = `
server {
    listen 127.0.0.1:%%PORT%%;
    ${locations('')}
    location ~ ^/custom/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id custom_$1;
        pubsub_channel_event_string "$pubsub_channel_event|$pubsub_channel_id|$request_method|$arg_who|$pubsub_message_id";
    }
    location ~ ^/quiet/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
    }
    location ~ ^/off/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id off;
    }
    location ~ ^/dyn/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id $arg_meta;
        pubsub_max_channel_id_length 32;
    }
    location ~ ^/hdr/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id $http_x_meta;
    }
    location ~ ^/metapub/(\\w+)$ {
        # publishing to a meta channel: never an event about it
        pubsub_pubsub;
        pubsub_channel_group meta;
        pubsub_channel_id $1;
        pubsub_channel_events_channel_id loopcheck;
    }
    location ~ ^/evvar/(\\w+)$ {
        # outside an event, $pubsub_channel_event is empty
        pubsub_publisher;
        pubsub_channel_id $1;
        add_header X-Event "[$pubsub_channel_event]" always;
    }
    location = /status {
        pubsub_status;
    }
}`;

// An SSE reader of meta/<id>, attached before anything happens.
async function watch(port, id) {
    const s = C.sseStream({ port, path: `/meta/${id}` });
    assert.equal((await s.response).status, 200);
    return s;
}

// The next n events' bodies (sorted when their order is not defined).
async function take(s, n, { sorted = false, ms = 4000 } = {}) {
    const got = [];
    for (let i = 0; i < n; i++) {
        got.push((await s.next(ms)).data);
    }
    return sorted ? got.sort() : got;
}

// Nothing more arrives within ms.
async function none(s, ms = 400) {
    const have = s.events.items.length;
    await sleep(ms);
    assert.deepEqual(s.events.items.slice(have).map((e) => e.data), []);
}

async function status(port) {
    const r = await C.httpRequest({ port, path: '/status' });
    assert.equal(r.status, 200);
    return JSON.parse(r.text);
}

describe('channel events (memory store)', () => {
    const ngx = useNginx({ conf, workers: 2 });

    it('channel_publish per publish, channel_delete per delete', async () => {
        const m = await watch(ngx.port, 'ev_p1');
        assert.equal((await C.publish({ port: ngx.port, path: '/pub/p1' }, 'a')).status, 202);
        assert.equal((await C.publish({ port: ngx.port, path: '/pub/p1' }, 'b')).status, 202);
        assert.deepEqual(await take(m, 2), ['channel_publish p1', 'channel_publish p1']);

        const d = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: '/pub/p1' });
        assert.equal(d.status, 200);
        assert.deepEqual(await take(m, 1), ['channel_delete p1']);

        // deleting a channel that is not there: 404 and no event
        const d2 = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: '/pub/p1' });
        assert.equal(d2.status, 404);
        await none(m);
        await m.close();
    });

    it('the meta message is text/plain, buffered up to 100', async () => {
        for (let i = 0; i < 105; i++) {
            const r = await C.publish({ port: ngx.port, path: '/pub/b1' }, `m${i}`);
            assert.equal(r.status, 202);
        }
        await sleep(300);
        const info = await C.httpRequest({ port: ngx.port, path: '/metainfo/ev_b1',
            headers: { Accept: 'application/json' } });
        assert.equal(info.status, 200, info.text);
        assert.equal(JSON.parse(info.text).messages, 100);

        // a long-poll reads the oldest kept event, with its content type
        const lp = await C.httpRequest({ port: ngx.port, path: '/meta/ev_b1' });
        assert.equal(lp.status, 200);
        assert.match(lp.headers['content-type'], /^text\/plain/);
        assert.equal(lp.text, 'channel_publish b1');
    });

    it('SSE subscriber: enqueue, then dequeue when it leaves', async () => {
        const m = await watch(ngx.port, 'ev_s1');
        const s = C.sseStream({ port: ngx.port, path: '/sub/s1' });
        assert.equal((await s.response).status, 200);
        assert.deepEqual(await take(m, 1), ['subscriber_enqueue s1']);
        await s.close();
        assert.deepEqual(await take(m, 1), ['subscriber_dequeue s1']);
        await none(m);
        await m.close();
    });

    it('WebSocket subscriber and publisher', async () => {
        const m = await watch(ngx.port, 'ev_w1');
        const w = await C.wsConnect(ngx.wsUrl('/sub/w1'));
        assert.deepEqual(await take(m, 1), ['subscriber_enqueue w1']);
        await w.close();
        assert.deepEqual(await take(m, 1), ['subscriber_dequeue w1']);

        // pubsub_pubsub: the connection subscribes and publishes
        const m2 = await watch(ngx.port, 'ev_w2');
        const p = await C.wsConnect(ngx.wsUrl('/ps/w2'));
        assert.deepEqual(await take(m2, 1), ['subscriber_enqueue w2']);
        await p.send('hello');
        assert.equal((await p.next(3000)).text, 'hello');
        await p.send('again');
        assert.equal((await p.next(3000)).text, 'again');
        assert.deepEqual(await take(m2, 2), ['channel_publish w2', 'channel_publish w2']);
        await p.close();
        assert.deepEqual(await take(m2, 1), ['subscriber_dequeue w2']);
        await none(m2);
        await m.close();
        await m2.close();
    });

    it('long-poll: one enqueue/dequeue pair per poll', async () => {
        const m = await watch(ngx.port, 'ev_l1');
        const poll = C.httpRequest({ port: ngx.port, path: '/sub/l1', timeout: 8000 });
        assert.deepEqual(await take(m, 1), ['subscriber_enqueue l1']);
        assert.equal((await C.publish({ port: ngx.port, path: '/pub/l1' }, 'x')).status, 201);
        const r = await poll;
        assert.equal(r.status, 200);
        assert.equal(r.text, 'x');
        // the publish and the poll's end may come from different workers
        assert.deepEqual(await take(m, 2, { sorted: true }),
            ['channel_publish l1', 'subscriber_dequeue l1']);

        // a poll answered at once from the buffer: a pair too
        const r2 = await C.httpRequest({ port: ngx.port, path: '/sub/l1' });
        assert.equal(r2.status, 200);
        assert.deepEqual(await take(m, 2), ['subscriber_enqueue l1', 'subscriber_dequeue l1']);
        await none(m);
        await m.close();
    });

    it('multiplexed subscriber: one enqueue and one dequeue per channel', async () => {
        const m = await watch(ngx.port, 'mx_x1');
        const s = C.sseStream({ port: ngx.port, path: '/msub/x1/x2' });
        assert.equal((await s.response).status, 200);
        assert.deepEqual(await take(m, 2, { sorted: true }),
            ['subscriber_enqueue x1', 'subscriber_enqueue x2']);
        await s.close();
        assert.deepEqual(await take(m, 2, { sorted: true }),
            ['subscriber_dequeue x1', 'subscriber_dequeue x2']);

        const w = await C.wsConnect(ngx.wsUrl('/msub/x1/x3'));
        assert.deepEqual(await take(m, 2, { sorted: true }),
            ['subscriber_enqueue x1', 'subscriber_enqueue x3']);
        await w.close();
        assert.deepEqual(await take(m, 2, { sorted: true }),
            ['subscriber_dequeue x1', 'subscriber_dequeue x3']);
        await none(m);
        await m.close();
    });

    it('pubsub_channel_event_string with other variables', async () => {
        const m = await watch(ngx.port, 'custom_c1');
        const p = await C.publish({ port: ngx.port, path: '/custom/c1?who=bob' }, 'x');
        assert.equal(p.status, 202);
        const id = /last message id: (\S+)/.exec(p.text)[1];
        assert.deepEqual(await take(m, 1), [`channel_publish|c1|POST|bob|${id}`]);
        const d = await C.httpRequest({ port: ngx.port, method: 'DELETE',
            path: '/custom/c1?who=al' });
        assert.equal(d.status, 200);
        assert.deepEqual(await take(m, 1), ['channel_delete|c1|DELETE|al|']);
        await m.close();
    });

    it('$pubsub_channel_event is empty outside an event', async () => {
        const r = await C.publish({ port: ngx.port, path: '/evvar/e1' }, 'x');
        assert.equal(r.status, 202);
        assert.equal(r.headers['x-event'], '[]');
    });

    it('a location without the directive (or with off) emits nothing', async () => {
        const before = (await status(ngx.port)).channel_events;
        const m = await watch(ngx.port, 'ev_q1');
        const s = C.sseStream({ port: ngx.port, path: '/quiet/q1' });
        assert.equal((await s.response).status, 200);
        assert.equal((await C.publish({ port: ngx.port, path: '/quiet/q1' }, 'x')).status, 201);
        assert.equal((await s.next(3000)).data, 'x');
        await s.close();
        const o = C.sseStream({ port: ngx.port, path: '/off/q1' });
        assert.equal((await o.response).status, 200);
        assert.equal((await C.publish({ port: ngx.port, path: '/off/q1' }, 'y')).status, 201);
        await o.close();
        await none(m);
        await m.close();
        const now = (await status(ngx.port)).channel_events;
        assert.deepEqual(now, before);
    });

    it('publishing to a meta channel emits no event (no loop)', async () => {
        const m = await watch(ngx.port, 'loopcheck');
        assert.equal((await C.publish({ port: ngx.port, path: '/metapub/abc' }, 'x')).status, 202);
        const s = C.sseStream({ port: ngx.port, path: '/metapub/abc' });
        assert.equal((await s.response).status, 200);
        await s.close();
        await none(m);
        await m.close();
    });

    it('an empty meta channel id: no event, an info line, the request is fine', async () => {
        const mark = ngx.logMark();
        const before = (await status(ngx.port)).channel_events;
        const r = await C.publish({ port: ngx.port, path: '/dyn/d1' }, 'x');
        assert.equal(r.status, 202);
        await ngx.waitForLog(/\[info\].*no channel event channel_publish for "d1": the meta channel id is empty/,
            { since: mark, timeout: 3000 });
        const now = (await status(ngx.port)).channel_events;
        assert.equal(now.failed, before.failed + 1);
        assert.equal(now.published, before.published);
    });

    it('a too long or invalid meta channel id: no event, a warn line', async () => {
        const mark = ngx.logMark();
        const m = await watch(ngx.port, 'd2');

        // within pubsub_max_channel_id_length (32): an event
        const ok = await C.publish({ port: ngx.port, path: '/dyn/d2?meta=d2' }, 'x');
        assert.equal(ok.status, 202);
        assert.deepEqual(await take(m, 1), ['channel_publish d2']);

        const long = 'L'.repeat(33);
        const r = await C.publish({ port: ngx.port, path: `/dyn/d2?meta=${long}` }, 'x');
        assert.equal(r.status, 202);
        assert.match(r.text, /queued messages: 2/);
        await ngx.waitForLog(/\[warn\].*no channel event channel_publish for "d2": the meta channel id is too long/,
            { since: mark, timeout: 3000 });

        // a control character (a tab) in the id: the subscriber is served
        const s = C.sseStream({ port: ngx.port, path: '/hdr/h1', headers: { 'X-Meta': 'a\tb' } });
        assert.equal((await s.response).status, 200);
        await ngx.waitForLog(/\[warn\].*no channel event subscriber_enqueue for "h1": the meta channel id contains a control character/,
            { since: mark, timeout: 3000 });
        assert.equal((await C.publish({ port: ngx.port, path: '/hdr/h1',
            headers: { 'X-Meta': 'a\tb' } }, 'y')).status, 201);
        assert.equal((await s.next(3000)).data, 'y');
        await s.close();
        await none(m);
        await m.close();
    });
});

describe('channel events (Redis store)', () => {
    let redis;
    let ngx;

    before(async () => {
        redis = await startRedis();
        ngx = await startNginx({
            conf: `
upstream redis_up {
    pubsub_redis_server %%REDIS_URL%%;
}
server {
    listen 127.0.0.1:%%PORT%%;
    ${locations('pubsub_redis_pass redis_up;')}
}`,
            redis,
            workers: 2,
        });
    });

    after(async () => {
        if (ngx) {
            await ngx.stop();
            ngx.assertCleanLog();
        }
        if (redis) {
            await redis.stop();
        }
    });

    // Redis subscribers attach asynchronously: wait until the meta reader
    // is live by publishing a probe event through a publish.
    async function redisWatch(id, ch) {
        const m = await watch(ngx.port, id);
        for (let i = 0; i < 50; i++) {
            assert.equal((await C.publish({ port: ngx.port, path: `/pub/${ch}` }, 'probe')).status,
                202);
            try {
                const e = await m.next(200);
                assert.equal(e.data, `channel_publish ${ch}`);
                break;
            } catch (e) {
                if (i === 49) {
                    throw e;
                }
            }
        }
        await sleep(300);
        m.events.taken = m.events.items.length;
        return m;
    }

    it('publish, delete, SSE and WebSocket subscribers through Redis', async () => {
        const m = await redisWatch('ev_r1', 'r1');

        assert.equal((await C.publish({ port: ngx.port, path: '/pub/r1' }, 'a')).status, 202);
        assert.deepEqual(await take(m, 1), ['channel_publish r1']);

        const s = C.sseStream({ port: ngx.port, path: '/sub/r1' });
        assert.equal((await s.response).status, 200);
        assert.deepEqual(await take(m, 1), ['subscriber_enqueue r1']);
        await s.close();
        assert.deepEqual(await take(m, 1), ['subscriber_dequeue r1']);

        const w = await C.wsConnect(ngx.wsUrl('/sub/r1'));
        assert.deepEqual(await take(m, 1), ['subscriber_enqueue r1']);
        await w.close();
        assert.deepEqual(await take(m, 1), ['subscriber_dequeue r1']);

        // a long-poll answered from the stored messages: a pair
        const lp = await C.httpRequest({ port: ngx.port, path: '/sub/r1' });
        assert.equal(lp.status, 200);
        assert.deepEqual(await take(m, 2), ['subscriber_enqueue r1', 'subscriber_dequeue r1']);

        // multiplexed: one pair per channel
        const mm = await watch(ngx.port, 'mx_r1');
        const ms = C.sseStream({ port: ngx.port, path: '/msub/r1/r2' });
        assert.equal((await ms.response).status, 200);
        assert.deepEqual(await take(mm, 2, { sorted: true }),
            ['subscriber_enqueue r1', 'subscriber_enqueue r2']);
        await ms.close();
        assert.deepEqual(await take(mm, 2, { sorted: true }),
            ['subscriber_dequeue r1', 'subscriber_dequeue r2']);
        await mm.close();

        const d = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: '/pub/r1' });
        assert.equal(d.status, 200);
        assert.deepEqual(await take(m, 1), ['channel_delete r1']);
        await m.close();

        // the events are stored in Redis like any message
        const info = await C.httpRequest({ port: ngx.port, path: '/metainfo/ev_r1',
            headers: { Accept: 'application/json' } });
        assert.equal(info.status, 200, info.text);
        assert.ok(JSON.parse(info.text).messages >= 6);
    });
});

describe('channel events configuration', () => {
    const loc = (body) => `server { listen 127.0.0.1:%%PORT%%;
        location /x { pubsub_pubsub; pubsub_channel_id x; ${body} } }`;

    it('refuses an empty or repeated meta channel id, accepts off', async () => {
        let r = await nginxCheck({ conf: loc('pubsub_channel_events_channel_id "";') });
        assert.equal(r.ok, false, r.output);
        assert.match(r.output, /pubsub_channel_events_channel_id" directive takes a meta channel id/);

        r = await nginxCheck({ conf: loc('pubsub_channel_events_channel_id a; '
            + 'pubsub_channel_events_channel_id b;') });
        assert.equal(r.ok, false, r.output);
        assert.match(r.output, /"pubsub_channel_events_channel_id" directive is duplicate/);

        r = await nginxCheck({ conf: loc('pubsub_channel_event_string a; '
            + 'pubsub_channel_event_string b;') });
        assert.equal(r.ok, false, r.output);
        assert.match(r.output, /"pubsub_channel_event_string" directive is duplicate/);

        r = await nginxCheck({ conf: `server { listen 127.0.0.1:%%PORT%%;
            pubsub_channel_events_channel_id srv_$host;
            pubsub_channel_event_string "$pubsub_channel_event:$pubsub_channel_id";
            location /x { pubsub_pubsub; pubsub_channel_id x; }
            location /y { pubsub_pubsub; pubsub_channel_id y; pubsub_channel_events_channel_id off; } }` });
        assert.equal(r.ok, true, r.output);
    });
});
