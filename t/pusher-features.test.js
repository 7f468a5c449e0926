'use strict';
// Pusher's optional channel features (docs/pusher.md "Subscription counts",
// "Cache channels"), with pusher-js 8 (Node build, unmodified), npm pusher
// (API and webhook validation) and a raw protocol client, on the memory
// engine and on Redis (two instances), two workers each:
// - pusher_internal:subscription_count reaches every subscriber of a
//   channel of an app with subscription_count=on (pusher-js: the channel's
//   subscriptionCount and its pusher:subscription_count event), across
//   workers and instances; never on presence channels nor for other apps;
//   subscribe/unsubscribe churn sends a bounded number of counts, the last
//   one right;
// - cache channels (cache-, private-cache-, private-encrypted-cache-,
//   presence-cache-) give a new subscriber the last server event, never a
//   client event, else pusher:cache_miss and the cache_miss webhook.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { describe, it, before, after } = require('node:test');
const PusherServer = require('pusher');
const { startNginxes, nginxCheck } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const C = require('./lib/clients');
const u = require('./lib/backend');
const P = require('./lib/pusher');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const uniq = (p) => `${p}${process.pid % 1000}x${++seq}`;

const APP2 = { id: '2', key: 'key-two', secret: 'secret-two-0123456789abcdef' };
const COUNT_EVERY_MS = 500;   // pubsub/pusher/features.h kCountEveryMs

function confFor(redis) {
    const engine = redis ? 'pubsub_redis_pass redis_up;' : '';
    return `
${redis ? 'upstream redis_up { pubsub_redis_server %%REDIS_URL%%; }' : ''}
pubsub_pusher_app id=1 key=app-key secret=app-secret-0123456789abcdef
                  subscription_count=on;
pubsub_pusher_app id=2 key=key-two secret=secret-two-0123456789abcdef
                  subscription_count=off;
server {
    listen 127.0.0.1:%%PORT%%;

    location /hook/ { internal; proxy_pass http://127.0.0.1:%%BE%%; }

    location /app/ {
        pubsub_pusher;
        pubsub_pusher_webhook /hook/pusher events=cache_miss,channel_occupied;
        ${engine}
    }
    location /apps/ {
        pubsub_pusher_api;
        ${engine}
    }
    location ~ ^/pub/(.+)$ {
        pubsub_publisher;
        pubsub_channel_group pusher:1;
        pubsub_channel_id $1;
        ${engine}
    }
}`;
}

// the cache_miss webhooks the backend took, validated with npm pusher
function misses(be) {
    const sdks = {};
    for (const app of [{ id: '1', ...P.APP }, APP2]) {
        sdks[app.key] = new PusherServer({ appId: app.id, key: app.key, secret: app.secret,
            cluster: 'mt1' });
    }
    const out = [];
    for (const c of be.of('/hook/pusher')) {
        const sdk = sdks[c.headers['x-pusher-key']];
        assert.ok(sdk, `a webhook of a known app: ${JSON.stringify(c.headers)}`);
        const wh = sdk.webhook({ headers: c.headers, rawBody: c.body });
        assert.ok(wh.isValid(), `a valid webhook: ${c.body}`);
        out.push(...wh.getEvents());
    }
    return out;
}

// subscription_count events of a pusher-js channel
function counts(ch) {
    const got = [];
    ch.bind('pusher:subscription_count', (d) => got.push(d.subscription_count));
    return got;
}

async function countIs(chs, n, what) {
    await u.waitFor(() => chs.every((c) => c.subscriptionCount === n), 10000,
        `${what}: subscriptionCount ${n} (have ${chs.map((c) => c.subscriptionCount)})`);
}

// a raw client's frames, collected
function collect(r) {
    const frames = [];
    (async () => {
        for (;;) {
            const f = await r.frame(600000).catch(() => null);
            if (f === null) {
                return;
            }
            frames.push(f);
        }
    })();
    return frames;
}

function sign(app, socketId, channel) {
    const h = crypto.createHmac('sha256', app.secret).update(`${socketId}:${channel}`);
    return `${app.key}:${h.digest('hex')}`;
}

