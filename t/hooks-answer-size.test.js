'use strict';
// A hook answer of any size gets a defined outcome (issue #19): an answer
// larger than the hook location's subrequest_output_buffer_size (4096 bytes
// by default), or one the backend cuts short, is a failed hook, for every
// hook kind and every client: authorize and publisher upstream answer the
// client 502 (a WebSocket publisher: close 1011), subscribe, unsubscribe and
// presence count and log it.  The client is answered within the hook's
// timeout, pubsub_status counts the failures and in_flight comes back to 0,
// and nothing is logged at [alert].  See docs/hooks.md.
//
// The backend answers each hook with a body whose size the client's query
// string chooses (the client's query string is appended to the hook URI):
// auth=N (authorize), sub=N, unsub=N, up=N (publisher upstream); st=CODE
// sets the status, len=1 sends a Content-Length instead of a chunked body.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startNginx } = require('./lib/nginx');
const { startBackend, request } = require('./lib/backend');
const { wsConnect } = require('./lib/clients');
const { sleep, waitUntil, withTimeout } = require('./lib/util');

// the hook location's proxy timeouts: no client may wait longer
const HOOK_TIMEOUT_MS = 10000;
const BIG = 64 * 1024;
const LIMIT = 4096;   // subrequest_output_buffer_size, nginx's default

let be;
let cut;
let ngx;

let seq = 0;
const chan = (p) => `${p}${process.pid % 1000}x${++seq}`;

const KINDS = ['authorize', 'subscribe', 'unsubscribe', 'publisher_upstream', 'presence'];

// The answer of one hook: q is the size parameter's name for it.
function answer(c, q) {
    const size = Number(c.query.get(q) || 0);
    const body = size ? Buffer.alloc(size, 'x').toString() : '';
    const headers = { 'Content-Type': 'text/plain' };
    if (c.query.get('len')) headers['Content-Length'] = String(Buffer.byteLength(body));
    return { status: Number(c.query.get('st') || 200), headers, body };
}

async function hookStats() {
    const r = await request(ngx.url('/status'), { headers: { Accept: 'application/json' } });
    assert.equal(r.status, 200);
    return JSON.parse(r.body).hooks;
}

// Waits until no hook is in flight, then checks how many calls and
// failures each hook kind got since `base`.
async function expectCounted(base, { calls = {}, failures = {} }) {
    let s;
    await waitUntil(async () => {
        s = await hookStats();
        return s.in_flight === 0
            && KINDS.every((k) => s[k].calls - base[k].calls >= (calls[k] || 0));
    }, { timeout: HOOK_TIMEOUT_MS, what: 'hooks answered (in_flight 0)' });
    await sleep(200);   // nothing more may come
    s = await hookStats();
    assert.equal(s.in_flight, 0, 'in_flight back to 0');
    for (const k of KINDS) {
        assert.equal(s[k].calls - base[k].calls, calls[k] || 0, `${k} calls`);
        assert.equal(s[k].failures - base[k].failures, failures[k] || 0, `${k} failures`);
    }
    return s;
}

// An HTTP request whose answer must come within the hook timeout; resolves
// at the response head ({status, headers, body: Promise<string>, received(),
// close()}).
function open(path, { method = 'GET', headers = {}, body } = {}) {
    return new Promise((resolve, reject) => {
        const req = http.request(ngx.url(path), { method, headers, agent: false });
        const timer = setTimeout(() => req.destroy(new Error(`${method} ${path}: no answer within `
            + `the hook timeout (${HOOK_TIMEOUT_MS} ms)`)), HOOK_TIMEOUT_MS);
        req.on('response', (res) => {
            clearTimeout(timer);
            const parts = [];
            const text = new Promise((ok) => {
                res.on('data', (d) => parts.push(d));
                res.on('end', () => ok(Buffer.concat(parts).toString()));
                res.on('error', () => ok(Buffer.concat(parts).toString()));
            });
            resolve({ status: res.statusCode, headers: res.headers, body: text,
                received: () => Buffer.concat(parts).toString(), close: () => req.destroy() });
        });
        req.on('error', (e) => { clearTimeout(timer); reject(e); });
        if (body !== undefined) req.write(body);
        req.end();
    });
}

