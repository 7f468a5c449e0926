'use strict';
// JWT tokens (pubsub_token, pubsub_token_key) with HS256, RS256 and ES256
// tokens made here with node:crypto.  See docs/tokens.md.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const u = require('./lib/backend');

const SECRET = 'a-test-secret-of-at-least-32-bytes!!';
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const otherRsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });

const b64 = (x) => Buffer.from(x).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

function jwt(alg, claims, key) {
    const head = b64(JSON.stringify({ alg, typ: 'JWT' }));
    const body = b64(JSON.stringify(claims));
    const input = `${head}.${body}`;
    let sig;
    if (alg === 'HS256') sig = crypto.createHmac('sha256', key).update(input).digest();
    else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key);
    else sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${b64(sig)}`;
}

let be;
let ng;

before(async () => {
    be = await u.startBackend({ '/hook/auth': () => ({ status: 200 }) });
    // keys next to nginx.conf, given by relative paths
    ng = await u.startNginx(`
        location /hook/ {
            internal;
            proxy_pass http://127.0.0.1:${be.port};
            proxy_set_header X-Var-Presence $pubsub_presence_id;
        }
        location ~ ^/hs/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_token_key hs256:${SECRET};
            pubsub_authorize_request /hook/auth;
        }
        location ~ ^/hsarg/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_token $arg_token;
            pubsub_token_key hs256:${SECRET};
        }
        location ~ ^/rs/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_token_key rs256:rsa-pub.pem;
        }
        location ~ ^/es/(.+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            pubsub_token_key es256:ec-pub.pem;
        }
    `, {
        files: {
            'rsa-pub.pem': rsa.publicKey.export({ type: 'spki', format: 'pem' }),
            'ec-pub.pem': ec.publicKey.export({ type: 'spki', format: 'pem' }),
        },
    });
});

after(async () => {
    const bad = ng ? ng.badLogLines() : [];
    if (ng) await ng.stop();
    if (be) await be.close();
    assert.deepEqual(bad, [], 'no [alert]/[crit]/[emerg] in error.log');
});

const es = { Accept: 'text/event-stream' };

async function expect401(url, headers, reason) {
    const r = await u.request(ng.url(url), { headers: { ...es, ...headers } });
    assert.equal(r.status, 401, `${url}: ${r.body}`);
    assert.equal(r.body, `${reason}\n`);
    assert.match(r.headers['www-authenticate'] || '', /^Bearer/);
}

test('HS256: valid token accepted, sub reaches the authorize hook', async () => {
    const t = jwt('HS256', { exp: now() + 60, sub: 'user-7', channels: ['room*'] }, SECRET);
    const es1 = await u.eventsource(ng.url('/hs/room1'), { Authorization: `Bearer ${t}` });
    assert.equal(es1.status, 200);
    es1.close();
    const call = be.of('/hook/auth').at(-1);
    assert.equal(call.headers['x-presence-id'], 'user-7');
    assert.equal(call.headers['x-var-presence'], 'user-7', '$pubsub_presence_id');
});

test('HS256: each refusal reason', async () => {
    await expect401('/hs/room1', {}, 'token missing');
    await expect401('/hs/room1', { Authorization: 'Bearer not.a.jwt!' }, (await reasonOf('not.a.jwt!')));
    const expired = jwt('HS256', { exp: now() - 10 }, SECRET);
    await expect401('/hs/room1', { Authorization: `Bearer ${expired}` }, 'token expired');
    const wrong = jwt('HS256', { exp: now() + 60 }, 'another-secret-another-secret-xx');
    await expect401('/hs/room1', { Authorization: `Bearer ${wrong}` }, await reasonOf(wrong));
    const scoped = jwt('HS256', { exp: now() + 60, channels: ['room*'] }, SECRET);
    await expect401('/hs/hall', { Authorization: `Bearer ${scoped}` }, 'token not valid for channel');
    assert.equal(be.of('/hook/auth').filter((c) => c.headers['x-channel-id'] === 'hall').length, 0,
        'no authorize hook for a refused token');
});

// the exact one-line reasons come from the core: read them from a 401
async function reasonOf(token) {
    const q = await u.request(ng.url(`/hsarg/x?token=${encodeURIComponent(token)}`), { headers: es });
    assert.equal(q.status, 401);
    const line = q.body.trim();
    assert.ok(line.length > 0 && !line.includes('\n'), 'one line');
    return line;
}

test('reasons are specific: malformed vs bad signature', async () => {
    const malformed = await reasonOf('abc');
    const wrongSig = await reasonOf(jwt('HS256', { exp: now() + 60 }, 'another-secret-another-secret-xx'));
    assert.notEqual(malformed, wrongSig);
    assert.match(wrongSig, /signature/);
});

test('token in the query string (pubsub_token $arg_token)', async () => {
    const t = jwt('HS256', { exp: now() + 60, channels: ['x'] }, SECRET);
    const c = await u.eventsource(ng.url(`/hsarg/x?token=${t}`));
    assert.equal(c.status, 200);
    c.close();
});

test('RS256: valid accepted; another key, alg mismatch and expiry refused', async () => {
    const ok = jwt('RS256', { exp: now() + 60, channels: ['a'] }, rsa.privateKey);
    const c = await u.eventsource(ng.url('/rs/a'), { Authorization: `Bearer ${ok}` });
    assert.equal(c.status, 200);
    c.close();
    const other = jwt('RS256', { exp: now() + 60 }, otherRsa.privateKey);
    const r = await u.request(ng.url('/rs/a'), { headers: { ...es, Authorization: `Bearer ${other}` } });
    assert.equal(r.status, 401);
    assert.match(r.body, /signature/);
    const hs = jwt('HS256', { exp: now() + 60 }, SECRET);
    const r2 = await u.request(ng.url('/rs/a'), { headers: { ...es, Authorization: `Bearer ${hs}` } });
    assert.equal(r2.status, 401);
    const old = jwt('RS256', { exp: now() - 1 }, rsa.privateKey);
    await expect401('/rs/a', { Authorization: `Bearer ${old}` }, 'token expired');
});

test('ES256 on a publisher: valid publishes, out-of-scope refused', async () => {
    // SPEC section 11: publishing needs the "publish" claim
    const ok = jwt('ES256', { exp: now() + 60, publish: ['news'] }, ec.privateKey);
    let r = await u.request(ng.url('/es/news'), { method: 'POST', body: 'x',
        headers: { Authorization: `Bearer ${ok}` } });
    assert.ok(r.status === 201 || r.status === 202, `status ${r.status}`);
    r = await u.request(ng.url('/es/sports'), { method: 'POST', body: 'x',
        headers: { Authorization: `Bearer ${ok}` } });
    assert.equal(r.status, 401);
    assert.equal(r.body, 'token does not allow publishing to channel\n');
});

test('a bad pubsub_token_key is a configuration error with the reason', () => {
    const dir = fs.mkdtempSync('/tmp/pubsub-tokconf-');
    const conf = path.join(dir, 'nginx.conf');
    const mod = process.env.PUBSUB_MODULE || path.resolve(__dirname, '../build/nginx/ngx_pubsub_module.so');
    fs.writeFileSync(conf, `load_module ${mod};
pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events {}
http { access_log off; server { listen 127.0.0.1:1; location / {
    pubsub_subscriber; pubsub_channel_id x; pubsub_token_key rs256:missing.pem; } } }
`);
    let out = '';
    try {
        execFileSync('nginx', ['-t', '-p', dir, '-c', conf, '-e', `${dir}/error.log`], { stdio: 'pipe' });
    } catch (e) {
        out = e.stderr.toString();
    }
    assert.match(out, /pubsub_token_key: .*missing\.pem/);
    assert.match(out, new RegExp(`${dir}/missing\\.pem`), 'relative to the configuration directory');
    fs.rmSync(dir, { recursive: true, force: true });
});
