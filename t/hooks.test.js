'use strict';
// Hooks against a real backend that records every call: authorize,
// subscribe/unsubscribe pairing (EventSource and long-poll) and publisher
// upstream.  See docs/hooks.md.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const u = require('./lib/backend');

let be;
let ng;
let deadPort;

// per-test channel names
let seq = 0;
const chan = (p) => `${p}${Date.now() % 100000}x${++seq}`;

function pairs(channel) {
    const subs = be.calls.filter((c) => c.path === '/hook/sub' && c.headers['x-channel-id'] === channel);
    const unsubs = be.calls.filter((c) => c.path === '/hook/unsub' && c.headers['x-channel-id'] === channel);
    return { subs, unsubs };
}

async function expectPaired(channel, n = 1, ms = 5000) {
    await u.waitFor(() => pairs(channel).unsubs.length >= n, ms, `${n} unsubscribe(s) for ${channel}`);
    await u.sleep(300);   // nothing more may come
    const { subs, unsubs } = pairs(channel);
    assert.equal(subs.length, n, 'subscribe hooks');
    assert.equal(unsubs.length, n, 'unsubscribe hooks');
    assert.ok(unsubs[0].t >= subs[0].t, 'unsubscribe after subscribe');
}

before(async () => {
    deadPort = await u.freePort();
    be = await u.startBackend({
        '/hook/auth': (c) => {
            const ch = c.headers['x-channel-id'] || '';
            if (ch.startsWith('deny')) {
                return { status: 403, headers: { 'X-App-Reason': 'nope', 'Content-Type': 'text/x-app' },
                    body: 'denied by app' };
            }
            if (ch.startsWith('redir')) {
                return { status: 302, headers: { Location: 'http://example.com/login' }, body: '' };
            }
            if (ch.startsWith('slow')) return { status: 200, delay: 3000 };
            return { status: 200 };
        },
        '/hook/sub': (c) => ((c.headers['x-channel-id'] || '').startsWith('lagsub')
            ? { status: 200, delay: 800 } : { status: 200 }),
        '/hook/unsub': () => ({ status: 200 }),
        '/hook/up': (c) => {
            switch (c.body) {
            case 'drop': return { status: 204 };
            case 'orig': return { status: 304 };
            case 'empty': return { status: 200, headers: { 'Content-Type': 'text/empty' } };
            case 'bad': return { status: 418, headers: { 'X-Why': 'tea' }, body: 'teapot' };
            default:
                return { status: 200, headers: { 'Content-Type': 'text/rewritten' }, body: `rw:${c.body}` };
            }
        },
    });
    const up = `http://127.0.0.1:${be.port}`;
    ng = await u.startNginx(`
        location /hook/ {
            internal;
            proxy_pass ${up};
            proxy_set_header X-Var-Channel $pubsub_channel_id;
            proxy_set_header X-Var-Sub-Type $pubsub_subscriber_type;
            proxy_set_header X-Var-Pub-Type $pubsub_publisher_type;
            proxy_read_timeout 1s;
            proxy_connect_timeout 1s;
        }
        location = /deadhook { internal; proxy_pass http://127.0.0.1:${deadPort}; }

        location ~ ^/sub/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_authorize_request /hook/auth;
            pubsub_subscribe_request /hook/sub;
            pubsub_unsubscribe_request /hook/unsub;
            pubsub_longpoll_session_grace 1s;
        }
        location ~ ^/subto/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_subscriber_timeout 1s;
            pubsub_subscribe_request /hook/sub;
            pubsub_unsubscribe_request /hook/unsub;
            pubsub_longpoll_session_grace 0;
        }
        location ~ ^/subdead/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_authorize_request /deadhook;
        }
        location ~ ^/pub/(.+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            pubsub_authorize_request /hook/auth;
        }
        location ~ ^/pubup/(.+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            pubsub_publisher_upstream_request /hook/up;
        }
        location ~ ^/pubupdead/(.+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            pubsub_publisher_upstream_request /deadhook;
        }
        location ~ ^/ws/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_allowed_origins "http://good.example";
        }
    `);
});

after(async () => {
    const bad = ng ? ng.badLogLines() : [];
    if (ng) await ng.stop();
    if (be) await be.close();
    assert.deepEqual(bad, [], 'no [alert]/[crit]/[emerg] in error.log');
});

