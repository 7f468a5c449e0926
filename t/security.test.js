'use strict';
// Secure by default (SPEC section 11, docs/security.md), tried as a hostile
// client would (issue 14): each test sends the hostile input and asserts
// the outcome SPEC section 11 requires; after() asserts the workers never
// died and error.log holds no [alert]/[crit]/[emerg].
//   1  the presence API runs tokens and pubsub_authorize_request; a
//      directive that cannot apply there is refused by nginx -t
//   3  cross-origin requests get no credentials, and 403 where an authorize
//      hook (which may read cookies) decides; WebSocket handshakes included
//   4  token scope: "channels" and "publish" are separate; the group is part
//      of the name
//   7  the presence API answers a refused Origin with 403, not 500
//   8  a client's query argument never overrides a hook URI's own
//   9  HS256 secrets shorter than 32 bytes are refused by nginx -t
//   10 what $arg_user as a presence id means is documented; a token's
//      presence info reaches the member list intact
// (Items 2, 5 and 6 - bounded WebSocket queues, zone fill, keyed hashes -
// have tests of their own.)

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { test, before, after } = require('node:test');
const { startNginx, nginxCheck, REPO } = require('./lib/nginx');
const C = require('./lib/clients');
const u = require('./lib/backend');

const SECRET = 'a-security-test-secret-of-32-bytes-or-more';
const KEY = `pubsub_token $arg_token; pubsub_token_key hs256:${SECRET};`;

const now = () => Math.floor(Date.now() / 1000);
const b64 = (x) => Buffer.from(x).toString('base64url');

