'use strict';
// laravel-echo 2 + pusher-js 8 (browser builds, unmodified) in headless
// Chromium against nginx's Pusher endpoint, as a Laravel page uses them:
// broadcaster 'reverb', the auth endpoint /broadcasting/auth (here a Node
// backend signing with npm `pusher`, as Laravel does),
// Echo.join().here().joining().leaving() and Echo.channel().listen().

const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { test } = require('node:test');
const { withNginx } = require('./lib/nginx');
const { withBrowserPage } = require('./lib/browser');
const P = require('./lib/pusher');

const PUSHER_JS = require.resolve('pusher-js/dist/web/pusher.min.js');
const ECHO_JS = path.join(path.dirname(path.dirname(PUSHER_JS)), '..', '..', 'laravel-echo',
    'dist', 'echo.iife.js');

// Laravel's /broadcasting/auth: the user is ?user= of the page's cookie-less
// request, named in the form body by pusher-js (socket_id, channel_name)
function startAuthBackend() {
    const server = http.createServer((req, res) => {
        let body = '';
        req.on('data', (d) => { body += d; });
        req.on('end', () => {
            const f = new URLSearchParams(body);
            const user = req.headers['x-user'] || 'anon';
            const sdk = P.sdk(0);
            const socket = f.get('socket_id');
            const channel = f.get('channel_name');
            const out = channel.startsWith('presence-')
                ? sdk.authorizeChannel(socket, channel,
                    { user_id: user, user_info: { id: user, name: `User ${user}` } })
                : sdk.authorizeChannel(socket, channel);
            res.writeHead(200, { 'Content-Type': 'application/json' });
            res.end(JSON.stringify(out));
        });
    });
    return new Promise((res) => server.listen(0, '127.0.0.1', () => res(server)));
}

const page = `<!doctype html>
<html><head><meta name="csrf-token" content="t0k3n">
<script src="/js/pusher.min.js"></script>
<script src="/js/echo.iife.js"></script></head>
<body><script>
window.log = [];
window.Echo = new Echo.default({
    broadcaster: 'reverb',
    key: 'app-key',
    wsHost: location.hostname,
    wsPort: Number(location.port),
    forceTLS: false,
    enabledTransports: ['ws', 'wss'],
    auth: { headers: { 'X-User': '1' } },
});
Echo.join('room')
    .here((users) => log.push(['here', users.map((u) => u.name).sort()]))
    .joining((user) => log.push(['joining', user.name]))
    .leaving((user) => log.push(['leaving', user.name]))
    .error((e) => log.push(['error', e]));
Echo.channel('orders').listen('OrderShipped', (e) => log.push(['shipped', e.order.id]));
</script></body></html>`;

test('laravel-echo in Chromium: here, joining, leaving and listen', { timeout: 90000 }, async () => {
    const be = await startAuthBackend();
    try {
        await withNginx({
            conf: `
pubsub_pusher_app id=1 key=app-key secret=${P.APP.secret};
server {
    listen 127.0.0.1:%%PORT%%;
    location = / { root %%PREFIX%%/html; try_files /index.html =404; }
    location = /js/pusher.min.js { alias ${PUSHER_JS}; }
    location = /js/echo.iife.js { alias ${ECHO_JS}; }
    location = /broadcasting/auth { proxy_pass http://127.0.0.1:${be.address().port}; }
    location /app/ {
        pubsub_pusher;
        pubsub_presence_leave_delay 1s;
    }
    location ~ ^/pub/(.+)$ {
        pubsub_publisher;
        pubsub_channel_group pusher:1;
        pubsub_channel_id $1;
    }
}`,
            workers: 2,
            files: { 'html/index.html': page },
        }, async (ngx) => {
            await withBrowserPage(async (pg) => {
                await pg.goto(`http://127.0.0.1:${ngx.port}/`);
                const waitLog = (pred, what) => pg.waitForFunction(pred, null, { timeout: 10000 })
                    .catch((e) => {
                        throw new Error(`${what}: ${e.message}; log: ${JSON.stringify(
                            pg.__consoleLog)}`);
                    });
                await waitLog(() => window.log.some((l) => l[0] === 'here'), 'here');

                // another member, from Node
                const bob = P.client(ngx.port, { user: '2', info: { id: '2', name: 'User 2' } });
                await P.subscribe(bob, 'presence-room');
                await waitLog(() => window.log.some((l) => l[0] === 'joining'), 'joining');

                // the application broadcasts (a POST into the app's group)
                const r = await fetch(`http://127.0.0.1:${ngx.port}/pub/orders`, {
                    method: 'POST',
                    headers: { 'X-EventSource-Event': 'App\\Events\\OrderShipped' },
                    body: JSON.stringify({ order: { id: 42 } }),
                });
                assert.equal(r.status, 201);
                await waitLog(() => window.log.some((l) => l[0] === 'shipped'), 'shipped');

                bob.disconnect();
                await waitLog(() => window.log.some((l) => l[0] === 'leaving'), 'leaving');

                const log = await pg.evaluate(() => window.log);
                assert.deepEqual(log, [
                    ['here', ['User 1']],
                    ['joining', 'User 2'],
                    ['shipped', 42],
                    ['leaving', 'User 2'],
                ]);
            });
        });
    } finally {
        be.close();
    }
});