async function fetchAll(path, opts) {
    const r = await open(path, opts);
    r.text = await withTimeout(r.body, HOOK_TIMEOUT_MS, `${path} body`);
    return r;
}

const ws = (path) => wsConnect(ngx.wsUrl(path), { timeout: HOOK_TIMEOUT_MS });
const wsRefused = (path) => ws(path).then((c) => { c.terminate(); return null; }, (e) => e);

const FAILED_AUTH = 'The authorization hook failed (502).\n';
const FAILED_UP = 'The publisher upstream hook failed (502).\n';

before(async () => {
    be = await startBackend({
        '/hook/auth': (c) => answer(c, 'auth'),
        '/hook/sub': (c) => answer(c, 'sub'),
        '/hook/unsub': (c) => answer(c, 'unsub'),
        '/hook/up': (c) => answer(c, 'up'),
        '/hook/presence': (c) => answer(c, 'pres'),
    });
    // a backend that announces 100 bytes, sends 10 and closes
    cut = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
            res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '100' });
            res.write('0123456789');
            setTimeout(() => res.socket.destroy(), 50);
        });
    });
    await new Promise((r) => cut.listen(0, '127.0.0.1', r));

    const t = Math.ceil(HOOK_TIMEOUT_MS / 1000);
    const presence = (n) => `
        location ~ ^/psub${n}/(.+)$ {
            pubsub_subscriber; pubsub_channel_id $1;
            pubsub_presence on;
            pubsub_presence_id $arg_user;
            pubsub_presence_leave_delay 0;
            pubsub_presence_request /hook/presence?pres=${n};
        }`;
    ngx = await startNginx({
        vars: { BE: be.port, CUT: cut.address().port },
        conf: `
    server {
        listen 127.0.0.1:%%PORT%%;

        location /hook/ {
            internal;
            proxy_pass http://127.0.0.1:%%BE%%;
            proxy_connect_timeout ${t}s;
            proxy_send_timeout ${t}s;
            proxy_read_timeout ${t}s;
        }
        location = /hook/cut {
            internal;
            proxy_pass http://127.0.0.1:%%CUT%%;
            proxy_read_timeout ${t}s;
        }
        location = /status { pubsub_status; }

        location ~ ^/pub/(.+)$ { pubsub_publisher; pubsub_channel_id $1; }
        location ~ ^/sub/(.+)$ { pubsub_subscriber; pubsub_channel_id $1; }

        location ~ ^/asub/(.+)$ {
            pubsub_subscriber; pubsub_channel_id $1;
            pubsub_authorize_request /hook/auth;
            pubsub_subscriber_timeout 1s;
        }
        location ~ ^/apub/(.+)$ {
            pubsub_publisher; pubsub_channel_id $1;
            pubsub_authorize_request /hook/auth;
        }
        location ~ ^/ssub/(.+)$ {
            pubsub_subscriber; pubsub_channel_id $1;
            pubsub_subscribe_request /hook/sub;
            pubsub_unsubscribe_request /hook/unsub;
            pubsub_longpoll_session_grace 0;
        }
        location ~ ^/uppub/(.+)$ {
            pubsub_publisher; pubsub_channel_id $1;
            pubsub_publisher_upstream_request /hook/up;
        }
        ${presence(BIG)}
        ${presence(LIMIT)}
        ${presence(LIMIT + 1)}

        location ~ ^/cutsub/(.+)$ {
            pubsub_subscriber; pubsub_channel_id $1;
            pubsub_authorize_request /hook/cut;
        }
        location ~ ^/cutpub/(.+)$ {
            pubsub_publisher; pubsub_channel_id $1;
            pubsub_publisher_upstream_request /hook/cut;
        }
    }`,
    });
});