function jwt(claims, secret = SECRET) {
    const input = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.` +
        `${b64(JSON.stringify({ exp: now() + 300, ...claims }))}`;
    return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

let seq = 0;
const chan = (p = 'c') => `${p}${Date.now() % 100000}x${++seq}`;

let be;
let ngx;
let workers;

before(async () => {
    be = await u.startBackend({
        '/hook/deny': () => ({ status: 403, body: 'denied\n' }),
        '/hook/allow': () => ({ status: 200 }),
        // an authorize hook that reads the browser's cookie
        '/hook/cookie': (c) => ({
            status: /(^|;\s*)session=ok(;|$)/.test(c.headers.cookie || '') ? 200 : 401,
            body: 'no session\n',
        }),
        '/hook/q': () => ({ status: 200 }),
    });
    ngx = await startNginx({
        vars: { BE: be.port },
        conf: `
    server {
        listen 127.0.0.1:%%PORT%%;

        location /hook/ { internal; proxy_pass http://127.0.0.1:%%BE%%; }

        # members with a token's identity and info
        location ~ ^/sub/(\\w+)$ {
            pubsub_subscriber; pubsub_channel_id $1; ${KEY}
            pubsub_presence on; pubsub_presence_leave_delay 0;
        }

        # 1: the presence API with tokens, with an authorize hook, both
        location ~ ^/tpresence/(\\w+)$ { pubsub_presence_api; pubsub_channel_id $1; ${KEY} }
        location = /tpresence { pubsub_presence_api; ${KEY} }
        location ~ ^/apresence/(\\w+)$ {
            pubsub_presence_api; pubsub_channel_id $1;
            pubsub_authorize_request /hook/deny;
        }
        location = /apresence { pubsub_presence_api; pubsub_authorize_request /hook/deny; }
        location = /thpresence {
            pubsub_presence_api; ${KEY}
            pubsub_authorize_request /hook/allow;
        }

        # 7: a presence API with listed origins
        location ~ ^/opresence/(\\w+)$ {
            pubsub_presence_api; pubsub_channel_id $1;
            pubsub_allowed_origins https://good.example;
        }

        # 3: origins
        location ~ ^/open/(\\w+)$ { pubsub_pubsub; pubsub_channel_id $1; }
        location ~ ^/cookie/(\\w+)$ {
            pubsub_pubsub; pubsub_channel_id $1;
            pubsub_authorize_request /hook/cookie;
        }
        location ~ ^/cpresence/(\\w+)$ {
            pubsub_presence_api; pubsub_channel_id $1;
            pubsub_authorize_request /hook/cookie;
        }
        location ~ ^/listed/(\\w+)$ {
            pubsub_pubsub; pubsub_channel_id $1;
            pubsub_authorize_request /hook/cookie;
            pubsub_allowed_origins https://app.example;
        }
        location ~ ^/star/(\\w+)$ {
            pubsub_pubsub; pubsub_channel_id $1;
            pubsub_authorize_request /hook/cookie;
            pubsub_allowed_origins "https://app.example *";
        }

        # 4: token scope
        location ~ ^/tsub/(\\w+)$ { pubsub_subscriber; pubsub_channel_id $1; ${KEY} }
        location ~ ^/tpub/(\\w+)$ { pubsub_publisher; pubsub_channel_id $1; ${KEY} }
        location ~ ^/tps/(\\w+)$ { pubsub_pubsub; pubsub_channel_id $1; ${KEY} }
        location ~ ^/tgsub/(\\w+)$ {
            pubsub_subscriber; pubsub_channel_group tenantb; pubsub_channel_id $1; ${KEY}
        }
        location ~ ^/tgpub/(\\w+)$ {
            pubsub_publisher; pubsub_channel_group tenantb; pubsub_channel_id $1; ${KEY}
        }
        location ~ ^/pub/(\\w+)$ { pubsub_publisher; pubsub_channel_id $1; }

        # 8: a hook URI with arguments of its own
        location ~ ^/qsub/(\\w+)$ {
            pubsub_subscriber; pubsub_channel_id $1;
            pubsub_authorize_request /hook/q?channel=secret&room=$1;
        }
    }`,
    });
    workers = ngx.workerPids();
    assert.ok(workers.length > 0);
});

after(async () => {
    if (ngx) {
        assert.deepEqual(ngx.workerPids(), workers, 'no worker died or was replaced');
        await ngx.stop({ keep: !!process.env.PUBSUB_KEEP_PREFIX });
        ngx.assertCleanLog();
    }
    if (be) await be.close();
});

const get = (p, headers = {}) => C.httpRequest({ port: ngx.port, path: p, headers });
const own = () => `http://127.0.0.1:${ngx.port}`;   // the request's own origin
const es = (p, headers = {}) => u.eventsource(ngx.url(p), headers);
const wsRefused = (p, opts) => C.wsConnect(ngx.wsUrl(p), opts).then(
    (c) => { c.terminate(); return null; }, (e) => e);

async function member(ch, token) {
    return u.waitFor(async () => {
        const r = await get(`/tpresence/${ch}?token=${token}`);
        assert.equal(r.status, 200, r.text);
        const body = JSON.parse(r.text);
        return body.members.length ? body : null;
    }, 5000, 'the member to be listed');
}

// ------------------------------------------------------------------- 1

test('1: the presence API checks tokens: channels for members, sub for ?user=', async () => {
    const ch = chan('room');
    const alice = jwt({ sub: 'alice', info: { email: 'alice@example.com', role: 'admin' },
        channels: ['room*'] });
    const s = await es(`/sub/${ch}?token=${alice}`);
    assert.equal(s.status, 200);
    try {
        // anonymous: the private channel's members stay private
        let r = await get(`/tpresence/${ch}`);
        assert.equal(r.status, 401);
        assert.equal(r.text, 'token missing\n');
        assert.doesNotMatch(r.text, /alice/);
        // a token for other channels
        r = await get(`/tpresence/${ch}?token=${jwt({ sub: 'bob', channels: ['lobby'] })}`);
        assert.equal(r.status, 401);
        assert.equal(r.text, 'token not valid for channel\n');
        // a token without "channels" reads no channel
        r = await get(`/tpresence/${ch}?token=${jwt({ sub: 'bob' })}`);
        assert.equal(r.status, 401);
        // a token that covers it
        const body = await member(ch, jwt({ sub: 'bob', channels: ['room*'] }));
        assert.equal(body.members[0].id, 'alice');
        assert.deepEqual(body.members[0].info, { email: 'alice@example.com', role: 'admin' });
        r = await get(`/tpresence/${ch}?stats&token=${jwt({ channels: [ch] })}`);
        assert.equal(r.status, 200);
        assert.equal(JSON.parse(r.text).members, 1);

        // ?user=: only that user's token
        r = await get('/tpresence?user=alice');
        assert.equal(r.status, 401);
        assert.equal(r.text, 'token missing\n');
        r = await get(`/tpresence?user=alice&token=${jwt({ sub: 'bob', channels: ['*'] })}`);
        assert.equal(r.status, 401);
        assert.equal(r.text, 'token not valid for user\n');
        r = await get(`/tpresence?user=%61lice&token=${jwt({ sub: 'alice' })}`);
        assert.equal(r.status, 200, 'the user is compared URL-decoded, as the API reads it');
        r = await get(`/tpresence?user=alice&token=${jwt({ sub: 'alice' })}`);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(JSON.parse(r.text).channels, [ch]);
        // with an authorize hook, its 2xx answers for other users
        r = await get(`/thpresence?user=alice&token=${jwt({ sub: 'bob' })}`);
        assert.equal(r.status, 200, r.text);
        r = await get('/thpresence?user=alice');
        assert.equal(r.status, 401);
    } finally {
        s.close();
    }
});

test('1: the presence API calls pubsub_authorize_request and returns its refusal', async () => {
    const ch = chan('room');
    const s = await es(`/sub/${ch}?token=${jwt({ sub: 'alice', channels: [ch] })}`);
    try {
        const before = be.of('/hook/deny').length;
        let r = await get(`/apresence/${ch}`);
        assert.equal(r.status, 403);
        assert.equal(r.text, 'denied\n');
        r = await get(`/apresence/${ch}?stats`);
        assert.equal(r.status, 403);
        r = await get('/apresence?user=alice');
        assert.equal(r.status, 403);
        assert.equal(r.text, 'denied\n');
        const calls = be.of('/hook/deny').slice(before);
        assert.equal(calls.length, 3, 'the hook is called for each query');
        assert.equal(calls[0].headers['x-channel-id'], ch);
        assert.equal(calls[0].headers['x-subscriber-type'], 'presence-api');
        assert.equal(calls[2].headers['x-channel-id'], undefined);
        assert.match(calls[2].headers['x-original-uri'], /user=alice/);
    } finally {
        s.close();
    }
});

test('1: directives that cannot apply in a presence API location fail nginx -t', async () => {
    const loc = (body) => `server { listen 127.0.0.1:%%PORT%%;
        location /hook/ { internal; return 204; }
        location ~ ^/p/(\\w+)$ { pubsub_presence_api; pubsub_channel_id $1; ${body} } }`;
    for (const d of ['pubsub_subscribe_request /hook/s;', 'pubsub_unsubscribe_request /hook/u;',
        'pubsub_publisher_upstream_request /hook/up;', 'pubsub_presence_request /hook/p;',
        'pubsub_presence on;', 'pubsub_presence_id $arg_user;', 'pubsub_presence_events on;',
        'pubsub_message_buffer_length 5;', 'pubsub_subscriber_timeout 5s;',
        'pubsub_longpoll_session_grace 1s;']) {
        const r = await nginxCheck({ conf: loc(d) });
        const name = d.split(' ')[0];
        assert.equal(r.ok, false, `${d} must be refused`);
        assert.match(r.output, new RegExp(`"${name}" cannot apply in a pubsub_presence_api location`));
    }
    // what applies there is accepted, and "off" of an inherited hook too
    const ok = await nginxCheck({ conf: loc(`${KEY} pubsub_authorize_request /hook/a;
        pubsub_channel_group g; pubsub_allowed_origins https://a.example;
        pubsub_subscribe_request off;`) });
    assert.equal(ok.ok, true, ok.output);
    // inherited from the server: not written there, not refused
    const inherited = await nginxCheck({ conf: `server { listen 127.0.0.1:%%PORT%%;
        pubsub_subscribe_request /hook/s; pubsub_presence on; pubsub_message_buffer_length 5;
        location /hook/ { internal; return 204; }
        location = /p { pubsub_presence_api; } }` });
    assert.equal(inherited.ok, true, inherited.output);
});

// ------------------------------------------------------------------- 3

test('3: without pubsub_allowed_origins, another origin gets no credentials', async () => {
    const ch = chan('o');
    // cross-origin, no authorize hook: served, the origin echoed, no credentials
    let s = await es(`/open/${ch}`, { Origin: 'https://evil.example' });
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], 'https://evil.example');
    assert.equal(s.headers['access-control-allow-credentials'], undefined);
    s.close();
    // Origin: null is never echoed
    s = await es(`/open/${ch}`, { Origin: 'null' });
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], undefined);
    assert.equal(s.headers['access-control-allow-credentials'], undefined);
    s.close();
    // same origin and no Origin: unaffected
    s = await es(`/open/${ch}`, { Origin: own() });
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], own());
    assert.equal(s.headers['access-control-allow-credentials'], 'true');
    s.close();
    s = await es(`/open/${ch}`);
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], undefined);
    s.close();
    // another scheme or port is another origin
    for (const o of [`https://127.0.0.1:${ngx.port}`, 'http://127.0.0.1:1', 'http://127.0.0.1']) {
        s = await es(`/open/${ch}`, { Origin: o });
        assert.equal(s.headers['access-control-allow-credentials'], undefined, o);
        s.close();
    }
    const pre = await C.httpRequest({ port: ngx.port, method: 'OPTIONS', path: `/open/${ch}`,
        headers: { Origin: 'https://evil.example' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-credentials'], undefined);
    const pub = await C.publish({ port: ngx.port, path: `/open/${ch}`,
        headers: { Origin: 'https://evil.example' } }, 'x');
    assert.ok(pub.status === 201 || pub.status === 202, pub.text);
    assert.equal(pub.headers['access-control-allow-credentials'], undefined);
});

test('3: where an authorize hook decides, a cross-origin request is refused (403)', async () => {
    const ch = chan('o');
    const cookie = { Cookie: 'session=ok' };
    const before = be.of('/hook/cookie').length;
    for (const o of ['https://evil.example', 'null', `https://127.0.0.1:${ngx.port}`]) {
        // the victim's cookie goes with the request: it must not help
        let r = await get(`/cookie/${ch}`, { ...cookie, Origin: o, Accept: 'text/event-stream' });
        assert.equal(r.status, 403, `${o}: ${r.text}`);
        assert.equal(r.text, 'Origin not allowed.\n');
        assert.equal(r.headers['access-control-allow-origin'], undefined);
        r = await get(`/cookie/${ch}`, { ...cookie, Origin: o });   // long-poll
        assert.equal(r.status, 403);
        r = await C.publish({ port: ngx.port, path: `/cookie/${ch}`,
            headers: { ...cookie, Origin: o } }, 'forged');
        assert.equal(r.status, 403);
        r = await C.httpRequest({ port: ngx.port, method: 'OPTIONS', path: `/cookie/${ch}`,
            headers: { Origin: o } });
        assert.equal(r.status, 403);
        r = await get(`/cpresence/${ch}`, { ...cookie, Origin: o });
        assert.equal(r.status, 403);
        // WebSocket handshakes: CORS does not protect them, the check does
        const e = await wsRefused(`/cookie/${ch}`, { origin: o, headers: cookie });
        assert.equal(e?.status, 403, `${o}: websocket`);
        assert.equal(e.text, 'Origin not allowed.\n');
    }
    assert.equal(be.of('/hook/cookie').length, before, 'the hook never saw them');
    // the same requests from the page's own origin, or with no Origin
    for (const h of [{ Origin: own() }, {}]) {
        const s = await es(`/cookie/${ch}`, { ...cookie, ...h });
        assert.equal(s.status, 200);
        assert.equal(s.headers['access-control-allow-credentials'], h.Origin ? 'true' : undefined);
        s.close();
        const c = await C.wsConnect(ngx.wsUrl(`/cookie/${ch}`), { origin: h.Origin, headers: cookie });
        await c.close();
        const p = await get(`/cpresence/${ch}`, { ...cookie, ...h });
        assert.equal(p.status, 200);
    }
});

test('3: listed origins get nchan\'s behaviour; "*" gives no credentials', async () => {
    const ch = chan('o');
    const cookie = { Cookie: 'session=ok' };
    // listed: allowed, credentials included (nchan)
    let s = await es(`/listed/${ch}`, { ...cookie, Origin: 'https://app.example' });
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(s.headers['access-control-allow-credentials'], 'true');
    s.close();
    let c = await C.wsConnect(ngx.wsUrl(`/listed/${ch}`), { origin: 'https://app.example', headers: cookie });
    await c.close();
    // not listed: 403; the own origin is always allowed
    let r = await get(`/listed/${ch}`, { ...cookie, Origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.equal((await wsRefused(`/listed/${ch}`, { origin: 'null', headers: cookie }))?.status, 403);
    s = await es(`/listed/${ch}`, { ...cookie, Origin: own() });
    assert.equal(s.status, 200);
    s.close();
    // "*": any origin, never with credentials
    s = await es(`/star/${ch}`, { ...cookie, Origin: 'https://evil.example' });
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], '*');
    assert.equal(s.headers['access-control-allow-credentials'], undefined);
    s.close();
    s = await es(`/star/${ch}`, { ...cookie, Origin: 'null' });
    assert.equal(s.headers['access-control-allow-origin'], '*');
    assert.equal(s.headers['access-control-allow-credentials'], undefined);
    s.close();
    s = await es(`/star/${ch}`, { ...cookie, Origin: 'https://app.example' });
    assert.equal(s.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(s.headers['access-control-allow-credentials'], 'true');
    s.close();
    c = await C.wsConnect(ngx.wsUrl(`/star/${ch}`), { origin: 'https://evil.example', headers: cookie });
    await c.close();
    r = await get(`/star/${ch}`, { Origin: 'https://evil.example', Accept: 'text/event-stream' });
    assert.equal(r.status, 401, 'the hook still decides');
});

// ------------------------------------------------------------------- 4

test('4: "channels" subscribes, "publish" publishes; neither is implied', async () => {
    const ch = chan('news');
    const sub = jwt({ channels: [ch] });
    const pub = jwt({ publish: [ch] });
    const bare = jwt({ sub: 'mallory' });
    // no "channels": no channel at all
    let r = await get(`/tsub/${ch}?token=${bare}`, { Accept: 'text/event-stream' });
    assert.equal(r.status, 401);
    assert.equal(r.text, 'token not valid for channel\n');
    r = await get(`/tsub/${ch}?token=${pub}`, { Accept: 'text/event-stream' });
    assert.equal(r.status, 401, 'a publishing token does not subscribe');
    // no "publish": no publishing, over HTTP...
    for (const t of [bare, sub]) {
        r = await C.publish({ port: ngx.port, path: `/tpub/${ch}?token=${t}` }, 'forged');
        assert.equal(r.status, 401);
        assert.equal(r.text, 'token does not allow publishing to channel\n');
        r = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: `/tpub/${ch}?token=${t}` });
        assert.equal(r.status, 401);
    }
    const s = await es(`/tsub/${ch}?token=${sub}`);
    assert.equal(s.status, 200);
    r = await C.publish({ port: ngx.port, path: `/tpub/${ch}?token=${pub}` }, 'real');
    assert.equal(r.status, 201, r.text);
    await u.waitFor(() => s.data().includes('data: real'), 5000, 'the message');
    s.close();
    // ... and over a WebSocket: a pubsub socket with "channels" only is a
    // subscriber; what it sends is refused
    const c = await C.wsConnect(ngx.wsUrl(`/tps/${ch}?token=${sub}`));
    await c.send('forged');
    const closed = await c.closed;
    assert.equal(closed.code, 1008);
    assert.equal(closed.reason, 'Publishing not allowed.');
    const both = await C.wsConnect(ngx.wsUrl(`/tps/${ch}?token=${jwt({ channels: [ch], publish: [ch] })}`));
    assert.equal((await both.next()).text, 'real', 'the buffered message first');
    await both.send('allowed');
    assert.equal((await both.next()).text, 'allowed');
    await both.close();
    const e = await wsRefused(`/tps/${ch}?token=${pub}`);
    assert.equal(e?.status, 401, 'a pubsub socket subscribes: it needs "channels"');
    const info = await C.httpRequest({ port: ngx.port, path: `/pub/${ch}`, headers: { Accept: 'application/json' } });
    assert.match(info.text, /"messages": ?2/, 'only the two allowed messages were published');
});

