'use strict';
// WebSocket over TLS (wss://, listen ... ssl): every kind of frame reaches
// the client through nginx's TLS write buffer (ssl_buffer_size), which
// holds what it is given until told to flush: the backlog, live messages,
// ws+meta.nchan ids, a large message, permessage-deflate, presence and gap
// signals, pings and pongs, info replies to a publisher, close frames, and
// handshake refusals. The certificate is self-signed, made with openssl in
// a temp dir; clients trust it as their CA.

const { describe, it, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { useNginx } = require('./lib/nginx');
const { httpRequest, publish, wsConnect } = require('./lib/clients');
const { maskedFrame, rawWs } = require('./lib/rawws');
const { sleep, withTimeout, waitUntil, tcpQueues } = require('./lib/util');

// ------------------------------------------------------------ certificate

const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ngx-pubsub-tls-'));
fs.chmodSync(certDir, 0o755);   // workers may run as another user
const CERT = path.join(certDir, 'cert.pem');
const KEY = path.join(certDir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes',
    '-keyout', KEY, '-out', CERT, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
fs.chmodSync(KEY, 0o644);
const CA = fs.readFileSync(CERT);

after(() => fs.rmSync(certDir, { recursive: true, force: true }));

// ------------------------------------------------------------------ config

// The same locations on the TLS port (1) and on a plain port (2), from
// which the tests publish and delete over plain HTTP.
const LOCATIONS = `
        pubsub_ping_interval 30s;

        location ~ ^/pub/(.+)$ { pubsub_publisher; pubsub_channel_id $1; }
        location ~ ^/wspub/(.+)$ { pubsub_publisher websocket; pubsub_channel_id $1; }
        location ~ ^/sub/(.+)$ { pubsub_subscriber; pubsub_channel_id $1; }
        location ~ ^/ps/(.+)$ { pubsub_pubsub; pubsub_channel_id $1; }
        location ~ ^/shared/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_deflate_message_for_websocket on;
        }
        location ~ ^/short/(.+)$ {
            pubsub_pubsub;
            pubsub_channel_id $1;
            pubsub_message_buffer_length 2;
        }
        location ~ ^/roomy/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_message_buffer_length 1000;
            pubsub_subscriber_max_pending 16m;
        }
        location ~ ^/timeout/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_subscriber_timeout 1s;
        }
        location ~ ^/ping/(.+)$ {
            pubsub_pubsub;
            pubsub_channel_id $1;
            pubsub_ping_interval 1s;
        }
        location ~ ^/room/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_presence on;
            pubsub_presence_id $arg_user;
            pubsub_presence_events on;
            pubsub_presence_leave_delay 0;
        }
        location ~ ^/origin/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_allowed_origins "http://good.example";
        }
`;

const CONF = `
    server {
        listen 127.0.0.1:%%PORT%% ssl;
        ssl_certificate %%CERT%%;
        ssl_certificate_key %%KEY%%;
        ${LOCATIONS}
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        ${LOCATIONS}
    }
    server {
        listen 127.0.0.1:%%PORT3%% ssl sndbuf=16k;
        ssl_certificate %%CERT%%;
        ssl_certificate_key %%KEY%%;
        ${LOCATIONS}
    }
`;

let chanSeq = 0;
function chan(name) {
    return `${name}-${process.pid}-${++chanSeq}`;
}

describe('websocket over TLS (wss://)', () => {
    const ngx = useNginx({ conf: CONF, vars: { CERT, KEY } });

    const wss = (p, opts = {}) => wsConnect(`wss://127.0.0.1:${ngx.port}${p}`, { ca: CA, ...opts });
    const pub = (p, body, headers) => publish({ port: ngx.ports[1], path: p }, body, headers);

    it('delivers the stored backlog on connect, then live messages', async () => {
        const ch = chan('backlog');
        for (let i = 0; i < 3; i++) {
            assert.strictEqual((await pub(`/pub/${ch}`, `stored ${i}`)).status, 202);
        }
        const c = await wss(`/sub/${ch}`);
        const stored = await c.waitFor(3);
        assert.deepStrictEqual(stored.map((m) => m.text), ['stored 0', 'stored 1', 'stored 2']);
        for (let i = 0; i < 3; i++) {
            assert.strictEqual((await pub(`/pub/${ch}`, `live ${i}`)).status, 201);
            assert.strictEqual((await c.waitFor(4 + i))[3 + i].text, `live ${i}`);
        }
        await c.close();
    });

    it('ws+meta.nchan frames carry ids; resuming from one gets the rest', async () => {
        const ch = chan('meta');
        const c = await wss(`/sub/${ch}`, { protocol: 'ws+meta.nchan' });
        assert.strictEqual(c.protocol, 'ws+meta.nchan');
        await pub(`/pub/${ch}`, 'one');
        await pub(`/pub/${ch}`, 'BIN', { 'Content-Type': 'application/octet-stream' });
        await pub(`/pub/${ch}`, 'three');
        const [a, b, d] = await c.waitFor(3);
        assert.match(a.text, /^id: \d+:\d+\ncontent-type: text\/plain\n\none$/);
        assert.ok(b.isBinary);
        assert.strictEqual(b.meta.contentType, 'application/octet-stream');
        assert.strictEqual(d.meta.text, 'three');
        await c.close();

        const r = await wss(`/sub/${ch}?last_event_id=${encodeURIComponent(a.meta.id)}`,
            { protocol: 'ws+meta.nchan' });
        const [x, y] = await r.waitFor(2);
        assert.deepStrictEqual([x.meta.id, y.meta.id], [b.meta.id, d.meta.id]);
        await sleep(100);
        assert.strictEqual(r.messages.items.length, 2);
        await r.close();
    });

    it('a gap signal reaches a ws+meta.nchan client', async () => {
        const ch = chan('gap');
        const ids = [];
        for (let i = 0; i < 5; i++) {
            const r = await publish({ port: ngx.ports[1], path: `/short/${ch}`,
                headers: { Accept: 'application/json' } }, `g${i}`);
            ids.push(JSON.parse(r.text).last_message_id);
        }
        const c = await wss(`/short/${ch}?last_event_id=${encodeURIComponent(ids[0])}`,
            { protocol: 'ws+meta.nchan' });
        const [gap, x, y] = await c.waitFor(3);
        assert.strictEqual(gap.meta.contentType, 'application/vnd.pubsub+json');
        assert.strictEqual(JSON.parse(gap.meta.text).event, 'pubsub.gap');
        assert.deepStrictEqual([x.meta.text, y.meta.text], ['g3', 'g4']);
        await c.close();
    });

    it('a 100 KB message arrives whole, with and without permessage-deflate', async () => {
        // random bytes as hex: compresses to about half, so a compressed
        // frame is still several TLS records
        const big = require('node:crypto').randomBytes(50 * 1024).toString('hex');
        for (const loc of ['sub', 'shared']) {
            for (const perMessageDeflate of [false, true]) {
                const ch = chan(`big-${loc}-${perMessageDeflate}`);
                const c = await wss(`/${loc}/${ch}`, { perMessageDeflate });
                const m = await wss(`/${loc}/${ch}`,
                    { perMessageDeflate, protocol: 'ws+meta.nchan' });
                if (perMessageDeflate) {
                    assert.match(c.ws.extensions, /permessage-deflate/);
                    assert.match(m.ws.extensions, /permessage-deflate/);
                } else {
                    assert.strictEqual(c.ws.extensions, '');
                }
                await pub(`/pub/${ch}`, big);
                await pub(`/pub/${ch}`, 'after the big one');
                const got = await c.waitFor(2);
                assert.strictEqual(got[0].text.length, big.length);
                assert.ok(got[0].text === big, `${loc} deflate=${perMessageDeflate}: payload differs`);
                assert.strictEqual(got[1].text, 'after the big one');
                const gm = await m.waitFor(2);
                assert.ok(gm[0].meta.text === big);
                assert.strictEqual(gm[1].meta.text, 'after the big one');
                await Promise.all([c.close(), m.close()]);
            }
        }
    });

    it('bursts to many subscribers arrive whole and in order', async () => {
        const ch = chan('burst');
        const subs = [];
        for (let i = 0; i < 20; i++) {
            subs.push(await wss(`/sub/${ch}`, { perMessageDeflate: i % 2 === 1 }));
        }
        const n = 100;
        const body = 'x'.repeat(300);
        for (let i = 0; i < n; i++) {
            await pub(`/pub/${ch}`, `${i} ${body}`);
        }
        for (const c of subs) {
            const got = await c.waitFor(n, 10000);
            assert.deepStrictEqual(got.map((m) => Number(m.text.split(' ')[0])),
                Array.from({ length: n }, (_, i) => i));
        }
        await Promise.all(subs.map((c) => c.close()));
    });

    it('a reader that stops reading gets everything once it reads again', async () => {
        // the socket fills: frames wait in the queue and in nginx's TLS
        // buffer, and go out on write events
        const ch = chan('paused');
        const c = await wss(`/roomy/${ch}`);
        c.ws._socket.pause();
        const chunk = 'p'.repeat(16 * 1024);
        const n = 200;   // 3.2 MB
        for (let i = 0; i < n; i++) {
            await pub(`/pub/${ch}`, `${i} ${chunk}`);
        }
        await sleep(200);
        c.ws._socket.resume();
        const got = await c.waitFor(n, 20000);
        assert.deepStrictEqual(got.map((m) => Number(m.text.split(' ')[0])),
            Array.from({ length: n }, (_, i) => i));
        assert.ok(got.every((m) => m.text.length === chunk.length + String(m.text.split(' ')[0]).length + 1));
        await c.close();
    });

    it('the end of a write the socket did not take goes out when it can', async () => {
        // The socket fills while the client does not read: the last frames
        // are then copied into nginx's TLS buffer but not yet sent, with
        // nothing left in the connection's queue.  They must go out once
        // the socket can take them, not wait for the next message.
        const ch = chan('tail');
        const c = await wsConnect(`wss://127.0.0.1:${ngx.ports[2]}/roomy/${ch}`, { ca: CA });
        const sock = c.ws._socket;
        sock.pause();
        // small enough that what nginx holds at the end fits its 16k buffer
        const chunk = 't'.repeat(6000);
        let n = 0;
        let last = null;
        for (;;) {
            assert.ok(n < 2000, 'the socket never filled');
            await pub(`/pub/${ch}`, `${n++} ${chunk}`);
            // let the worker write it and the peers acknowledge (delayed
            // ACKs), then see whether the kernel took any of it
            await sleep(100);
            const k = tcpQueues(ngx.ports[2], sock.localPort);
            assert.ok(k, 'the connection is established');
            if (last && k.sent > 0 && k.sent === last.sent && k.received === last.received) {
                break;   // nothing more went in: the last frame is in nginx
            }
            last = k;
        }
        sock.resume();
        const got = await c.waitFor(n, 10000);
        assert.deepStrictEqual(got.map((m) => Number(m.text.split(' ')[0])),
            Array.from({ length: n }, (_, i) => i));
        await c.close();
    });

    it('presence join and leave frames reach a ws+meta.nchan client', async () => {
        const ch = chan('room');
        const watcher = await wss(`/room/${ch}?user=watcher`, { protocol: 'ws+meta.nchan' });
        const frank = await wss(`/room/${ch}?user=frank`);
        let m;
        do {
            m = await watcher.next(3000);
        } while (JSON.parse(m.meta.text).member.id !== 'frank');
        assert.strictEqual(m.meta.contentType, 'application/vnd.pubsub+json');
        assert.strictEqual(JSON.parse(m.meta.text).event, 'join');
        await frank.close();
        const leave = await watcher.next(4000);
        assert.strictEqual(leave.meta.contentType, 'application/vnd.pubsub+json');
        assert.deepStrictEqual([JSON.parse(leave.meta.text).event,
            JSON.parse(leave.meta.text).member.id], ['leave', 'frank']);
        await watcher.close();
    });

    it('answers pings and pings the client every pubsub_ping_interval', async () => {
        const c = await wss(`/ping/${chan('pp')}`);
        const pong = await c.ping('are you there');
        assert.strictEqual(pong.toString(), 'are you there');
        let pings = 0;
        c.ws.on('ping', () => pings++);
        await waitUntil(() => pings >= 2, { timeout: 4000, what: 'two server pings' });
        assert.strictEqual(c.ws.readyState, 1);
        await c.close();
    });

    it('a WebSocket publisher gets its info replies', async () => {
        const ch = chan('wspub');
        const s = await wss(`/sub/${ch}`, { protocol: 'ws+meta.nchan' });
        const p = await wss(`/wspub/${ch}`, {
            headers: { Accept: 'application/json', 'Content-Type': 'text/x-test' },
        });
        await p.send('hello over wss');
        const info = JSON.parse((await p.next()).text);
        assert.strictEqual(info.messages, 1);
        assert.strictEqual(info.subscribers, 1);
        await p.send(Buffer.from([1, 2, 3]), { binary: true });
        assert.strictEqual(JSON.parse((await p.next()).text).messages, 2);
        const [a, b] = await s.waitFor(2);
        assert.strictEqual(a.meta.body.toString(), 'hello over wss');
        assert.strictEqual(a.meta.contentType, 'text/x-test');
        assert.ok(b.meta.body.equals(Buffer.from([1, 2, 3])));
        // text info by default; compressed replies too
        const t = await wss(`/pub/${ch}`, { perMessageDeflate: true });
        await t.send('third', { compress: true });
        assert.match((await t.next()).text, /^queued messages: 3\r\n/);
        // pubsub_pubsub: a socket publishes and receives its own message
        const e = await wss(`/ps/${chan('echo')}`);
        await e.send('echo');
        assert.strictEqual((await e.next()).text, 'echo');
        await Promise.all([p.close(), s.close(), t.close(), e.close()]);
    });

    it('close codes: echo, 410 Gone, 408 timeout, 1002, 1008', async () => {
        const c = await wss(`/sub/${chan('cl')}`);
        assert.deepStrictEqual(await c.close(4321, 'bye now ✓'), { code: 4321, reason: 'bye now ✓' });

        const ch = chan('del');
        const d = await wss(`/sub/${ch}`);
        await pub(`/pub/${ch}`, 'x');
        await d.next();
        const r = await httpRequest({ port: ngx.ports[1], path: `/pub/${ch}`, method: 'DELETE' });
        assert.strictEqual(r.status, 200);
        assert.deepStrictEqual(await withTimeout(d.closed, 3000, 'close'),
            { code: 1000, reason: '410 Gone' });

        const t = await wss(`/timeout/${chan('to')}`);
        assert.deepStrictEqual(await withTimeout(t.closed, 4000, 'close'),
            { code: 1000, reason: '408 Request Timeout' });

        // an unmasked client frame, over a raw TLS socket
        const raw = await rawWs(ngx.port, `/sub/${chan('raw')}`, { tls: { ca: CA } });
        assert.strictEqual(raw.status, 101);
        raw.send(maskedFrame(1, 'no mask', { mask: false }));
        const cl = await raw.waitFrame((f) => f.opcode === 8);
        assert.strictEqual(cl.code, 1002);
        await raw.waitEnd();

        const s = await wss(`/sub/${chan('ro')}`);
        await s.send('not allowed');
        assert.strictEqual((await withTimeout(s.closed, 3000, 'close')).code, 1008);
    });

    it('frames sent with the handshake are processed; a server ping is answered', async () => {
        const raw = await rawWs(ngx.port, `/ps/${chan('early')}`, {
            tls: { ca: CA },
            after: Buffer.concat([maskedFrame(9, 'early ping'), maskedFrame(1, 'early text')]),
        });
        assert.strictEqual(raw.status, 101);
        const pong = await raw.waitFrame((f) => f.opcode === 10);
        assert.strictEqual(pong.payload.toString(), 'early ping');
        const text = await raw.waitFrame((f) => f.opcode === 1);
        assert.strictEqual(text.payload.toString(), 'early text');
        raw.send(maskedFrame(8, Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('ok')])));
        const cl = await raw.waitFrame((f) => f.opcode === 8);
        assert.strictEqual(cl.code, 4000);
        await raw.waitEnd();
    });

    it('refuses bad handshakes with an HTTP status over TLS', async () => {
        const refused = async (p, opts) => {
            try {
                const c = await wss(p, opts);
                c.terminate();
            } catch (e) {
                return e;
            }
            throw new Error('the handshake was accepted');
        };
        const e = await refused(`/origin/${chan('o')}`, { origin: 'http://evil.example' });
        assert.strictEqual(e.status, 403);
        assert.strictEqual(e.text, 'Origin not allowed.\n');

        const raw = await rawWs(ngx.port, `/sub/${chan('v')}`, {
            tls: { ca: CA }, headers: { 'Sec-WebSocket-Version': '8' },
        });
        assert.strictEqual(raw.status, 400);
        assert.strictEqual(raw.headers['sec-websocket-version'], '13');
        raw.sock.destroy();

        const ok = await wss(`/origin/${chan('o')}`, { origin: 'http://good.example' });
        await ok.close();
    });

    it('nginx reload closes wss connections with 1001', async () => {
        const c = await wss(`/sub/${chan('reload')}`);
        await ngx.reload(CONF);
        const ci = await withTimeout(c.closed, 8000, 'close on reload');
        assert.deepStrictEqual(ci, { code: 1001, reason: 'server shutting down' });
    });
});