after(async () => {
    if (ngx) {
        await ngx.stop({ keep: !!process.env.PUBSUB_KEEP_PREFIX });
        ngx.assertCleanLog();   // no [alert] ("connection already closed")
    }
    if (be) await be.close();
    if (cut) await new Promise((r) => { cut.closeAllConnections?.(); cut.close(r); });
});

// ------------------------------------------------------------ authorize

for (const framing of ['chunked', 'Content-Length']) {
    const len = framing === 'chunked' ? '' : '&len=1';

    test(`authorize, ${framing}: 4096 bytes accept, 4097 and 64 KB fail with 502 on every transport`,
        async () => {
            const base = await hookStats();
            const mark = ngx.logMark();
            let n = 0;
            for (const size of [LIMIT + 1, BIG]) {
                const q = `?auth=${size}${len}`;
                // EventSource
                let r = await fetchAll(`/asub/${chan('es')}${q}`, { headers: { Accept: 'text/event-stream' } });
                assert.equal(r.status, 502, `EventSource, ${size} bytes`);
                assert.equal(r.text, FAILED_AUTH);
                // long-poll
                r = await fetchAll(`/asub/${chan('lp')}${q}`);
                assert.equal(r.status, 502, `long-poll, ${size} bytes`);
                assert.equal(r.text, FAILED_AUTH);
                // WebSocket subscriber: the handshake is refused
                let e = await wsRefused(`/asub/${chan('ws')}${q}`);
                assert.ok(e && e.status, `WebSocket subscriber, ${size} bytes: refused`);
                assert.equal(e.status, 502);
                assert.equal(e.text, FAILED_AUTH);
                // HTTP publisher: nothing published
                const pch = chan('hp');
                r = await fetchAll(`/apub/${pch}${q}`, { method: 'POST', body: 'm' });
                assert.equal(r.status, 502, `HTTP publisher, ${size} bytes`);
                assert.equal(r.text, FAILED_AUTH);
                assert.equal((await fetchAll(`/pub/${pch}`)).status, 404, 'nothing published');
                // WebSocket publisher
                e = await wsRefused(`/apub/${chan('wp')}${q}`);
                assert.ok(e && e.status, `WebSocket publisher, ${size} bytes: refused`);
                assert.equal(e.status, 502);
                n += 5;
            }
            // the boundary: exactly subrequest_output_buffer_size is fine
            const q = `?auth=${LIMIT}${len}`;
            const es = await open(`/asub/${chan('es')}${q}`, { headers: { Accept: 'text/event-stream' } });
            assert.equal(es.status, 200);
            es.close();
            assert.equal((await fetchAll(`/asub/${chan('lp')}${q}`)).status, 408, 'long-poll accepted (timeout)');
            const c = await ws(`/asub/${chan('ws')}${q}`);
            await c.close();
            const pub = await fetchAll(`/apub/${chan('hp')}${q}`, { method: 'POST', body: 'm' });
            assert.ok([201, 202].includes(pub.status), `HTTP publisher accepted (${pub.status})`);
            const p = await ws(`/apub/${chan('wp')}${q}`);
            await p.close();

            const s = await expectCounted(base, { calls: { authorize: n + 5 }, failures: { authorize: n } });
            assert.equal(s.authorize_refused - base.authorize_refused, n, 'refusals');
            assert.match(ngx.errorLog(mark), /authorize hook answer too big: more than the 4096 bytes/);
        });
}

test('authorize: a refusal with a 64 KB page fails with 502; a small one is relayed', async () => {
    const base = await hookStats();
    let r = await fetchAll(`/asub/${chan('deny')}?auth=${BIG}&st=403`, { headers: { Accept: 'text/event-stream' } });
    assert.equal(r.status, 502);
    assert.equal(r.text, FAILED_AUTH);
    r = await fetchAll(`/apub/${chan('deny')}?auth=${BIG}&st=403&len=1`, { method: 'POST', body: 'm' });
    assert.equal(r.status, 502);
    r = await fetchAll(`/asub/${chan('deny')}?auth=${LIMIT}&st=403`, { headers: { Accept: 'text/event-stream' } });
    assert.equal(r.status, 403);
    assert.equal(r.text.length, LIMIT, 'the backend\'s page, whole');
    await expectCounted(base, { calls: { authorize: 3 }, failures: { authorize: 2 } });
});

