'use strict';
// Issue 16 (SPEC §12): Pusher's HTTP API (pubsub_pusher_api) driven by the
// unmodified npm `pusher` (pinned): trigger to one and several channels,
// triggerBatch, the channel list with prefix and info, one channel, the
// users of a presence channel, terminateUserConnections; an event reaching
// nchan-protocol WebSocket and EventSource subscribers of the channel; the
// memory engine (2 workers), Redis and a Redis Cluster.  Bad input gets a
// specific status and reason, and the worker stays intact (no [alert]).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { describe, it, before, after } = require('node:test');
const Pusher = require('pusher');
const { startNginx } = require('./lib/nginx');
const { startRedis, startRedisCluster } = require('./lib/redis');
const { waitUntil } = require('./lib/util');
const C = require('./lib/clients');
const P = require('./lib/pusher');

const APP = { appId: '42', key: 'app-key', secret: 'app-secret-0123456789' };

function confFor(engine, upstream = '') {
    return `
pubsub_pusher_app id=${APP.appId} key=${APP.key} secret=${APP.secret};
${upstream}
server {
    listen 127.0.0.1:%%PORT%%;

    location /apps/ {
        pubsub_pusher_api;
        ${engine}
    }
    # the API under a prefix: the path is read (and signed) from /apps/ on
    location /pusher/ {
        pubsub_pusher_api;
        ${engine}
    }
    # Pusher connections (pusher-js)
    location /app/ {
        pubsub_pusher;
        ${engine}
    }
    # nchan-protocol subscribers of the app's channels
    location ~ ^/sub/([^/]+)$ {
        pubsub_subscriber;
        pubsub_channel_group pusher:${APP.appId};
        pubsub_channel_id $1;
        ${engine}
    }
    # presence members (plain subscribers with a presence id)
    location ~ ^/member/([^/]+)$ {
        pubsub_subscriber websocket;
        pubsub_channel_group pusher:${APP.appId};
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_leave_delay 0;
        ${engine}
    }
}`;
}

let seq = 0;
const uniq = (p) => `${p}${Date.now() % 100000}x${++seq}`;

function client(ngx, opts = {}) {
    return new Pusher({ ...APP, host: '127.0.0.1', port: ngx.port, useTLS: false, ...opts });
}

// A request signed here (for what npm `pusher` will not send).
// `prefix`: the location's prefix before /apps/ (not signed); `encode`:
// the query values URL-encoded as pusher-php-server (Guzzle) sends them.
function signed(ngx, method, path,
    { body, params = {}, secret = APP.secret, ts, md5, prefix = '', encode = false } = {}) {
    const q = {
        auth_key: APP.key,
        auth_timestamp: ts ?? Math.floor(Date.now() / 1000),
        auth_version: '1.0',
        ...params,
    };
    if (body !== undefined) {
        q.body_md5 = md5 ?? crypto.createHash('md5').update(body, 'utf8').digest('hex');
    }
    const query = Object.keys(q).sort().map((k) => `${k}=${q[k]}`).join('&');
    const sig = crypto.createHmac('sha256', secret)
        .update([method, path, query].join('\n')).digest('hex');
    const sent = encode
        ? Object.keys(q).sort().map((k) => `${k}=${encodeURIComponent(q[k])}`).join('&')
        : query;
    return fetch(`http://127.0.0.1:${ngx.port}${prefix}${path}?${sent}&auth_signature=${sig}`, {
        method,
        body,
        headers: body !== undefined ? { 'content-type': 'application/json' } : {},
    });
}

async function expectError(promise, status, re) {
    await assert.rejects(promise, (e) => {
        assert.equal(e.status, status, `status of ${e.body}`);
        if (re) {
            assert.match(String(e.body), re);
        }
        return true;
    });
}

async function expectStatus(resP, status, re) {
    const res = await resP;
    const text = await res.text();
    assert.equal(res.status, status, text);
    if (re) {
        assert.match(text, re);
    }
    return text;
}

