'use strict';
// The application backend of the example deployment (examples/app/README.md):
// Node's own http module, no framework, no dependency.
//
//   browser ──► nginx (ngx_pubsub) ──► this backend
//
// - a login that sets a session cookie; GET /app/api/me hands the page a
//   short-lived JWT (HS256: sub, info, channels, publish) that nginx checks;
// - the hooks nginx sends (examples/nginx.conf, location /app/hooks/):
//     authorize          is this session still logged in, as the token's sub?
//     subscribe /        keep the "online now / last seen" table
//     unsubscribe
//     message            publisher upstream: refuse a message with a banned
//                        word, rewrite the others (trim, author, time)
//     presence           join/leave/online/offline into the activity log
// - an API endpoint (POST /app/api/announce) that publishes to the room with
//   a POST to nginx's internal publisher, after its own checks.
// - for the Echo page (public/echo.html, laravel-echo + pusher-js against
//   nginx's Pusher endpoint): POST /app/broadcasting/auth signs presence
//   subscriptions as Laravel's does, and POST /app/api/echo/message
//   broadcasts through Pusher's HTTP API on nginx, after the spam check.
//
// Run: node examples/app/server.js  (scripts/example.sh does). Settings come
// from the environment (APP_PORT, APP_PUBLISH_URL, APP_TOKEN_SECRET, ...),
// see DEFAULTS; tests start it with createApp(options).listen().

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const DEFAULTS = {
    host: '127.0.0.1',
    port: 8090,
    // The HS256 secret nginx verifies the tokens with: the same bytes as
    // `pubsub_token_key hs256:...` in examples/nginx.conf. Example only:
    // make your own (openssl rand -base64 48) and keep it out of the repo.
    tokenSecret: 'example-secret-change-me-0123456789abcdefghij',
    tokenTtl: 600, // seconds: the page asks for a new one when it reconnects
    // nginx's internal publisher (the 127.0.0.1:8081 server of
    // examples/nginx.conf); the channel id follows
    publishUrl: 'http://127.0.0.1:8081/app/pub/',
    group: 'app', // pubsub_channel_group of the app's locations
    room: 'lobby',
    password: 'demo', // example only: every name logs in with it
    bannedWords: ['spam'],
    maxMessage: 500, // characters after trimming
    announceEvery: 2000, // ms between two announcements of one user
    // The Echo page (public/echo.html): the Pusher app of examples/nginx.conf
    // (pubsub_pusher_app; example only: make your own secret), and Pusher's
    // HTTP API on nginx's internal listener, where the app broadcasts.
    pusherAppId: '1',
    pusherKey: 'example-key',
    pusherSecret: 'example-pusher-secret-change-me-0123456789',
    pusherApiUrl: 'http://127.0.0.1:8081',
    log: true,
};

const PUBLIC = path.join(__dirname, 'public');
// the browser builds of the Echo page's libraries, from the repository's
// node_modules (npm ci; pinned in package.json)
const VENDOR = {
    'echo.js': path.join(__dirname, '../../node_modules/laravel-echo/dist/echo.iife.js'),
    'pusher.js': path.join(__dirname, '../../node_modules/pusher-js/dist/web/pusher.min.js'),
};
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'application/javascript',
    '.css': 'text/css' };

// ------------------------------------------------------------------ JWT

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function signToken(claims, secret, ttl) {
    const now = Math.floor(Date.now() / 1000);
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const body = b64url(JSON.stringify({ ...claims, iat: now, exp: now + ttl }));
    const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest();
    return { token: `${head}.${body}.${b64url(sig)}`, exp: now + ttl };
}

// ------------------------------------------------------------------ helpers

function readBody(req, limit = 65536) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let size = 0;
        req.on('data', (c) => {
            size += c.length;
            if (size > limit) {
                reject(Object.assign(new Error('body too large'), { status: 413 }));
                req.destroy();
                return;
            }
            chunks.push(c);
        });
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
    });
}

function send(res, status, body, headers = {}) {
    const isJson = typeof body === 'object' && body !== null && !Buffer.isBuffer(body);
    const data = isJson ? JSON.stringify(body) : (body ?? '');
    res.writeHead(status, {
        'Content-Type': isJson ? 'application/json' : 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(data),
        'Cache-Control': 'no-store',
        ...headers,
    });
    res.end(data);
}

