#!/usr/bin/env node
'use strict';
// Soak and abuse test (issue 9, part 3), bounded in time, loopback only.
//
//   node t/soak.js [--duration 600] [--workers 2] [--churn 2000] [--keep]
//
// Starts its own nginx (t/lib/nginx.js) and, for --duration seconds, runs at
// once:
//   - well-behaved subscribers (EventSource and WebSocket) on channels fed by
//     a steady publisher: every message must arrive, in order;
//   - churn: up to --churn raw subscriber connections (EventSource, long-poll,
//     chunked, WebSocket handshakes) opened on random channels and dropped at
//     random times, some mid-response;
//   - slow readers that never read while a flood publisher sends 8 KB
//     messages to their channel (they must be dropped, not buffered);
//   - publishers flooding random channels with messages of random sizes;
//   - abuse: oversize bodies (413), over-long and control-character channel
//     ids (400), bad resume ids (400), unknown transports, garbage bytes,
//     malformed WebSocket frames (1002), over-large WebSocket messages
//     (1009), bad UTF-8 (1007), half-sent requests.
// Then it stops the load and waits for the server to settle: no subscriber
// left, stored messages expired (pubsub_message_timeout 5s), idle channels
// swept (about 30 s), shared memory back to its baseline, worker RSS within
// a bound of its baseline, and no [alert]/[crit]/[emerg] in error.log.
// Exits 0 when every check passed. t/soak.test.js runs it for 60 s in CI.

const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { startNginx } = require('./lib/nginx');
const C = require('./lib/clients');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
    const o = { duration: 600, workers: 2, churn: 2000, keep: false, quiet: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => {
            const v = Number(argv[++i]);
            if (!Number.isFinite(v) || v < 0) throw new Error(`${a} needs a number`);
            return v;
        };
        if (a === '--duration') o.duration = next();
        else if (a === '--workers') o.workers = next();
        else if (a === '--churn') o.churn = next();
        else if (a === '--keep') o.keep = true;
        else if (a === '--quiet') o.quiet = true;
        else throw new Error(`unknown argument ${a}`);
    }
    return o;
}

const conf = `
client_max_body_size 64k;
pubsub_shm_size 32m;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /status { pubsub_status; }
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 200;
        pubsub_message_timeout 5s;
    }
    location ~ ^/flood/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 5;
        pubsub_message_timeout 5s;
    }
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_max_pending 256k;
        pubsub_websocket_max_message_size 16k;
        pubsub_ping_interval 5s;
    }
    location ~ ^/ws/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
        pubsub_websocket_max_message_size 16k;
        pubsub_message_buffer_length 10;
        pubsub_message_timeout 5s;
    }
    location ~ ^/multi/(\\w+)/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1 $2;
    }
}`;

function rssOf(pid) {
    try {
        const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) * 1024 : 0;
    } catch {
        return 0;
    }
}

async function getStatus(port) {
    const r = await C.httpRequest({ port, path: '/status', timeout: 5000 });
    return JSON.parse(r.text);
}

// ---------------------------------------------------------------- load parts

class Load {
    constructor(ngx, opts, deadline) {
        this.ngx = ngx;
        this.port = ngx.port;
        this.opts = opts;
        this.deadline = deadline;
        this.agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
        this.counts = {};
        this.sockets = new Set();
        this.failures = [];
    }

    running() { return Date.now() < this.deadline; }

    count(what, n = 1) { this.counts[what] = (this.counts[what] || 0) + n; }

    fail(msg) {
        if (this.failures.length < 50) this.failures.push(msg);
    }

