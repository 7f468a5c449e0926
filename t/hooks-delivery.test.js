'use strict';
// At-least-once delivery of the unsubscribe and presence hooks (SPEC 12,
// docs/hooks.md "Delivery: at least once"): a backend that fails its first
// attempts (5xx, connection refused, too slow) still gets every event, in
// order per user, with retries at least the documented backoff apart; hooks
// pending across `nginx -s reload` are delivered by the new workers.

const assert = require('node:assert/strict');
const http = require('node:http');
const { describe, it } = require('node:test');
const { startNginx } = require('./lib/nginx');
const C = require('./lib/clients');
const u = require('./lib/backend');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// the documented backoff after attempt n (1 s, 2 s, 4 s, 8 s, 16 s, 30 s)
const backoff = (n) => Math.min(30000, 1000 * 2 ** (n - 1));

// A hook backend on a fixed port that can stop listening (connection
// refused) and answer per request with `answer(call)`.
async function hookBackend(answer) {
    const calls = [];
    let server = null;
    let port = 0;
    const handler = (req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', async () => {
            const call = {
                path: new URL(req.url, 'http://x').pathname, headers: req.headers,
                body: Buffer.concat(chunks).toString(), t: Date.now(),
            };
            calls.push(call);
            const a = (await answer(call)) || {};
            if (a.delay) {
                await sleep(a.delay);
            }
            // an answer nginx stopped waiting for is not a delivery
            call.status = a.delay ? 'too slow' : (a.status || 200);
            try {
                res.writeHead(call.status, { 'Content-Type': 'text/plain' });
                res.end('');
            } catch (e) {
                // nginx gave up on a slow answer
            }
        });
    };
    const listen = () => new Promise((resolve, reject) => {
        server = http.createServer(handler);
        server.keepAliveTimeout = 500;
        server.on('error', reject);
        server.listen(port, '127.0.0.1', () => {
            port = server.address().port;
            resolve();
        });
    });
    const down = () => new Promise((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
    });
    await listen();
    return { calls, get port() { return port; }, listen, down, close: down };
}

const conf = `
upstream app { server 127.0.0.1:%%BE%%; }
server {
    listen 127.0.0.1:%%PORT%%;

    location /hook/ {
        internal;
        proxy_pass http://app;
        proxy_connect_timeout 1s;
        proxy_read_timeout 1s;
    }

    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_leave_delay 0;
        pubsub_presence_request /hook/presence;
        pubsub_unsubscribe_request /hook/unsub;
    }
    location ~ ^/presence/(\\w+)$ { pubsub_presence_api; pubsub_channel_id $1; }
    location = /status { pubsub_status; }
}`;

let seq = 0;
const chan = () => `d${Date.now() % 100000}x${++seq}`;

// the distinct events of a path, in the order of their first arrival
function firstArrivals(calls, p, key) {
    const seen = new Map();
    for (const c of calls.filter((x) => x.path === p)) {
        const k = key(c);
        if (!seen.has(k)) {
            seen.set(k, c);
        }
    }
    return [...seen.keys()];
}

function delivered(calls, p) {
    return calls.filter((c) => c.path === p && c.status === 200);
}

async function subscribeAndLeave(port, channel, user) {
    const s = C.sseStream({ port, path: `/sub/${channel}?user=${user}` });
    assert.equal((await s.response).status, 200);
    await u.waitFor(async () => {
        const r = await C.httpRequest({ port, path: `/presence/${channel}?stats` });
        return JSON.parse(r.text).members === 1;
    }, 5000, `${user} in ${channel}`);
    s.close();
}

