'use strict';
// Bounded per-connection memory (SPEC 11, issue 14 item 2): what a client
// that never reads makes the worker hold is counted with its bookkeeping
// against pubsub_subscriber_max_pending, and pongs are coalesced.
//
// Each test starts its own nginx (worker_processes 1, a small kernel send
// buffer so that what the client does not read stays in the worker), sends
// the hostile traffic, waits until the worker has read all of it (the
// sockets' queues in /proc/net/tcp), and checks the outcome. Worker RSS
// (/proc/<pid>/status: VmHWM, the peak, against VmRSS before) is only a
// generous sanity bound; the numbers are in bench/hostile-memory.py.

const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { withNginx } = require('./lib/nginx');
const { wsConnect, publish, HttpStream } = require('./lib/clients');
const { maskedFrame, rawWs } = require('./lib/rawws');
const { sleep, waitUntil, tcpQueues } = require('./lib/util');

const CONF = `
    server {
        listen 127.0.0.1:%%PORT%% sndbuf=16k;
        pubsub_subscriber_max_pending 4m;

        location ~ ^/sub/(.+)$ { pubsub_subscriber; pubsub_channel_id $1; }
        location ~ ^/es/(.+)$ { pubsub_subscriber eventsource; pubsub_channel_id $1; }
        location ~ ^/pub/(.+)$ { pubsub_publisher; pubsub_channel_id $1; }
        # a WebSocket that publishes to $1 and gets nothing back
        location ~ ^/feed/(.+)$ {
            pubsub_pubsub;
            pubsub_publisher_channel_id $1;
            pubsub_subscriber_channel_id quiet-$1;
        }
    }
`;

// the generous bound on the worker's growth for one hostile connection
// (the queue may hold 4m; the allocator and the kernel's share are extra)
const RSS_BOUND = 24 * 1024 * 1024;

