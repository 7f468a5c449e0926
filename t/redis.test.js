'use strict';
// Issue 8: the Redis engine. Several nginx instances share one redis-server
// (started by the tests): cross-instance delivery, resume and gap, Redis
// outages, an nginx instance killed with SIGKILL.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');
const { startNginxes, stopNginxes, nginxCheck } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const { sleep } = require('./lib/util');
const C = require('./lib/clients');

const conf = `
map $arg_buf $buflen {
    ""       20;
    default  $arg_buf;
}
upstream redis_up {
    pubsub_redis_server %%REDIS_URL%%;
}
server {
    listen 127.0.0.1:%%PORT%%;
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length $buflen;
        pubsub_redis_pass redis_up;
    }
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
    }
    location ~ ^/ps/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
    }
    location ~ ^/mem/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
    }
    location = /status {
        pubsub_status;
    }
}`;

// Redis going away is logged at [error]; nothing worse is expected.
const allow = [];

const cluster = (redis, n, extra = {}) => startNginxes(n, { conf, redis, workers: 2, ...extra });
const stopAll = (ngxs, { clean = true } = {}) => stopNginxes(ngxs, { allow, clean });

function lastIdOf(text) {
    const m = /last message id: (\S+)/.exec(text);
    return m ? m[1] : null;
}

// An SSE subscriber that is attached (its channel subscribed in Redis):
// publishes a probe until the subscriber sees it.
async function sseReady(port, path, pubPort, pubPath) {
    const sse = C.sseStream({ port, path });
    assert.equal((await sse.response).status, 200);
    return sse;
}

const { waitPublish } = C;