test('4: a channel group other than default is part of the name', async () => {
    const ch = chan('room');
    // a token for "room" of the default group does not open tenantb's
    let r = await get(`/tgsub/${ch}?token=${jwt({ channels: [ch, `${ch}*`] })}`,
        { Accept: 'text/event-stream' });
    assert.equal(r.status, 401);
    assert.equal(r.text, 'token not valid for channel\n');
    r = await C.publish({ port: ngx.port, path: `/tgpub/${ch}?token=${jwt({ publish: [ch] })}` }, 'x');
    assert.equal(r.status, 401);
    const s = await es(`/tgsub/${ch}?token=${jwt({ channels: [`tenantb/${ch}`] })}`);
    assert.equal(s.status, 200);
    s.close();
    const s2 = await es(`/tgsub/${ch}?token=${jwt({ channels: ['tenantb/*'] })}`);
    assert.equal(s2.status, 200);
    s2.close();
    r = await C.publish({ port: ngx.port, path: `/tgpub/${ch}?token=${jwt({ publish: ['tenantb/*'] })}` }, 'x');
    assert.equal(r.status, 202, r.text);
    // and the tenant's token does not open the default group's channel
    r = await get(`/tsub/${ch}?token=${jwt({ channels: ['tenantb/*'] })}`, { Accept: 'text/event-stream' });
    assert.equal(r.status, 401);
});

