'use strict';
// WebSocket transport: handshake, subscribing, publishing, control frames,
// closing, permessage-deflate, and the bad inputs over raw TCP.

const { describe, it } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { useNginx } = require('./lib/nginx');
const { httpRequest, publish, wsConnect } = require('./lib/clients');
const { sleep, withTimeout, waitUntil } = require('./lib/util');

const CONF = `
    server {
        listen 127.0.0.1:%%PORT%%;
        pubsub_ping_interval 30s;

        location ~ ^/pub/(.+)$ { pubsub_publisher; pubsub_channel_id $1; }
        location ~ ^/wspub/(.+)$ { pubsub_publisher websocket; pubsub_channel_id $1; }
        location ~ ^/sub/(.+)$ { pubsub_subscriber; pubsub_channel_id $1; }
        location ~ ^/ps/(.+)$ { pubsub_pubsub; pubsub_channel_id $1; }
        location ~ ^/multi/(.+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            pubsub_channel_id_split_delimiter ",";
        }
        location ~ ^/short/(.+)$ {
            pubsub_pubsub;
            pubsub_channel_id $1;
            pubsub_message_buffer_length 2;
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
        location ~ ^/small/(.+)$ {
            pubsub_pubsub;
            pubsub_channel_id $1;
            pubsub_websocket_max_message_size 1k;
        }
        location ~ ^/existing/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_subscribe_existing_channels_only on;
        }
        location ~ ^/origin/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_allowed_origins "http://good.example";
        }
        location ~ ^/shared/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_deflate_message_for_websocket on;
        }
        location ~ ^/es/(.+)$ { pubsub_subscriber eventsource; pubsub_channel_id $1; }
    }
`;

let chanSeq = 0;
function chan(name) {
    return `${name}-${process.pid}-${++chanSeq}`;
}

const { maskedFrame, parseFrames, rawWs } = require('./lib/rawws');

function wsPath(ngx, p) {
    return ngx.wsUrl(p);
}

async function refused(ngx, p, opts = {}) {
    try {
        const c = await wsConnect(wsPath(ngx, p), opts);
        c.terminate();
    } catch (e) {
        return e;
    }
    throw new Error('the handshake was accepted');
}

