'use strict';
// The Pusher protocol over WebSocket (SPEC 12, docs/pusher.md) with
// pusher-js 8 (Node build, unmodified) and a raw client: connection,
// socket ids, public/private/presence channels, member events across
// connections and workers, client events, sign-in and #server-to-user,
// terminate, interop with pubsub_publisher and nchan-protocol
// subscribers, and bad input, each answered with a specific error while
// the connection and the worker stay up.

const assert = require('node:assert/strict');
const { describe, it, after } = require('node:test');
const { useNginx } = require('./lib/nginx');
const C = require('./lib/clients');
const P = require('./lib/pusher');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pending = (q) => q.items.length - q.taken;
let seq = 0;
const uniq = (p) => `${p}${process.pid % 1000}x${++seq}`;

const conf = `
pubsub_pusher_app id=1 key=app-key secret=app-secret-0123456789abcdef
                  max_presence_members=3 max_client_events=5/s;
pubsub_pusher_app id=2 key=key-two secret=secret-two-0123456789abcdef;
server {
    listen 127.0.0.1:%%PORT%%;

    location /app/ {
        pubsub_pusher;
        pubsub_presence_leave_delay 1s;
    }
    location /quiet/app/ {
        pubsub_pusher;
        pubsub_pusher_activity_timeout 1s;
    }
    # plain publishing into app 1's channels (contract 1)
    location ~ ^/pub/(.+)$ {
        pubsub_publisher;
        pubsub_channel_group pusher:1;
        pubsub_channel_id $1;
    }
    # nchan-protocol subscribers of app 1's channels
    location ~ ^/sub/(.+)$ {
        pubsub_subscriber;
        pubsub_channel_group pusher:1;
        pubsub_channel_id $1;
    }
}
`;

