'use strict';
// Presence (SPEC 7, docs/presence.md) with worker_processes 4: members,
// paging, stats, users, join/leave events on SSE / WebSocket / long-poll,
// the leave delay, reload, SIGKILL of a worker, the presence hook, scale.

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, it, before, after } = require('node:test');
const { useNginx } = require('./lib/nginx');
const C = require('./lib/clients');
const u = require('./lib/backend');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let seq = 0;
const chan = (p = 'c') => `${p}${Date.now() % 100000}x${++seq}`;

const conf = `
server {
    listen 127.0.0.1:%%PORT%%;

    location = /hook/auth { proxy_pass http://127.0.0.1:%%BE%%; }
    location = /hook/presence { proxy_pass http://127.0.0.1:%%BE%%; }

    # identity from pubsub_presence_id
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_events on;
        pubsub_presence_leave_delay 1s;
        pubsub_presence_request /hook/presence;
    }
    # identity from the authorize hook (X-Presence-Id / X-Presence-Info)
    location ~ ^/asub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_authorize_request /hook/auth;
        pubsub_presence on;
        pubsub_presence_id fallback;
        pubsub_presence_leave_delay 1s;
        pubsub_presence_request /hook/presence;
    }
    # long delay, for reload and SIGKILL
    location ~ ^/lsub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_leave_delay 3s;
        pubsub_presence_request /hook/presence;
    }
    # no delay, no events, no hook: scale
    location ~ ^/ssub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_leave_delay 0;
    }
    location ~ ^/presence/(\\w+)$ { pubsub_presence_api; pubsub_channel_id $1; }
    location = /presence { pubsub_presence_api; }
    location ~ ^/pub/(\\w+)$ { pubsub_publisher; pubsub_channel_id $1; }
}`;

const opts = { conf, workers: 4, vars: {}, allow: [/exited on signal 9/] };
let be;

before(async () => {
    be = await u.startBackend({
        '/hook/auth': (c) => {
            const q = c.query;
            const h = {};
            if (q.get('user')) {
                h['X-Presence-Id'] = q.get('user');
                h['X-Presence-Info'] = JSON.stringify({ name: q.get('user').toUpperCase() });
            }
            return { status: 200, headers: h };
        },
    });
    opts.vars.BE = String(be.port);
});

after(async () => {
    if (be) {
        await be.close();
    }
});

const ngx = useNginx(opts);

function hookEvents(channel, id) {
    return be.of('/hook/presence').map((c) => JSON.parse(c.body))
        .filter((e) => (channel === undefined || e.channel === channel || !e.channel)
            && (id === undefined || (e.member || e.user).id === id));
}

async function getJson(path) {
    const r = await C.httpRequest({ port: ngx.port, path });
    return { status: r.status, headers: r.headers, json: r.text ? JSON.parse(r.text) : null };
}

async function sse(path) {
    const s = C.sseStream({ port: ngx.port, path });
    assert.equal((await s.response).status, 200);
    return s;
}

// waits until the channel shows `n` members
async function members(channel, n, ms = 5000) {
    let last;
    await u.waitFor(async () => {
        last = (await getJson(`/presence/${channel}?stats`)).json;
        return last.members === n;
    }, ms, `${n} members in ${channel} (last: ${JSON.stringify(last)})`);
    return last;
}