describe('websocket', () => {
    const ngx = useNginx({ conf: CONF });

    // -------------------------------------------------------------- good paths

    it('delivers published messages in order as text frames', async () => {
        const ch = chan('order');
        const c = await wsConnect(wsPath(ngx, `/sub/${ch}`));
        assert.strictEqual(c.protocol, '');
        for (let i = 0; i < 5; i++) {
            const r = await publish({ nginx: ngx, path: `/pub/${ch}` }, `m${i}`);
            assert.strictEqual(r.status, 201);
        }
        const got = await c.waitFor(5);
        assert.deepStrictEqual(got.map((m) => m.text), ['m0', 'm1', 'm2', 'm3', 'm4']);
        assert.ok(got.every((m) => !m.isBinary));
        await c.close();
    });

    it('bursts to many subscribers arrive whole and in order (coalesced writes)', async () => {
        // deliveries are written from later loop turns, several per write:
        // every subscriber must still get every message once, in order,
        // including a plain HTTP publish that interleaves with the writes
        const ch = chan('burst');
        const subs = [];
        for (let i = 0; i < 40; i++) {
            subs.push(await wsConnect(wsPath(ngx, `/sub/${ch}`)));
        }
        const n = 120;
        const body = 'x'.repeat(300);
        for (let i = 0; i < n; i++) {
            const r = await publish({ nginx: ngx, path: `/pub/${ch}` }, `${i} ${body}`);
            assert.strictEqual(r.status, 201);
        }
        for (const c of subs) {
            const got = await c.waitFor(n, 10000);
            assert.deepStrictEqual(got.map((m) => Number(m.text.split(' ')[0])),
                [...Array(n).keys()]);
        }
        // idle for a while (the handshake request is long gone), then more
        await sleep(200);
        const r = await publish({ nginx: ngx, path: `/pub/${ch}` }, 'late');
        assert.strictEqual(r.status, 201);
        for (const c of subs) {
            const got = await c.waitFor(n + 1, 5000);
            assert.strictEqual(got[n].text, 'late');
        }
        await Promise.all(subs.map((c) => c.close()));
    });

    it('ws+meta.nchan frames are byte-exact and resume with last_event_id', async () => {
        const ch = chan('meta');
        await publish({ nginx: ngx, path: `/pub/${ch}` }, 'one', { 'Content-Type': 'text/plain' });
        await httpRequest({ nginx: ngx, path: `/pub/${ch}`, method: 'POST', body: 'two' });
        await publish({ nginx: ngx, path: `/pub/${ch}` }, 'BIN',
            { 'Content-Type': 'application/octet-stream' });
        const c = await wsConnect(wsPath(ngx, `/sub/${ch}`), { protocol: 'ws+meta.nchan' });
        assert.strictEqual(c.protocol, 'ws+meta.nchan');
        const [a, b, bin] = await c.waitFor(3);
        assert.match(a.text, /^id: \d+:\d+\ncontent-type: text\/plain\n\none$/);
        // no Content-Type: no content-type line
        assert.match(b.text, /^id: \d+:\d+\n\ntwo$/);
        assert.ok(bin.isBinary);
        assert.match(bin.text, /^id: \d+:\d+\ncontent-type: application\/octet-stream\n\nBIN$/);
        // NchanSubscriber.js parses frames with this expression
        const m = bin.text.match(/^id: (.*)\n(content-type: (.*)\n)?\n/m);
        assert.strictEqual(m[3], 'application/octet-stream');
        await c.close();

        const r = await wsConnect(wsPath(ngx,
            `/sub/${ch}?last_event_id=${encodeURIComponent(a.meta.id)}`),
        { protocol: 'ws+meta.nchan' });
        const [x, y] = await r.waitFor(2);
        assert.strictEqual(x.meta.id, b.meta.id);
        assert.strictEqual(y.meta.id, bin.meta.id);
        await sleep(100);
        assert.strictEqual(r.messages.items.length, 2);
        await r.close();
    });

    it('binary frames for application/octet-stream; 8 KB, unicode and empty payloads',
        async () => {
            const ch = chan('payloads');
            const c = await wsConnect(wsPath(ngx, `/sub/${ch}`));
            const big = Buffer.alloc(8192);
            for (let i = 0; i < big.length; i++) big[i] = i & 0xff;
            await publish({ nginx: ngx, path: `/pub/${ch}` }, big,
                { 'Content-Type': 'application/octet-stream' });
            const uni = 'héllo wörld ✓ 🚀 日本語';
            await publish({ nginx: ngx, path: `/pub/${ch}` }, uni,
                { 'Content-Type': 'text/plain; charset=utf-8' });
            await publish({ nginx: ngx, path: `/pub/${ch}` }, '');
            const text8k = 'x'.repeat(8192);
            await publish({ nginx: ngx, path: `/pub/${ch}` }, text8k);
            const [m1, m2, m3, m4] = await c.waitFor(4);
            assert.ok(m1.isBinary);
            assert.ok(m1.data.equals(big));
            assert.ok(!m2.isBinary);
            assert.strictEqual(m2.text, uni);
            assert.strictEqual(m3.data.length, 0);
            assert.strictEqual(m4.text, text8k);
            await c.close();
        });

    it('a message that is not UTF-8 goes out as a binary frame', async () => {
        const ch = chan('latin1');
        const c = await wsConnect(wsPath(ngx, `/sub/${ch}`));
        const bytes = Buffer.from([0x66, 0xe9, 0x65]);
        await publish({ nginx: ngx, path: `/pub/${ch}` }, bytes);
        const m = await c.next();
        assert.ok(m.isBinary);
        assert.ok(m.data.equals(bytes));
        await c.close();
    });

    it('publishes over a websocket and answers channel info', async () => {
        const ch = chan('wspub');
        const s = await wsConnect(wsPath(ngx, `/sub/${ch}`), { protocol: 'ws+meta.nchan' });
        const p = await wsConnect(wsPath(ngx, `/wspub/${ch}`), {
            headers: { Accept: 'application/json', 'Content-Type': 'text/x-test' },
        });
        await p.send('hello over ws');
        const info = JSON.parse((await p.next()).text);
        assert.strictEqual(info.messages, 1);
        assert.strictEqual(info.subscribers, 1);
        await p.send(Buffer.from([1, 2, 3]), { binary: true });
        const info2 = JSON.parse((await p.next()).text);
        assert.strictEqual(info2.messages, 2);
        const [a, b] = await s.waitFor(2);
        assert.strictEqual(a.meta.body.toString(), 'hello over ws');
        assert.strictEqual(a.meta.contentType, 'text/x-test');
        assert.ok(b.isBinary);
        assert.strictEqual(b.meta.contentType, 'application/octet-stream');
        assert.ok(b.meta.body.equals(Buffer.from([1, 2, 3])));
        // text info by default
        const t = await wsConnect(wsPath(ngx, `/pub/${ch}`));
        await t.send('third');
        assert.match((await t.next()).text, /^queued messages: 3\r\n/);
        await Promise.all([p.close(), s.close(), t.close()]);
    });

    it('one websocket message publishes to every channel id', async () => {
        const a = chan('ma');
        const b = chan('mb');
        const sa = await wsConnect(wsPath(ngx, `/sub/${a}`));
        const sb = await wsConnect(wsPath(ngx, `/sub/${b}`));
        const p = await wsConnect(wsPath(ngx, `/multi/${a},${b}`));
        await p.send('fan out');
        await p.next();
        assert.strictEqual((await sa.next()).text, 'fan out');
        assert.strictEqual((await sb.next()).text, 'fan out');
        await Promise.all([sa.close(), sb.close(), p.close()]);
    });

    it('pubsub_pubsub: a socket publishes and receives, without info replies', async () => {
        const ch = chan('echo');
        const c = await wsConnect(wsPath(ngx, `/ps/${ch}`));
        const other = await wsConnect(wsPath(ngx, `/ps/${ch}`));
        await c.send('ping-pong');
        assert.strictEqual((await c.next()).text, 'ping-pong');
        assert.strictEqual((await other.next()).text, 'ping-pong');
        await sleep(100);
        assert.strictEqual(c.messages.items.length, 1);
        await Promise.all([c.close(), other.close()]);
    });

    it('a burst of 500 websocket publishes arrives complete and in order', async () => {
        const ch = chan('burst');
        const sub = await wsConnect(wsPath(ngx, `/sub/${ch}`));
        const p = await wsConnect(wsPath(ngx, `/ps/${ch}`));
        const frames = [];
        for (let i = 0; i < 500; i++) {
            frames.push(p.send(`b${i}`));
        }
        await Promise.all(frames);
        const got = await sub.waitFor(500, 10000);
        assert.deepStrictEqual(got.map((m) => m.text),
            Array.from({ length: 500 }, (_, i) => `b${i}`));
        await Promise.all([sub.close(), p.close()]);
    });

    it('channel delete closes with 1000 "410 Gone"', async () => {
        const ch = chan('del');
        const c = await wsConnect(wsPath(ngx, `/sub/${ch}`));
        await publish({ nginx: ngx, path: `/pub/${ch}` }, 'x');
        await c.next();
        const r = await httpRequest({ nginx: ngx, path: `/pub/${ch}`, method: 'DELETE' });
        assert.strictEqual(r.status, 200);
        const ci = await withTimeout(c.closed, 3000, 'close');
        assert.deepStrictEqual(ci, { code: 1000, reason: '410 Gone' });
    });

    it('pubsub_subscriber_timeout closes with 1000 "408 Request Timeout"', async () => {
        const c = await wsConnect(wsPath(ngx, `/timeout/${chan('to')}`));
        const ci = await withTimeout(c.closed, 4000, 'close');
        assert.deepStrictEqual(ci, { code: 1000, reason: '408 Request Timeout' });
    });

    it('answers pings and pings the client every pubsub_ping_interval', async () => {
        const c = await wsConnect(wsPath(ngx, `/ping/${chan('pp')}`));
        const pong = await c.ping('are you there');
        assert.strictEqual(pong.toString(), 'are you there');
        let pings = 0;
        c.ws.on('ping', () => pings++);
        await waitUntil(() => pings >= 2, { timeout: 4000, what: 'two server pings' });
        // the client answered (ws pongs automatically): still open
        assert.strictEqual(c.ws.readyState, 1);
        await c.close();
    });

    it('drops a peer that does not answer pings', async () => {
        const c = await rawWs(ngx.port, `/ping/${chan('dead')}`);
        assert.strictEqual(c.status, 101);
        await c.waitFrame((f) => f.opcode === 9, 3000);
        // no pong, nothing sent: closed at the next tick
        await c.waitEnd(4000);
    });

    it('echoes the client close code and reason', async () => {
        const c = await wsConnect(wsPath(ngx, `/sub/${chan('cl')}`));
        const ci = await c.close(4321, 'bye now ✓');
        assert.deepStrictEqual(ci, { code: 4321, reason: 'bye now ✓' });
    });

    it('permessage-deflate round trip (per connection and shared copy)', async () => {
        for (const loc of ['sub', 'shared']) {
            const ch = chan(`deflate-${loc}`);
            const a = await wsConnect(wsPath(ngx, `/${loc}/${ch}`), { perMessageDeflate: true });
            const b = await wsConnect(wsPath(ngx, `/${loc}/${ch}`), {
                perMessageDeflate: true, protocol: 'ws+meta.nchan',
            });
            assert.match(a.ws.extensions, /permessage-deflate/);
            const body = 'compress me '.repeat(500);
            await publish({ nginx: ngx, path: `/pub/${ch}` }, body);
            await publish({ nginx: ngx, path: `/pub/${ch}` }, 'second');
            await publish({ nginx: ngx, path: `/pub/${ch}` }, '');
            const got = await a.waitFor(3);
            assert.deepStrictEqual(got.map((m) => m.text), [body, 'second', '']);
            const gm = await b.waitFor(3);
            assert.deepStrictEqual(gm.map((m) => m.meta.text), [body, 'second', '']);
            assert.match(gm[0].text, /^id: \d+:\d+\ncontent-type: text\/plain\n\n/);
            await Promise.all([a.close(), b.close()]);
        }
        // and inbound compressed messages
        const ch = chan('deflate-in');
        const c = await wsConnect(wsPath(ngx, `/ps/${ch}`), { perMessageDeflate: true });
        const big = 'inbound '.repeat(1000);
        await c.send(big, { compress: true });
        assert.strictEqual((await c.next()).text, big);
        await c.close();
    });

    it('a gap is a meta frame before what remains (ws+meta.nchan)', async () => {
        const ch = chan('gap');
        const ids = [];
        for (let i = 0; i < 5; i++) {
            // /short keeps 2 messages
            const r = await publish({ nginx: ngx, path: `/short/${ch}`,
                headers: { Accept: 'application/json' } }, `g${i}`);
            ids.push(JSON.parse(r.text).last_message_id);
        }
        const r = await wsConnect(wsPath(ngx,
            `/short/${ch}?last_event_id=${encodeURIComponent(ids[0])}`),
        { protocol: 'ws+meta.nchan' });
        const [gap, x, y] = await r.waitFor(3);
        assert.strictEqual(gap.meta.contentType, 'application/vnd.pubsub+json');
        assert.strictEqual(JSON.parse(gap.meta.text).event, 'pubsub.gap');
        assert.strictEqual(gap.meta.id, ids[0]);
        // what NchanSubscriber.js makes of it: a message with that content type
        const nm = gap.text.match(/^id: (.*)\n(content-type: (.*)\n)?\n/m);
        assert.strictEqual(nm[1], ids[0]);
        assert.strictEqual(nm[3], 'application/vnd.pubsub+json');
        assert.deepStrictEqual([x.meta.text, y.meta.text], ['g3', 'g4']);
        assert.deepStrictEqual([x.meta.id, y.meta.id], [ids[3], ids[4]]);
        await r.close();
        // without ws+meta.nchan there is no in-band signal: just the data
        const plain = await wsConnect(wsPath(ngx,
            `/short/${ch}?last_event_id=${encodeURIComponent(ids[0])}`));
        const got = await plain.waitFor(2);
        assert.deepStrictEqual(got.map((m) => m.text), ['g3', 'g4']);
        await plain.close();
    });

    it('NchanSubscriber.js (websocket) receives messages with id and content type',
        async () => {
            // the browser client, in node: ws as WebSocket, a stub window
            const saved = { window: globalThis.window, WebSocket: globalThis.WebSocket,
                add: globalThis.addEventListener, remove: globalThis.removeEventListener };
            globalThis.window = globalThis;
            globalThis.WebSocket = require('ws');
            globalThis.addEventListener = () => {};
            globalThis.removeEventListener = () => {};
            try {
                delete require.cache[require.resolve('nchan')];
                const NchanSubscriber = require('nchan');
                const ch = chan('nchanjs');
                const sub = new NchanSubscriber(ngx.url(`/sub/${ch}`),
                    { subscriber: 'websocket' });
                const got = [];
                const connected = new Promise((res) => sub.on('connect', res));
                sub.on('message', (m, meta) => got.push([m, meta]));
                sub.start();
                await withTimeout(connected, 5000, 'NchanSubscriber connect');
                await publish({ nginx: ngx, path: `/pub/${ch}` }, 'for nchan.js');
                await waitUntil(() => got.length === 1, { what: 'NchanSubscriber message' });
                assert.strictEqual(got[0][0], 'for nchan.js');
                assert.strictEqual(got[0][1]['content-type'], 'text/plain');
                assert.match(got[0][1].id, /^\d+:\d+$/);
                sub.stop();
            } finally {
                globalThis.window = saved.window;
                globalThis.WebSocket = saved.WebSocket;
                globalThis.addEventListener = saved.add;
                globalThis.removeEventListener = saved.remove;
            }
        });

    it('frames sent together with the handshake are processed', async () => {
        const ch = chan('pipelined');
        const c = await rawWs(ngx.port, `/ps/${ch}`, { after: maskedFrame(1, 'early bird') });
        assert.strictEqual(c.status, 101);
        const f = await c.waitFrame((x) => x.opcode === 1);
        assert.strictEqual(f.payload.toString(), 'early bird');
        c.send(maskedFrame(8, Buffer.from([0x03, 0xe8])));
        const cl = await c.waitFrame((x) => x.opcode === 8);
        assert.strictEqual(cl.code, 1000);
        await c.waitEnd();
    });

    // -------------------------------------------------------------- refusals

    it('refuses bad handshakes with 400 and the reason', async () => {
        const ch = chan('hs');
        let c = await rawWs(ngx.port, `/sub/${ch}`, { omit: ['Sec-WebSocket-Key'] });
        assert.strictEqual(c.status, 400);
        assert.strictEqual(c.body.toString(), 'Missing Sec-WebSocket-Key header.\n');
        c.sock.destroy();
        c = await rawWs(ngx.port, `/sub/${ch}`, { headers: { 'Sec-WebSocket-Version': '8' } });
        assert.strictEqual(c.status, 400);
        assert.strictEqual(c.headers['sec-websocket-version'], '13');
        assert.match(c.body.toString(), /Unsupported Sec-WebSocket-Version/);
        c.sock.destroy();
        c = await rawWs(ngx.port, `/sub/${ch}`, { headers: { 'Sec-WebSocket-Key': 'short' } });
        assert.strictEqual(c.status, 400);
        assert.match(c.body.toString(), /Invalid Sec-WebSocket-Key/);
        c.sock.destroy();
        c = await rawWs(ngx.port, `/sub/${ch}`, { headers: { Connection: 'keep-alive' } });
        assert.strictEqual(c.status, 400);
        assert.match(c.body.toString(), /Connection header must contain "upgrade"/);
        c.sock.destroy();
    });

    it('refuses before the 101: origin, missing channel, bad id, bad resume id',
        async () => {
            let e = await refused(ngx, `/origin/${chan('o')}`, { origin: 'http://evil.example' });
            assert.strictEqual(e.status, 403);
            const ok = await wsConnect(wsPath(ngx, `/origin/${chan('o')}`),
                { origin: 'http://good.example' });
            await ok.close();
            e = await refused(ngx, `/existing/${chan('none')}`);
            assert.strictEqual(e.status, 403);
            e = await refused(ngx, `/sub/${'x'.repeat(2000)}`);
            assert.strictEqual(e.status, 400);
            assert.match(e.text, /Channel id too long/);
            e = await refused(ngx, `/sub/${chan('r')}?last_event_id=garbage`);
            assert.strictEqual(e.status, 400);
            assert.match(e.text, /Message ID invalid/);
            e = await refused(ngx, `/es/${chan('es')}`);
            assert.strictEqual(e.status, 403);
        });

    it('a subscriber-only socket may not publish: 1008', async () => {
        const c = await wsConnect(wsPath(ngx, `/sub/${chan('nopub')}`));
        await c.send('let me in');
        const ci = await withTimeout(c.closed, 3000, 'close');
        assert.deepStrictEqual(ci, { code: 1008, reason: 'Publishing not allowed.' });
    });

    // -------------------------------------------------------------- bad frames

    async function expectClose(p, frames, code, reasonRe) {
        const c = await rawWs(ngx.port, p);
        assert.strictEqual(c.status, 101);
        for (const f of frames) {
            c.send(f);
        }
        const cl = await c.waitFrame((f) => f.opcode === 8);
        assert.strictEqual(cl.code, code, `close code (reason "${cl.reason}")`);
        if (reasonRe) {
            assert.match(cl.reason, reasonRe);
        }
        await c.waitEnd(6000);
        return cl;
    }

    it('unmasked client frame: 1002', async () => {
        await expectClose(`/ps/${chan('unmasked')}`, [maskedFrame(1, 'hi', { mask: false })], 1002);
    });

    it('RSV bits without an extension: 1002', async () => {
        await expectClose(`/ps/${chan('rsv')}`, [maskedFrame(1, 'hi', { rsv: 4 })], 1002);
        await expectClose(`/ps/${chan('rsv2')}`, [maskedFrame(1, 'hi', { rsv: 2 })], 1002);
    });

    it('control frame over 125 bytes and fragmented control frame: 1002', async () => {
        await expectClose(`/ps/${chan('bigping')}`, [maskedFrame(9, 'p'.repeat(126))], 1002);
        await expectClose(`/ps/${chan('fragping')}`, [maskedFrame(9, 'p', { fin: false })], 1002);
    });

    it('unknown opcode and stray continuation: 1002', async () => {
        await expectClose(`/ps/${chan('op')}`, [maskedFrame(3, 'x')], 1002);
        await expectClose(`/ps/${chan('cont')}`, [maskedFrame(0, 'x')], 1002);
    });

    it('invalid UTF-8 in a text message: 1007', async () => {
        await expectClose(`/ps/${chan('utf8')}`,
            [maskedFrame(1, Buffer.from([0x68, 0xc3, 0x28]))], 1007);
        // split across fragments, invalid only at the end
        await expectClose(`/ps/${chan('utf8b')}`, [
            maskedFrame(1, Buffer.from([0x68, 0xe2, 0x82]), { fin: false }),
            maskedFrame(0, Buffer.from([0x41]), { fin: true }),
        ], 1007);
    });

    it('message over pubsub_websocket_max_message_size: 1009', async () => {
        await expectClose(`/small/${chan('big')}`, [maskedFrame(2, Buffer.alloc(2000))], 1009);
        // in fragments that are each small
        await expectClose(`/small/${chan('bigfrag')}`, [
            maskedFrame(1, 'a'.repeat(600), { fin: false }),
            maskedFrame(0, 'a'.repeat(600), { fin: true }),
        ], 1009);
        // at the limit is fine
        const c = await wsConnect(wsPath(ngx, `/small/${chan('limit')}`));
        await c.send('z'.repeat(1024));
        assert.strictEqual((await c.next()).text.length, 1024);
        await c.close();
    });

    it('reassembles fragmented messages, with control frames between fragments',
        async () => {
            const c = await rawWs(ngx.port, `/ps/${chan('frag')}`);
            c.send(Buffer.concat([
                maskedFrame(1, 'frag', { fin: false }),
                maskedFrame(9, 'mid'),
                maskedFrame(0, 'men', { fin: false }),
                maskedFrame(0, 'ted', { fin: true }),
            ]));
            const pong = await c.waitFrame((f) => f.opcode === 10);
            assert.strictEqual(pong.payload.toString(), 'mid');
            const msg = await c.waitFrame((f) => f.opcode === 1);
            assert.strictEqual(msg.payload.toString(), 'fragmented');
            // one byte at a time
            const bytes = maskedFrame(2, Buffer.from('slow bytes'));
            for (const b of bytes) {
                c.send(Buffer.from([b]));
                await sleep(2);
            }
            const bin = await c.waitFrame((f) => f.opcode === 2);
            assert.strictEqual(bin.payload.toString(), 'slow bytes');
            c.send(maskedFrame(8, Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('ok')])));
            const cl = await c.waitFrame((f) => f.opcode === 8);
            assert.strictEqual(cl.code, 4000);
            assert.strictEqual(cl.reason, 'ok');
            await c.waitEnd();
        });

    it('drops a client that never reads; memory stays bounded', async () => {
        const ch = chan('slow');
        const [pid] = ngx.workerPids();
        const rss = () => {
            const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
            return Number(m[1]) * 1024;
        };
        const c = await rawWs(ngx.port, `/sub/${ch}`);
        assert.strictEqual(c.status, 101);
        c.sock.pause();   // never read
        const before = rss();
        const chunk = 'y'.repeat(64 * 1024);
        for (let i = 0; i < 320; i++) {   // 20 MB
            const r = await publish({ nginx: ngx, path: `/pub/${ch}` }, chunk);
            assert.ok(r.status === 201 || r.status === 202, `publish ${r.status}`);
        }
        await ngx.waitForLog(/websocket client dropped/, { timeout: 5000 });
        const grown = rss() - before;
        assert.ok(grown < 16 * 1024 * 1024, `worker grew by ${grown} bytes`);
        c.sock.destroy();
        // the worker is fine
        const s = await wsConnect(wsPath(ngx, `/sub/${ch}-after`));
        await publish({ nginx: ngx, path: `/pub/${ch}-after` }, 'still here');
        assert.strictEqual((await s.next()).text, 'still here');
        await s.close();
        assert.deepStrictEqual(ngx.workerPids(), [pid]);
    });

    it('nginx reload closes websockets with 1001', async () => {
        const c = await wsConnect(wsPath(ngx, `/sub/${chan('reload')}`));
        await ngx.reload(CONF);
        const ci = await withTimeout(c.closed, 8000, 'close on reload');
        assert.strictEqual(ci.code, 1001);
        assert.strictEqual(ci.reason, 'server shutting down');
    });
});
