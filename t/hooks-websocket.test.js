'use strict';
// Hooks and tokens over WebSocket, against a real backend that records every
// hook call: authorize before the 101 (subscribers and publishers), the
// subscribe/unsubscribe pairing whatever ends the socket, the publisher
// upstream hook per inbound message (order, back-pressure, refusals), and
// JWT tokens checked before the 101.  See docs/hooks.md and docs/tokens.md.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startNginx } = require('./lib/nginx');
const { startBackend, request } = require('./lib/backend');
const { wsConnect } = require('./lib/clients');
const { maskedFrame, rawWs } = require('./lib/rawws');
const { sleep, waitUntil, freePort } = require('./lib/util');

const SECRET = 'a-websocket-test-secret-of-32-bytes-plus';

let be;
let ngx;
let upInflight = 0;
let upMaxInflight = 0;

let seq = 0;
const chan = (p) => `${p}${process.pid % 1000}x${++seq}`;

function jwt(claims) {
    const b64 = (x) => Buffer.from(x).toString('base64url');
    const input = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64(JSON.stringify(claims))}`;
    return `${input}.${b64(crypto.createHmac('sha256', SECRET).update(input).digest())}`;
}
const exp = () => Math.floor(Date.now() / 1000) + 300;

function pairs(channel) {
    const of = (p) => be.calls.filter((c) => c.path === p && c.headers['x-channel-id'] === channel);
    return { subs: of('/hook/sub'), unsubs: of('/hook/unsub'), auths: of('/hook/auth'), ups: of('/hook/up') };
}

async function expectPaired(channel, ms = 6000) {
    await waitUntil(() => pairs(channel).unsubs.length >= 1, { timeout: ms, what: `unsubscribe for ${channel}` });
    await sleep(300);   // nothing more may come
    const { subs, unsubs } = pairs(channel);
    assert.equal(subs.length, 1, 'one subscribe hook');
    assert.equal(unsubs.length, 1, 'exactly one unsubscribe hook');
    assert.ok(unsubs[0].t >= subs[0].t, 'unsubscribe after subscribe');
    assert.equal(unsubs[0].headers['x-subscriber-type'], 'websocket');
}

const waitSubscribed = (ch) => waitUntil(() => pairs(ch).subs.length === 1,
    { timeout: 3000, what: `subscribe hook for ${ch}` });

// A subscriber that sees content types (ws+meta.nchan), for checking what
// a publisher's message became.
async function metaSub(ch) {
    return wsConnect(ngx.wsUrl(`/sub/${ch}`), { protocol: 'ws+meta.nchan' });
}

before(async () => {
    be = await startBackend({
        '/hook/auth': (c) => {
            const ch = c.headers['x-channel-id'] || '';
            if (ch.startsWith('deny')) {
                return { status: 403, headers: { 'X-App-Reason': 'nope', 'Content-Type': 'text/x-app' },
                    body: 'denied by app' };
            }
            if (ch.startsWith('redir')) {
                return { status: 302, headers: { Location: 'http://example.com/login' } };
            }
            if (ch.startsWith('slowauth')) return { status: 200, delay: 400 };
            return { status: 200 };
        },
        '/hook/sub': () => ({ status: 200 }),
        '/hook/unsub': () => ({ status: 200 }),
        '/hook/up': (c) => {
            const body = c.body;
            if (body.startsWith('delay:')) {
                // delay:<ms>:<text>  -> published as "<text>" after <ms>
                const [, ms, text] = body.split(':');
                upInflight++;
                upMaxInflight = Math.max(upMaxInflight, upInflight);
                setTimeout(() => { upInflight--; }, Number(ms));
                return { status: 200, delay: Number(ms), headers: { 'Content-Type': 'text/plain' }, body: text };
            }
            switch (body) {
            case 'drop': return { status: 204 };
            case 'orig': return { status: 304 };
            case 'empty': return { status: 200, headers: { 'Content-Type': 'text/empty' } };
            case 'bad': return { status: 418, headers: { 'X-Why': 'tea' }, body: 'teapot\n' };
            case 'long': return { status: 403, body: 'x'.repeat(300) };
            case 'kill': return { destroy: true };
            default:
                return { status: 200, headers: { 'Content-Type': 'text/rewritten' }, body: `rw:${body}` };
            }
        },
    });
    const dead = await freePort();
    const hooks = `
            pubsub_authorize_request /hook/auth;
            pubsub_subscribe_request /hook/sub;
            pubsub_unsubscribe_request /hook/unsub;`;
    ngx = await startNginx({
        vars: { BE: be.port, DEAD: dead },
        shutdownTimeout: '10s',
        conf: `
    server {
        listen 127.0.0.1:%%PORT%%;
        pubsub_ping_interval 30s;

        location /hook/ {
            internal;
            proxy_pass http://127.0.0.1:%%BE%%;
            proxy_connect_timeout 1s;
            proxy_read_timeout 2s;
        }
        location = /deadhook { internal; proxy_pass http://127.0.0.1:%%DEAD%%; }

        location ~ ^/pub/(.+)$ { pubsub_publisher; pubsub_channel_id $1; }
        location ~ ^/sub/(.+)$ { pubsub_subscriber; pubsub_channel_id $1; }

        location ~ ^/ws/(.+)$ { pubsub_pubsub; pubsub_channel_id $1; ${hooks} }
        location ~ ^/wsping/(.+)$ {
            pubsub_subscriber websocket; pubsub_channel_id $1; ${hooks}
            pubsub_ping_interval 1s;
        }
        location ~ ^/wsto/(.+)$ {
            pubsub_subscriber websocket; pubsub_channel_id $1; ${hooks}
            pubsub_subscriber_timeout 1s;
        }
        location ~ ^/wspub/(.+)$ {
            pubsub_publisher websocket; pubsub_channel_id $1;
            pubsub_authorize_request /hook/auth;
            pubsub_publisher_upstream_request /hook/up;
        }
        location ~ ^/wsps/(.+)$ {
            pubsub_pubsub; pubsub_channel_id $1; ${hooks}
            pubsub_publisher_upstream_request /hook/up;
        }
        location ~ ^/wspubdead/(.+)$ {
            pubsub_publisher websocket; pubsub_channel_id $1;
            pubsub_publisher_upstream_request /deadhook;
        }
        location ~ ^/wstok/(.+)$ {
            pubsub_pubsub; pubsub_channel_id $1;
            pubsub_token $arg_token;
            pubsub_token_key hs256:${SECRET};
            pubsub_subscribe_request /hook/sub;
            pubsub_unsubscribe_request /hook/unsub;
        }
        location ~ ^/wstokto/(.+)$ {
            pubsub_pubsub;
            pubsub_subscriber_channel_id $1;
            pubsub_publisher_channel_id $arg_to;
            pubsub_token $arg_token;
            pubsub_token_key hs256:${SECRET};
        }
    }`,
    });
});

after(async () => {
    if (ngx) {
        await ngx.stop({ keep: !!process.env.PUBSUB_KEEP_PREFIX });
        ngx.assertCleanLog();
    }
    if (be) await be.close();
});

// ------------------------------------------------------------ authorize

test('authorize runs before the 101; a refusal is an HTTP response (subscriber)', async () => {
    const ch = chan('deny');
    const err = await wsConnect(ngx.wsUrl(`/ws/${ch}`)).then(() => null, (e) => e);
    assert.ok(err, 'handshake refused');
    assert.equal(err.status, 403);
    assert.equal(err.text, 'denied by app');
    assert.equal(err.headers['x-app-reason'], 'nope');
    assert.equal(err.headers['content-type'], 'text/x-app');
    const { auths, subs } = pairs(ch);
    assert.equal(auths.length, 1);
    assert.equal(auths[0].headers['x-subscriber-type'], 'websocket');
    assert.equal(auths[0].headers['x-publisher-type'], 'websocket', 'pubsub_pubsub: both roles');
    assert.equal(subs.length, 0, 'no subscribe hook for a refused subscriber');

    // a slow authorize delays the 101: it is not sent before the answer
    const ok = chan('slowauth');
    const t0 = Date.now();
    const c = await wsConnect(ngx.wsUrl(`/ws/${ok}`));
    assert.ok(Date.now() - t0 >= 350, 'the 101 waited for the authorize answer');
    await c.close();
    await expectPaired(ok);
});

test('authorize refusal reaches a WebSocket publisher as is', async () => {
    const ch = chan('redir');
    const err = await wsConnect(ngx.wsUrl(`/wspub/${ch}`)).then(() => null, (e) => e);
    assert.ok(err, 'handshake refused');
    assert.equal(err.status, 302);
    assert.equal(err.headers.location, 'http://example.com/login');
    const { auths, ups } = pairs(ch);
    assert.equal(auths.length, 1);
    assert.equal(auths[0].headers['x-publisher-type'], 'websocket');
    assert.equal(auths[0].headers['x-subscriber-type'], undefined);
    assert.equal(ups.length, 0);
});

// ------------------------------------------------------------ pairing

test('subscribe hook after the 101, unsubscribe on a normal close', async () => {
    const ch = chan('norm');
    const c = await wsConnect(ngx.wsUrl(`/ws/${ch}?a=1`), { headers: { Cookie: 'sess=42' } });
    await waitSubscribed(ch);
    const s = pairs(ch).subs[0];
    assert.equal(s.headers['x-subscriber-type'], 'websocket');
    assert.equal(s.headers.cookie, 'sess=42');
    assert.equal(s.query.get('a'), '1');
    assert.equal(s.headers['x-original-uri'], `/ws/${ch}?a=1`);
    // live: a message published now arrives
    await request(ngx.url(`/pub/${ch}`), { method: 'POST', body: 'hi' });
    assert.equal((await c.next(3000)).text, 'hi');
    assert.equal(pairs(ch).unsubs.length, 0);
    const ci = await c.close(1000, 'bye');
    assert.equal(ci.code, 1000);
    await expectPaired(ch);
    assert.equal(pairs(ch).unsubs[0].headers.cookie, 'sess=42');
});

test('close right after the handshake still pairs', async () => {
    const chs = [];
    for (let i = 0; i < 5; i++) {
        const ch = chan('fast');
        chs.push(ch);
        // the close frame goes in the same write as the handshake
        const c = await rawWs(ngx.port, `/ws/${ch}`, { after: maskedFrame(8, Buffer.from([0x03, 0xe8])) });
        assert.equal(c.status, 101);
        const ws = await wsConnect(ngx.wsUrl(`/ws/${ch}x`));
        ws.terminate();
        chs.push(`${ch}x`);
        c.sock.destroy();
    }
    for (const ch of chs) await expectPaired(ch);
});

test('abrupt death (socket.destroy() on a raw TCP WebSocket) pairs', async () => {
    const ch = chan('rst');
    const c = await rawWs(ngx.port, `/ws/${ch}`);
    assert.equal(c.status, 101);
    await waitSubscribed(ch);
    c.sock.destroy();
    await expectPaired(ch);

    const ch2 = chan('rst');
    const c2 = await rawWs(ngx.port, `/ws/${ch2}`);
    await waitSubscribed(ch2);
    c2.sock.resetAndDestroy();   // a TCP RST
    await expectPaired(ch2);
});

test('a dead peer found by pings pairs', async () => {
    const ch = chan('dead');
    // a raw client that never answers pings (and never reads them)
    const c = await rawWs(ngx.port, `/wsping/${ch}`);
    assert.equal(c.status, 101);
    await waitSubscribed(ch);
    const t0 = Date.now();
    await c.waitEnd(5000);
    assert.ok(Date.now() - t0 >= 900, 'closed by the ping check, not at once');
    assert.ok(c.frames.some((f) => f.opcode === 9), 'was pinged');
    await expectPaired(ch);
    assert.match(ngx.errorLog(), /did not answer a ping/);
});

test('a peer that answers pings stays (no unsubscribe)', async () => {
    const ch = chan('alive');
    const c = await wsConnect(ngx.wsUrl(`/wsping/${ch}`));   // ws answers pings
    await waitSubscribed(ch);
    await sleep(2500);
    assert.equal(pairs(ch).unsubs.length, 0);
    await c.close();
    await expectPaired(ch);
});

test('channel delete and subscriber timeout pair', async () => {
    const ch = chan('del');
    const c = await wsConnect(ngx.wsUrl(`/ws/${ch}`));
    await waitSubscribed(ch);
    const d = await request(ngx.url(`/pub/${ch}`), { method: 'DELETE' });
    assert.equal(d.status, 200);
    const ci = await c.closed;
    assert.equal(ci.code, 1000);
    assert.equal(ci.reason, '410 Gone');
    await expectPaired(ch);

    const ch2 = chan('to');
    const c2 = await wsConnect(ngx.wsUrl(`/wsto/${ch2}`));
    await waitSubscribed(ch2);
    const ci2 = await c2.closed;
    assert.equal(ci2.reason, '408 Request Timeout');
    await expectPaired(ch2);
});

// ------------------------------------------------------------ publisher upstream

test('publisher upstream: rewrite, empty, 204, 304, then a refusal closes 1008', async () => {
    const ch = chan('up');
    const sub = await metaSub(ch);
    const p = await wsConnect(ngx.wsUrl(`/wspub/${ch}`), { headers: { 'Content-Type': 'text/orig', Cookie: 'k=v' } });
    await p.send('hello');
    await p.send('empty');
    await p.send('drop');
    await p.send('orig');
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await sub.next(3000)).meta);
    assert.deepEqual(got.map((m) => m.text), ['rw:hello', '', 'orig']);
    assert.deepEqual(got.map((m) => m.contentType), ['text/rewritten', 'text/empty', 'text/orig']);
    const call = pairs(ch).ups[0];
    assert.equal(call.method, 'POST');
    assert.equal(call.body, 'hello');
    assert.equal(call.headers['content-type'], 'text/orig');
    assert.equal(call.headers['x-publisher-type'], 'websocket');
    assert.equal(call.headers.cookie, 'k=v');

    await p.send('bad');
    await p.send('after-bad');   // refused too: nothing after a refusal
    const ci = await p.closed;
    assert.equal(ci.code, 1008);
    assert.equal(ci.reason, '418 teapot');
    await sleep(300);
    const info = await request(ngx.url(`/pub/${ch}`), { headers: { Accept: 'application/json' } });
    assert.match(info.body, /"messages": ?3/, 'only rewrite, empty and original were published');
    await sub.close();
});

test('publisher upstream: refusal reason is cut to fit a close frame; failure is 1011', async () => {
    const p = await wsConnect(ngx.wsUrl(`/wspub/${chan('long')}`));
    await p.send('long');
    const ci = await p.closed;
    assert.equal(ci.code, 1008);
    assert.ok(ci.reason.startsWith('403 xxx'));
    assert.ok(Buffer.byteLength(ci.reason) <= 123);

    const d = await wsConnect(ngx.wsUrl(`/wspubdead/${chan('dead')}`));
    await d.send('x');
    const cd = await d.closed;
    assert.equal(cd.code, 1011);
    assert.equal(cd.reason, '502 publisher upstream hook failed');

    // a refusal while reading is paused (queue full): the close handshake
    // still completes at once (the client's reply is read)
    const q = await wsConnect(ngx.wsUrl(`/wspub/${chan('full')}`));
    q.send('bad');
    for (let i = 0; i < 40; i++) q.send(`delay:300:m${i}`);
    const t0 = Date.now();
    const cq = await q.closed;
    assert.equal(cq.code, 1008);
    assert.ok(Date.now() - t0 < 2000, `closed in ${Date.now() - t0} ms, without the linger`);

    const k = await wsConnect(ngx.wsUrl(`/wspub/${chan('kill')}`));
    await k.send('kill');   // the backend resets the hook connection
    assert.equal((await k.closed).code, 1011);
});

test('publisher upstream: order kept with calls in flight; back-pressure bounds them', async () => {
    const ch = chan('order');
    const sub = await metaSub(ch);
    const p = await wsConnect(ngx.wsUrl(`/wspub/${ch}`));
    await waitUntil(() => upInflight === 0, { timeout: 3000, what: 'earlier upstream calls to end' });
    upMaxInflight = 0;
    const n = 40;
    // later messages are answered sooner: only the queue keeps the order
    for (let i = 0; i < n; i++) p.send(`delay:${300 - i * 7}:m${i}`);
    const got = [];
    for (let i = 0; i < n; i++) got.push((await sub.next(8000)).meta.text);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `m${i}`));
    assert.ok(upMaxInflight > 1, `calls run concurrently (max ${upMaxInflight})`);
    assert.ok(upMaxInflight <= 16, `at most 16 calls in flight (max ${upMaxInflight})`);
    // the socket still works after being paused
    await p.send('after');
    assert.equal((await sub.next(3000)).meta.text, 'rw:after');
    await p.close();
    await sub.close();
});

test('publisher upstream: two sockets paused at once keep their own held-back input', async () => {
    // each sends all its frames in one write: the ones read past the 16th
    // wait while the other socket is read
    const n = 40;
    const chans = [chan('heldA'), chan('heldB')];
    const subs = await Promise.all(chans.map(metaSub));
    const pubs = await Promise.all(chans.map((ch) => rawWs(ngx.port, `/wspub/${ch}`)));
    pubs.forEach((c) => assert.equal(c.status, 101));
    pubs.forEach((c, k) => c.send(Buffer.concat(Array.from({ length: n },
        (_, i) => maskedFrame(1, `delay:200:${'ab'[k]}${i}`)))));
    for (let k = 0; k < 2; k++) {
        const got = [];
        for (let i = 0; i < n; i++) got.push((await subs[k].next(8000)).meta.text);
        assert.deepEqual(got, Array.from({ length: n }, (_, i) => `${'ab'[k]}${i}`));
    }
    pubs.forEach((c) => c.sock.destroy());
    await Promise.all(subs.map((sub) => sub.close()));
});

test('publisher upstream: a clean close waits for the messages in flight', async () => {
    const ch = chan('drain');
    const sub = await metaSub(ch);
    const p = await wsConnect(ngx.wsUrl(`/wspub/${ch}`));
    p.send('delay:300:one');
    p.send('two');
    const ci = await p.close(1000, 'done');
    assert.equal(ci.code, 1000, 'the close is echoed after the answers');
    assert.equal((await sub.next(3000)).meta.text, 'one');
    assert.equal((await sub.next(3000)).meta.text, 'rw:two');
    await sub.close();
});

test('publisher upstream: abrupt death with calls in flight cancels them', async () => {
    const ch = chan('gone');
    const sub = await metaSub(ch);
    const c = await rawWs(ngx.port, `/wspub/${ch}`);
    assert.equal(c.status, 101);
    c.send(maskedFrame(1, 'delay:400:lost'));
    await waitUntil(() => pairs(ch).ups.length === 1, { timeout: 3000, what: 'upstream call' });
    c.sock.destroy();
    await sleep(800);
    await assert.rejects(sub.next(300), /no ws message|timed out/i, 'nothing published for a dead publisher');
    await sub.close();
});

test('pubsub socket with upstream: publishes through the hook, pairs on close', async () => {
    const ch = chan('ps');
    const c = await wsConnect(ngx.wsUrl(`/wsps/${ch}`));
    await waitSubscribed(ch);
    await c.send('echo');
    assert.equal((await c.next(3000)).text, 'rw:echo');
    await c.send('bad');
    const ci = await c.closed;
    assert.equal(ci.code, 1008);
    await expectPaired(ch);
});

// ------------------------------------------------------------ tokens

test('tokens: checked before the 101, 401 with the reason; channels claim enforced', async () => {
    const ch = chan('room');
    let err = await wsConnect(ngx.wsUrl(`/wstok/${ch}`)).then(() => null, (e) => e);
    assert.equal(err?.status, 401);
    assert.equal(err.text, 'token missing\n');
    assert.match(err.headers['www-authenticate'], /invalid_token/);

    err = await wsConnect(ngx.wsUrl(`/wstok/${ch}?token=${jwt({ exp: 1 })}`)).then(() => null, (e) => e);
    assert.equal(err?.status, 401);
    assert.equal(err.text, 'token expired\n');

    err = await wsConnect(ngx.wsUrl(`/wstok/${ch}?token=${jwt({ exp: exp(), channels: ['other*'] })}`))
        .then(() => null, (e) => e);
    assert.equal(err?.status, 401);
    assert.equal(err.text, 'token not valid for channel\n');
    assert.equal(pairs(ch).subs.length, 0);

    const tok = jwt({ exp: exp(), sub: 'alice', channels: ['room*'] });
    const c = await wsConnect(ngx.wsUrl(`/wstok/${ch}?token=${tok}`));
    await waitSubscribed(ch);
    assert.equal(pairs(ch).subs[0].headers['x-presence-id'], 'alice');
    await c.close();
    await expectPaired(ch);
});

test('tokens: a pubsub socket\'s publisher channels are in the token\'s scope', async () => {
    // SPEC section 11: publishing needs "publish" for the publisher
    // channels; without it the socket is a subscriber whose messages are
    // refused (before, "channels" covered both, and a miss refused the 101)
    const ch = chan('room');
    const tok = jwt({ exp: exp(), channels: ['room*'], publish: ['room*'] });
    const subOnly = jwt({ exp: exp(), channels: ['room*'] });
    for (const [t, to] of [[tok, 'secret'], [subOnly, 'secret'], [subOnly, `${ch}b`]]) {
        const c = await wsConnect(ngx.wsUrl(`/wstokto/${ch}?to=${to}&token=${t}`));
        await c.send('forged');
        const closed = await c.closed;
        assert.equal(closed.code, 1008);
        assert.equal(closed.reason, 'Publishing not allowed.');
    }
    const err = await wsConnect(ngx.wsUrl(`/wstokto/other${ch}?to=${ch}b&token=${tok}`)).then(() => null, (e) => e);
    assert.equal(err?.status, 401);
    assert.equal(err.text, 'token not valid for channel\n');
    const c = await wsConnect(ngx.wsUrl(`/wstokto/${ch}?to=${ch}b&token=${tok}`));
    await c.send('allowed');
    await waitUntil(async () => /"messages": ?1/.test((await request(ngx.url(`/pub/${ch}b`),
        { headers: { Accept: 'application/json' } })).body), { timeout: 3000, what: 'the publish' });
    await c.close();
    const secret = await request(ngx.url('/pub/secret'), { headers: { Accept: 'application/json' } });
    assert.equal(secret.status, 404, 'nothing was published to "secret"');
});

// ------------------------------------------------------------ reload (last)

test('reload with connected WebSocket subscribers: exactly one unsubscribe each', async () => {
    const chs = [];
    const conns = [];
    for (let i = 0; i < 4; i++) {
        const ch = chan('rl');
        chs.push(ch);
        conns.push(await wsConnect(ngx.wsUrl(`/ws/${ch}`)));
    }
    const rawCh = chan('rlraw');
    chs.push(rawCh);
    const raw = await rawWs(ngx.port, `/ws/${rawCh}`);
    for (const ch of chs) await waitSubscribed(ch);
    await ngx.reload();
    for (const c of conns) {
        const ci = await c.closed;
        assert.equal(ci.code, 1001, 'close 1001 on graceful shutdown');
    }
    await raw.waitEnd(8000);
    assert.ok(raw.frames.some((f) => f.opcode === 8 && f.code === 1001));
    for (const ch of chs) await expectPaired(ch, 8000);
    // the new workers serve hooks too
    const ch = chan('after');
    const c = await wsConnect(ngx.wsUrl(`/ws/${ch}`));
    await waitSubscribed(ch);
    await c.close();
    await expectPaired(ch);
});