test('authorize: an answer cut short by the backend fails with 502', async () => {
    const base = await hookStats();
    const r = await fetchAll(`/cutsub/${chan('cut')}`, { headers: { Accept: 'text/event-stream' } });
    assert.equal(r.status, 502);
    assert.equal(r.text, FAILED_AUTH);
    const e = await wsRefused(`/cutsub/${chan('cut')}`);
    assert.ok(e && e.status === 502, 'WebSocket handshake refused with 502');
    await expectCounted(base, { calls: { authorize: 2 }, failures: { authorize: 2 } });
});

// ------------------------------------------------------------ publisher upstream

test('publisher upstream over HTTP: 4096 bytes publish, 4097 and 64 KB fail with 502', async () => {
    const base = await hookStats();
    let n = 0;
    for (const len of ['', '&len=1']) {
        for (const size of [LIMIT + 1, BIG]) {
            const ch = chan('up');
            const r = await fetchAll(`/uppub/${ch}?up=${size}${len}`, { method: 'POST', body: 'm' });
            assert.equal(r.status, 502, `${size} bytes${len}`);
            assert.equal(r.text, FAILED_UP);
            assert.equal((await fetchAll(`/pub/${ch}`)).status, 404, 'nothing published');
            n++;
        }
        const ch = chan('up');
        const sub = await ws(`/sub/${ch}`);
        const r = await fetchAll(`/uppub/${ch}?up=${LIMIT}${len}`, { method: 'POST', body: 'm' });
        assert.ok([201, 202].includes(r.status), `published (${r.status})`);
        const m = await sub.next(HOOK_TIMEOUT_MS);
        assert.equal(m.text, 'x'.repeat(LIMIT), 'the answer, whole, was published');
        await sub.close();
    }
    // cut short: the 10 bytes that came are not published
    const ch = chan('cut');
    const r = await fetchAll(`/cutpub/${ch}`, { method: 'POST', body: 'm' });
    assert.equal(r.status, 502);
    assert.equal(r.text, FAILED_UP);
    assert.equal((await fetchAll(`/pub/${ch}`)).status, 404, 'nothing published');
    await expectCounted(base, { calls: { publisher_upstream: n + 3 }, failures: { publisher_upstream: n + 1 } });
});

test('publisher upstream over WebSocket: 4097 and 64 KB close 1011, 4096 bytes publish', async () => {
    const base = await hookStats();
    let n = 0;
    for (const len of ['', '&len=1']) {
        for (const size of [LIMIT + 1, BIG]) {
            const p = await ws(`/uppub/${chan('wup')}?up=${size}${len}`);
            await p.send('m');
            const ci = await withTimeout(p.closed, HOOK_TIMEOUT_MS, 'close after the hook failed');
            assert.equal(ci.code, 1011, `${size} bytes${len}`);
            assert.equal(ci.reason, '502 publisher upstream hook failed');
            n++;
        }
        const ch = chan('wup');
        const sub = await ws(`/sub/${ch}`);
        const p = await ws(`/uppub/${ch}?up=${LIMIT}${len}`);
        await p.send('m');
        assert.equal((await sub.next(HOOK_TIMEOUT_MS)).text, 'x'.repeat(LIMIT));
        await p.close();
        await sub.close();
    }
    const p = await ws(`/cutpub/${chan('wcut')}`);
    await p.send('m');
    const ci = await withTimeout(p.closed, HOOK_TIMEOUT_MS, 'close after the hook failed');
    assert.equal(ci.code, 1011);
    await expectCounted(base, { calls: { publisher_upstream: n + 3 }, failures: { publisher_upstream: n + 1 } });
});