describe('redis engine', () => {
    it('refuses bad configuration', async () => {
        const bad = async (upstream, loc, re) => {
            const r = await nginxCheck({ conf: `${upstream}
server { listen 127.0.0.1:%%PORT%%; location /x { pubsub_pubsub; pubsub_channel_id x; ${loc} } }` });
            assert.equal(r.ok, false, r.output);
            assert.match(r.output, re);
        };
        await bad('upstream u { pubsub_redis_server http://x:1; }', 'pubsub_redis_pass u;',
            /must start with "redis:\/\/"/);
        await bad('upstream u { pubsub_redis_server redis://x:99999; }', 'pubsub_redis_pass u;',
            /invalid port/);
        await bad('upstream u { pubsub_redis_server redis://x:1/abc; }', 'pubsub_redis_pass u;',
            /invalid database/);
        await bad('upstream u { pubsub_redis_server redis://user:pw@x:1; }', 'pubsub_redis_pass u;',
            /user name/);
        await bad('', 'pubsub_redis_pass nowhere;', /nowhere/);
        // a mistyped name is reported by its name, not as nginx's "no port"
        await bad('', 'pubsub_redis_pass nowhere;',
            /pubsub_redis_pass "nowhere": no upstream with that name has a pubsub_redis_server/);
        {
            const r = await nginxCheck({ conf: `server { listen 127.0.0.1:%%PORT%%; location /x { pubsub_pubsub; pubsub_channel_id x; pubsub_redis_pass nowhere; } }` });
            assert.doesNotMatch(r.output, /no port in upstream/);
        }
        await bad('upstream u { server 127.0.0.1:1; }', 'pubsub_redis_pass u;',
            /no upstream with that name has a pubsub_redis_server/);
        const u = 'upstream u { pubsub_redis_server redis://127.0.0.1:1; }';
        await bad(u, 'pubsub_redis_pass u; pubsub_presence on; pubsub_presence_ttl 500ms;',
            /pubsub_presence_ttl must be from 1s to 24h/);
        await bad(u, 'pubsub_redis_pass u; pubsub_presence on; pubsub_presence_ttl 2d;',
            /pubsub_presence_ttl must be from 1s to 24h/);
        await bad(u, 'pubsub_redis_pass u; pubsub_presence_ttl soon;',
            /"pubsub_presence_ttl" directive invalid value/);
        const ok = await nginxCheck({ conf: `upstream u { pubsub_redis_server redis://:secret@127.0.0.1:1/3; }
server { listen 127.0.0.1:%%PORT%%; location /x { pubsub_pubsub; pubsub_channel_id x; pubsub_redis_pass u; } }` });
        assert.equal(ok.ok, true, ok.output);
    });

    it('delivers across two instances, in order, once, with the same ids', async () => {
        const redis = await startRedis();
        const [a, b] = await cluster(redis, 2);
        try {
            const sse = await sseReady(a.port, '/sub/x1');
            await sleep(300);
            const ids = [];
            for (let i = 0; i < 20; i++) {
                const via = i % 2 ? a : b;
                const r = await C.publish({ port: via.port, path: '/pub/x1' }, `m${i}`);
                assert.equal(r.status, 201, r.text);
                ids.push(lastIdOf(r.text));
            }
            const got = await sse.waitFor(20, 5000);
            assert.deepEqual(got.map((e) => e.data), ids.map((_, i) => `m${i}`));
            assert.deepEqual(got.map((e) => e.id), ids);
            await sleep(300);
            assert.equal(sse.events.items.length, 20, 'nothing twice');
            // ids strictly increase
            for (let i = 1; i < ids.length; i++) {
                const [t0, g0] = ids[i - 1].split(':').map(Number);
                const [t1, g1] = ids[i].split(':').map(Number);
                assert.ok(t1 > t0 || (t1 === t0 && g1 > g0), `${ids[i - 1]} < ${ids[i]}`);
            }
            // channel info is the same on both instances
            const ia = await C.httpRequest({ port: a.port, path: '/pub/x1' });
            const ib = await C.httpRequest({ port: b.port, path: '/pub/x1' });
            assert.equal(ia.status, 200);
            assert.equal(lastIdOf(ia.text), ids[19]);
            assert.equal(lastIdOf(ib.text), ids[19]);
            assert.match(ia.text, /subscribers: 1/);
            assert.match(ib.text, /messages: 20/);
            sse.close();
        } finally {
            await stopAll([a, b]);
            await redis.stop();
        }
    });

    it('a long-poll re-polling while the next message is published gets it, every round',
        async () => {
            // the re-poll reads the channel's snapshot, the publish lands
            // before it attaches: it must still get the message (once)
            const redis = await startRedis();
            const [a] = await cluster(redis, 1, { workers: 1 });
            try {
                const first = await C.publish({ port: a.port, path: '/pub/lp1' }, 'm0');
                assert.equal(first.status, 202);
                const lp = C.longPoll({ port: a.port, path: '/sub/lp1', pollTimeout: 3000 });
                let m = await lp.next(3000);
                assert.equal(m.text, 'm0');
                for (let i = 1; i <= 150; i++) {
                    const r = await C.publish({ port: a.port, path: '/pub/lp1' }, `m${i}`);
                    assert.ok(r.status === 201 || r.status === 202, r.text);
                    m = await lp.next(3000);
                    assert.equal(m.text, `m${i}`, `round ${i}`);
                }
                await lp.stop();
                assert.ok(lp.responses.every((x) => x.status === 200), 'no 408');
                // the engine's counters reach the status page within a second
                let st;
                for (let i = 0; i < 40; i++) {
                    st = JSON.parse((await C.httpRequest({ port: a.port, path: '/status' })).text);
                    if (st.redis.published >= 151) {
                        break;
                    }
                    await sleep(100);
                }
                assert.equal(st.redis.published, 151);
                assert.ok(st.redis.live_messages >= 100, JSON.stringify(st.redis));
                assert.ok(st.redis.history_reads >= 1, JSON.stringify(st.redis));
                const prom = (await C.httpRequest({ port: a.port, path: '/status?format=prometheus' })).text;
                assert.match(prom, /^pubsub_redis_published_total 151$/m);
                assert.match(prom, /^# TYPE pubsub_redis_catch_ups_total counter$/m);
            } finally {
                await stopAll([a]);
                await redis.stop();
            }
        });

    it('three instances: subscribers on two of them get everything published on all', async () => {
        const redis = await startRedis();
        const ngxs = await cluster(redis, 3);
        try {
            const subs = [];
            for (const n of [ngxs[0], ngxs[2]]) {
                subs.push(await sseReady(n.port, '/sub/x3'));
                subs.push(await sseReady(n.port, '/sub/x3'));
            }
            const ws = await C.wsConnect(ngxs[1].wsUrl('/ps/x3'), { protocol: 'ws+meta.nchan' });
            await sleep(300);
            const want = [];
            for (let i = 0; i < 30; i++) {
                const r = await C.publish({ port: ngxs[i % 3].port, path: '/pub/x3' }, `n${i}`);
                assert.equal(r.status, 201, r.text);
                want.push(`n${i}`);
            }
            for (const s of subs) {
                const got = await s.waitFor(30, 5000);
                assert.deepEqual(got.map((e) => e.data), want);
            }
            const wsGot = await ws.messages.waitFor(30, 5000);
            assert.deepEqual(wsGot.map((m) => m.meta.text), want);
            const info = await C.httpRequest({ port: ngxs[1].port, path: '/pub/x3' });
            assert.match(info.text, /subscribers: 5/);
            await sleep(300);
            for (const s of subs) {
                assert.equal(s.events.items.length, 30);
                s.close();
            }
            ws.close();
        } finally {
            await stopAll(ngxs);
            await redis.stop();
        }
    });

    it('resumes on another instance, and signals a gap', async () => {
        const redis = await startRedis();
        const [a, b] = await cluster(redis, 2);
        try {
            const sse = await sseReady(a.port, '/sub/r1');
            await sleep(200);
            for (let i = 0; i < 3; i++) {
                await C.publish({ port: b.port, path: '/pub/r1' }, `r${i}`);
            }
            const first = await sse.waitFor(3, 5000);
            sse.close();
            for (let i = 3; i < 6; i++) {
                await C.publish({ port: a.port, path: '/pub/r1' }, `r${i}`);
            }
            const again = C.sseStream({ port: b.port, path: '/sub/r1',
                headers: { 'Last-Event-ID': first[2].id } });
            const got = await again.waitFor(3, 5000);
            assert.deepEqual(got.map((e) => e.data), ['r3', 'r4', 'r5']);
            await sleep(300);
            assert.equal(again.events.items.length, 3);
            again.close();

            // long-poll resume with the id from the other instance
            const lp = await C.httpRequest({ port: a.port, path: `/sub/r1?last_event_id=${encodeURIComponent(got[1].id)}` });
            assert.equal(lp.status, 200);
            assert.equal(lp.text, 'r5');

            // buffer of 2: resuming from the first id misses messages
            for (let i = 0; i < 5; i++) {
                await C.publish({ port: b.port, path: '/pub/g1?buf=2' }, `g${i}`);
            }
            const all = C.sseStream({ port: a.port, path: '/sub/g1',
                headers: { 'Last-Event-ID': '1:0' } });
            const blocks = await all.waitFor(3, 5000);
            assert.equal(blocks[0].event, 'pubsub.gap');
            assert.deepEqual(blocks.slice(1).map((e) => e.data), ['g3', 'g4']);
            all.close();
        } finally {
            await stopAll([a, b]);
            await redis.stop();
        }
    });

    it('survives Redis being killed and restarted under traffic', async () => {
        let redis = await startRedis();
        const port = redis.port;
        const [a, b] = await cluster(redis, 2);
        try {
            const sse = await sseReady(a.port, '/sub/o1');
            await sleep(300);
            const sent = [];
            let r = await C.publish({ port: b.port, path: '/pub/o1' }, 'before');
            assert.equal(r.status, 201);
            sent.push('before');
            await sse.waitFor(1, 5000);

            // pubsub_status: both workers' links connected, round trips measured
            let st = JSON.parse((await C.httpRequest({ port: b.port, path: '/status' })).text);
            assert.equal(st.redis.enabled, true);
            assert.equal(st.redis.links, 2);
            assert.equal(st.redis.connected_links, 2);
            assert.equal(st.redis.connected, true);
            assert.equal(typeof st.redis.latency_ms, 'number');

            await redis.kill();
            r = await C.publish({ port: b.port, path: '/pub/o1' }, 'during');
            assert.equal(r.status, 503);
            st = JSON.parse((await C.httpRequest({ port: b.port, path: '/status' })).text);
            assert.equal(st.redis.connected, false);
            assert.match(r.text, /Redis is unavailable/);
            const sub503 = await C.httpRequest({ port: b.port, path: '/sub/o1' });
            assert.equal(sub503.status, 503);

            redis = await startRedis({ port });
            // publish as soon as B is back; A may still be reconnecting
            for (let i = 0; i < 10; i++) {
                await waitPublish(b.port, '/pub/o1', `after${i}`);
                sent.push(`after${i}`);
            }
            const got = await sse.waitFor(sent.length, 10000).catch((e) => {
                throw new Error(`${e.message}: ${JSON.stringify(sse.events.items.map((x) => [x.id, x.data]))}`);
            });
            assert.deepEqual(got.map((e) => e.data), sent);
            await sleep(500);
            assert.equal(sse.events.items.length, sent.length, 'nothing twice');
            assert.equal(sse.events.ended, false, 'the subscriber stayed connected');
            sse.close();
        } finally {
            await stopAll([a, b]);
            await redis.stop();
        }
    });

    it('loses nothing when the connections drop while Redis keeps its data', async () => {
        const redis = await startRedis();
        const [a, b] = await cluster(redis, 2);
        try {
            const sse = await sseReady(a.port, '/sub/k1');
            await sleep(300);
            const sent = [];
            let stop = false;
            const pub = (async () => {
                for (let i = 0; !stop && i < 200; i++) {
                    const r = await C.publish({ port: b.port, path: '/pub/k1?buf=100' }, `k${i}`);
                    if (r.status === 201 || r.status === 202) {
                        sent.push(`k${i}`);
                    } else {
                        assert.equal(r.status, 503, r.text);
                    }
                    await sleep(10);
                }
            })();
            for (let i = 0; i < 3; i++) {
                await sleep(300);
                await redis.command('CLIENT', 'KILL', 'TYPE', 'pubsub');
            }
            await sleep(300);
            stop = true;
            await pub;
            const got = await sse.waitFor(sent.length, 10000);
            assert.deepEqual(got.map((e) => e.data), sent);
            await sleep(500);
            assert.equal(sse.events.items.length, sent.length, 'nothing twice');
            sse.close();
        } finally {
            await stopAll([a, b], { clean: true });
            await redis.stop();
        }
    });

    it('a stalled Redis never blocks nginx', async () => {
        const redis = await startRedis();
        const [a] = await cluster(redis, 1);
        try {
            const sse = await sseReady(a.port, '/sub/p1');
            await sleep(300);
            await C.publish({ port: a.port, path: '/pub/p1' }, 'one');
            await sse.waitFor(1, 5000);
            process.kill(redis.pid, 'SIGSTOP');
            try {
                const t0 = Date.now();
                const pending = C.publish({ port: a.port, path: '/pub/p1' }, 'stalled');
                // meanwhile nginx answers other requests at once
                const mem = await C.publish({ port: a.port, path: '/mem/p1' }, 'memory');
                assert.equal(mem.status, 202);
                assert.ok(Date.now() - t0 < 1000);
                const r = await pending;
                assert.equal(r.status, 503, r.text);
                assert.match(r.text, /Redis is unavailable/);
                assert.ok(Date.now() - t0 < 8000, 'the command timeout ended the wait');
            } finally {
                process.kill(redis.pid, 'SIGCONT');
            }
            await waitPublish(a.port, '/pub/p1', 'two');
            // 'stalled' may or may not have reached Redis before it stopped
            const data = [];
            while (!data.includes('two')) {
                data.push((await sse.next(10000)).data);
            }
            assert.deepEqual(data.filter((d) => d !== 'stalled'), ['one', 'two']);
            assert.equal(sse.events.ended, false);
            sse.close();
        } finally {
            await stopAll([a]);
            await redis.stop();
        }
    });

    it('an instance killed with SIGKILL does not affect the others', async () => {
        const redis = await startRedis();
        const [a, b] = await cluster(redis, 2);
        try {
            const onA = await sseReady(a.port, '/sub/s1');
            const onB = await sseReady(b.port, '/sub/s1');
            await sleep(300);
            let info = await C.httpRequest({ port: b.port, path: '/pub/s1' });
            const pids = [a.pid, ...(await a.workerPids())];
            for (const pid of pids) {
                try {
                    process.kill(pid, 'SIGKILL');
                } catch {
                    // gone
                }
            }
            onA.close();
            const r = await C.publish({ port: b.port, path: '/pub/s1' }, 'still');
            assert.equal(r.status, 201);
            const ev = await onB.next(5000);
            assert.equal(ev.data, 'still');
            info = await C.httpRequest({ port: b.port, path: '/pub/s1' });
            assert.equal(info.status, 200);
            onB.close();
        } finally {
            await a.stop().catch(() => {});
            await b.stop();
            b.assertCleanLog({ allow });
            await redis.stop();
        }
    });

    it('deletes a channel everywhere', async () => {
        const redis = await startRedis();
        const [a, b] = await cluster(redis, 2);
        try {
            const sse = await sseReady(a.port, '/sub/d1');
            await sleep(300);
            await C.publish({ port: b.port, path: '/pub/d1' }, 'x');
            await sse.waitFor(1, 5000);
            const del = await C.httpRequest({ port: b.port, method: 'DELETE', path: '/pub/d1' });
            assert.equal(del.status, 200);
            // the subscriber on the other instance is told and let go
            await sse.events.waitEnd(5000);
            assert.equal(sse.events.ended, true);
            const gone = await C.httpRequest({ port: a.port, path: '/pub/d1' });
            assert.equal(gone.status, 404);
        } finally {
            await stopAll([a, b]);
            await redis.stop();
        }
    });
});
