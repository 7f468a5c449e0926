'use strict';
// Pusher webhooks (SPEC 12, docs/pusher.md "Webhooks"): npm `pusher`'s
// webhook(req).isValid() accepts every body; a backend that fails its first
// attempts still gets every event (at least once: deduplicated by content
// here); events= filters; with two nginx on one Redis each cluster event is
// sent once, not once per instance.  The producers are exercised with plain
// ngx_pubsub subscribers of group pusher:<app id>.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');
const Pusher = require('pusher');
const { startNginx, startNginxes } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const C = require('./lib/clients');
const u = require('./lib/backend');
const P = require('./lib/pusher');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const APP = { appId: 'app1', key: 'key1', secret: 'webhook-secret-0123456789' };
const pusher = new Pusher({ ...APP, cluster: 'mt1' });

function confWith({ events = '', redis = false, httpLevel = false } = {}) {
    const engine = redis ? 'pubsub_redis_pass redis_up;' : '';
    const webhook = `pubsub_pusher_webhook /hook/pusher${events ? ` events=${events}` : ''};`;
    return `
${redis ? 'upstream redis_up { pubsub_redis_server %%REDIS_URL%%; }' : ''}
pubsub_pusher_app id=${APP.appId} key=${APP.key} secret=${APP.secret};
${httpLevel ? webhook : ''}
server {
    listen 127.0.0.1:%%PORT%%;

    location /hook/ { internal; proxy_pass http://127.0.0.1:%%BE%%; }

    # plain subscribers of the app's channels, where the webhook is written
    location ~ ^/sub/([\\w-]+)$ {
        pubsub_subscriber;
        pubsub_channel_group pusher:${APP.appId};
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_leave_delay 0;
        ${engine}
        ${httpLevel ? '' : webhook}
    }
    location ~ ^/presence/([\\w-]+)$ {
        pubsub_presence_api;
        pubsub_channel_group pusher:${APP.appId};
        pubsub_channel_id $1;
        ${engine}
    }
}`;
}

let seq = 0;
const chan = (p = 'presence-room') => `${p}${Date.now() % 100000}x${++seq}`;

// every webhook body the backend took (2xx), validated with npm pusher
function received(be) {
    return be.of('/hook/pusher').filter((c) => c.answered === 200);
}

function validEvents(be) {
    const out = [];
    for (const c of received(be)) {
        const wh = pusher.webhook({ headers: c.headers, rawBody: c.body });
        assert.ok(wh.isValid(), `a valid webhook: ${JSON.stringify(c.headers)} ${c.body}`);
        assert.equal(typeof wh.getTime().getTime(), 'number');
        out.push(...wh.getEvents());
    }
    return out;
}

// events deduplicated by content, in the order first seen
function distinct(events, channel) {
    const seen = new Map();
    for (const e of events.filter((x) => x.channel === channel)) {
        const k = JSON.stringify(e);
        if (!seen.has(k)) {
            seen.set(k, e);
        }
    }
    return [...seen.values()];
}

const names = (evs) => evs.map((e) => (e.user_id ? `${e.name} ${e.user_id}` : e.name));

async function members(ngx, channel, n) {
    await u.waitFor(async () => {
        const r = await C.httpRequest({ port: ngx.port, path: `/presence/${channel}?stats` });
        return r.status === 200 && JSON.parse(r.text).members === n;
    }, 5000, `${n} members in ${channel}`);
}

async function backend(failFirst = 0) {
    let n = 0;
    const be = await u.startBackend({
        '/hook/pusher': (call) => {
            n++;
            call.answered = n <= failFirst ? 503 : 200;
            return { status: call.answered };
        },
    });
    return be;
}