// ------------------------------------------------------------ subscribe / unsubscribe

const subscribed = (ch) => waitUntil(() => be.of('/hook/sub').some((c) => c.headers['x-channel-id'] === ch),
    { timeout: HOOK_TIMEOUT_MS, what: `subscribe hook for ${ch}` });

test('subscribe and unsubscribe: 64 KB and 4097-byte answers are counted failures, pairing kept', async () => {
    for (const [sub, unsub, failed] of [[BIG, BIG, 1], [LIMIT + 1, BIG, 1], [LIMIT, LIMIT, 0]]) {
        for (const len of ['', '&len=1']) {
            const base = await hookStats();
            const q = `?sub=${sub}&unsub=${unsub}${len}`;
            const chs = [];

            // EventSource: still receives messages, pairs when it goes
            let ch = chan('es');
            chs.push(ch);
            const es = await open(`/ssub/${ch}${q}`, { headers: { Accept: 'text/event-stream' } });
            assert.equal(es.status, 200);
            await subscribed(ch);
            await request(ngx.url(`/pub/${ch}`), { method: 'POST', body: 'hello' });
            await waitUntil(() => /data: hello/.test(es.received()),
                { timeout: HOOK_TIMEOUT_MS, what: 'the message on the EventSource' });
            es.close();

            // WebSocket
            ch = chan('ws');
            chs.push(ch);
            const c = await ws(`/ssub/${ch}${q}`);
            await subscribed(ch);
            await request(ngx.url(`/pub/${ch}`), { method: 'POST', body: 'hi' });
            assert.equal((await c.next(HOOK_TIMEOUT_MS)).text, 'hi');
            await c.close();

            // long-poll (one session per poll: grace 0)
            ch = chan('lp');
            chs.push(ch);
            const lp = open(`/ssub/${ch}${q}`).then(async (r) => ({ ...r, text: await r.body }));
            await subscribed(ch);
            await request(ngx.url(`/pub/${ch}`), { method: 'POST', body: 'poll' });
            const r = await lp;
            assert.equal(r.status, 200);
            assert.equal(r.text, 'poll');

            await expectCounted(base, {
                calls: { subscribe: 3, unsubscribe: 3 },
                failures: { subscribe: 3 * failed, unsubscribe: unsub > LIMIT ? 3 : 0 },
            });
            for (const x of chs) {
                const of = (p) => be.of(p).filter((k) => k.headers['x-channel-id'] === x);
                assert.equal(of('/hook/sub').length, 1, `one subscribe for ${x}`);
                assert.equal(of('/hook/unsub').length, 1, `one unsubscribe for ${x}`);
            }
        }
    }
    assert.match(ngx.errorLog(), /subscribe hook answer too big/);
    assert.match(ngx.errorLog(), /unsubscribe hook answer too big/);
});

// ------------------------------------------------------------ presence

test('presence: 64 KB and 4097-byte answers are counted failures, 4096 bytes are not', async () => {
    for (const [size, failed] of [[BIG, true], [LIMIT + 1, true], [LIMIT, false]]) {
        const base = await hookStats();
        const ch = chan('pr');
        const before = be.of('/hook/presence').length;
        const seen = () => be.of('/hook/presence').filter((c) => c.body.includes(ch)).length;
        const es = await open(`/psub${size}/${ch}?user=u${seq}`, { headers: { Accept: 'text/event-stream' } });
        assert.equal(es.status, 200);
        await waitUntil(() => seen() >= 1, { timeout: HOOK_TIMEOUT_MS, what: 'presence join hook' });
        es.close();
        await waitUntil(() => seen() >= 2, { timeout: HOOK_TIMEOUT_MS, what: 'presence leave hook' });
        await sleep(300);   // events without the channel (user online/offline)
        const calls = be.of('/hook/presence').length - before;
        await expectCounted(base, { calls: { presence: calls }, failures: { presence: failed ? calls : 0 } });
    }
    assert.match(ngx.errorLog(), /presence hook answer too big/);
});