// ------------------------------------------------------------------- 7

test('7: the presence API answers a refused Origin with 403', async () => {
    const ch = chan('room');
    for (const q of ['', '?stats', '?limit=5']) {
        const r = await get(`/opresence/${ch}${q}`, { Origin: 'https://evil.example' });
        assert.equal(r.status, 403, r.text);
        assert.equal(r.text, 'Origin not allowed.\n');
    }
    const ok = await get(`/opresence/${ch}`, { Origin: 'https://good.example' });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://good.example');
});

// ------------------------------------------------------------------- 8

test('8: a client\'s query argument never overrides a hook URI\'s own', async () => {
    const ch = chan('pub');
    const hostile = ['channel=public', 'Channel=public2', 'chann%65l=public3', 'channel[]=public4',
        'channel.=x', 'room=forged', 'token=abc', 'x=1', '', 'y'].join('&');
    const s = await es(`/qsub/${ch}?${hostile}`);
    assert.equal(s.status, 200);
    s.close();
    const call = be.of('/hook/q').at(-1);
    // "channel." is another name ("channel_" in PHP): kept
    assert.equal(call.url, `/hook/q?channel=secret&room=${ch}&channel.=x&token=abc&x=1&y`);
    assert.equal(call.query.getAll('channel').join(), 'secret');
    assert.equal(call.query.getAll('room').join(), ch);
    assert.equal(call.headers['x-original-uri'], `/qsub/${ch}?${hostile}`, 'the client\'s URI, unchanged');
});