describe('pusher: protocol 7 over WebSocket', () => {
    const ngx = useNginx({ conf, workers: 2 });
    const open = [];
    const client = (o) => {
        const p = P.client(ngx.port, o);
        open.push(p);
        return p;
    };
    after(() => open.forEach((p) => p.disconnect()));

    it('connects with a numeric socket id, unique per connection', async () => {
        const ids = new Set();
        for (let i = 0; i < 6; i++) {
            const id = await P.connected(client());
            assert.match(id, /^\d+\.\d+$/);
            ids.add(id);
        }
        assert.equal(ids.size, 6);
        const r = await P.raw(ngx.port);
        const f = await r.frame();
        assert.equal(f.event, 'pusher:connection_established');
        assert.match(f.json.socket_id, /^\d+\.\d+$/);
        assert.equal(f.json.activity_timeout, 120);
        await r.sendJson({ event: 'pusher:ping', data: {} });
        assert.deepEqual(await r.frame(), { event: 'pusher:pong', data: '{}', json: {} });
        await r.close();
    });

    it('public channel: a POST to a publisher location reaches pusher-js', async () => {
        const p = client();
        await P.connected(p);
        const name = uniq('public-');
        const { ch, data } = await P.subscribe(p, name);
        assert.deepEqual(data, {});
        const named = P.events(ch, 'order-shipped');
        const plain = P.events(ch, 'message');
        let r = await C.publish({ port: ngx.port, path: `/pub/${name}` }, '{"id":7}',
            { 'X-EventSource-Event': 'order-shipped' });
        assert.equal(r.status, 201);
        assert.deepEqual((await named.next()).data, { id: 7 });
        r = await C.publish({ port: ngx.port, path: `/pub/${name}` }, 'plain text');
        assert.equal(r.status, 201);
        assert.equal((await plain.next()).data, 'plain text');
    });

    it('private channel: signed subscriptions succeed, a bad signature is refused', async () => {
        const p = client();
        await P.connected(p);
        const name = uniq('private-');
        const { data } = await P.subscribe(p, name);
        assert.deepEqual(data, {});

        const r = await P.raw(ngx.port);
        const est = await r.frame();
        await r.sendJson({ event: 'pusher:subscribe',
            data: { channel: name, auth: `${P.APP.key}:${'0'.repeat(64)}` } });
        const f = await r.frame();
        assert.equal(f.event, 'pusher:subscription_error');
        assert.equal(f.channel, name);
        assert.equal(f.json.type, 'AuthError');
        assert.equal(f.json.status, 401);
        assert.match(f.json.error, /Invalid signature/);
        // signed for another socket: refused too
        const other = P.sdk(ngx.port).authorizeChannel('1.2', name);
        await r.sendJson({ event: 'pusher:subscribe', data: { channel: name, auth: other.auth } });
        assert.equal((await r.frame()).json.type, 'AuthError');
        // the connection is still fine: a good signature works
        const good = P.sdk(ngx.port).authorizeChannel(est.json.socket_id, name);
        await r.sendJson({ event: 'pusher:subscribe', data: { channel: name, auth: good.auth } });
        const ok = await r.frame();
        assert.equal(ok.event, 'pusher_internal:subscription_succeeded');
        assert.equal(ok.channel, name);
        await r.close();
    });

    it('presence: member list, member_added/removed once per user, never to the cause',
        async () => {
            const name = uniq('presence-');
            const a = client({ user: 'alice' });
            const { ch: ca, data: la } = await P.subscribe(a, name);
            assert.equal(la.count, 1);
            assert.deepEqual(la.members, { alice: { name: 'alice' } });
            assert.equal(la.me.id, 'alice');
            const added = P.events(ca, 'pusher:member_added');
            const removed = P.events(ca, 'pusher:member_removed');

            // bob on several connections (2 workers): one member_added
            const bobs = [client({ user: 'bob' }), client({ user: 'bob' }), client({ user: 'bob' })];
            for (const b of bobs) {
                const { data } = await P.subscribe(b, name);
                assert.equal(data.count, 2);
                assert.deepEqual(data.members.alice, { name: 'alice' });
                assert.deepEqual(data.members.bob, { name: 'bob' });
            }
            const m = await added.next();
            assert.equal(m.data.id, 'bob');
            assert.deepEqual(m.data.info, { name: 'bob' });
            // the last bob leaving is one member_removed (after the leave delay)
            bobs[0].disconnect();
            bobs[1].unsubscribe(name);
            await sleep(1500);
            assert.equal(pending(removed), 0);
            bobs[2].disconnect();
            assert.equal((await removed.next()).data.id, 'bob');
            assert.equal(pending(added), 0, 'no second member_added');
            // alice never got events about herself
            assert.equal(a.channel(name).members.count, 1);
        });

    it('presence: the app\'s member limit refuses a new member, not an old one', async () => {
        const name = uniq('presence-');
        for (const u of ['m1', 'm2', 'm3']) {
            await P.subscribe(client({ user: u }), name);
        }
        // a known member on another connection is fine
        const again = await P.subscribe(client({ user: 'm2' }), name);
        assert.equal(again.data.count, 3);
        await assert.rejects(P.subscribe(client({ user: 'm4' }), name), (e) => {
            assert.equal(e.info.type, 'LimitReached');
            assert.equal(e.info.status, 403);
            return true;
        });
    });

    it('presence: channel_data over the limits is refused with a reason', async () => {
        const name = uniq('presence-');
        await assert.rejects(P.subscribe(client({ user: 'x'.repeat(129) }), name),
            (e) => e.info.type === 'LimitReached' && /128/.test(e.info.error));
        await assert.rejects(P.subscribe(client({ user: 'big', info: { s: 'x'.repeat(1100) } }),
            name), (e) => e.info.type === 'LimitReached' && /1 KB/.test(e.info.error));
        // a member within the limits subscribes fine
        const { data } = await P.subscribe(client({ user: 'ok' }), name);
        assert.deepEqual(Object.keys(data.members), ['ok']);
    });

    it('client events: to the others on private and presence channels, with user_id',
        async () => {
            const priv = uniq('private-');
            const pres = uniq('presence-');
            const a = client({ user: 'alice' });
            const b = client({ user: 'bob' });
            const { ch: apriv } = await P.subscribe(a, priv);
            const { ch: apres } = await P.subscribe(a, pres);
            const { ch: bpriv } = await P.subscribe(b, priv);
            const { ch: bpres } = await P.subscribe(b, pres);
            const self = P.events(apriv, 'client-typing');
            const got = P.events(bpriv, 'client-typing');
            const gotp = P.events(bpres, 'client-typing');
            assert.equal(apriv.trigger('client-typing', { text: 'hi' }), true);
            assert.deepEqual((await got.next()).data, { text: 'hi' });
            assert.equal(apres.trigger('client-typing', { n: 1 }), true);
            const e = await gotp.next();
            assert.deepEqual(e.data, { n: 1 });
            assert.equal(e.meta.user_id, 'alice');
            await sleep(300);
            assert.equal(pending(self), 0, 'the sender does not get its own event');

            // an nchan-protocol subscriber of the channel gets it as it was sent
            const es = C.eventSource(`http://127.0.0.1:${ngx.port}/sub/${priv}`,
                { events: ['client-typing'] });
            await sleep(300);
            apriv.trigger('client-typing', { text: 'to nchan' });
            // (the channel's history first: client events are stored too)
            let m;
            do {
                m = await es.next();
                assert.equal(m.type, 'client-typing');
            } while (JSON.parse(m.data).text !== 'to nchan');
            assert.deepEqual(JSON.parse(m.data), { text: 'to nchan' });
            es.close();
        });

    it('client events: refused on public channels, unsubscribed channels, over 10 KB and '
        + 'over the rate (4301)', async () => {
        const r = await P.raw(ngx.port);
        const est = await r.frame();
        const pub = uniq('public-');
        const priv = uniq('private-');
        await r.sendJson({ event: 'pusher:subscribe', data: { channel: pub } });
        assert.equal((await r.frame()).event, 'pusher_internal:subscription_succeeded');
        await r.sendJson({ event: 'client-x', channel: pub, data: {} });
        let f = await r.frame();
        assert.equal(f.event, 'pusher:error');
        assert.match(f.json.message, /only supported on private and presence channels/);
        await r.sendJson({ event: 'client-x', channel: priv, data: {} });
        f = await r.frame();
        assert.match(f.json.message, /not subscribed/);
        const auth = P.sdk(ngx.port).authorizeChannel(est.json.socket_id, priv).auth;
        await r.sendJson({ event: 'pusher:subscribe', data: { channel: priv, auth } });
        assert.equal((await r.frame()).event, 'pusher_internal:subscription_succeeded');
        await r.sendJson({ event: 'client-x', channel: priv, data: 'x'.repeat(10241) });
        f = await r.frame();
        assert.match(f.json.message, /larger than 10 KB/);
        let limited = null;
        for (let i = 0; i < 12; i++) {
            await r.sendJson({ event: 'client-x', channel: priv, data: { i } });
        }
        while (limited === null) {
            f = await r.frame();
            if (f.event === 'pusher:error' && f.json.code === 4301) {
                limited = f;
            }
        }
        assert.match(limited.json.message, /rate limit/);
        // still connected
        await r.sendJson({ event: 'pusher:ping' });
        for (;;) {
            f = await r.frame();
            if (f.event === 'pusher:pong') {
                break;
            }
        }
        await r.close();
    });

    it('malformed frames get pusher:error with the reason; the connection stays', async () => {
        const r = await P.raw(ngx.port);
        await r.frame();
        for (const [bad, re] of [['{not json', /Invalid JSON/], ['[1,2]', /not a JSON object/],
            ['{"data":{}}', /no event name/], ['{"event":"x","channel":7}', /channel/],
            ['{"event":"pusher:nope"}', /Unsupported event/]]) {
            await r.send(bad);
            const f = await r.frame();
            assert.equal(f.event, 'pusher:error', bad);
            assert.match(f.json.message, re);
        }
        await r.send(Buffer.from([1, 2, 3]), { binary: true });
        assert.match((await r.frame()).json.message, /Binary/);
        await r.sendJson({ event: 'pusher:subscribe', data: { channel: 'bad channel!' } });
        const f = await r.frame();
        assert.equal(f.event, 'pusher:subscription_error');
        assert.equal(f.json.type, 'InvalidChannel');
        await r.sendJson({ event: 'pusher:ping', data: {} });
        assert.equal((await r.frame()).event, 'pusher:pong');
        await r.close();
    });

    it('one connection subscribes to at most 1,000 channels', async () => {
        const r = await P.raw(ngx.port);
        await r.frame();
        const base = uniq('public-many');
        for (let i = 0; i <= 1000; i++) {
            await r.sendJson({ event: 'pusher:subscribe', data: { channel: `${base}-${i}` } });
        }
        let ok = 0;
        let refused = null;
        while (ok + (refused ? 1 : 0) < 1001) {
            const f = await r.frame();
            if (f.event === 'pusher_internal:subscription_succeeded') {
                ok++;
            } else {
                assert.equal(f.event, 'pusher:subscription_error');
                refused = f;
            }
        }
        assert.equal(ok, 1000);
        assert.equal(refused.channel, `${base}-1000`);
        assert.equal(refused.json.type, 'LimitReached');
        // unsubscribing makes room
        await r.sendJson({ event: 'pusher:unsubscribe', data: { channel: `${base}-0` } });
        await r.sendJson({ event: 'pusher:subscribe', data: { channel: `${base}-1000` } });
        assert.equal((await r.frame()).event, 'pusher_internal:subscription_succeeded');
        await r.close();
    });

    it('unknown app key: pusher:error 4001 and close 4001; protocol 6: 4007', async () => {
        let r = await P.raw(ngx.port, { key: 'nope' });
        let f = await r.frame();
        assert.equal(f.event, 'pusher:error');
        assert.equal(f.json.code, 4001);
        assert.equal((await r.closed).code, 4001);
        r = await P.raw(ngx.port, { query: 'protocol=6' });
        f = await r.frame();
        assert.equal(f.json.code, 4007);
        assert.equal((await r.closed).code, 4007);
        // pusher-js does not reconnect after 4001
        const p = P.client(ngx.port, { app: { ...P.APP, key: 'wrong-key' } });
        await P.withTimeout(new Promise((res) => p.connection.bind('state_change', (st) => {
            if (st.current === 'disconnected' || st.current === 'failed') {
                res();
            }
        })), 5000, 'refused');
        assert.ok(p.errors.some((e) => e.error && e.error.data && e.error.data.code === 4001),
            JSON.stringify(p.errors));
        await sleep(1500);
        assert.notEqual(p.connection.state, 'connected', 'no reconnection after 4001');
        p.disconnect();
    });

    it('after activity_timeout of silence the server pings; a pong keeps it open', async () => {
        const r = await P.raw(ngx.port, { path: '/quiet/app/' });
        const est = await r.frame();
        assert.equal(est.json.activity_timeout, 1);
        const f = await r.frame(5000);
        assert.equal(f.event, 'pusher:ping');
        await r.sendJson({ event: 'pusher:pong', data: {} });
        assert.equal((await r.frame(5000)).event, 'pusher:ping');
        assert.equal(r.closeInfo, null);
        await r.close();
    });

    it('answers WebSocket pings', async () => {
        const r = await P.raw(ngx.port);
        await r.frame();
        const pong = await r.ping('abc');
        assert.equal(pong.toString(), 'abc');
        await r.close();
    });

    it('sign-in: signin_success, #server-to-user-<id> events, terminate closes with 4009',
        async () => {
            const user = uniq('user');
            const p = client({ user, signin: { id: user, name: 'Ann' } });
            await P.connected(p);
            const signed = new Promise((res) => p.user.bind('pusher:signin_success', res));
            p.signin();
            await p.user.signinDone;
            const got = new C.MessageQueue('user event');
            p.user.bind('notice', (d) => got.push(d));
            await P.withTimeout(new Promise((res) => {
                const t = setInterval(() => {
                    if (p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed) {
                        clearInterval(t);
                        res();
                    }
                }, 20);
            }), 5000, 'server-to-user subscribed');
            void signed;
            let r = await C.publish({ port: ngx.port,
                path: `/pub/${encodeURIComponent(`#server-to-user-${user}`)}` }, '{"n":1}',
            { 'X-EventSource-Event': 'notice' });
            assert.equal(r.status, 201);
            assert.deepEqual(await got.next(), { n: 1 });

            // terminate (the API's message, contract 4)
            const closed = new Promise((res) => p.connection.bind('state_change', (s) => {
                if (s.current !== 'connected') {
                    res(s.current);
                }
            }));
            r = await C.publish({ port: ngx.port,
                path: `/pub/${encodeURIComponent(`#server-to-user-${user}`)}` }, '',
            { 'X-EventSource-Event': 'pusher_internal:terminate' });
            assert.equal(r.status, 201);
            await P.withTimeout(closed, 5000, 'terminated');
        });

    it('sign-in with a bad signature is an error 4009; server-to-user needs the sign-in',
        async () => {
            const r = await P.raw(ngx.port);
            await r.frame();
            await r.sendJson({ event: 'pusher:signin',
                data: { auth: `${P.APP.key}:${'1'.repeat(64)}`, user_data: '{"id":"x"}' } });
            const f = await r.frame();
            assert.equal(f.event, 'pusher:error');
            assert.equal(f.json.code, 4009);
            await r.sendJson({ event: 'pusher:subscribe', data: { channel: '#server-to-user-x' } });
            const e = await r.frame();
            assert.equal(e.event, 'pusher:subscription_error');
            assert.equal(e.json.type, 'AuthError');
            await r.close();
        });

    it('events from an API socket_id or a client skip that socket (origin)', async () => {
        const name = uniq('private-');
        const a = client();
        const b = client();
        const { ch: ca } = await P.subscribe(a, name);
        const { ch: cb } = await P.subscribe(b, name);
        const qa = P.events(ca, 'client-a');
        const qb = P.events(cb, 'client-a');
        ca.trigger('client-a', 1);
        cb.trigger('client-a', 2);
        assert.equal((await qb.next()).data, 1);
        assert.equal((await qa.next()).data, 2);
        await sleep(300);
        assert.equal(pending(qa) + pending(qb), 0);
    });
});