test('authorize refusal reaches the subscriber with status, body and headers', async () => {
    const ch = chan('deny');
    const r = await u.request(ng.url(`/sub/${ch}`), { headers: { Accept: 'text/event-stream' } });
    assert.equal(r.status, 403);
    assert.equal(r.body, 'denied by app');
    assert.equal(r.headers['x-app-reason'], 'nope');
    assert.equal(r.headers['content-type'], 'text/x-app');
    assert.equal(pairs(ch).subs.length, 0, 'no subscribe hook for a refused subscriber');
});

test('authorize refusal reaches the HTTP publisher as is (no blanket 403)', async () => {
    const ch = chan('redir');
    const r = await u.request(ng.url(`/pub/${ch}`), { method: 'POST', body: 'x' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'http://example.com/login');
    const info = await u.request(ng.url(`/pub/${ch}`), { method: 'POST', body: 'y', headers: {} });
    assert.equal(info.status, 302, 'and nothing was published');
});

test('authorize request carries headers, query string and pubsub headers (long-poll)', async () => {
    const ch = chan('ok');
    const req = http.request(ng.url(`/sub/${ch}?foo=bar&x=1`), {
        headers: { Cookie: 'sess=abc', Authorization: 'Bearer t', 'X-Channel-Id': 'forged' }, agent: false,
    });
    req.on('error', () => {});
    req.end();
    const call = await u.waitFor(() => be.calls.find((c) => c.path === '/hook/auth'
        && c.headers['x-channel-id'] === ch), 3000, 'authorize call');
    req.destroy();
    assert.equal(call.method, 'GET');
    assert.equal(call.query.get('foo'), 'bar');
    assert.equal(call.query.get('x'), '1');
    assert.equal(call.headers.cookie, 'sess=abc');
    assert.equal(call.headers.authorization, 'Bearer t');
    assert.equal(call.headers['x-channel-id'], ch, 'the client cannot forge X-Channel-Id');
    assert.equal(call.headers['x-subscriber-type'], 'longpoll');
    assert.equal(call.headers['x-original-uri'], `/sub/${ch}?foo=bar&x=1`);
    assert.equal(call.headers['x-original-method'], 'GET');
    assert.equal(call.headers['x-var-channel'], ch, '$pubsub_channel_id in the hook location');
    assert.equal(call.headers['x-var-sub-type'], 'longpoll', '$pubsub_subscriber_type');
    await expectPaired(ch, 1, 4000);
});

test('authorize runs for every long-poll request', async () => {
    const ch = chan('lp');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    await u.request(ng.url(`/pub/${ch}`), { method: 'POST', body: 'm1' });
    await u.request(ng.url(`/pub/${ch}`), { method: 'POST', body: 'm2' });
    const before1 = be.of('/hook/auth').filter((c) => c.headers['x-channel-id'] === ch).length;
    let r = await u.request(ng.url(`/sub/${ch}`), { agent });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'm1');
    r = await u.request(ng.url(`/sub/${ch}`), {
        agent, headers: { 'If-Modified-Since': r.headers['last-modified'], 'If-None-Match': r.headers.etag },
    });
    assert.equal(r.body, 'm2');
    const n = be.of('/hook/auth').filter((c) => c.headers['x-channel-id'] === ch).length - before1;
    assert.equal(n, 2);
    agent.destroy();
});

test('a failing authorize backend refuses with 502, a slow one with 504 in bounded time', async () => {
    let r = await u.request(ng.url(`/subdead/${chan('d')}`), { headers: { Accept: 'text/event-stream' } });
    assert.equal(r.status, 502);
    assert.match(r.body, /authorization hook failed/);
    const t0 = Date.now();
    r = await u.request(ng.url(`/sub/${chan('slow')}`), { headers: { Accept: 'text/event-stream' } });
    assert.equal(r.status, 504);
    assert.ok(Date.now() - t0 < 2800, 'bounded by proxy_read_timeout 1s');
    assert.match(ng.log(), /authorize hook failed with status 50[24]/);
});