function features(engine) {
    const redisMode = engine === 'redis';

    describe(`pusher features (${engine}, 2 workers${redisMode ? ', 2 instances' : ''})`, () => {
        let redis;
        let be;
        let ngxs = [];
        const open = [];
        // a pusher-js client of instance i (round robin with Redis)
        const client = (i = 0, o = {}) => {
            const p = P.client(ngxs[i % ngxs.length].port, o);
            open.push(p);
            return p;
        };

        before(async () => {
            be = await u.startBackend({ '/hook/pusher': () => ({ status: 200 }) });
            if (redisMode) {
                redis = await startRedis();
            }
            ngxs = await startNginxes(redisMode ? 2 : 1, {
                conf: confFor(redisMode), workers: 2, redis, vars: { BE: be.port },
            });
        });

        after(async () => {
            open.forEach((p) => p.disconnect());
            for (const n of ngxs) {
                await n.stop();
                n.assertCleanLog();
            }
            await be.close();
            if (redis) {
                await redis.stop();
            }
        });

        it('subscription_count reaches every subscriber, across workers', async () => {
            const name = uniq('count-');
            const chs = [];
            const seen = [];
            for (let i = 0; i < 6; i++) {
                const { ch } = await P.subscribe(client(i), name);
                seen.push(counts(ch));
                chs.push(ch);
            }
            await countIs(chs, 6, 'six subscribers');
            // pusher-js emits the event with the data
            assert.ok(seen.every((s) => s.length >= 1 && s[s.length - 1] === 6));
            open.splice(open.indexOf(chs[5].pusher), 1);
            chs[5].pusher.disconnect();
            chs[4].pusher.unsubscribe(name);
            await countIs(chs.slice(0, 4), 4, 'two gone');
        });

        it('no counts on presence channels, nor for an app without subscription_count', async () => {
            const pres = uniq('presence-count-');
            const pub = uniq('count-');
            const a = client(0, { user: 'ann' });
            const b = client(1, { user: 'bob' });
            const pa = counts((await P.subscribe(a, pres)).ch);
            const pb = counts((await P.subscribe(b, pres)).ch);
            const c1 = (await P.subscribe(a, pub)).ch;
            const c2 = (await P.subscribe(b, pub)).ch;
            await countIs([c1, c2], 2, 'the public channel');

            // app 2: raw clients see everything the server sends them
            const port = ngxs[0].port;
            const r1 = await P.raw(port, { key: APP2.key });
            const r2 = await P.raw(port, { key: APP2.key });
            const f1 = collect(r1);
            collect(r2);
            const other = uniq('count-');
            for (const r of [r1, r2]) {
                await r.sendJson({ event: 'pusher:subscribe', data: { channel: other } });
            }
            await u.waitFor(() => f1.some((f) => f.event
                === 'pusher_internal:subscription_succeeded'), 5000, 'app 2 subscribed');
            await P.sdk(port, APP2).trigger(other, 'ping', { n: 1 });
            await u.waitFor(() => f1.some((f) => f.event === 'ping'), 5000, 'app 2 event');
            await sleep(3 * COUNT_EVERY_MS);
            assert.deepEqual(pa, []);
            assert.deepEqual(pb, []);
            assert.deepEqual(f1.filter((f) => f.event.startsWith('pusher_internal:subscription_count')),
                []);
            await r1.close();
            await r2.close();
        });

        it('churn: a bounded number of counts, the last one right', async () => {
            const name = uniq('count-churn-');
            const obs = client(0);
            const { ch } = await P.subscribe(obs, name);
            const got = counts(ch);
            await countIs([ch], 1, 'the observer');
            const before = got.length;

            const churners = [];
            for (let i = 0; i < 4; i++) {
                churners.push(await P.raw(ngxs[i % ngxs.length].port));
            }
            for (const r of churners) {
                collect(r);
            }
            const ROUNDS = 250;
            const t0 = Date.now();
            await Promise.all(churners.map(async (r) => {
                for (let i = 0; i < ROUNDS; i++) {
                    await r.sendJson({ event: 'pusher:subscribe', data: { channel: name } });
                    await r.sendJson({ event: 'pusher:unsubscribe', data: { channel: name } });
                }
            }));
            // one last subscriber stays
            await churners[0].sendJson({ event: 'pusher:subscribe', data: { channel: name } });
            await countIs([ch], 2, 'after the churn');
            await sleep(3 * COUNT_EVERY_MS);
            const elapsed = Date.now() - t0;
            assert.equal(ch.subscriptionCount, 2);
            // the store's count too: an unsubscribe sent before the
            // subscribe's answer leaks no subscription (Redis: the store's
            // subscribe waits for a read)
            for (const n of ngxs) {
                const res = await P.sdk(n.port).get({ path: `/channels/${name}`,
                    params: { info: 'subscription_count' } });
                assert.equal((await res.json()).subscription_count, 2);
            }
            const frames = got.length - before;
            const changes = churners.length * ROUNDS * 2 + 1;
            // at most one count per interval and worker (+1 each for the
            // first and the last), whatever the churn
            const workers = 2 * ngxs.length;
            const bound = workers * (Math.ceil(elapsed / COUNT_EVERY_MS) + 2);
            assert.ok(frames <= bound, `${frames} counts for ${changes} changes in ${elapsed} ms`);
            assert.ok(frames < changes / 4, `${frames} counts for ${changes} changes`);

            // the connections and workers are fine
            const evs = P.events(ch, 'after');
            await P.sdk(ngxs[0].port).trigger(name, 'after', { ok: true });
            assert.deepEqual((await evs.next()).data, { ok: true });
            for (const r of churners) {
                await r.close();
            }
            await countIs([ch], 1, 'the churners gone');
        });

        it('cache channel: a new subscriber gets the last event first', async () => {
            const name = uniq('cache-');
            const sdk = P.sdk(ngxs[0].port);
            await sdk.trigger(name, 'price', { v: 1 });
            await sdk.trigger(name, 'price', { v: 2 });
            for (let i = 0; i < 2 * ngxs.length; i++) {
                const p = client(i);
                const ch = p.subscribe(name);
                const q = P.events(ch, 'price');
                const miss = P.events(ch, 'pusher:cache_miss');
                assert.deepEqual((await q.next()).data, { v: 2 });
                await sleep(100);
                assert.equal(q.items.length, 1);
                assert.equal(miss.items.length, 0);
            }
            // a plain publisher's message is cached too, as "message"
            const plain = uniq('cache-');
            const r = await C.publish({ port: ngxs[ngxs.length - 1].port, path: `/pub/${plain}` },
                'state text');
            assert.ok([201, 202].includes(r.status), String(r.status));
            const ch = client(0).subscribe(plain);
            assert.equal((await P.events(ch, 'message').next()).data, 'state text');
        });

        it('cache miss: pusher:cache_miss and the cache_miss webhook', async () => {
            const name = uniq('cache-empty-');
            const p = client(1);
            const ch = p.subscribe(name);
            const miss = P.events(ch, 'pusher:cache_miss');
            const ok = P.events(ch, 'pusher:subscription_succeeded');
            await ok.next();
            await miss.next();
            await u.waitFor(() => misses(be).some((e) => e.name === 'cache_miss'
                && e.channel === name), 10000, 'the cache_miss webhook');
            // then it fills
            await P.sdk(ngxs[0].port).trigger(name, 'state', { s: 'on' });
            const ch2 = client(0).subscribe(name);
            assert.deepEqual((await P.events(ch2, 'state').next()).data, { s: 'on' });
            // a plain channel has no miss
            const plainCh = client(0).subscribe(uniq('plain-'));
            const none = P.events(plainCh, 'pusher:cache_miss');
            await P.events(plainCh, 'pusher:subscription_succeeded').next();
            await sleep(300);
            assert.equal(none.items.length, 0);
        });

        it('private-cache: client events are never the cached event', async () => {
            const name = uniq('private-cache-');
            const a = client(0);
            const { ch } = await P.subscribe(a, name);
            const mine = P.events(ch, 'state');
            await P.sdk(ngxs[0].port).trigger(name, 'state', { v: 'server' });
            await mine.next();
            assert.ok(ch.trigger('client-typing', { who: 'a' }));
            const b = client(1);
            const chB = b.subscribe(name);
            const states = P.events(chB, 'state');
            const typing = P.events(chB, 'client-typing');
            assert.deepEqual((await states.next()).data, { v: 'server' });
            await sleep(300);
            assert.equal(typing.items.length, 0);
        });

        it('presence-cache and private-encrypted-cache replay too', async () => {
            const pres = uniq('presence-cache-');
            await P.sdk(ngxs[0].port).trigger(pres, 'scene', { n: 3 });
            const p = client(1, { user: 'zoe' });
            const ch = p.subscribe(pres);
            const scene = P.events(ch, 'scene');
            const members = P.events(ch, 'pusher:subscription_succeeded');
            assert.equal((await members.next()).data.count, 1);
            assert.deepEqual((await scene.next()).data, { n: 3 });

            // encrypted: nginx relays the ciphertext as it is
            const enc = uniq('private-encrypted-cache-');
            const body = '{"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy"}';
            const r = await C.publish({ port: ngxs[0].port, path: `/pub/${enc}` }, body,
                { 'X-EventSource-Event': 'secret' });
            assert.ok([201, 202].includes(r.status), String(r.status));
            const port = ngxs[ngxs.length - 1].port;
            const raw = await P.raw(port);
            const est = await raw.frame();
            await raw.sendJson({ event: 'pusher:subscribe',
                data: { channel: enc, auth: sign(P.APP, est.json.socket_id, enc) } });
            const ok = await raw.frame();
            assert.equal(ok.event, 'pusher_internal:subscription_succeeded');
            const f = await raw.frame();
            assert.deepEqual([f.event, f.channel, f.data], ['secret', enc, body]);
            await raw.close();
        });

        it('hostile: many subscribers of an empty cache channel, few cache_miss webhooks', async () => {
            const name = uniq('cache-crowd-');
            const N = 24;
            const raws = [];
            for (let i = 0; i < N; i++) {
                raws.push(await P.raw(ngxs[i % ngxs.length].port));
            }
            const frames = raws.map(collect);
            await Promise.all(raws.map((r) => r.sendJson({ event: 'pusher:subscribe',
                data: { channel: name } })));
            await u.waitFor(() => frames.every((fs) => fs.some((f) => f.event
                === 'pusher:cache_miss' && f.channel === name)), 10000, 'every cache_miss');
            await u.waitFor(() => misses(be).some((e) => e.channel === name), 10000,
                'a cache_miss webhook');
            await sleep(1000);   // every batch is out by now
            const hooks = misses(be).filter((e) => e.name === 'cache_miss' && e.channel === name).length;
            // coalesced per batch and worker: not one per subscriber
            assert.ok(hooks < N, `${hooks} cache_miss webhooks for ${N} subscribers`);
            for (const r of raws) {
                await r.close();
            }
        });

        it('hostile: garbage cache and count channel names, the internal channel', async () => {
            const port = ngxs[0].port;
            const raw = await P.raw(port);
            await raw.frame();
            for (const channel of ['#subscription_count', 'cache-\u00e9', '#online', 'x'.repeat(200)]) {
                await raw.sendJson({ event: 'pusher:subscribe', data: { channel } });
                const f = await raw.frame();
                assert.equal(f.event, 'pusher:subscription_error', channel);
                assert.equal(f.json.type, 'InvalidChannel');
            }
            // the internal channel is not listed by the API
            const name = uniq('count-');
            const { ch } = await P.subscribe(client(0), name);
            await countIs([ch], 1, 'listed channel');
            const res = await P.sdk(port).get({ path: '/channels' });
            const listed = Object.keys((await res.json()).channels);
            assert.ok(listed.includes(name));
            assert.ok(!listed.some((c) => c.includes('subscription_count')), listed.join(','));
            await raw.close();
        });

        it('a signed-in user\'s #server-to-user channel: not listed, no webhook', async () => {
            const port = ngxs[0].port;
            const user = uniq('signed');
            const p = client(0, { user, signin: { id: user } });
            p.signin();
            await p.user.signinDone;
            const name = uniq('occ-');
            await P.subscribe(p, name);
            const sdk = P.sdk(port);
            await u.waitFor(async () => {
                const res = await sdk.get({ path: '/channels' });
                return Object.keys((await res.json()).channels).includes(name);
            }, 10000, `${name} listed`);
            await u.waitFor(() => misses(be).some((e) => e.name === 'channel_occupied'
                && e.channel === name), 10000, `channel_occupied of ${name}`);
            await sleep(500);   // a batch more: anything about the user's channel
            const res = await sdk.get({ path: '/channels' });
            const listed = Object.keys((await res.json()).channels);
            assert.ok(!listed.some((c) => c.startsWith('#')), listed.join(','));
            const about = misses(be).filter((e) => (e.channel || '').startsWith('#'));
            assert.deepEqual(about, []);
        });
    });
}

features('memory');
features('redis');

describe('pubsub_pusher_app subscription_count=', () => {
    it('takes on or off, refuses anything else', async () => {
        const conf = (v) => `
pubsub_pusher_app id=1 key=app-key secret=app-secret-0123456789abcdef
                  subscription_count=${v};
server { listen 127.0.0.1:%%PORT%%; location /app/ { pubsub_pusher; } }`;
        assert.ok((await nginxCheck({ conf: conf('on') })).ok);
        assert.ok((await nginxCheck({ conf: conf('off') })).ok);
        const r = await nginxCheck({ conf: conf('yes') });
        assert.ok(!r.ok);
        assert.match(r.output, /pubsub_pusher_app: invalid "subscription_count=yes" \(on or off\)/);
    });
});