describe('hook delivery: at least once', () => {
    it('retries failed unsubscribe and presence hooks until the backend takes them', async () => {
        // every distinct event: 500, then refused, then too slow, then 200
        const attempts = new Map();
        let be = null;
        let refusing = false;
        be = await hookBackend(async (call) => {
            const key = `${call.path} ${call.body}`;
            const n = (attempts.get(key) || 0) + 1;
            attempts.set(key, n);
            if (n === 1) {
                if (!refusing) {
                    // refuse connections for a while (the next attempts of
                    // what failed fail to connect), then listen again
                    refusing = true;
                    setTimeout(async () => {
                        await be.down();
                        setTimeout(() => be.listen().catch(() => {}), 1500);
                    }, 50);
                }
                return { status: 500 };
            }
            if (n === 2) {
                return { status: 200, delay: 1500 };   // proxy_read_timeout 1s
            }
            return { status: 200 };
        });
        const ngx = await startNginx({ conf, workers: 2, vars: { BE: be.port } });
        try {
            const channel = chan();
            await subscribeAndLeave(ngx.port, channel, 'alice');

            // alice: online, join, leave, offline; and one unsubscribe
            await u.waitFor(() => delivered(be.calls, '/hook/presence').length >= 4
                && delivered(be.calls, '/hook/unsub').length >= 1,
            60000, 'every hook delivered');

            const events = firstArrivals(be.calls, '/hook/presence', (c) => {
                const e = JSON.parse(c.body);
                return `${(e.member || e.user).id} ${e.event}`;
            });
            assert.deepEqual(events, ['alice online', 'alice join', 'alice leave', 'alice offline']);
            const unsub = be.calls.filter((c) => c.path === '/hook/unsub');
            assert.equal(unsub[0].headers['x-channel-id'], channel);
            assert.match(unsub[0].headers['x-original-uri'], /user=alice/);

            // each event: its retries never closer than the backoff (one
            // worker at a time), every distinct event delivered
            const byEvent = new Map();
            for (const c of be.calls) {
                const k = `${c.path} ${c.body}`;
                if (!byEvent.has(k)) {
                    byEvent.set(k, []);
                }
                byEvent.get(k).push(c);
            }
            for (const [k, cs] of byEvent) {
                assert.ok(cs.some((c) => c.status === 200), `${k} delivered`);
                for (let i = 1; i < cs.length; i++) {
                    assert.ok(cs[i].t - cs[i - 1].t >= backoff(i) * 0.9,
                        `${k}: attempt ${i + 1} ${cs[i].t - cs[i - 1].t} ms after attempt ${i}`);
                }
            }
            // the first one failed: it was retried
            assert.ok([...byEvent.values()].some((cs) => cs.length >= 2));
            // pubsub_status: nothing left, the retries counted
            let q;
            await u.waitFor(async () => {
                q = JSON.parse((await C.httpRequest({ port: ngx.port, path: '/status' })).text)
                    .hooks.queue;
                return q.pending === 0;
            }, 10000, 'an empty queue');
            assert.ok(q.delivered >= 5 && q.retried >= 1 && q.queued >= 5, JSON.stringify(q));
            assert.equal(q.given_up, 0);
            assert.equal(q.dropped, 0);
            const log = ngx.errorLog();
            assert.match(log, /\[warn\].*pubsub: (presence|unsubscribe) hook attempt 1 failed \(500\), retried in 1000 ms/);
        } finally {
            await ngx.stop();
            ngx.assertCleanLog();
            await be.close().catch(() => {});
        }
    });

    it('a worker killed during a retry: the others send the hook again', async () => {
        // the first unsubscribe attempt fails, the second hangs until its
        // worker is killed
        let hang = true;
        let unsubs = 0;
        const be = await hookBackend((call) => {
            if (call.path !== '/hook/unsub') {
                return { status: 200 };
            }
            unsubs++;
            if (unsubs === 1) {
                return { status: 503 };
            }
            return hang ? { status: 200, delay: 4000 } : { status: 200 };
        });
        const slow = conf.replace('proxy_read_timeout 1s;', 'proxy_read_timeout 10s;');
        const ngx = await startNginx({
            conf: slow, workers: 2, vars: { BE: be.port }, allow: [/exited on signal 9/],
        });
        try {
            const channel = chan();
            await subscribeAndLeave(ngx.port, channel, 'dave');
            await u.waitFor(() => be.calls.filter((c) => c.path === '/hook/unsub').length >= 2,
                10000, 'the second unsubscribe attempt');
            hang = false;
            for (const pid of ngx.workerPids()) {
                process.kill(pid, 'SIGKILL');
            }
            await u.waitFor(() => be.calls.filter((c) => c.path === '/hook/unsub').length >= 3,
                15000, 'the unsubscribe sent again');
            const again = be.calls.filter((c) => c.path === '/hook/unsub')[2];
            assert.equal(again.headers['x-channel-id'], channel);
            assert.match(ngx.errorLog(),
                /a worker that is gone was sending \d+ hooks: [1-9]\d* retries are sent again/);
        } finally {
            await ngx.stop();
            ngx.assertCleanLog({ allow: [/exited on signal 9/] });
            await be.close().catch(() => {});
        }
    });

    it('a full queue: hooks sent once, the count logged at error', async () => {
        const be = await hookBackend(() => ({ status: 503 }));
        const ngx = await startNginx({
            conf: `pubsub_hook_queue_size 64k;\n${conf}`, vars: { BE: be.port },
        });
        try {
            // each unsubscribe holds the client's 8 KB header: a few fill 64k
            const big = 'x'.repeat(8000);
            const n = 20;
            for (let i = 0; i < n; i++) {
                const s = C.sseStream({ port: ngx.port, path: `/sub/${chan()}`, headers: { 'X-Big': big } });
                assert.equal((await s.response).status, 200);
                s.close();
            }
            await u.waitFor(() => be.calls.filter((c) => c.path === '/hook/unsub').length >= n,
                10000, 'every unsubscribe sent at least once');
            await ngx.waitForLog(/\[error\].*pubsub: the hook queue is full: \d+ hooks were not queued, sent once without retry/);
            const q = JSON.parse((await C.httpRequest({ port: ngx.port, path: '/status' })).text)
                .hooks.queue;
            assert.ok(q.dropped >= 1 && q.pending >= 1, JSON.stringify(q));
        } finally {
            await ngx.stop();
            ngx.assertCleanLog();
            await be.close().catch(() => {});
        }
    });

    it('keeps pending hooks across nginx -s reload', async () => {
        let accept = false;
        const be = await hookBackend(() => ({ status: accept ? 200 : 503 }));
        const ngx = await startNginx({ conf, workers: 2, vars: { BE: be.port } });
        try {
            const channel = chan();
            await subscribeAndLeave(ngx.port, channel, 'bob');
            await u.waitFor(() => be.calls.filter((c) => c.path === '/hook/unsub').length >= 1,
                10000, 'a first unsubscribe attempt');

            await ngx.reload();
            accept = true;

            await u.waitFor(() => delivered(be.calls, '/hook/unsub').length >= 1
                && delivered(be.calls, '/hook/presence').length >= 4, 60000,
            'the pending hooks delivered after the reload');
            const events = firstArrivals(be.calls.filter((c) => c.status === 200),
                '/hook/presence', (c) => JSON.parse(c.body).event);
            assert.deepEqual(events, ['online', 'join', 'leave', 'offline']);
        } finally {
            await ngx.stop();
            ngx.assertCleanLog();
            await be.close().catch(() => {});
        }
    });
});