async function json(resP) {
    const res = await resP;
    assert.equal(res.status, 200);
    return res.json();
}

// A presence member: a WebSocket subscriber with a presence id.
async function member(ngx, channel, user) {
    return C.wsConnect(`ws://127.0.0.1:${ngx.port}/member/${channel}?user=${user}`);
}

// Waits until GET channels/<name> says what `pred` wants (Redis counts of
// other workers arrive asynchronously).
async function channelUntil(p, name, params, pred) {
    let last;
    await waitUntil(async () => {
        last = await json(p.get({ path: `/channels/${name}`, params }));
        return pred(last);
    }, { timeout: 10000, what: `channel ${name}: ${JSON.stringify(last)}` });
    return last;
}

function suite(name, setup) {
    describe(name, () => {
        let ngx;
        let p;
        let env;

        before(async () => {
            env = await setup();
            ngx = await startNginx({ conf: env.conf, workers: 2, redis: env.redis });
            p = client(ngx);
        });

        after(async () => {
            if (ngx) {
                await ngx.stop({ keep: true });
                ngx.assertCleanLog();
            }
            if (env && env.stop) {
                await env.stop();
            }
        });

        it('trigger reaches nchan-protocol WebSocket and EventSource subscribers', async () => {
            const ch = uniq('chat-');
            const ws = await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/${ch}`);
            const es = C.eventSource(`http://127.0.0.1:${ngx.port}/sub/${ch}`,
                { events: ['my-event'] });
            try {
                await channelUntil(p, ch, { info: 'subscription_count' },
                    (c) => c.subscription_count === 2);
                const data = { text: 'héllo', n: 1 };
                const res = await p.trigger(ch, 'my-event', data);
                assert.equal(res.status, 200);
                assert.deepEqual(await res.json(), {});
                // exactly the data string the API got
                const m = await ws.next(5000);
                assert.equal(m.text, JSON.stringify(data));
                const e = await es.next(5000);
                assert.equal(e.type, 'my-event');
                assert.equal(e.data, JSON.stringify(data));
                // a string is sent as is
                await p.trigger(ch, 'plain', 'just text');
                assert.equal((await ws.next(5000)).text, 'just text');
                // socket_id skips that Pusher connection only: nchan
                // subscribers have none and get the event
                const r2 = await p.trigger(ch, 'other', 'skip one', { socket_id: '123.456' });
                assert.equal(r2.status, 200);
                assert.equal((await ws.next(5000)).text, 'skip one');
            } finally {
                es.close();
                await ws.close();
            }
        });

        it('trigger to several channels, with info', async () => {
            const a = uniq('a-');
            const b = uniq('presence-b-');
            const wsA = await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/${a}`);
            const m1 = await member(ngx, b, 'u1');
            const m2 = await member(ngx, b, 'u2');
            const m3 = await member(ngx, b, 'u2');
            try {
                await channelUntil(p, b, { info: 'user_count,subscription_count' },
                    (c) => c.user_count === 2 && c.subscription_count === 3);
                const res = await p.trigger([a, b], 'ev', 'x',
                    { info: 'user_count,subscription_count' });
                assert.deepEqual(await res.json(), {
                    channels: {
                        [a]: { subscription_count: 1 },
                        [b]: { user_count: 2, subscription_count: 3 },
                    },
                });
                assert.equal((await wsA.next(5000)).text, 'x');
                assert.equal((await m1.next(5000)).text, 'x');
                assert.equal((await m3.next(5000)).text, 'x');
            } finally {
                await Promise.all([wsA.close(), m1.close(), m2.close(), m3.close()]);
            }
        });

        it('triggerBatch publishes every event', async () => {
            const a = uniq('ba-');
            const b = uniq('bb-');
            const wsA = await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/${a}`);
            const wsB = await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/${b}`);
            try {
                await channelUntil(p, b, { info: 'subscription_count' },
                    (c) => c.subscription_count === 1);
                await channelUntil(p, a, { info: 'subscription_count' },
                    (c) => c.subscription_count === 1);
                const res = await p.triggerBatch([
                    { channel: a, name: 'one', data: { n: 1 } },
                    { channel: b, name: 'two', data: 'second' },
                    { channel: a, name: 'three', data: 'third', info: 'subscription_count' },
                ]);
                assert.deepEqual(await res.json(),
                    { batch: [{}, {}, { subscription_count: 1 }] });
                assert.equal((await wsA.next(5000)).text, '{"n":1}');
                assert.equal((await wsA.next(5000)).text, 'third');
                assert.equal((await wsB.next(5000)).text, 'second');
                // ten events of 10 KB: a body nginx spools to a file
                const big = Array.from({ length: 10 },
                    (_, i) => ({ channel: b, name: 'big', data: `${i}`.padEnd(10240, 'y') }));
                assert.deepEqual(await (await p.triggerBatch(big)).json(), {});
                for (let i = 0; i < 10; i++) {
                    assert.equal((await wsB.next(5000)).text, `${i}`.padEnd(10240, 'y'));
                }
            } finally {
                await Promise.all([wsA.close(), wsB.close()]);
            }
        });

        it('lists occupied channels, by prefix and with counts', async () => {
            const tag = uniq('l');
            const pub = `${tag}-pub`;
            const pres = `presence-${tag}`;
            const empty = `${tag}-empty`;
            const ws = await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/${pub}`);
            const m1 = await member(ngx, pres, 'alice');
            const m2 = await member(ngx, pres, 'bob');
            try {
                // Redis: every worker's count is in
                await channelUntil(p, pres, { info: 'user_count,subscription_count' },
                    (c) => c.user_count === 2 && c.subscription_count === 2);
                await channelUntil(p, pub, { info: 'subscription_count' },
                    (c) => c.subscription_count === 1);
                // a channel with history but no subscriber is not occupied
                await p.trigger(empty, 'ev', 'kept');
                let all;
                await waitUntil(async () => {
                    all = await json(p.get({ path: '/channels' }));
                    return all.channels[pub] && all.channels[pres];
                }, { timeout: 10000, what: 'both channels listed' });
                assert.deepEqual(all.channels[pub], {});
                assert.equal(all.channels[empty], undefined);

                const pr = await json(p.get({ path: '/channels',
                    params: { filter_by_prefix: 'presence-', info: 'user_count' } }));
                assert.deepEqual(pr.channels[pres], { user_count: 2 });
                assert.equal(pr.channels[pub], undefined);
                for (const k of Object.keys(pr.channels)) {
                    assert.ok(k.startsWith('presence-'), k);
                }

                const sc = await json(p.get({ path: '/channels',
                    params: { filter_by_prefix: tag, info: 'subscription_count' } }));
                assert.deepEqual(sc, { channels: { [pub]: { subscription_count: 1 } } });

                // the same through a prefixed location, with the query
                // URL-encoded as pusher-php-server sends it
                const php = JSON.parse(await expectStatus(signed(ngx, 'GET',
                    `/apps/${APP.appId}/channels`, { prefix: '/pusher', encode: true,
                        params: { filter_by_prefix: 'presence-',
                            info: 'user_count,subscription_count' } }), 200));
                assert.deepEqual(php.channels[pres], { user_count: 2, subscription_count: 2 });

                // user_count without the presence- prefix
                await expectError(p.get({ path: '/channels', params: { info: 'user_count' } }),
                    400, /user_count/);
            } finally {
                await Promise.all([ws.close(), m1.close(), m2.close()]);
            }
            // once they leave the channels are no longer listed
            await waitUntil(async () => {
                const all = await json(p.get({ path: '/channels',
                    params: { filter_by_prefix: tag } }));
                return Object.keys(all.channels).length === 0;
            }, { timeout: 15000, what: 'channels no longer listed' });
        });

        it('answers one channel and the users of a presence channel', async () => {
            const pres = uniq('presence-room-');
            const m1 = await member(ngx, pres, 'alice');
            const m2 = await member(ngx, pres, 'bob');
            const m3 = await member(ngx, pres, 'bob');
            try {
                const c = await channelUntil(p, pres, { info: 'user_count,subscription_count' },
                    (x) => x.subscription_count === 3 && x.user_count === 2);
                assert.deepEqual(c, { occupied: true, user_count: 2, subscription_count: 3 });
                const users = await json(p.get({ path: `/channels/${pres}/users` }));
                assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
                assert.deepEqual(Object.keys(users.users[0]), ['id']);

                const none = await json(p.get({ path: `/channels/${uniq('nobody-')}` }));
                assert.deepEqual(none, { occupied: false });
                const emptyPres = await json(p.get({ path: `/channels/${uniq('presence-x')}/users` }));
                assert.deepEqual(emptyPres, { users: [] });

                await expectError(p.get({ path: `/channels/${uniq('public-')}/users` }),
                    400, /presence channels/);
                await expectError(p.get({ path: `/channels/${uniq('public-')}`,
                    params: { info: 'user_count' } }), 400, /presence channels/);
            } finally {
                await Promise.all([m1.close(), m2.close(), m3.close()]);
            }
        });

        it('pusher-js: socket_id skips that connection, presence users and counts', async () => {
            const app = { id: APP.appId, key: APP.key, secret: APP.secret };
            const a = P.client(ngx.port, { app, user: 'alice' });
            const b = P.client(ngx.port, { app, user: 'bob' });
            try {
                const sa = await P.connected(a);
                await P.connected(b);
                const pres = uniq('presence-js-');
                const { ch: ca } = await P.subscribe(a, pres);
                const { ch: cb } = await P.subscribe(b, pres);
                const qa = P.events(ca, 'ev');
                const qb = P.events(cb, 'ev');
                const c = await channelUntil(p, pres, { info: 'user_count,subscription_count' },
                    (x) => x.user_count === 2 && x.subscription_count === 2);
                assert.deepEqual(c, { occupied: true, user_count: 2, subscription_count: 2 });
                const users = await json(p.get({ path: `/channels/${pres}/users` }));
                assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);

                await p.trigger(pres, 'ev', { n: 1 }, { socket_id: sa });
                await p.trigger(pres, 'ev', { n: 2 });
                assert.deepEqual((await qb.next(5000)).data, { n: 1 });
                assert.deepEqual((await qb.next(5000)).data, { n: 2 });
                // a never saw the first event
                assert.deepEqual((await qa.next(5000)).data, { n: 2 });
            } finally {
                a.disconnect();
                b.disconnect();
            }
        });

        it('terminateUserConnections answers {} and publishes the terminate event', async () => {
            const user = uniq('user');
            // a nchan subscriber of the user's channel gets what Pusher
            // connections signed in as the user get (contract 4): an empty
            // event (an EventSource client drops events without data)
            const ws = await C.wsConnect(
                `ws://127.0.0.1:${ngx.port}/sub/%23server-to-user-${user}`);
            try {
                await channelUntil(p, `%23server-to-user-${user}`, { info: 'subscription_count' },
                    (c) => c.subscription_count === 1);
                const res = await p.terminateUserConnections(user);
                assert.equal(res.status, 200);
                assert.deepEqual(await res.json(), {});
                const m = await ws.next(5000);
                assert.equal(m.text, '');
            } finally {
                await ws.close();
            }
        });

        it('refuses bad input with a specific answer, worker intact', async () => {
            const ch = uniq('bad-');
            // wrong secret
            await expectError(client(ngx, { secret: 'wrong-secret-0123456789' }).trigger(ch, 'e', 'x'),
                401, /invalid signature/);
            // timestamp off by more than 600 s
            await expectStatus(signed(ngx, 'GET', `/apps/${APP.appId}/channels`,
                { ts: Math.floor(Date.now() / 1000) - 700 }), 401, /auth_timestamp/);
            // body_md5 mismatch
            const body = JSON.stringify({ name: 'e', data: 'x', channel: ch });
            await expectStatus(signed(ngx, 'POST', `/apps/${APP.appId}/events`,
                { body, md5: crypto.createHash('md5').update('other').digest('hex') }),
            401, /body_md5/);
            // malformed JSON
            await expectStatus(signed(ngx, 'POST', `/apps/${APP.appId}/events`,
                { body: '{"name":"e",' }), 400, /malformed JSON body/);
            // over 10 KB of data
            await expectError(p.trigger(ch, 'e', 'x'.repeat(10241)), 413, /10 KB/);
            // exactly 10 KB passes
            assert.equal((await p.trigger(ch, 'e', 'x'.repeat(10240))).status, 200);
            // more than 100 channels (npm pusher refuses to send them)
            const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
            await expectStatus(signed(ngx, 'POST', `/apps/${APP.appId}/events`,
                { body: JSON.stringify({ name: 'e', data: 'x', channels: many }) }),
            400, /too many channels/);
            // more than 10 events in a batch
            const batch = Array.from({ length: 11 }, () => ({ name: 'e', data: 'x', channel: ch }));
            await expectError(p.triggerBatch(batch), 400, /at most 10/);
            // a batch with one bad event publishes nothing
            const fresh = uniq('batch-');
            const ws = await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/${fresh}`);
            try {
                await channelUntil(p, fresh, { info: 'subscription_count' },
                    (c) => c.subscription_count === 1);
                await expectError(p.triggerBatch([
                    { name: 'ok', data: 'first', channel: fresh },
                    { name: 'pusher:bad', data: 'x', channel: fresh },
                ]), 400, /batch\[1\].*reserved/);
                await p.trigger(fresh, 'ok', 'after');
                assert.equal((await ws.next(5000)).text, 'after');
            } finally {
                await ws.close();
            }
            // reserved event names
            await expectError(p.trigger(ch, 'pusher_internal:terminate', ''), 400, /reserved/);
            // an invalid channel name (npm pusher refuses to send it)
            await expectStatus(signed(ngx, 'POST', `/apps/${APP.appId}/events`,
                { body: JSON.stringify({ name: 'e', data: 'x', channel: 'a b' }) }),
            400, /invalid channel name/);
            // a socket_id that is not one (npm pusher refuses to send it)
            await expectStatus(signed(ngx, 'POST', `/apps/${APP.appId}/events`,
                { body: JSON.stringify({ name: 'e', data: 'x', channel: ch, socket_id: 'abc' }) }),
            400, /socket_id/);
            // unknown app
            await expectError(client(ngx, { appId: '999' }).trigger(ch, 'e', 'x'), 404, /unknown app/);
            // wrong method
            const get = await fetch(`http://127.0.0.1:${ngx.port}/apps/${APP.appId}/events`);
            assert.equal(get.status, 405);
            assert.equal(get.headers.get('allow'), 'POST');
            await expectStatus(signed(ngx, 'POST', `/apps/${APP.appId}/channels`, { body: '{}' }),
                405);
            // unknown route, and no signature at all
            await expectStatus(signed(ngx, 'GET', `/apps/${APP.appId}/nothing`), 404);
            await expectStatus(fetch(`http://127.0.0.1:${ngx.port}/apps/${APP.appId}/channels`),
                401, /auth_key/);
            // the worker still answers
            assert.deepEqual(await json(p.get({ path: `/channels/${ch}` })), { occupied: false });
        });
    });
}

suite('pusher api, memory engine', async () => ({ conf: confFor('') }));

suite('pusher api, redis', async () => {
    const redis = await startRedis();
    return {
        redis,
        conf: confFor('pubsub_redis_pass redis_up;',
            'upstream redis_up { pubsub_redis_server %%REDIS_URL%%; }'),
        stop: () => redis.stop(),
    };
});

suite('pusher api, redis cluster', async () => {
    const rc = await startRedisCluster({ masters: 3 });
    return {
        conf: confFor('pubsub_redis_pass redis_up;',
            `upstream redis_up {\n${rc.seeds.map((u) => `    pubsub_redis_server ${u};`).join('\n')}\n}`),
        stop: () => rc.stop(),
    };
});