describe('presence', () => {
    it('lists members, counts connections across workers, pages, stats', async () => {
        const ch = chan();
        const conns = [];
        // alice on 4 connections (several workers), bob on 1, 2 anonymous
        for (let i = 0; i < 4; i++) conns.push(await sse(`/sub/${ch}?user=alice`));
        conns.push(await sse(`/sub/${ch}?user=bob`));
        conns.push(await sse(`/sub/${ch}`));
        conns.push(await sse(`/sub/${ch}`));
        const st = await members(ch, 2);
        assert.deepEqual(st, { channel: ch, members: 2, connections: 7, anonymous: 2 });

        const all = (await getJson(`/presence/${ch}`)).json;
        assert.equal(all.members.length, 2);
        assert.equal(all.next_cursor, null);
        const alice = all.members.find((m) => m.id === 'alice');
        assert.equal(alice.connections, 4);
        assert.equal(alice.info, null);
        assert.equal(alice.leaving, false);
        assert.ok(Math.abs(alice.joined_at - Date.now() / 1000) < 30);

        const p1 = (await getJson(`/presence/${ch}?limit=1`)).json;
        assert.equal(p1.members.length, 1);
        assert.equal(p1.members[0].id, 'alice');
        assert.ok(p1.next_cursor);
        const p2 = (await getJson(`/presence/${ch}?limit=1&cursor=${encodeURIComponent(p1.next_cursor)}`)).json;
        assert.deepEqual(p2.members.map((m) => m.id), ['bob']);
        assert.equal(p2.next_cursor, null);

        const user = (await getJson('/presence?user=alice')).json;
        assert.equal(user.online, true);
        assert.deepEqual(user.channels, [ch]);
        assert.equal((await getJson('/presence?user=nobody')).json.online, false);

        // channel info carries the presence count
        const info = await C.httpRequest({ port: ngx.port, path: `/pub/${ch}`,
            headers: { Accept: 'application/json' } });
        // the channel exists only once something was published; publish first
        if (info.status === 200) {
            assert.equal(JSON.parse(info.text).presence, 2);
        }
        await C.publish({ port: ngx.port, path: `/pub/${ch}` }, 'x');
        const info2 = await C.httpRequest({ port: ngx.port, path: `/pub/${ch}`,
            headers: { Accept: 'application/json' } });
        assert.equal(JSON.parse(info2.text).presence, 2);

        for (const c of conns) c.close();
        await members(ch, 0, 5000).catch(() => {});
        await u.waitFor(async () => !(await getJson(`/presence/${ch}?stats`)).json.connections,
            5000, 'no connections');
    });

    it('answers bad requests with clear errors', async () => {
        const ch = chan();
        for (const [q, re] of [['?limit=0', /limit/], ['?limit=x', /limit/], ['?limit=1001', /limit/],
            ['?cursor=zzz', /cursor/], ['?cursor=1.00000000000000zz', /cursor/]]) {
            const r = await getJson(`/presence/${ch}${q}`);
            assert.equal(r.status, 400, q);
            assert.match(r.json.error, re);
        }
        assert.equal((await getJson('/presence?user=')).status, 400);
        const r = await C.httpRequest({ port: ngx.port, path: `/presence/${ch}`, method: 'POST', body: 'x' });
        assert.equal(r.status, 405);
        // an unknown channel is empty, not an error
        assert.deepEqual((await getJson(`/presence/${ch}?stats`)).json,
            { channel: ch, members: 0, connections: 0, anonymous: 0 });
    });

    it('takes identity and info from the authorize hook first', async () => {
        const ch = chan();
        const a = await sse(`/asub/${ch}?user=carol`);
        const b = await sse(`/asub/${ch}`);   // hook gives no id: pubsub_presence_id
        await members(ch, 2);
        const list = (await getJson(`/presence/${ch}`)).json.members;
        const carol = list.find((m) => m.id === 'carol');
        assert.deepEqual(carol.info, { name: 'CAROL' });
        assert.ok(list.find((m) => m.id === 'fallback'));
        a.close();
        b.close();
        await members(ch, 0);
        // the hook posts are asynchronous: the list can empty before they land
        const until = Date.now() + 5000;
        while (hookEvents(ch, 'carol').length < 4 && Date.now() < until) {
            await new Promise((res) => setTimeout(res, 50));
        }
        const ev = hookEvents(ch, 'carol').map((e) => e.event);
        assert.deepEqual(ev, ['online', 'join', 'leave', 'offline']);
        const join = hookEvents(ch, 'carol').find((e) => e.event === 'join');
        assert.deepEqual(join.member, { id: 'carol', info: { name: 'CAROL' } });
        assert.equal(typeof join.time, 'number');
        const call = be.of('/hook/presence').find((c) => JSON.parse(c.body).event === 'join'
            && JSON.parse(c.body).channel === ch);
        assert.equal(call.headers['x-presence-id'], 'carol');
        assert.equal(call.headers['x-channel-id'], ch);
        assert.match(call.headers['content-type'], /application\/json/);
    });

    it('leave delay: a reconnect within it makes no leave/join; leave comes once after it', async () => {
        const ch = chan();
        const a = await sse(`/sub/${ch}?user=dave`);
        await members(ch, 1);
        a.close();
        await sleep(300);
        let list = (await getJson(`/presence/${ch}`)).json.members;
        assert.equal(list.length, 1, 'still a member during the delay');
        assert.equal(list[0].leaving, true);
        const b = await sse(`/sub/${ch}?user=dave`);   // page reload
        await sleep(1500);
        assert.deepEqual(hookEvents(ch, 'dave').map((e) => e.event), ['online', 'join']);
        list = (await getJson(`/presence/${ch}`)).json.members;
        assert.equal(list[0].leaving, false);
        b.close();
        await members(ch, 0, 4000);
        await sleep(500);
        assert.deepEqual(hookEvents(ch, 'dave').map((e) => e.event),
            ['online', 'join', 'leave', 'offline']);
        assert.equal((await getJson('/presence?user=dave')).json.online, false);
    });

    it('online/offline span channels', async () => {
        const c1 = chan();
        const c2 = chan();
        const a = await sse(`/sub/${c1}?user=erin`);
        const b = await sse(`/sub/${c2}?user=erin`);
        await members(c2, 1);
        const st = (await getJson('/presence?user=erin')).json;
        assert.deepEqual(st.channels.sort(), [c1, c2].sort());
        a.close();
        await members(c1, 0);
        assert.equal((await getJson('/presence?user=erin')).json.online, true);
        b.close();
        await members(c2, 0);
        await sleep(300);
        const evs = hookEvents(undefined, 'erin').map((e) => e.event);
        assert.deepEqual(evs.filter((e) => e === 'online'), ['online']);
        assert.deepEqual(evs.filter((e) => e === 'offline'), ['offline']);
        assert.equal(evs[evs.length - 1], 'offline');
    });

    it('a percent-encoded pubsub_presence_id ($arg_user) is decoded, as ?user= is', async () => {
        const ch = chan('enc');
        const s = await sse(`/sub/${ch}?user=a%20b%2Fc`);
        await members(ch, 1);
        const list = (await getJson(`/presence/${ch}`)).json;
        assert.deepEqual(list.members.map((m) => m.id), ['a b/c']);
        const user = (await getJson('/presence?user=a%20b%2Fc')).json;
        assert.equal(user.user, 'a b/c');
        assert.equal(user.online, true);
        assert.deepEqual(user.channels, [ch]);
        // a literal % reaches the id as %25
        const p = await sse(`/sub/${ch}?user=100%25`);
        await members(ch, 2);
        const ids = (await getJson(`/presence/${ch}`)).json.members.map((m) => m.id).sort();
        assert.deepEqual(ids, ['100%', 'a b/c']);
        assert.equal((await getJson('/presence?user=100%25')).json.online, true);
        s.close();
        p.close();
        await members(ch, 0);
    });

    it('answers JSON errors without a channel or user, and for a bad channel id', async () => {
        for (const path of ['/presence', '/presence?limit=5']) {
            const r = await getJson(path);
            assert.equal(r.status, 400, path);
            assert.match(r.headers['content-type'], /^application\/json/, path);
            assert.deepEqual(r.json, { error: 'No channel id provided.' }, path);
        }
    });

    it('join/leave reach SSE, ws+meta.nchan and long-poll subscribers on every worker', async () => {
        const ch = chan();
        // watchers on several connections (so on several workers)
        const watchers = [];
        for (let i = 0; i < 4; i++) watchers.push(await sse(`/sub/${ch}`));
        const ws = await C.wsConnect(ngx.wsUrl(`/sub/${ch}`), { protocol: 'ws+meta.nchan' });
        const lp = new C.HttpStream({ port: ngx.port, path: `/sub/${ch}` });
        await sleep(300);
        const frank = await sse(`/sub/${ch}?user=frank`);
        for (const w of watchers) {
            let ev;
            do {
                ev = await w.next(3000);
            } while (ev.event === 'pubsub.join' && JSON.parse(ev.data).member.id !== 'frank');
            assert.equal(ev.event, 'pubsub.join');
            assert.equal(ev.id, undefined, 'presence events carry no message id');
            assert.deepEqual(JSON.parse(ev.data),
                { event: 'join', channel: ch, member: { id: 'frank', info: null } });
        }
        const m = await ws.next(3000);
        assert.equal(m.meta.contentType, 'application/vnd.pubsub+json');
        assert.deepEqual(JSON.parse(m.meta.text).member.id, 'frank');
        // the channel has no message: not an empty id line
        assert.equal(m.meta.id, '0:0');
        assert.match(m.data.toString(), /^id: 0:0\n/);
        const res = await lp.response;
        assert.equal(res.status, 200);
        assert.equal(res.headers['x-pubsub-event'], 'join');
        await lp.done;
        assert.equal(JSON.parse(lp.body.toString()).event, 'join');

        frank.close();
        for (const w of watchers) {
            const ev = await w.next(4000);
            assert.equal(ev.event, 'pubsub.leave');
            assert.equal(JSON.parse(ev.data).member.id, 'frank');
        }
        const m2 = await ws.next(4000);
        assert.equal(JSON.parse(m2.meta.text).event, 'leave');

        for (const w of watchers) w.close();
        ws.close();
    });

    it('a long-poll member stays present while it keeps polling', async () => {
        const ch = chan();
        const lp = C.longPoll({ port: ngx.port, path: `/sub/${ch}?user=gina`, pollTimeout: 5000 });
        await members(ch, 1);
        // each message ends a poll and the next one starts
        for (let i = 0; i < 3; i++) {
            await C.publish({ port: ngx.port, path: `/pub/${ch}` }, `m${i}`);
            await sleep(150);
        }
        await sleep(1300);
        assert.equal((await getJson(`/presence/${ch}?stats`)).json.members, 1);
        assert.deepEqual(hookEvents(ch, 'gina').map((e) => e.event), ['online', 'join']);
        lp.stop();
        await members(ch, 0, 5000);
        await sleep(300);
        assert.deepEqual(hookEvents(ch, 'gina').map((e) => e.event),
            ['online', 'join', 'leave', 'offline']);
    });

    it('nginx -s reload: members who reconnect never leave', async () => {
        const ch = chan();
        const users = ['h1', 'h2', 'h3', 'h4'];
        const conns = [];
        for (const id of users) conns.push(await sse(`/lsub/${ch}?user=${id}`));
        await members(ch, 4);
        await ngx.reload();
        // the old workers closed them; the clients come back
        for (const c of conns) await c.done;
        const again = [];
        for (const id of users) again.push(await sse(`/lsub/${ch}?user=${id}`));
        await sleep(3500);
        const st = await members(ch, 4);
        assert.equal(st.connections, 4);
        for (const id of users) {
            assert.deepEqual(hookEvents(ch, id).map((e) => e.event), ['online', 'join'], id);
        }
        for (const c of again) c.close();
        await members(ch, 0, 6000);
        await sleep(300);
        for (const id of users) {
            assert.deepEqual(hookEvents(ch, id).map((e) => e.event),
                ['online', 'join', 'leave', 'offline'], id);
        }
    });

    it('SIGKILL of a worker: its members leave once', async () => {
        const ch = chan();
        const n = 16;
        const conns = [];
        for (let i = 0; i < n; i++) conns.push(await sse(`/lsub/${ch}?user=k${i}`));
        await members(ch, n);
        const pids = await ngx.workerPids();
        process.kill(pids[0], 'SIGKILL');
        await sleep(500);
        const dead = [];
        for (let i = 0; i < n; i++) {
            if (conns[i].closed || (await Promise.race([conns[i].done.then(() => true), sleep(20)]))) {
                dead.push(`k${i}`);
            }
        }
        await sleep(4000);
        const st = (await getJson(`/presence/${ch}?stats`)).json;
        assert.equal(st.members, n - dead.length, `dead: ${dead}`);
        for (let i = 0; i < n; i++) {
            const id = `k${i}`;
            const ev = hookEvents(ch, id).map((e) => e.event);
            if (dead.includes(id)) {
                assert.deepEqual(ev, ['online', 'join', 'leave', 'offline'], id);
            } else {
                assert.deepEqual(ev, ['online', 'join'], id);
            }
        }
        for (const c of conns) c.close();
        await members(ch, 0, 6000);
        await sleep(300);
        for (let i = 0; i < n; i++) {
            assert.equal(hookEvents(ch, `k${i}`).filter((e) => e.event === 'leave').length, 1);
        }
    });

    it('scale: 1,000 members in one channel and 100 channels x 10 members', async () => {
        const sockets = [];
        const open = (path) => new Promise((resolve, reject) => {
            const s = net.connect(ngx.port, '127.0.0.1');
            s.setTimeout(20000, () => reject(new Error('connect timeout')));
            s.on('error', reject);
            s.once('data', (d) => {
                s.setTimeout(0);
                if (!/^HTTP\/1\.1 200/.test(d.toString())) reject(new Error(d.toString()));
                else resolve();
            });
            s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
            sockets.push(s);
        });
        const big = chan('big');
        const t0 = Date.now();
        for (let i = 0; i < 1000; i += 50) {
            await Promise.all(Array.from({ length: 50 }, (_, j) => open(`/ssub/${big}?user=u${i + j}`)));
        }
        const small = Array.from({ length: 100 }, () => chan('s'));
        for (const c of small) {
            await Promise.all(Array.from({ length: 10 }, (_, j) => open(`/ssub/${c}?user=m${j}`)));
        }
        const st = await members(big, 1000);
        assert.equal(st.connections, 1000);
        let cursor = null;
        let seen = 0;
        for (let p = 0; p < 20; p++) {
            const page = (await getJson(`/presence/${big}?limit=300${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).json;
            seen += page.members.length;
            cursor = page.next_cursor;
            if (!cursor) break;
        }
        assert.equal(seen, 1000);
        for (const c of small) assert.equal((await getJson(`/presence/${c}?stats`)).json.members, 10);
        assert.equal((await getJson('/presence?user=m3')).json.channels.length, 100);
        // stats stay cheap
        const s0 = Date.now();
        for (let i = 0; i < 50; i++) await getJson(`/presence/${big}?stats`);
        assert.ok(Date.now() - s0 < 5000);
        for (const s of sockets) s.destroy();
        await members(big, 0, 10000);
        await u.waitFor(async () => (await getJson('/presence?user=m3')).json.online === false,
            10000, 'm3 offline');
        assert.ok(Date.now() - t0 < 50000);
    });
});