// ------------------------------------------------------------------- 9

test('9: HS256 secrets shorter than 32 bytes fail nginx -t', async () => {
    const conf = (secret) => `server { listen 127.0.0.1:%%PORT%%;
        location / { pubsub_subscriber; pubsub_channel_id x; pubsub_token_key hs256:${secret}; } }`;
    for (const secret of ['x', 'secret', 'a'.repeat(31)]) {
        const r = await nginxCheck({ conf: conf(secret) });
        assert.equal(r.ok, false, `${secret.length} bytes`);
        assert.match(r.output, new RegExp(`pubsub_token_key: hs256 secret is ${secret.length} bytes long, ` +
            'at least 32 are needed'));
    }
    const r = await nginxCheck({ conf: conf('a'.repeat(32)) });
    assert.equal(r.ok, true, r.output);
    // the documentation's examples use long secrets
    for (const f of ['README.md', ...fs.readdirSync(path.join(REPO, 'docs')).map((d) => `docs/${d}`)]) {
        if (!f.endsWith('.md')) continue;
        for (const m of fs.readFileSync(path.join(REPO, f), 'utf8').matchAll(/hs256:([^\s;|`]+)/g)) {
            if (m[1] === 'SECRET' || m[1].startsWith('$')) continue;
            assert.ok(m[1].length >= 32, `${f}: hs256:${m[1]} is shorter than 32 bytes`);
        }
    }
});

// ------------------------------------------------------------------- 10

test('10: a token\'s presence info reaches the member list intact', async () => {
    const ch = chan('room');
    const info = { name: 'Zoë', bio: 'x'.repeat(2000), nested: { a: [1, 2, { b: null }] } };
    const s = await es(`/sub/${ch}?token=${jwt({ sub: 'zoe', info, channels: [ch] })}`);
    assert.equal(s.status, 200);
    const body = await member(ch, jwt({ channels: [ch] }));
    assert.equal(body.members[0].id, 'zoe');
    assert.deepEqual(body.members[0].info, info);
    s.close();
});

test('10: $arg_user as a presence id is documented as a claim anyone can make', () => {
    const presence = fs.readFileSync(path.join(REPO, 'docs/presence.md'), 'utf8');
    assert.match(presence, /pubsub_presence_id \$arg_user/);
    assert.match(presence, /anyone can claim any identity/i);
    const example = fs.readFileSync(path.join(REPO, 'examples/nginx.conf'), 'utf8');
    assert.match(example, /pubsub_presence_id \$arg_user;\s*#.*anyone/i);
    const security = fs.readFileSync(path.join(REPO, 'docs/security.md'), 'utf8');
    assert.match(security, /\$arg_user/);
});