test('EventSource: subscribe then unsubscribe on a normal close', async () => {
    const ch = chan('es');
    const es = await u.eventsource(ng.url(`/sub/${ch}`), { Cookie: 'c=1' });
    assert.equal(es.status, 200);
    await u.waitFor(() => pairs(ch).subs.length === 1, 3000, 'subscribe hook');
    const s = pairs(ch).subs[0];
    assert.equal(s.headers['x-subscriber-type'], 'eventsource');
    assert.equal(s.headers.cookie, 'c=1');
    assert.equal(pairs(ch).unsubs.length, 0);
    es.close();
    await expectPaired(ch);
    const un = pairs(ch).unsubs[0];
    assert.equal(un.headers.cookie, 'c=1', 'the unsubscribe hook carries the client headers');
    assert.equal(un.headers['x-original-uri'], `/sub/${ch}`);
});

test('EventSource: close right after the handshake still pairs', async () => {
    const chs = [];
    for (let i = 0; i < 5; i++) {
        const ch = chan('fast');
        chs.push(ch);
        const es = await u.eventsource(ng.url(`/sub/${ch}`));
        es.close();
    }
    for (const ch of chs) await expectPaired(ch);
});

test('EventSource: TCP reset (abrupt client death) pairs', async () => {
    const ch = chan('rst');
    const es = await u.eventsource(ng.url(`/sub/${ch}`));
    await u.waitFor(() => pairs(ch).subs.length === 1, 3000, 'subscribe hook');
    es.reset();
    await expectPaired(ch);
});

test('unsubscribe waits for a slow subscribe hook (order kept)', async () => {
    const ch = chan('lagsub');
    const es = await u.eventsource(ng.url(`/sub/${ch}`));
    es.close();
    await expectPaired(ch, 1, 5000);
    const { subs, unsubs } = pairs(ch);
    assert.ok(unsubs[0].t >= subs[0].t + 700, 'unsubscribe sent after the subscribe answer');
});

test('subscriber timeout pairs (EventSource and long-poll)', async () => {
    const a = chan('toes');
    const b = chan('tolp');
    const es = await u.eventsource(ng.url(`/subto/${a}`));
    const lp = u.request(ng.url(`/subto/${b}`));
    await expectPaired(a, 1, 4000);
    const r = await lp;
    assert.equal(r.status, 408);
    await expectPaired(b, 1, 4000);
    es.close();
});

test('channel delete pairs (EventSource and long-poll)', async () => {
    const ch = chan('del');
    await u.request(ng.url(`/pub/${ch}`), { method: 'POST', body: 'x' });
    const es = await u.eventsource(ng.url(`/sub/${ch}`));
    const r0 = await u.request(ng.url(`/sub/${ch}`));   // gets x at once
    assert.equal(r0.status, 200);
    const lp = u.request(ng.url(`/sub/${ch}`), {
        headers: { 'If-Modified-Since': r0.headers['last-modified'], 'If-None-Match': r0.headers.etag },
    });
    await u.waitFor(() => pairs(ch).subs.length === 2, 3000, 'two subscribe hooks');
    const d = await u.request(ng.url(`/pub/${ch}`), { method: 'DELETE' });
    assert.equal(d.status, 200);
    const r = await lp;
    assert.equal(r.status, 410);
    await expectPaired(ch, 2, 4000);
    es.close();
});

test('long-poll: one pair per polling session, not per poll', async () => {
    const ch = chan('sess');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let last = {};
    for (let i = 0; i < 3; i++) {
        const p = u.request(ng.url(`/sub/${ch}`), { agent, headers: last });
        await u.sleep(100);
        await u.request(ng.url(`/pub/${ch}`), { method: 'POST', body: `m${i}` });
        const r = await p;
        assert.equal(r.body, `m${i}`);
        last = { 'If-Modified-Since': r.headers['last-modified'], 'If-None-Match': r.headers.etag };
    }
    assert.equal(pairs(ch).subs.length, 1, 'one subscribe for three polls');
    assert.equal(pairs(ch).unsubs.length, 0, 'still in session');
    // the client stops polling: the session ends after the grace (1s)
    await expectPaired(ch, 1, 4000);
    agent.destroy();
});

