'use strict';
// Pusher presence across instances (SPEC 12): three nginx (2 workers each)
// on one redis-server, pusher-js clients on different instances.  Member
// lists and member_added/member_removed are cluster-wide and happen once;
// client events and plain publishes cross instances; the members of an
// instance killed with SIGKILL leave once, within pubsub_presence_ttl.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { startNginxes } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const { sleep } = require('./lib/util');
const C = require('./lib/clients');
const P = require('./lib/pusher');

const TTL = 4000;           // pubsub_presence_ttl
const PROPAGATION = 3000;   // what another instance did, seen here

const conf = `
pubsub_pusher_app id=1 key=app-key secret=app-secret-0123456789abcdef;
upstream redis_up {
    pubsub_redis_server %%REDIS_URL%%;
}
server {
    listen 127.0.0.1:%%PORT%%;

    location /app/ {
        pubsub_pusher;
        pubsub_redis_pass redis_up;
        pubsub_presence_leave_delay 1s;
        pubsub_presence_ttl 4s;
    }
    location ~ ^/pub/(.+)$ {
        pubsub_publisher;
        pubsub_channel_group pusher:1;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
    }
    location ~ ^/presence/(.+)$ {
        pubsub_presence_api;
        pubsub_channel_group pusher:1;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
    }
}`;

const allow = [/exited on signal 9/];
let seq = 0;
const uniq = (p) => `${p}${process.pid % 1000}x${++seq}`;
const pending = (q) => q.items.length - q.taken;

async function waitMembers(ngx, ch, ids) {
    const deadline = Date.now() + PROPAGATION;
    for (;;) {
        const r = await C.httpRequest({ port: ngx.port, path: `/presence/${ch}?limit=100` });
        const j = r.status === 200 ? JSON.parse(r.text) : null;
        const got = j ? j.members.map((m) => m.id).sort() : null;
        if (JSON.stringify(got) === JSON.stringify([...ids].sort())) {
            return;
        }
        if (Date.now() > deadline) {
            throw new Error(`members of ${ch} on :${ngx.port}: ${JSON.stringify(got)}`);
        }
        await sleep(50);
    }
}