function redirect(res, where, headers = {}) {
    res.writeHead(303, { Location: where, 'Content-Length': 0, ...headers });
    res.end();
}

function cookies(req) {
    const out = {};
    for (const part of (req.headers.cookie || '').split(';')) {
        const i = part.indexOf('=');
        if (i > 0) {
            try {
                out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
            } catch {
                // not ours: a malformed escape
            }
        }
    }
    return out;
}

function sameBytes(a, b) {
    const x = Buffer.from(String(a));
    const y = Buffer.from(String(b));
    return x.length === y.length && crypto.timingSafeEqual(x, y);
}

// ------------------------------------------------------------------ the app

function createApp(options = {}) {
    const cfg = { ...DEFAULTS, ...options };
    const channel = `${cfg.group}/${cfg.room}`; // as token claims name it

    const sessions = new Map(); // sid -> {id, name}
    const users = new Map(); // id -> {id, name, connections, since, lastSeen}
    const hookLog = []; // every subscribe/unsubscribe/authorize/message hook
    const activity = []; // presence hook events, newest last
    const lastAnnounce = new Map(); // id -> ms

    const log = (...a) => {
        if (cfg.log) {
            console.log(new Date().toISOString(), ...a);
        }
    };

    function user(id, name) {
        let u = users.get(id);
        if (!u) {
            u = { id, name: name || id, connections: 0, since: null, lastSeen: null };
            users.set(id, u);
        }
        if (name) {
            u.name = name;
        }
        return u;
    }

    // the spam check: a banned word, as a whole word, in any case
    const bannedRes = cfg.bannedWords.map((w) =>
        [w, new RegExp(`(^|\\W)${w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|\\W)`, 'i')]);
    const bannedWord = (text) => (bannedRes.find(([, re]) => re.test(text)) || [])[0];

    function session(req) {
        const sid = cookies(req).sid;
        return sid ? sessions.get(sid) || null : null;
    }

    // What a hook request tells about its client (docs/hooks.md).
    function hookInfo(req, url) {
        return {
            user: req.headers['x-presence-id'] || null,
            channel: req.headers['x-channel-id'] || null,
            transport: req.headers['x-subscriber-type'] || req.headers['x-publisher-type'] || null,
            // the page's own connection id (?conn=), from the client's query
            conn: url.searchParams.get('conn'),
        };
    }

    function record(hook, info, extra = {}) {
        const entry = { hook, ...info, ...extra, at: Date.now() };
        hookLog.push(entry);
        if (hookLog.length > 10000) {
            hookLog.shift();
        }
        log('hook', hook, info.user || '-', info.channel || '-', info.transport || '-',
            info.conn ? `conn=${info.conn}` : '', extra.answer || '');
        return entry;
    }

    // POST the message to nginx's internal publisher location.
    function publish(room, message) {
        const body = JSON.stringify(message);
        return new Promise((resolve, reject) => {
            const req = http.request(`${cfg.publishUrl}${encodeURIComponent(room)}`, {
                method: 'POST',
                headers: { 'Content-Type': 'application/json',
                    'Content-Length': Buffer.byteLength(body) },
            }, (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode));
            });
            req.on('error', reject);
            req.setTimeout(5000, () => req.destroy(new Error('publish timed out')));
            req.end(body);
        });
    }

    // Pusher's HTTP API, signed as the server SDKs sign it: the query's
    // auth_* parameters and the body's MD5, HMAC-SHA256 of
    // "<method>\n<path>\n<sorted query>" with the app's secret.
    function pusherTrigger(channelName, event, data) {
        const body = JSON.stringify({ name: event, channel: channelName,
            data: JSON.stringify(data) });
        const apiPath = `/apps/${cfg.pusherAppId}/events`;
        const q = new URLSearchParams({
            auth_key: cfg.pusherKey,
            auth_timestamp: String(Math.floor(Date.now() / 1000)),
            auth_version: '1.0',
            body_md5: crypto.createHash('md5').update(body).digest('hex'),
        });
        q.sort();
        const query = [...q].map(([k, v]) => `${k}=${v}`).join('&');
        const sig = crypto.createHmac('sha256', cfg.pusherSecret)
            .update(`POST\n${apiPath}\n${query}`).digest('hex');
        return new Promise((resolve, reject) => {
            const req = http.request(`${cfg.pusherApiUrl}${apiPath}?${query}&auth_signature=${sig}`, {
                method: 'POST',
                headers: { 'Content-Type': 'application/json',
                    'Content-Length': Buffer.byteLength(body) },
            }, (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode));
            });
            req.on('error', reject);
            req.setTimeout(5000, () => req.destroy(new Error('trigger timed out')));
            req.end(body);
        });
    }

    // ---------------------------------------------------------- the hooks

    const hooks = {
        // GET, in nginx's access phase, before a subscriber, a WebSocket
        // publisher or a presence API request is accepted (nginx checked the
        // token first: X-Presence-Id is its sub). 2xx accepts; any other
        // answer goes to the client as it is.
        async authorize(req, res, url) {
            const info = hookInfo(req, url);
            const s = session(req);
            if (!s) {
                record('authorize', info, { answer: 401 });
                return send(res, 401, 'not logged in\n');
            }
            if (info.user !== s.id) {
                record('authorize', info, { answer: 403 });
                return send(res, 403, 'this token belongs to another session\n');
            }
            record('authorize', info, { answer: 200 });
            return send(res, 200, '');
        },

        // GET once the subscriber receives messages; nginx pairs it with
        // exactly one unsubscribe, whatever ends the connection. The answer
        // is ignored.
        async subscribe(req, res, url) {
            const info = hookInfo(req, url);
            record('subscribe', info);
            if (info.user) {
                const u = user(info.user);
                if (u.connections++ === 0) {
                    u.since = Date.now();
                }
            }
            return send(res, 204, '');
        },

        async unsubscribe(req, res, url) {
            const info = hookInfo(req, url);
            record('unsubscribe', info);
            if (info.user) {
                const u = user(info.user);
                u.connections = Math.max(0, u.connections - 1);
                if (u.connections === 0) {
                    u.lastSeen = Date.now();
                }
            }
            return send(res, 204, '');
        },

        // POST with every message a client sends over its WebSocket, before
        // nginx publishes it. 2xx publishes our body instead; 204 nothing;
        // 304 the original; anything else refuses it: the sender's socket
        // is closed with 1008 "<status> <body>" and nobody gets it.
        async message(req, res, url) {
            const info = hookInfo(req, url);
            const raw = (await readBody(req)).toString('utf8');
            const text = raw.replace(/\s+/g, ' ').trim().slice(0, cfg.maxMessage);
            const banned = bannedWord(text);
            if (banned) {
                record('message', info, { answer: 403 });
                return send(res, 403, `"${banned}" is not allowed here`);
            }
            if (!text || !info.user) {
                record('message', info, { answer: 400 });
                return send(res, 400, 'empty message');
            }
            record('message', info, { answer: 200 });
            // the rewrite: trimmed, and the author is who the token says,
            // not what the client claims
            return send(res, 200, { type: 'message', user: info.user,
                name: user(info.user).name, text, at: Date.now() });
        },

        // POST (JSON) for every join, leave, online and offline; the answer
        // is ignored.
        async presence(req, res) {
            const ev = JSON.parse((await readBody(req)).toString('utf8'));
            const who = ev.member || ev.user || {};
            const entry = { event: ev.event, id: who.id, channel: ev.channel || null,
                name: (who.info && who.info.name) || who.id, at: ev.time || Date.now() };
            activity.push(entry);
            if (activity.length > 200) {
                activity.shift();
            }
            log('presence', ev.event, who.id, ev.channel || '');
            return send(res, 204, '');
        },
    };

    // ---------------------------------------------------------- the app's own

    async function login(req, res) {
        const form = new URLSearchParams((await readBody(req, 4096)).toString('utf8'));
        const name = (form.get('name') || '').trim();
        const id = name.toLowerCase();
        if (!/^[a-z0-9_-]{1,32}$/.test(id)) {
            return redirect(res, '/app/?error=name');
        }
        if (!sameBytes(form.get('password') || '', cfg.password)) {
            return redirect(res, '/app/?error=password');
        }
        const sid = crypto.randomBytes(24).toString('base64url');
        sessions.set(sid, { id, name });
        user(id, name);
        log('login', id);
        return redirect(res, '/app/chat.html', {
            'Set-Cookie': `sid=${sid}; Path=/app/; HttpOnly; SameSite=Strict`,
        });
    }

    function logout(req, res) {
        const sid = cookies(req).sid;
        if (sid) {
            sessions.delete(sid);
        }
        return redirect(res, '/app/', {
            'Set-Cookie': 'sid=; Path=/app/; HttpOnly; SameSite=Strict; Max-Age=0',
        });
    }

    // The page's token: what it may subscribe to and publish to, for a
    // few minutes. The page asks again whenever it (re)connects.
    function me(req, res, s) {
        const { token, exp } = signToken({
            sub: s.id,
            info: { name: s.name },
            channels: [channel],
            publish: [channel],
        }, cfg.tokenSecret, cfg.tokenTtl);
        return send(res, 200, { id: s.id, name: s.name, room: cfg.room, token, exp });
    }

    function state(req, res) {
        return send(res, 200, {
            users: [...users.values()],
            activity: activity.slice(-50),
        });
    }

    // The app publishes itself, after its own checks: logged in, not too
    // often, nothing banned. nginx's internal publisher takes it as it is.
    async function announce(req, res, s) {
        if (!/^application\/json\b/.test(req.headers['content-type'] || '')) {
            return send(res, 415, 'JSON expected\n');
        }
        let text;
        try {
            text = String(JSON.parse((await readBody(req, 4096)).toString('utf8')).text || '');
        } catch {
            return send(res, 400, 'bad JSON\n');
        }
        text = text.replace(/\s+/g, ' ').trim().slice(0, 200);
        if (!text) {
            return send(res, 400, 'empty announcement\n');
        }
        const now = Date.now();
        if (now - (lastAnnounce.get(s.id) || 0) < cfg.announceEvery) {
            return send(res, 429, 'one announcement every few seconds\n');
        }
        const banned = bannedWord(text);
        if (banned) {
            return send(res, 403, `"${banned}" is not allowed here\n`);
        }
        lastAnnounce.set(s.id, now);
        const status = await publish(cfg.room,
            { type: 'announce', user: s.id, name: s.name, text, at: now });
        log('announce', s.id, `-> ${status}`);
        return send(res, status === 201 || status === 202 ? 200 : 502,
            { published: status });
    }

    // What Laravel's /broadcasting/auth does for a presence channel: the
    // logged-in user only, signed "<socket_id>:<channel>:<channel_data>"
    // with the Pusher app's secret. Echo's page may join presence-<room>.
    async function broadcastingAuth(req, res, s) {
        const form = new URLSearchParams((await readBody(req, 4096)).toString('utf8'));
        const socketId = form.get('socket_id') || '';
        const channelName = form.get('channel_name') || '';
        if (!/^\d+\.\d+$/.test(socketId)) {
            return send(res, 400, 'bad socket_id\n');
        }
        if (channelName !== `presence-${cfg.room}`) {
            return send(res, 403, 'not your channel\n');
        }
        const channelData = JSON.stringify({ user_id: s.id, user_info: { id: s.id, name: s.name } });
        const sig = crypto.createHmac('sha256', cfg.pusherSecret)
            .update(`${socketId}:${channelName}:${channelData}`).digest('hex');
        log('broadcasting/auth', s.id, channelName);
        return send(res, 200, { auth: `${cfg.pusherKey}:${sig}`, channel_data: channelData });
    }

    // The Echo page's messages: the same checks as the hook's, then a
    // broadcast through Pusher's HTTP API (event "message" on
    // presence-<room>), which every Echo page listens for.
    async function echoMessage(req, res, s) {
        let text;
        try {
            text = String(JSON.parse((await readBody(req, 4096)).toString('utf8')).text || '');
        } catch {
            return send(res, 400, 'bad JSON\n');
        }
        text = text.replace(/\s+/g, ' ').trim().slice(0, cfg.maxMessage);
        if (!text) {
            return send(res, 400, 'empty message\n');
        }
        const banned = bannedWord(text);
        if (banned) {
            return send(res, 403, `"${banned}" is not allowed here\n`);
        }
        const status = await pusherTrigger(`presence-${cfg.room}`, 'message',
            { type: 'message', user: s.id, name: s.name, text, at: Date.now() });
        log('echo message', s.id, `-> ${status}`);
        return send(res, status === 200 ? 200 : 502, { published: status });
    }

    function vendorFile(res, name) {
        let data;
        try {
            data = fs.readFileSync(VENDOR[name]);
        } catch {
            return send(res, 404, `${name}: run npm ci in the repository first\n`);
        }
        res.writeHead(200, { 'Content-Type': 'application/javascript',
            'Content-Length': data.length, 'Cache-Control': 'max-age=3600' });
        return res.end(data);
    }

    function staticFile(res, name) {
        const file = path.join(PUBLIC, name);
        let data;
        try {
            data = fs.readFileSync(file);
        } catch {
            return send(res, 404, 'not found\n');
        }
        res.writeHead(200, { 'Content-Type': TYPES[path.extname(name)] || 'text/plain',
            'Content-Length': data.length, 'Cache-Control': 'no-cache' });
        return res.end(data);
    }

    async function route(req, res) {
        const url = new URL(req.url, 'http://app.invalid');
        const p = url.pathname;
        const m = /^\/app\/hooks\/(\w+)$/.exec(p);
        if (m) {
            // reached only through nginx's internal location /app/hooks/
            if (!Object.hasOwn(hooks, m[1])) {
                return send(res, 404, 'no such hook\n');
            }
            return hooks[m[1]](req, res, url);
        }
        if (p === '/app/login' && req.method === 'POST') {
            return login(req, res);
        }
        if (p === '/app/logout' && req.method === 'POST') {
            return logout(req, res);
        }
        if (p === '/app/' || p === '/app') {
            return session(req) ? redirect(res, '/app/chat.html') : staticFile(res, 'login.html');
        }
        const v = /^\/app\/vendor\/([\w.-]+)$/.exec(p);
        if (v && Object.hasOwn(VENDOR, v[1]) && req.method === 'GET') {
            return vendorFile(res, v[1]);
        }
        if (p === '/app/broadcasting/auth' && req.method === 'POST') {
            const s = session(req);
            return s ? broadcastingAuth(req, res, s) : send(res, 401, 'not logged in\n');
        }
        if (p.startsWith('/app/api/')) {
            const s = session(req);
            if (!s) {
                return send(res, 401, 'not logged in\n');
            }
            if (p === '/app/api/me' && req.method === 'GET') {
                return me(req, res, s);
            }
            if (p === '/app/api/state' && req.method === 'GET') {
                return state(req, res);
            }
            if (p === '/app/api/hooks' && req.method === 'GET') {
                return send(res, 200, hookLog.slice(-500));
            }
            if (p === '/app/api/announce' && req.method === 'POST') {
                return announce(req, res, s);
            }
            if (p === '/app/api/echo/message' && req.method === 'POST') {
                if (!/^application\/json\b/.test(req.headers['content-type'] || '')) {
                    return send(res, 415, 'JSON expected\n');
                }
                return echoMessage(req, res, s);
            }
            return send(res, 404, 'not found\n');
        }
        // the pages and their scripts: public/<name>.(html|js|css)
        const f = /^\/app\/([\w-]+\.(?:html|js|css))$/.exec(p);
        if (f && req.method === 'GET') {
            return staticFile(res, f[1]);
        }
        return send(res, 404, 'not found\n');
    }

    const server = http.createServer((req, res) => {
        route(req, res).catch((err) => {
            log('error', req.method, req.url, err.message);
            if (!res.headersSent) {
                send(res, err.status || 500, `${err.message}\n`);
            } else {
                res.destroy();
            }
        });
    });
    server.keepAliveTimeout = 65000;

    return {
        server, hookLog, activity, users, sessions, config: cfg,
        listen(port = cfg.port, host = cfg.host) {
            return new Promise((resolve, reject) => {
                server.once('error', reject);
                server.listen(port, host, () => {
                    server.off('error', reject);
                    resolve(server.address().port);
                });
            });
        },
        close() {
            server.closeAllConnections();
            return new Promise((resolve) => server.close(() => resolve()));
        },
    };
}

module.exports = { createApp, signToken, DEFAULTS };

if (require.main === module) {
    const env = process.env;
    const app = createApp({
        port: Number(env.APP_PORT || DEFAULTS.port),
        publishUrl: env.APP_PUBLISH_URL || DEFAULTS.publishUrl,
        pusherApiUrl: env.APP_PUSHER_API_URL || DEFAULTS.pusherApiUrl,
        tokenSecret: env.APP_TOKEN_SECRET || DEFAULTS.tokenSecret,
    });
    app.listen().then((port) => {
        console.log(`example app: listening on ${DEFAULTS.host}:${port}`);
    }, (err) => {
        console.error(`example app: ${err.message}`);
        process.exit(1);
    });
    for (const sig of ['SIGTERM', 'SIGINT']) {
        process.on(sig, () => app.close().then(() => process.exit(0)));
    }
}