function status(pid, key) {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${key}:\\s+(\\d+) kB`));
    return Number(m[1]) * 1024;
}

// Writes `frame` `count` times on a raw socket, in batches, respecting the
// socket's back-pressure.
async function flood(sock, frame, count, batch = 5000) {
    for (let sent = 0; sent < count; sent += batch) {
        const n = Math.min(batch, count - sent);
        const chunk = typeof frame === 'function'
            ? Buffer.concat(Array.from({ length: n }, (_, i) => frame(sent + i)))
            : Buffer.concat(Array(n).fill(frame));
        if (!sock.write(chunk)) {
            await new Promise((resolve) => sock.once('drain', resolve));
        }
    }
}

// Until the worker has read everything the client wrote (or the
// connection is gone).
async function consumed(ngx, sock) {
    await waitUntil(() => {
        const q = tcpQueues(sock.localPort, ngx.port);
        return q === null || (q.sent === 0 && q.received === 0);
    }, { timeout: 60000, interval: 50, what: 'the worker to read the flood' });
}

test('a ping flood that never reads: pongs coalesced, memory bounded', { timeout: 120000 },
    () => withNginx({ conf: CONF }, async (ngx) => {
        const [pid] = ngx.workerPids();
        const c = await rawWs(ngx.port, '/sub/pings');
        assert.strictEqual(c.status, 101);
        c.sock.pause();   // reads nothing
        const before = status(pid, 'VmRSS');
        const n = 400000;
        await flood(c.sock, (i) => maskedFrame(9, `p${i}`), n);
        await consumed(ngx, c.sock);
        const grown = status(pid, 'VmHWM') - before;
        assert.ok(grown < RSS_BOUND, `worker grew by ${grown} bytes`);
        // every ping got an answer or was answered by a later pong: the
        // client reads the pongs in the order of their pings, ending with
        // the newest ping's payload, and far fewer than the pings
        c.sock.resume();
        const last = `p${n - 1}`;
        await c.waitFrame((f) => f.opcode === 10 && f.payload.toString() === last, 20000);
        const pongs = c.frames.filter((f) => f.opcode === 10).map((f) => Number(f.payload.toString().slice(1)));
        assert.ok(pongs.length < n / 2, `${pongs.length} pongs for ${n} pings`);
        assert.ok(pongs.every((p, i) => i === 0 || p > pongs[i - 1]), 'pongs in ping order');
        // the connection still works: not dropped, and a new ping is answered
        c.send(maskedFrame(9, 'still there'));
        await c.waitFrame((f) => f.opcode === 10 && f.payload.toString() === 'still there');
        assert.ok(!c.ended);
        assert.doesNotMatch(ngx.errorLog(), /client dropped/);
        c.sock.destroy();
        assert.deepStrictEqual(ngx.workerPids(), [pid]);
    }));

// The publisher sends 1-byte messages; the subscriber reads nothing.
async function slowReader(ngx, open, dropped) {
    const [pid] = ngx.workerPids();
    const ch = `slow-${process.pid}`;
    const sub = await open(ch);
    const pub = await rawWs(ngx.port, `/feed/${ch}`);
    assert.strictEqual(pub.status, 101);
    const before = status(pid, 'VmRSS');
    // 1-byte messages: 3 to 20 bytes on the wire each, some 500 bytes of
    // memory queued; 4m of wire bytes would be over 200,000 of them
    await flood(pub.sock, maskedFrame(1, 'x'), 100000);
    await consumed(ngx, pub.sock);
    await ngx.waitForLog(dropped, { timeout: 10000 });
    const grown = status(pid, 'VmHWM') - before;
    assert.ok(grown < RSS_BOUND, `worker grew by ${grown} bytes`);
    assert.match(ngx.errorLog(), /dropped: \d+ bytes unsent, \d+ bytes held \(pubsub_subscriber_max_pending\)/);
    pub.sock.destroy();
    sub.destroy();
    // the worker is fine
    const s = await wsConnect(ngx.wsUrl(`/sub/${ch}-after`));
    await publish({ nginx: ngx, path: `/pub/${ch}-after` }, 'still here');
    assert.strictEqual((await s.next()).text, 'still here');
    await s.close();
    assert.deepStrictEqual(ngx.workerPids(), [pid]);
}

test('a WebSocket subscriber that never reads 1-byte messages is dropped; memory bounded',
    { timeout: 120000 }, () => withNginx({ conf: CONF }, (ngx) => slowReader(ngx,
        async (ch) => {
            const c = await rawWs(ngx.port, `/sub/${ch}`);
            assert.strictEqual(c.status, 101);
            c.sock.pause();
            return c.sock;
        }, /websocket client dropped/)));

test('an EventSource subscriber that never reads 1-byte messages is dropped; memory bounded',
    { timeout: 120000 }, () => withNginx({ conf: CONF }, (ngx) => slowReader(ngx,
        async (ch) => {
            const s = new HttpStream({ port: ngx.port, path: `/es/${ch}`,
                headers: { Accept: 'text/event-stream' } });
            const res = await s.response;
            assert.strictEqual(res.status, 200);
            s.sock.pause();
            await sleep(50);
            return s.sock;
        }, /pubsub: subscriber dropped/)));

test('a reading subscriber gets every 1-byte message of a flood', { timeout: 120000 },
    () => withNginx({ conf: CONF }, async (ngx) => {
        const ch = `fast-${process.pid}`;
        const sub = await wsConnect(ngx.wsUrl(`/sub/${ch}`));
        const pub = await rawWs(ngx.port, `/feed/${ch}`);
        const n = 20000;
        await flood(pub.sock, (i) => maskedFrame(1, String(i % 10)), n);
        const got = await sub.waitFor(n, 60000);
        assert.ok(got.every((m, i) => m.text === String(i % 10)), 'every message, in order');
        assert.doesNotMatch(ngx.errorLog(), /client dropped/);
        pub.sock.destroy();
        await sub.close();
    }));