    post(path, body, headers = {}) {
        return new Promise((resolve) => {
            const req = http.request({ host: '127.0.0.1', port: this.port, path, method: 'POST',
                agent: this.agent, headers, timeout: 10000 }, (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode));
                res.on('error', () => resolve(0));
            });
            req.on('timeout', () => req.destroy(new Error('timeout')));
            req.on('error', () => resolve(0));
            req.end(body);
        });
    }

    // A raw socket, sent `data`, closed after `ms` (or when the server closes).
    raw(data, ms, { read = true } = {}) {
        return new Promise((resolve) => {
            const s = net.connect(this.port, '127.0.0.1');
            this.sockets.add(s);
            let got = Buffer.alloc(0);
            const done = () => {
                clearTimeout(t);
                this.sockets.delete(s);
                s.destroy();
                resolve(got);
            };
            const t = setTimeout(done, ms);
            s.on('connect', () => { if (data) s.write(data); if (!read) s.pause(); });
            s.on('data', (d) => { if (got.length < 4096) got = Buffer.concat([got, d]); });
            s.on('error', done);
            s.on('close', done);
        });
    }

    // Well-behaved subscribers on one channel, fed in order by one publisher.
    async wellBehaved(i) {
        const ch = `good${i}`;
        const sse = C.sseStream({ port: this.port, path: `/sub/${ch}`,
            timeout: this.opts.duration * 1000 + 120000 });
        const ws = await C.wsConnect(this.ngx.wsUrl(`/sub/${ch}`));
        const r = await sse.response;
        assert.equal(r.status, 200, 'well-behaved EventSource accepted');
        let n = 0;
        while (this.running()) {
            const st = await this.post(`/pub/${ch}`, `msg ${n}`);
            if (st !== 201 && st !== 202) {
                this.fail(`well-behaved publish ${ch} #${n}: status ${st}`);
                await sleep(50);
                continue;
            }
            n++;
            this.count('good published');
            await sleep(20);
        }
        // everything published must arrive, in order, on both
        const check = async (q, what, text) => {
            for (let k = 0; k < n; k++) {
                let m;
                try {
                    m = await q.next(15000);
                } catch (e) {
                    this.fail(`${what} ${ch}: lost from message ${k} of ${n} (${e.message})`);
                    return;
                }
                if (text(m) !== `msg ${k}`) {
                    this.fail(`${what} ${ch}: got ${JSON.stringify(text(m))}, want "msg ${k}"`);
                    return;
                }
            }
            this.count('good delivered', n);
        };
        await Promise.all([
            check(sse.events, 'EventSource', (m) => m.data),
            check(ws.messages, 'WebSocket', (m) => m.text),
        ]);
        await sse.close();
        ws.close();
        await ws.closed;
    }

    // Subscribers that come and go on random channels.
    async churn(slot) {
        const kinds = [
            (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`,
            (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`,
            (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\nTE: chunked\r\n\r\n`,
            (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\nAccept: multipart/mixed\r\n\r\n`,
            (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
                + `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`,
            (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 1:0\r\n\r\n`,
        ];
        while (this.running()) {
            const k = kinds[(Math.random() * kinds.length) | 0];
            const ch = `churn${(Math.random() * 200) | 0}`;
            const path = Math.random() < 0.1 ? `/multi/${ch}/x${slot % 7}` : `/sub/${ch}`;
            // some leave before the headers are even complete
            let req = k(path);
            if (Math.random() < 0.05) req = req.slice(0, (Math.random() * req.length) | 0);
            await this.raw(req, Math.random() * 2000);
            this.count('churn connections');
        }
    }

    // Slow readers on a flooded channel: the server must drop them.
    async slowReaders() {
        const readers = [];
        for (let i = 0; i < 5; i++) {
            readers.push(this.raw(`GET /sub/flood HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`,
                Math.max(1000, this.deadline - Date.now()), { read: false }));
        }
        const big = 'z'.repeat(8192);
        while (this.running()) {
            await this.post('/flood/flood', big);
            this.count('flood published');
        }
        await Promise.all(readers);
    }

    // Publishers flooding random channels.
    async flood() {
        while (this.running()) {
            const size = [1, 100, 1000, 10000, 60000][(Math.random() * 5) | 0];
            const st = await this.post(`/flood/f${(Math.random() * 100) | 0}`, 'x'.repeat(size));
            if (st !== 201 && st !== 202 && st !== 507) this.fail(`flood publish: status ${st}`);
            this.count(st === 507 ? 'flood 507' : 'flood published');
        }
    }

    // Malformed and oversize input; each checks the answer it gets.
    async abuse() {
        const mask = Buffer.from([1, 2, 3, 4]);
        const wsHead = (path) => `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`
            + 'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
            + `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`;
        const frame = (b0, payload, len = payload.length) => {
            let h;
            if (len < 126) h = Buffer.from([b0, 0x80 | len]);
            else if (len < 65536) h = Buffer.from([b0, 0x80 | 126, len >> 8, len & 255]);
            else {
                h = Buffer.alloc(10);
                h[0] = b0; h[1] = 0x80 | 127; h.writeBigUInt64BE(BigInt(len), 2);
            }
            const p = Buffer.from(payload);
            for (let i = 0; i < p.length; i++) p[i] ^= mask[i % 4];
            return Buffer.concat([h, mask, p]);
        };
        const wsClose = (got) => {
            // the close frame after the 101 head: 0x88, len, code
            const at = got.indexOf('\r\n\r\n');
            if (at < 0) return -1;
            const f = got.subarray(at + 4);
            const i = f.indexOf(0x88);
            return i >= 0 && f.length >= i + 4 ? f.readUInt16BE(i + 2) : -1;
        };
        const statusOf = (got) => {
            const m = /^HTTP\/1\.1 (\d+)/.exec(got.toString('latin1'));
            return m ? Number(m[1]) : 0;
        };
        const cases = [
            async () => {   // oversize publish
                const st = await this.post('/pub/abuse', 'y'.repeat(70000));
                if (st !== 413) this.fail(`oversize body: ${st}`);
            },
            async () => {   // over-long channel id
                const got = await this.raw(`GET /sub/${'a'.repeat(2000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 3000);
                if (statusOf(got) !== 400) this.fail(`long channel id: ${statusOf(got)}`);
            },
            async () => {   // bad resume id
                const got = await this.raw('GET /sub/abuse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n'
                    + 'Last-Event-ID: 12:x,[[\r\n\r\n', 3000);
                if (statusOf(got) !== 400) this.fail(`bad resume id: ${statusOf(got)}`);
            },
            async () => {   // garbage bytes
                await this.raw(crypto.randomBytes(1 + ((Math.random() * 3000) | 0)), 500);
            },
            async () => {   // a request head that never ends
                await this.raw('GET /sub/abuse HTTP/1.1\r\nHost: x\r\nX-A: ', 1500);
            },
            async () => {   // unmasked WebSocket frame: 1002
                const got = await this.raw(Buffer.concat([Buffer.from(wsHead('/ws/abuse')),
                    Buffer.from([0x81, 0x02, 0x68, 0x69])]), 3000);
                if (wsClose(got) !== 1002) this.fail(`unmasked frame: close ${wsClose(got)}`);
            },
            async () => {   // over-large message: 1009
                const got = await this.raw(Buffer.concat([Buffer.from(wsHead('/ws/abuse')),
                    frame(0x82, Buffer.alloc(20000, 7))]), 3000);
                if (wsClose(got) !== 1009) this.fail(`big ws message: close ${wsClose(got)}`);
            },
            async () => {   // bad UTF-8: 1007
                const got = await this.raw(Buffer.concat([Buffer.from(wsHead('/ws/abuse')),
                    frame(0x81, Buffer.from([0xc3, 0x28]))]), 3000);
                if (wsClose(got) !== 1007) this.fail(`bad utf-8: close ${wsClose(got)}`);
            },
            async () => {   // a frame that claims 2^62 bytes: 1009 without allocating
                const got = await this.raw(Buffer.concat([Buffer.from(wsHead('/ws/abuse')),
                    frame(0x82, Buffer.alloc(0), 2 ** 40)]), 3000);
                if (wsClose(got) !== 1009) this.fail(`huge ws length: close ${wsClose(got)}`);
            },
            async () => {   // valid WebSocket publishing, then vanishing mid-frame
                const f = frame(0x81, Buffer.from('hello from ws'));
                await this.raw(Buffer.concat([Buffer.from(wsHead('/ws/abuse')), f, f.subarray(0, 5)]), 300);
            },
            async () => {   // unknown transport: 406
                const got = await this.raw('GET /multi/a/b HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n'
                    + 'Upgrade: h2c\r\n\r\n', 1000);
                if (statusOf(got) === 0) this.count('abuse no answer');
            },
        ];
        while (this.running()) {
            await cases[(Math.random() * cases.length) | 0]();
            this.count('abuse requests');
        }
    }
}

// ---------------------------------------------------------------- the run

async function soak(opts = {}) {
    const o = { ...parseArgs([]), ...opts };
    const log = (...a) => { if (!o.quiet) console.log('soak:', ...a); };
    const ngx = await startNginx({ conf, workers: o.workers, main: 'worker_rlimit_nofile 16384;',
        workerConnections: 8192, shutdownTimeout: '3s' });
    const result = { ok: false, problems: [] };
    try {
        // baseline after a small warm-up (first allocations of each worker)
        for (let i = 0; i < 20; i++) await C.publish({ port: ngx.port, path: '/pub/warm' }, 'w');
        await sleep(1000);
        const pids = ngx.workerPids();
        const rss0 = pids.map(rssOf);
        const st0 = await getStatus(ngx.port);
        log(`nginx ${ngx.pid}, workers ${pids.join(' ')}, RSS ${rss0.map((x) => (x / 1048576).toFixed(1)).join(' ')} MB,`
            + ` shm used ${st0.shm.used}`);

        const load = new Load(ngx, o, Date.now() + o.duration * 1000);
        const tasks = [];
        for (let i = 0; i < 4; i++) tasks.push(load.wellBehaved(i));
        const churners = Math.max(1, Math.min(o.churn, 4000));
        for (let i = 0; i < churners; i++) tasks.push(load.churn(i));
        tasks.push(load.slowReaders());
        for (let i = 0; i < 4; i++) tasks.push(load.flood());
        for (let i = 0; i < 4; i++) tasks.push(load.abuse());

        const progress = setInterval(async () => {
            try {
                const s = await getStatus(ngx.port);
                log(`subscribers ${s.subscribers.total}, channels ${s.channels}, messages ${s.messages},`
                    + ` shm used ${(s.shm.used / 1048576).toFixed(1)} MB,`
                    + ` RSS ${ngx.workerPids().map(rssOf).map((x) => (x / 1048576).toFixed(1)).join(' ')} MB`);
            } catch (e) {
                log(`status failed: ${e.message}`);
            }
        }, Math.max(5000, o.duration * 100));
        const settled = await Promise.allSettled(tasks);
        clearInterval(progress);
        for (const s of settled) {
            if (s.status === 'rejected') load.fail(`task failed: ${s.reason && s.reason.stack}`);
        }
        for (const s of load.sockets) s.destroy();
        load.agent.destroy();
        log('load done:', JSON.stringify(load.counts));

        // settle: subscribers gone, messages expired, idle channels swept
        const deadline = Date.now() + 90000;
        let st;
        for (;;) {
            st = await getStatus(ngx.port);
            const back = st.subscribers.total === 0 && st.subscriptions === 0 && st.messages <= st0.messages
                && st.channels <= st0.channels && st.shm.used <= st0.shm.used + 64 * 1024;
            if (back || Date.now() > deadline) break;
            await sleep(1000);
        }
        const rss1 = ngx.workerPids().map(rssOf);
        log(`after: subscribers ${st.subscribers.total}, subscriptions ${st.subscriptions}, channels ${st.channels},`
            + ` messages ${st.messages}, shm used ${st.shm.used} (baseline ${st0.shm.used}),`
            + ` RSS ${rss1.map((x) => (x / 1048576).toFixed(1)).join(' ')} MB`);

        const p = result.problems;
        p.push(...load.failures);
        if (!load.counts['good delivered']) p.push('no well-behaved message was delivered');
        if (st.subscribers.total !== 0) p.push(`subscribers left: ${JSON.stringify(st.subscribers)}`);
        if (st.subscriptions !== 0) p.push(`subscriptions left: ${st.subscriptions}`);
        if (st.messages > st0.messages) p.push(`messages left: ${st.messages} (baseline ${st0.messages})`);
        if (st.channels > st0.channels) p.push(`channels left: ${st.channels} (baseline ${st0.channels})`);
        if (st.shm.used > st0.shm.used + 64 * 1024) {
            p.push(`shared memory not back to baseline: ${st.shm.used} > ${st0.shm.used} + 64 KB`);
        }
        // glibc keeps some freed memory: allow a bounded growth, not a leak
        rss1.forEach((r, i) => {
            const base = rss0[i] || rss0[0];
            if (r > base + 48 * 1048576) p.push(`worker RSS grew from ${base} to ${r}`);
        });
        if (pids.some((pid) => !ngx.workerPids().includes(pid))) p.push('a worker died (pids changed)');
        const bad = ngx.badLogLines();
        if (bad.length) p.push(`error.log: ${bad.slice(0, 5).join(' | ')}`);
        result.counts = load.counts;
        result.ok = p.length === 0;
    } finally {
        await ngx.stop({ keep: o.keep || !result.ok });
        if (!result.ok) log(`nginx prefix kept: ${ngx.prefix}`);
    }
    return result;
}

module.exports = { soak };

if (require.main === module) {
    const o = parseArgs(process.argv.slice(2));
    soak(o).then((r) => {
        if (r.ok) {
            console.log('soak: PASS');
        } else {
            console.log(`soak: FAIL\n  ${r.problems.join('\n  ')}`);
            process.exitCode = 1;
        }
    }, (e) => {
        console.error('soak: error', e);
        process.exitCode = 2;
    });
}