test('long-poll: abrupt client death ends the session after the grace', async () => {
    const ch = chan('lpdie');
    const req = http.request(ng.url(`/sub/${ch}`), { agent: false });
    req.on('error', () => {});
    req.end();
    await u.waitFor(() => pairs(ch).subs.length === 1, 3000, 'subscribe hook');
    req.socket?.destroy();
    req.destroy();
    await expectPaired(ch, 1, 4000);
});

test('publisher upstream: rewrite, empty, 204, 304, refusal, failure', async () => {
    const ch = chan('up');
    const sub = async (after) => {
        const r = await u.request(ng.url(`/sub/${ch}`), { headers: after || {} });
        return { r, next: { 'If-Modified-Since': r.headers['last-modified'], 'If-None-Match': r.headers.etag } };
    };
    let r = await u.request(ng.url(`/pubup/${ch}`), { method: 'POST', body: 'hello',
        headers: { 'Content-Type': 'text/plain' } });
    assert.ok(r.status === 201 || r.status === 202, `publish status ${r.status}`);
    const call = be.of('/hook/up').at(-1);
    assert.equal(call.method, 'POST');
    assert.equal(call.body, 'hello');
    assert.equal(call.headers['content-type'], 'text/plain');
    assert.equal(call.headers['x-channel-id'], ch);
    assert.equal(call.headers['x-publisher-type'], 'http');
    assert.equal(call.headers['x-var-pub-type'], 'http');
    let s = await sub();
    assert.equal(s.r.body, 'rw:hello');
    assert.equal(s.r.headers['content-type'], 'text/rewritten');

    r = await u.request(ng.url(`/pubup/${ch}`), { method: 'POST', body: 'empty' });
    assert.ok(r.status === 201 || r.status === 202);
    s = await sub(s.next);
    assert.equal(s.r.body, '', 'an empty 200 body publishes an empty message');

    r = await u.request(ng.url(`/pubup/${ch}`), { method: 'POST', body: 'drop' });
    assert.equal(r.status, 204);

    r = await u.request(ng.url(`/pubup/${ch}`), { method: 'POST', body: 'orig',
        headers: { 'Content-Type': 'text/orig' } });
    assert.ok(r.status === 201 || r.status === 202);
    s = await sub(s.next);
    assert.equal(s.r.body, 'orig', '304 publishes the original (204 published nothing)');
    assert.equal(s.r.headers['content-type'], 'text/orig');

    r = await u.request(ng.url(`/pubup/${ch}`), { method: 'POST', body: 'bad' });
    assert.equal(r.status, 418);
    assert.equal(r.body, 'teapot');
    assert.equal(r.headers['x-why'], 'tea');

    r = await u.request(ng.url(`/pubupdead/${ch}`), { method: 'POST', body: 'z' });
    assert.equal(r.status, 502);
    assert.match(r.body, /publisher upstream hook failed/);

    const info = await u.request(ng.url(`/pub/${ch}`), { headers: { Accept: 'application/json' } });
    assert.match(info.body, /"messages": ?3/, 'rewritten, empty and original only');
});

test('WebSocket handshake with a foreign Origin gets 403', async () => {
    const h = { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    const r = await u.request(ng.url(`/ws/${chan('o')}`), { headers: { ...h, Origin: 'http://evil.example' } });
    assert.equal(r.status, 403);
    assert.match(r.body, /Origin not allowed/);
    const e = await u.request(ng.url(`/ws/${chan('o')}`), { headers: { Accept: 'text/event-stream',
        Origin: 'http://evil.example' } });
    assert.equal(e.status, 403);
});

test('reload while subscribers are connected: every subscribe gets its unsubscribe', async () => {
    const chs = [];
    const conns = [];
    for (let i = 0; i < 4; i++) {
        const ch = chan('rl');
        chs.push(ch);
        conns.push(await u.eventsource(ng.url(`/sub/${ch}`)));
    }
    const lpch = chan('rllp');
    const lp = u.request(ng.url(`/sub/${lpch}`)).catch(() => null);
    for (const ch of chs) await u.waitFor(() => pairs(ch).subs.length === 1, 3000, 'subscribe');
    await u.waitFor(() => pairs(lpch).subs.length === 1, 3000, 'long-poll subscribe');
    ng.reload();
    for (const ch of chs) await expectPaired(ch, 1, 8000);
    await expectPaired(lpch, 1, 8000);
    await lp;
    for (const c of conns) c.close();
});
