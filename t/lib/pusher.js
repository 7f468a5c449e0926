'use strict';
// Pusher protocol helpers for the integration tests: pusher-js (Node build,
// unmodified) clients signed by npm `pusher` (the server SDK), and a raw
// WebSocket speaking the protocol by hand.

const Pusher = require('pusher-js');
const PusherServer = require('pusher');
const C = require('./clients');

const APP = { id: '1', key: 'app-key', secret: 'app-secret-0123456789abcdef' };

function sdk(port, app = APP) {
    return new PusherServer({
        appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(port),
    });
}

function withTimeout(p, ms, what) {
    let t;
    return Promise.race([
        p.finally(() => clearTimeout(t)),
        new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms); }),
    ]);
}

// A pusher-js client; user: presence id (user_info {name: user}); signin:
// user_data for pusher:signin.
function client(port, { user = 'u', info, app = APP, path, signin } = {}) {
    const server = sdk(port, app);
    const opts = {
        wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'],
        cluster: 'local', disableStats: true,
        channelAuthorization: {
            customHandler: ({ socketId, channelName }, cb) => {
                if (channelName.startsWith('presence-')) {
                    cb(null, server.authorizeChannel(socketId, channelName,
                        { user_id: user, user_info: info === undefined ? { name: user } : info }));
                } else {
                    cb(null, server.authorizeChannel(socketId, channelName));
                }
            },
        },
        userAuthentication: {
            customHandler: ({ socketId }, cb) => {
                cb(null, server.authenticateUser(socketId, signin || { id: user }));
            },
        },
    };
    if (path) {
        opts.wsPath = path;
    }
    const p = new Pusher(app.key, opts);
    p.errors = [];
    p.connection.bind('error', (e) => p.errors.push(e));
    return p;
}

function connected(p, ms = 5000) {
    if (p.connection.state === 'connected') {
        return Promise.resolve(p.connection.socket_id);
    }
    return withTimeout(new Promise((res) => p.connection.bind('connected',
        () => res(p.connection.socket_id))), ms, 'pusher-js connected');
}

// subscribes; resolves with the subscription_succeeded data, rejects with the
// subscription_error's
function subscribe(p, name, ms = 5000) {
    const ch = p.subscribe(name);
    return withTimeout(new Promise((res, rej) => {
        ch.bind('pusher:subscription_succeeded', (d) => res({ ch, data: d }));
        ch.bind('pusher:subscription_error', (e) => {
            const err = new Error(`subscription_error ${JSON.stringify(e)}`);
            err.info = e;
            rej(err);
        });
    }), ms, `subscribe ${name}`);
}

// events of `name` on a channel, as a queue
function events(ch, name) {
    const q = new C.MessageQueue(`pusher event ${name}`);
    ch.bind(name, (data, meta) => q.push({ data, meta }));
    return q;
}

// A raw protocol client: frames parsed, data decoded when it is JSON text.
async function raw(port, { key = APP.key, query = 'protocol=7&client=js&version=8.6.0',
    path = '/app/' } = {}) {
    const c = await C.wsConnect(`ws://127.0.0.1:${port}${path}${key}?${query}`);
    c.frame = async (ms) => {
        const m = await c.next(ms);
        if (m === null) {
            return null;
        }
        const f = JSON.parse(m.text);
        if (typeof f.data === 'string') {
            try {
                f.json = JSON.parse(f.data);
            } catch (e) {
                f.json = undefined;
            }
        }
        return f;
    };
    c.sendJson = (o) => c.send(JSON.stringify(o));
    return c;
}

module.exports = { APP, sdk, client, connected, subscribe, events, raw, withTimeout };