describe('pusher webhooks', () => {
    it('client_event: a pusher-js client event, with socket_id and user_id', async () => {
        const be = await backend(1);
        const conf = `
pubsub_pusher_app id=${APP.appId} key=${APP.key} secret=${APP.secret};
server {
    listen 127.0.0.1:%%PORT%%;
    location /hook/ { internal; proxy_pass http://127.0.0.1:%%BE%%; }
    location /app/ {
        pubsub_pusher;
        pubsub_pusher_webhook /hook/pusher events=client_event;
    }
}`;
        const ngx = await startNginx({ conf, workers: 2, vars: { BE: be.port } });
        const app = { id: APP.appId, key: APP.key, secret: APP.secret };
        const a = P.client(ngx.port, { user: 'alice', app });
        const b = P.client(ngx.port, { user: 'bob', app });
        try {
            const channel = chan('presence-typing');
            const { ch: ach } = await P.subscribe(a, channel);
            await P.subscribe(b, channel);
            assert.equal(ach.trigger('client-typing', { n: 1 }), true);
            let evs = [];
            await u.waitFor(() => {
                evs = distinct(validEvents(be), channel);
                return evs.some((e) => e.name === 'client_event');
            }, 30000, 'the client_event webhook');
            assert.deepEqual(evs.map((e) => e.name), ['client_event']);
            const e = evs[0];
            assert.equal(e.event, 'client-typing');
            assert.equal(e.data, JSON.stringify({ n: 1 }));
            assert.equal(e.socket_id, a.connection.socket_id);
            assert.equal(e.user_id, 'alice');
        } finally {
            a.disconnect();
            b.disconnect();
            await ngx.stop();
            ngx.assertCleanLog();
            await be.close();
        }
    });

    it('signed bodies npm pusher accepts; every event once the backend recovers', async () => {
        const be = await backend(2);
        const ngx = await startNginx({ conf: confWith(), workers: 2, vars: { BE: be.port } });
        try {
            const channel = chan();
            const s = C.sseStream({ port: ngx.port, path: `/sub/${channel}?user=alice` });
            assert.equal((await s.response).status, 200);
            await members(ngx, channel, 1);
            s.close();
            await members(ngx, channel, 0);

            const want = ['channel_occupied', 'member_added alice', 'member_removed alice',
                'channel_vacated'];
            let evs = [];
            await u.waitFor(() => {
                evs = distinct(validEvents(be), channel);
                return want.every((w) => names(evs).includes(w))
                    && evs.some((e) => e.name === 'subscription_count' && e.subscription_count === 0);
            }, 60000, 'every webhook event');

            // in order: occupied before vacated, added before removed
            const order = names(evs);
            assert.ok(order.indexOf('channel_occupied') < order.indexOf('channel_vacated'));
            assert.ok(order.indexOf('member_added alice') < order.indexOf('member_removed alice'));
            // the failed attempts were retried
            assert.ok(be.of('/hook/pusher').length >= received(be).length + 2);
            const first = be.of('/hook/pusher')[0];
            assert.equal(first.headers['content-type'], 'application/json');
            assert.equal(first.headers['x-pusher-key'], APP.key);
            assert.ok(typeof JSON.parse(first.body).time_ms === 'number');
            // subscription_count carries the count
            assert.ok(evs.some((e) => e.name === 'subscription_count' && e.subscription_count === 1)
                || evs.some((e) => e.name === 'subscription_count' && e.subscription_count === 0));
        } finally {
            await ngx.stop();
            ngx.assertCleanLog();
            await be.close();
        }
    });

    it('events= sends only the events listed (at http level)', async () => {
        const be = await backend(0);
        const ngx = await startNginx({
            conf: confWith({ events: 'channel_vacated,member_added', httpLevel: true }),
            vars: { BE: be.port },
        });
        try {
            const channel = chan();
            const s = C.sseStream({ port: ngx.port, path: `/sub/${channel}?user=bob` });
            assert.equal((await s.response).status, 200);
            await members(ngx, channel, 1);
            s.close();
            await u.waitFor(() => names(distinct(validEvents(be), channel)).includes('channel_vacated'),
                10000, 'channel_vacated');
            // what was batched with it or before it is all there is
            await sleep(500);
            assert.deepEqual(names(distinct(validEvents(be), channel)).sort(),
                ['channel_vacated', 'member_added bob']);
        } finally {
            await ngx.stop();
            ngx.assertCleanLog();
            await be.close();
        }
    });

    it('two nginx on one Redis: each cluster event once', async () => {
        const redis = await startRedis();
        const be = await backend(0);
        let ngxs = [];
        try {
            ngxs = await startNginxes(2, {
                conf: confWith({ redis: true }), workers: 2, redis, vars: { BE: be.port },
            });
            const [a, b] = ngxs;
            const channel = chan();
            const sa = C.sseStream({ port: a.port, path: `/sub/${channel}?user=carol` });
            assert.equal((await sa.response).status, 200);
            await members(a, channel, 1);
            await u.waitFor(() => names(distinct(validEvents(be), channel)).includes('channel_occupied'),
                10000, 'channel_occupied');
            const sb = C.sseStream({ port: b.port, path: `/sub/${channel}?user=carol` });
            assert.equal((await sb.response).status, 200);
            await u.waitFor(() => validEvents(be).some((e) => e.channel === channel
                && e.name === 'subscription_count' && e.subscription_count === 2),
            10000, 'subscription_count 2');
            sa.close();
            sb.close();
            await u.waitFor(() => names(validEvents(be).filter((e) => e.channel === channel))
                .includes('member_removed carol') && names(validEvents(be)
                .filter((e) => e.channel === channel)).includes('channel_vacated'),
            15000, 'vacated and removed');
            await sleep(1000);   // anything sent twice would be here by now
            const all = names(validEvents(be).filter((e) => e.channel === channel
                && e.name !== 'subscription_count'));
            // every request was answered 200: no retry, so no duplicate
            assert.deepEqual(all.filter((n) => n === 'channel_occupied'), ['channel_occupied']);
            assert.deepEqual(all.filter((n) => n === 'channel_vacated'), ['channel_vacated']);
            assert.deepEqual(all.filter((n) => n === 'member_added carol'), ['member_added carol']);
            assert.deepEqual(all.filter((n) => n === 'member_removed carol'), ['member_removed carol']);
        } finally {
            for (const n of ngxs) {
                await n.stop();
                n.assertCleanLog();
            }
            await be.close();
            await redis.stop();
        }
    });
});
