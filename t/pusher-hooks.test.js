'use strict';
// Hooks in a pubsub_pusher location: pubsub_authorize_request at the
// handshake, as for any subscriber, and client events through
// pubsub_publisher_upstream_request, as WebSocket publishing does (2xx
// publishes the answer, 204 drops, 304 publishes as sent, else refused).

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { useNginx } = require('./lib/nginx');
const { startBackend } = require('./lib/backend');
const P = require('./lib/pusher');

let be;
const conf = `
pubsub_pusher_app id=1 key=app-key secret=app-secret-0123456789abcdef;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /hook/auth { internal; proxy_pass http://127.0.0.1:%%BE%%/auth; }
    location = /hook/up { internal; proxy_pass http://127.0.0.1:%%BE%%/up; }
    location /app/ {
        pubsub_pusher;
        pubsub_authorize_request /hook/auth;
        pubsub_publisher_upstream_request /hook/up;
    }
}`;

describe('pusher: hooks', () => {
    const vars = {};
    before(async () => {
        be = await startBackend({
            '/auth': (c) => (/deny=1/.test(c.headers['x-original-uri'] || '')
                ? { status: 403, body: 'not you' } : { status: 200 }),
            '/up': (c) => {
                if (c.body.includes('block')) {
                    return { status: 403, body: 'blocked by the app' };
                }
                if (c.body.includes('drop')) {
                    return { status: 204 };
                }
                if (c.body.includes('rewrite')) {
                    return { status: 200, body: '{"rewritten":true}',
                        headers: { 'Content-Type': 'application/json' } };
                }
                return { status: 304 };
            },
        });
        vars.BE = String(be.port);
    });
    after(() => be && be.close());
    const ngx = useNginx({ conf, vars, workers: 1 });

    it('pubsub_authorize_request refuses a handshake before the 101', async () => {
        await assert.rejects(P.raw(ngx.port, { query: 'protocol=7&deny=1' }),
            (e) => e.status === 403);
        const r = await P.raw(ngx.port);
        assert.equal((await r.frame()).event, 'pusher:connection_established');
        await r.close();
        assert.ok(be.of('/auth').length >= 2);
        assert.equal(be.of('/auth')[0].headers['x-subscriber-type'], 'websocket');
    });

    it('client events go through pubsub_publisher_upstream_request', async () => {
        const a = P.client(ngx.port);
        const b = P.client(ngx.port);
        try {
            const { ch: ca } = await P.subscribe(a, 'private-hooked');
            const { ch: cb } = await P.subscribe(b, 'private-hooked');
            const got = P.events(cb, 'client-msg');
            ca.trigger('client-msg', { text: 'drop me' });
            ca.trigger('client-msg', { text: 'rewrite me' });
            ca.trigger('client-msg', { text: 'as sent' });
            ca.trigger('client-msg', { text: 'block me' });
            const seen = [(await got.next()).data, (await got.next()).data];
            seen.sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
            assert.deepEqual(seen, [{ rewritten: true }, { text: 'as sent' }]);
            const deadline = Date.now() + 5000;
            while (!a.errors.some((e) => /blocked by the app/.test(JSON.stringify(e)))) {
                assert.ok(Date.now() < deadline, JSON.stringify(a.errors));
                await new Promise((r) => setTimeout(r, 50));
            }
            const up = be.of('/up');
            assert.equal(up.length, 4);
            assert.equal(up[0].headers['x-channel-id'], 'private-hooked');
            assert.equal(a.connection.state, 'connected');
        } finally {
            a.disconnect();
            b.disconnect();
        }
    });
});