describe('pusher on three instances sharing Redis', () => {
    let redis;
    let all = [];
    const clients = [];
    const client = (ngx, o) => {
        const p = P.client(ngx.port, o);
        clients.push(p);
        return p;
    };

    before(async () => {
        redis = await startRedis();
        all = await startNginxes(3, { conf, redis, workers: 2, allow });
    });

    after(async () => {
        clients.forEach((p) => p.disconnect());
        for (const n of all) {
            await n.stop().catch(() => {});
        }
        for (const n of all.slice(0, 2)) {
            n.assertCleanLog({ allow });
        }
        if (redis) {
            await redis.stop();
        }
    });

    it('member lists and member events are cluster-wide, once; a SIGKILLed instance\'s '
        + 'members leave once within pubsub_presence_ttl', async () => {
        const [A, B, Cx] = all;
        const name = uniq('presence-');
        const a = client(A, { user: 'alice' });
        const { ch: ca, data: la } = await P.subscribe(a, name);
        assert.deepEqual(Object.keys(la.members), ['alice']);
        const addedA = P.events(ca, 'pusher:member_added');
        const removedA = P.events(ca, 'pusher:member_removed');
        await waitMembers(B, name, ['alice']);

        const b = client(B, { user: 'bob' });
        const { ch: cb, data: lb } = await P.subscribe(b, name);
        assert.deepEqual(Object.keys(lb.members).sort(), ['alice', 'bob']);
        assert.deepEqual(lb.members.alice, { name: 'alice' });
        const removedB = P.events(cb, 'pusher:member_removed');
        assert.equal((await addedA.next(PROPAGATION)).data.id, 'bob');
        await waitMembers(Cx, name, ['alice', 'bob']);

        // carol on C, twice (one member)
        const c1 = client(Cx, { user: 'carol' });
        const c2 = client(Cx, { user: 'carol' });
        const { data: lc } = await P.subscribe(c1, name);
        assert.deepEqual(Object.keys(lc.members).sort(), ['alice', 'bob', 'carol']);
        await P.subscribe(c2, name);
        assert.equal((await addedA.next(PROPAGATION)).data.id, 'carol');
        await sleep(500);
        assert.equal(pending(addedA), 0, 'carol added once');

        // client events cross instances, with user_id, not to the sender
        const { ch: cpriv } = await P.subscribe(b, `private-${name}`);
        const { ch: apriv } = await P.subscribe(a, `private-${name}`);
        const got = P.events(apriv, 'client-hello');
        const gotp = P.events(ca, 'client-wave');
        cpriv.trigger('client-hello', { from: 'bob' });
        assert.deepEqual((await got.next(PROPAGATION)).data, { from: 'bob' });
        cb.trigger('client-wave', 1);
        const w = await gotp.next(PROPAGATION);
        assert.equal(w.meta.user_id, 'bob');

        // a plain publish on C reaches A's pusher-js
        const pub = P.events(ca, 'news');
        const r = await C.publish({ port: Cx.port, path: `/pub/${name}` }, '{"x":1}',
            { 'X-EventSource-Event': 'news' });
        assert.equal(r.status, 201);
        assert.deepEqual((await pub.next(PROPAGATION)).data, { x: 1 });

        // SIGKILL of C: carol leaves once, within the ttl, on A and B
        for (const pid of [Cx.pid, ...Cx.workerPids()]) {
            try {
                process.kill(pid, 'SIGKILL');
            } catch {
                // gone
            }
        }
        const t0 = Date.now();
        assert.equal((await removedA.next(TTL + PROPAGATION)).data.id, 'carol');
        assert.equal((await removedB.next(TTL + PROPAGATION)).data.id, 'carol');
        assert.ok(Date.now() - t0 < TTL + PROPAGATION);
        await sleep(1000);
        assert.equal(pending(removedA) + pending(removedB), 0, 'carol removed once');
        await waitMembers(A, name, ['alice', 'bob']);

        // bob leaves: alice hears it once, after the leave delay
        b.disconnect();
        assert.equal((await removedA.next(PROPAGATION + 1000)).data.id, 'bob');
    });
});

// The Pusher locations alone use the upstream: no publisher or subscriber
// location names it, and the workers still connect to Redis for them.
describe('pusher locations alone make their Redis upstream connect', () => {
    const only = `
pubsub_pusher_app id=1 key=app-key secret=app-secret-0123456789abcdef;
upstream redis_only {
    pubsub_redis_server %%REDIS_URL%%;
}
server {
    listen 127.0.0.1:%%PORT%%;
    pubsub_redis_pass redis_only;
    location /app/ {
        pubsub_pusher;
    }
    location /apps/ {
        pubsub_pusher_api;
    }
}`;

    it('events through the API reach a pusher-js client', async () => {
        const redis = await startRedis();
        const [ngx] = await startNginxes(1, { conf: only, redis, workers: 2 });
        const p = P.client(ngx.port);
        try {
            const ch = uniq('news');
            const { ch: sub } = await P.subscribe(p, ch, 10000);
            const got = P.events(sub, 'update');
            await P.sdk(ngx.port).trigger(ch, 'update', { n: 1 });
            assert.deepEqual((await got.next()).data, { n: 1 });
        } finally {
            p.disconnect();
            await ngx.stop();
            ngx.assertCleanLog();
            await redis.stop();
        }
    });

    it('the HTTP API alone on the upstream answers (not 503)', async () => {
        const redis = await startRedis();
        const apiOnly = only.replace('    pubsub_redis_pass redis_only;\n', '')
            .replace('pubsub_pusher_api;', 'pubsub_pusher_api;\n        pubsub_redis_pass redis_only;');
        const [ngx] = await startNginxes(1, { conf: apiOnly, redis, workers: 2 });
        try {
            const r = await P.sdk(ngx.port).trigger(uniq('news'), 'update', { n: 1 });
            assert.equal(r.status, 200);
            const c = await P.sdk(ngx.port).get({ path: '/channels' });
            assert.equal(c.status, 200);
        } finally {
            await ngx.stop();
            ngx.assertCleanLog();
            await redis.stop();
        }
    });
});
