'use strict';
// Issue 8 (parts 3 and 6): presence in Redis mode is cluster-wide. Several
// nginx instances (2 workers each) share one redis-server: members, stats,
// ?user= and join/leave/online/offline are the same on every instance and
// happen once; the leave delay spans instances; members of an instance
// killed with SIGKILL leave within pubsub_presence_ttl. A last suite does
// the same on a Redis Cluster. Shapes as in docs/presence.md.

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, it, before, after } = require('node:test');
const { startNginxes } = require('./lib/nginx');
const { startRedis, startRedisCluster } = require('./lib/redis');
const { startBackend } = require('./lib/backend');
const { sleep } = require('./lib/util');
const C = require('./lib/clients');

const LEAVE_DELAY = 1000;   // pubsub_presence_leave_delay
const TTL = 4000;           // pubsub_presence_ttl
const PROPAGATION = 3000;   // deadline for what another instance did to show (~1 s wanted)
const SETTLE = 500;         // after a wait, for anything that would come twice

function confFor(upstreamLines) {
    return `
upstream redis_up {
${upstreamLines}
}
server {
    listen 127.0.0.1:%%PORT%%;

    location = /hook/presence { proxy_pass http://127.0.0.1:%%BE%%; }

    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_events on;
        pubsub_presence_leave_delay 1s;
        pubsub_presence_ttl 4s;
        pubsub_presence_request /hook/presence;
    }
    # many members: no leave delay, no events, no hook
    location ~ ^/ssub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_leave_delay 0;
        pubsub_presence_ttl 4s;
    }
    location ~ ^/presence/(\\w+)$ {
        pubsub_presence_api;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
    }
    location = /presence {
        pubsub_presence_api;
        pubsub_redis_pass redis_up;
    }
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_up;
    }
}`;
}

// A killed instance's master is gone with it; its workers' deaths are not
// logged by anyone. Nothing else may reach [alert].
const allow = [/exited on signal 9/];

let seq = 0;
const chan = (p = 'c') => `${p}${Date.now() % 100000}x${++seq}`;
const uid = (p) => `${p}${++seq}`;

const startAll = (n, opts) => startNginxes(n, { workers: 2, allow, ...opts });

function killInstance(ngx) {
    for (const pid of [ngx.pid, ...ngx.workerPids()]) {
        try {
            process.kill(pid, 'SIGKILL');
        } catch {
            // gone
        }
    }
}

async function getJson(ngx, path) {
    const r = await C.httpRequest({ port: ngx.port, path });
    let json = null;
    try {
        json = r.text ? JSON.parse(r.text) : null;
    } catch (e) {
        throw new Error(`${path}: not JSON (${r.status}): ${r.text}`);
    }
    return { status: r.status, headers: r.headers, json };
}

// Polls `check(last)` on the JSON of ngx's `path` until true; returns the last JSON.
async function pollJson(ngx, path, check, ms, what) {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
        last = (await getJson(ngx, path)).json;
        if (check(last)) {
            return last;
        }
        if (Date.now() > deadline) {
            throw new Error(`${what}: not within ${ms} ms on :${ngx.port} ${path}; last: ${
                JSON.stringify(last).slice(0, 600)}`);
        }
        await sleep(50);
    }
}

const idsOf = (list) => list.members.map((m) => m.id).sort();
const same = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

// Waits until ngx's API lists exactly `ids` in channel ch (all on one page).
function waitMembers(ngx, ch, ids, ms = PROPAGATION) {
    return pollJson(ngx, `/presence/${ch}?limit=1000`, (j) => j && j.members && same(idsOf(j), ids),
        ms, `members ${JSON.stringify([...ids].sort())} of ${ch}`);
}

function waitStats(ngx, ch, want, ms = PROPAGATION) {
    return pollJson(ngx, `/presence/${ch}?stats`, (j) => j && j.members === want.members
        && j.connections === want.connections && j.anonymous === want.anonymous,
    ms, `stats ${JSON.stringify(want)} of ${ch}`);
}

async function sse(ngx, path) {
    const s = C.sseStream({ port: ngx.port, path });
    assert.equal((await s.response).status, 200, path);
    return s;
}

// An anonymous subscriber with presence events on ngx, attached: a probe
// is published (via `pubNgx`) until it arrives.
async function attach(pubNgx, ch, got) {
    const deadline = Date.now() + 5000;
    for (;;) {
        await C.publish({ port: pubNgx.port, path: `/pub/${ch}` }, 'probe');
        const until = Date.now() + 300;
        while (Date.now() < until) {
            if (got()) {
                await sleep(100);
                return;
            }
            await sleep(20);
        }
        assert.ok(Date.now() < deadline, `a watcher of ${ch} never got a probe`);
    }
}

async function sseWatcher(ngx, ch, pubNgx = ngx) {
    const s = await sse(ngx, `/sub/${ch}`);
    await attach(pubNgx, ch, () => s.events.items.some((e) => e.data === 'probe'));
    return s;
}

async function wsWatcher(ngx, ch, pubNgx = ngx) {
    const ws = await C.wsConnect(ngx.wsUrl(`/sub/${ch}`), { protocol: 'ws+meta.nchan' });
    await attach(pubNgx, ch, () => ws.messages.items.some((m) => m.meta && m.meta.text === 'probe'));
    return ws;
}

// Presence events a watcher got: [{event, channel, member}], in order.
function eventsOf(w) {
    if (w.events) {
        return w.events.items.filter((e) => /^pubsub\.(join|leave)$/.test(e.event || ''))
            .map((e) => {
                assert.equal(e.id, undefined, 'presence events carry no message id');
                const j = JSON.parse(e.data);
                assert.equal(`pubsub.${j.event}`, e.event);
                return j;
            });
    }
    return w.messages.items.filter((m) => m.meta && m.meta.contentType === 'application/vnd.pubsub+json')
        .map((m) => JSON.parse(m.meta.text));
}

const countEv = (w, event, id) => eventsOf(w).filter((e) => e.event === event && e.member.id === id).length;

// Waits until watcher w has at least n `event`s of `id`.
async function waitEv(w, event, id, n = 1, ms = PROPAGATION) {
    const deadline = Date.now() + ms;
    while (countEv(w, event, id) < n) {
        if (Date.now() > deadline) {
            throw new Error(`watcher: ${n} ${event} of ${id} not within ${ms} ms; got ${
                JSON.stringify(eventsOf(w))}`);
        }
        await sleep(25);
    }
}

function closeAll(conns) {
    for (const c of conns) {
        c.close();
    }
}

// Raw SSE subscriber sockets, for many members at once.
function openRaw(ngx, path, sockets) {
    return new Promise((resolve, reject) => {
        const s = net.connect(ngx.port, '127.0.0.1');
        sockets.push(s);
        s.setTimeout(10000, () => reject(new Error(`${path}: no answer`)));
        s.on('error', reject);
        s.once('data', (d) => {
            s.setTimeout(0);
            if (/^HTTP\/1\.1 200/.test(d.toString())) {
                resolve();
            } else {
                reject(new Error(`${path}: ${d.toString().slice(0, 200)}`));
            }
        });
        s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    });
}

// Hook bodies: join/leave of (channel, id), online/offline of user id.
function hookBodies(be) {
    return be.of('/hook/presence').map((c) => JSON.parse(c.body));
}

function hookCount(be, event, id, ch) {
    return hookBodies(be).filter((e) => e.event === event && (e.member || e.user || {}).id === id
        && (event === 'online' || event === 'offline' || e.channel === ch)).length;
}

async function waitHook(be, event, id, ch, n = 1, ms = PROPAGATION) {
    const deadline = Date.now() + ms;
    while (hookCount(be, event, id, ch) < n) {
        if (Date.now() > deadline) {
            throw new Error(`hook: ${n} ${event} of ${id} in ${ch} not within ${ms} ms; got ${
                JSON.stringify(hookBodies(be).filter((e) => (e.member || e.user || {}).id === id))}`);
        }
        await sleep(25);
    }
}

function assertHook(be, ch, id, want) {
    const got = {};
    for (const ev of Object.keys(want)) {
        got[ev] = hookCount(be, ev, id, ch);
    }
    assert.deepEqual(got, want, `hook events of ${id} in ${ch}: ${
        JSON.stringify(hookBodies(be).filter((e) => (e.member || e.user || {}).id === id))}`);
}

describe('redis presence: one redis-server, three instances', () => {
    let redis;
    let be;
    let A;
    let B;
    let Cx;
    let all = [];
    const extra = [];   // instances started by a test (the SIGKILL one)

    before(async () => {
        redis = await startRedis();
        be = await startBackend({});
        [A, B, Cx] = await startAll(3, {
            conf: confFor('    pubsub_redis_server %%REDIS_URL%%;'),
            redis, vars: { BE: String(be.port) },
        });
        all = [A, B, Cx];
    });

    after(async () => {
        for (const n of [...all, ...extra]) {
            await n.stop().catch(() => {});
        }
        if (be) {
            await be.close();
        }
        if (redis) {
            await redis.stop();
        }
    });

    it('the first subscriber of a channel on a worker sees its own join, as in memory mode', async () => {
        for (const kind of ['sse', 'ws']) {
            const ch = chan(`own${kind}`);
            const me = uid(`me${kind}`);
            const w = kind === 'sse' ? await sse(A, `/sub/${ch}?user=${me}`)
                : await C.wsConnect(A.wsUrl(`/sub/${ch}?user=${me}`), { protocol: 'ws+meta.nchan' });
            await waitEv(w, 'join', me);
            // a second member on the same instance right after: seen too
            const other = uid(`other${kind}`);
            const o = await sse(A, `/sub/${ch}?user=${other}`);
            await waitEv(w, 'join', other);
            await sleep(SETTLE);
            assert.equal(countEv(w, 'join', me), 1, `${kind}: one own join`);
            assert.equal(countEv(w, 'join', other), 1, `${kind}: one join of the other`);
            closeAll([w, o]);
            await waitMembers(A, ch, [], TTL + PROPAGATION);
        }
    });

    it('joins and leaves made elsewhere while a worker\'s SUBSCRIBE is on its way reach its subscriber',
        async () => {
            // P: an instance whose Redis traffic goes through a proxy that
            // holds a connection's bytes from its SUBSCRIBE to `ch` on, until
            // released: the join and leave on B happen in that window.
            const ch = chan('win');
            let held = null;          // { sock, chunks } of the held connection
            let seen;
            const subscribed = new Promise((resolve) => { seen = resolve; });
            const proxy = net.createServer((client) => {
                const up = net.connect(redis.port, '127.0.0.1');
                client.on('error', () => up.destroy());
                up.on('error', () => client.destroy());
                up.pipe(client);
                client.on('data', (d) => {
                    if (held && held.sock === client) {
                        held.chunks.push(d);
                    } else if (!held && d.includes('\r\nSUBSCRIBE\r\n') && d.includes(`/${ch}}:ps`)) {
                        held = { sock: client, chunks: [d] };
                        seen();
                    } else {
                        up.write(d);
                    }
                });
                client.on('close', () => up.destroy());
                client.__up = up;
            });
            await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
            try {
                const P = (await startAll(1, {
                    conf: confFor(`    pubsub_redis_server redis://127.0.0.1:${proxy.address().port};`),
                    vars: { BE: String(be.port) },
                }))[0];
                extra.push(P);
                // connected to Redis: the API answers
                await pollJson(P, `/presence/${ch}?stats`, (j) => j && j.members === 0, 5000, 'P ready');
                const w = await sse(P, `/sub/${ch}`);
                await subscribed;
                const bob = uid('bob');
                const b = await sse(B, `/sub/${ch}?user=${bob}`);
                await waitMembers(A, ch, [bob]);
                const carol = uid('carol');
                const c = await sse(B, `/sub/${ch}?user=${carol}`);
                await waitMembers(A, ch, [bob, carol]);
                b.close();
                await waitMembers(A, ch, [carol], LEAVE_DELAY + PROPAGATION);
                assert.equal(eventsOf(w).length, 0, 'nothing before the SUBSCRIBE is confirmed');
                // release: the worker listens, then reads what it missed
                for (const d of held.chunks) {
                    held.sock.__up.write(d);
                }
                const sock = held.sock;
                held = { sock, chunks: [] };
                sock.removeAllListeners('data');
                sock.on('data', (d) => sock.__up.write(d));
                await waitEv(w, 'leave', bob);
                await waitEv(w, 'join', carol);
                await sleep(SETTLE);
                assert.deepEqual(eventsOf(w).map((e) => `${e.event} ${e.member.id}`),
                    [`join ${bob}`, `join ${carol}`, `leave ${bob}`]);
                // and live from then on, once
                c.close();
                await waitEv(w, 'leave', carol, 1, LEAVE_DELAY + PROPAGATION);
                await sleep(SETTLE);
                assert.equal(countEv(w, 'leave', carol), 1);
                assert.equal(countEv(w, 'join', carol), 1);
                w.close();
            } finally {
                proxy.close();
            }
        });

    it('members joined on one instance are listed and counted by every instance', async () => {
        const ch = chan('m');
        const alice = uid('alice');
        const bob = uid('bob');
        const a = await sse(A, `/sub/${ch}?user=${alice}`);
        const b = await C.wsConnect(B.wsUrl(`/sub/${ch}?user=${bob}`), { protocol: 'ws+meta.nchan' });
        const anon1 = await sse(A, `/sub/${ch}`);
        const anon2 = await sse(Cx, `/sub/${ch}`);
        // each instance knows its own members (true before cluster-wide presence too)
        await pollJson(A, `/presence/${ch}`, (j) => idsOf(j).includes(alice), PROPAGATION, 'alice on A');
        await pollJson(B, `/presence/${ch}`, (j) => idsOf(j).includes(bob), PROPAGATION, 'bob on B');

        // cluster-wide: every instance lists both and counts everything
        for (const n of all) {
            const list = await waitMembers(n, ch, [alice, bob]);
            assert.equal(list.channel, ch);
            assert.equal(list.next_cursor, null);
            for (const m of list.members) {
                assert.deepEqual(Object.keys(m).sort(),
                    ['connections', 'id', 'info', 'joined_at', 'leaving']);
                assert.equal(m.connections, 1);
                assert.equal(m.info, null);
                assert.equal(m.leaving, false);
                assert.ok(Math.abs(m.joined_at - Date.now() / 1000) < 30, `joined_at ${m.joined_at}`);
            }
            // join order: alice first
            assert.deepEqual(list.members.map((m) => m.id), [alice, bob]);
            const want = { members: 2, connections: 4, anonymous: 2 };
            const st = await waitStats(n, ch, want);
            assert.deepEqual(st, { channel: ch, ...want });
            assert.deepEqual((await getJson(n, `/presence/${ch}`)).json.stats, want);
        }

        a.close();
        await b.close();
        closeAll([anon1, anon2]);
        for (const n of all) {
            await waitStats(n, ch, { members: 0, connections: 0, anonymous: 0 },
                LEAVE_DELAY + PROPAGATION);
        }
    });

    it('anonymous connections count in stats on every instance, not as members', async () => {
        const ch = chan('an');
        const g = uid('g');
        const conns = [await sse(A, `/sub/${ch}`), await sse(A, `/sub/${ch}`), await sse(B, `/sub/${ch}`),
            await sse(Cx, `/sub/${ch}?user=${g}`)];
        // local view first (true before cluster-wide presence too)
        await pollJson(Cx, `/presence/${ch}`, (j) => idsOf(j).includes(g), PROPAGATION, `${g} on C`);
        for (const n of all) {
            await waitStats(n, ch, { members: 1, connections: 4, anonymous: 3 });
            const list = await waitMembers(n, ch, [g]);
            assert.deepEqual(list.stats, { members: 1, connections: 4, anonymous: 3 });
        }
        closeAll(conns);
        for (const n of all) {
            await waitStats(n, ch, { members: 0, connections: 0, anonymous: 0 },
                LEAVE_DELAY + PROPAGATION);
        }
    });

    it('one user on two instances is one member; it leaves once, after its last connection', async () => {
        const ch = chan('two');
        const carol = uid('carol');
        const w = await sseWatcher(Cx, ch, A);
        const onA = await sse(A, `/sub/${ch}?user=${carol}`);
        await waitEv(w, 'join', carol);
        const onB = await sse(B, `/sub/${ch}?user=${carol}`);
        for (const n of all) {
            const list = await pollJson(n, `/presence/${ch}`,
                (j) => j.members.length === 1 && j.members[0].connections === 2, PROPAGATION,
                `${carol} with 2 connections`);
            assert.equal(list.members[0].id, carol);
            assert.equal(list.members[0].leaving, false);
        }
        onA.close();
        // B still holds carol: no leave, even after the delay
        await sleep(LEAVE_DELAY + 1000);
        for (const n of all) {
            const list = (await getJson(n, `/presence/${ch}`)).json;
            assert.deepEqual(list.members.map((m) => [m.id, m.connections, m.leaving]),
                [[carol, 1, false]], `:${n.port}`);
        }
        assert.equal(countEv(w, 'join', carol), 1, 'one join');
        assert.equal(countEv(w, 'leave', carol), 0, 'no leave while B holds carol');
        assertHook(be, ch, carol, { online: 1, join: 1, leave: 0, offline: 0 });

        onB.close();
        await waitEv(w, 'leave', carol, 1, LEAVE_DELAY + PROPAGATION);
        for (const n of all) {
            await waitMembers(n, ch, []);
        }
        await waitHook(be, 'offline', carol, ch);
        await sleep(SETTLE);
        assert.equal(countEv(w, 'join', carol), 1);
        assert.equal(countEv(w, 'leave', carol), 1);
        assertHook(be, ch, carol, { online: 1, join: 1, leave: 1, offline: 1 });
        w.close();
    });

    it('leave delay spans instances: leaving A and coming back on B makes no leave, no second join',
        async () => {
            const ch = chan('ld');
            const dave = uid('dave');
            const wA = await sseWatcher(A, ch);
            const wB = await sseWatcher(B, ch, A);
            const wC = await wsWatcher(Cx, ch, A);
            const onA = await sse(A, `/sub/${ch}?user=${dave}`);
            for (const w of [wA, wB, wC]) {
                await waitEv(w, 'join', dave);
            }
            onA.close();
            await sleep(300);
            // during the delay: still a member, leaving
            const during = (await getJson(A, `/presence/${ch}`)).json;
            assert.deepEqual(during.members.map((m) => [m.id, m.leaving]), [[dave, true]]);
            const onB = await sse(B, `/sub/${ch}?user=${dave}`);   // page reload, other instance
            await sleep(LEAVE_DELAY + 1000);
            for (const n of all) {
                const list = await waitMembers(n, ch, [dave]);
                assert.deepEqual(list.members.map((m) => [m.connections, m.leaving]), [[1, false]],
                    `:${n.port}`);
            }
            for (const [name, w] of [['A', wA], ['B', wB], ['C ws', wC]]) {
                assert.equal(countEv(w, 'join', dave), 1, `watcher on ${name}: one join`);
                assert.equal(countEv(w, 'leave', dave), 0, `watcher on ${name}: no leave`);
            }
            assertHook(be, ch, dave, { online: 1, join: 1, leave: 0, offline: 0 });

            onB.close();
            for (const w of [wA, wB, wC]) {
                await waitEv(w, 'leave', dave, 1, LEAVE_DELAY + PROPAGATION);
            }
            await waitHook(be, 'offline', dave, ch);
            await sleep(SETTLE);
            for (const w of [wA, wB, wC]) {
                assert.equal(countEv(w, 'join', dave), 1);
                assert.equal(countEv(w, 'leave', dave), 1);
            }
            assertHook(be, ch, dave, { online: 1, join: 1, leave: 1, offline: 1 });
            closeAll([wA, wB]);
            await wC.close();
        });

    it('join/leave of members on A reach watchers on B and C once; the hook gets each event once',
        async () => {
            const ch = chan('ev');
            const ids = [uid('e'), uid('e'), uid('e')];
            const wB = await sseWatcher(B, ch, A);
            const wsB = await wsWatcher(B, ch, A);
            const wC = await sseWatcher(Cx, ch, A);
            const wA = await sseWatcher(A, ch);
            const conns = [await sse(A, `/sub/${ch}?user=${ids[0]}`),
                await sse(A, `/sub/${ch}?user=${ids[1]}`),
                await sse(Cx, `/sub/${ch}?user=${ids[2]}`)];
            // the instance holding a member tells its own watchers
            await waitEv(wA, 'join', ids[0]);
            for (const w of [wB, wsB, wC]) {
                for (const id of ids) {
                    await waitEv(w, 'join', id);
                }
            }
            const join = eventsOf(wB).find((e) => e.event === 'join' && e.member.id === ids[0]);
            assert.deepEqual(join, { event: 'join', channel: ch, member: { id: ids[0], info: null } });
            const wsJoin = eventsOf(wsB).find((e) => e.event === 'join' && e.member.id === ids[0]);
            assert.deepEqual(wsJoin, join);

            closeAll(conns);
            for (const w of [wA, wB, wsB, wC]) {
                for (const id of ids) {
                    await waitEv(w, 'leave', id, 1, LEAVE_DELAY + PROPAGATION);
                }
            }
            const leave = eventsOf(wC).find((e) => e.event === 'leave' && e.member.id === ids[2]);
            assert.deepEqual(leave, { event: 'leave', channel: ch, member: { id: ids[2], info: null } });
            for (const id of ids) {
                await waitHook(be, 'offline', id, ch);
            }
            await sleep(SETTLE);
            for (const [name, w] of [['A', wA], ['B', wB], ['B ws', wsB], ['C', wC]]) {
                for (const id of ids) {
                    assert.equal(countEv(w, 'join', id), 1, `${name}: joins of ${id}`);
                    assert.equal(countEv(w, 'leave', id), 1, `${name}: leaves of ${id}`);
                }
            }
            for (const id of ids) {
                assertHook(be, ch, id, { online: 1, join: 1, leave: 1, offline: 1 });
                // requests may arrive out of order; their times may not
                const t = {};
                for (const e of hookBodies(be).filter((x) => (x.member || x.user).id === id)) {
                    assert.equal(typeof e.time, 'number');
                    t[e.event] = e.time;
                }
                assert.ok(t.online <= t.join && t.join <= t.leave && t.leave <= t.offline,
                    `${id}: ${JSON.stringify(t)}`);
            }
            const call = be.of('/hook/presence').find((c) => {
                const e = JSON.parse(c.body);
                return e.event === 'join' && e.member.id === ids[2];
            });
            assert.equal(call.headers['x-presence-id'], ids[2]);
            assert.equal(call.headers['x-channel-id'], ch);
            closeAll([wA, wB, wC]);
            await wsB.close();
        });

    it('?user= on any instance: online with its channels everywhere, offline after it left', async () => {
        const c1 = chan('u');
        const c2 = chan('u');
        const frank = uid('frank');
        const a = await sse(A, `/sub/${c1}?user=${frank}`);
        const b = await sse(B, `/sub/${c2}?user=${frank}`);
        const local = (await pollJson(A, `/presence?user=${frank}`, (j) => j.online, PROPAGATION,
            `${frank} online on A`));
        assert.ok(local.channels.includes(c1));
        for (const n of all) {
            const st = await pollJson(n, `/presence?user=${frank}`,
                (j) => j.online === true && same(j.channels, [c1, c2]), PROPAGATION,
                `${frank} online in both channels`);
            assert.equal(st.user, frank);
            assert.equal(typeof st.online_since, 'number');
            assert.ok(Math.abs(st.online_since - Date.now() / 1000) < 30);
        }
        // a channel the user key names but whose members do not include
        // the user (an instance died between the leave and the user's
        // update) is not reported
        await redis.command('HSET', `{user:${frank}}`, 'default/ghost', '1');
        for (const n of all) {
            const st = (await getJson(n, `/presence?user=${frank}`)).json;
            assert.ok(same(st.channels, [c1, c2]), JSON.stringify(st));
        }
        await redis.command('HDEL', `{user:${frank}}`, 'default/ghost');
        a.close();
        // still online through c2 on B
        for (const n of all) {
            await pollJson(n, `/presence?user=${frank}`,
                (j) => j.online === true && same(j.channels, [c2]), LEAVE_DELAY + PROPAGATION,
                `${frank} online in ${c2} only`);
        }
        b.close();
        for (const n of all) {
            const st = await pollJson(n, `/presence?user=${frank}`, (j) => j.online === false,
                LEAVE_DELAY + PROPAGATION, `${frank} offline`);
            assert.equal(st.user, frank);
        }
        await waitHook(be, 'offline', frank);
        await sleep(SETTLE);
        assertHook(be, undefined, frank, { online: 1, offline: 1 });
        assertHook(be, c1, frank, { join: 1, leave: 1 });
        assertHook(be, c2, frank, { join: 1, leave: 1 });
    });

    it('pages 250 members held by two instances, each once; bad cursor and limit=0 are 400', async () => {
        const ch = chan('pg');
        const sockets = [];
        const ids = Array.from({ length: 250 }, (_, i) => `p${String(i).padStart(3, '0')}`);
        try {
            for (let i = 0; i < ids.length; i += 25) {
                await Promise.all(ids.slice(i, i + 25).map((id, j) =>
                    openRaw(j % 2 ? B : A, `/ssub/${ch}?user=${id}`, sockets)));
            }
            for (const n of [A, B]) {
                await waitStats(n, ch, { members: 250, connections: 250, anonymous: 0 }, 5000);
                const seen = [];
                let cursor = null;
                let pages = 0;
                for (;;) {
                    const q = `?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
                    const r = await getJson(n, `/presence/${ch}${q}`);
                    assert.equal(r.status, 200, JSON.stringify(r.json));
                    pages++;
                    assert.ok(r.json.members.length <= 100);
                    seen.push(...r.json.members.map((m) => m.id));
                    cursor = r.json.next_cursor;
                    if (cursor === null) {
                        break;
                    }
                    assert.equal(typeof cursor, 'string');
                    assert.ok(pages < 10, 'the listing ends');
                }
                assert.equal(pages, 3, `:${n.port}: 100 + 100 + 50`);
                assert.equal(seen.length, 250, `:${n.port}: each member once`);
                assert.deepEqual([...new Set(seen)].sort(), ids);
            }
            for (const n of [A, B]) {
                for (const [q, re] of [['?cursor=zzz', /cursor/], ['?cursor=1.00000000000000zz', /cursor/],
                    ['?limit=0', /limit/], ['?limit=1001', /limit/]]) {
                    const r = await getJson(n, `/presence/${ch}${q}`);
                    assert.equal(r.status, 400, q);
                    assert.match(r.headers['content-type'], /application\/json/);
                    assert.match(r.json.error, re, q);
                }
            }
        } finally {
            for (const s of sockets) {
                s.destroy();
            }
        }
        for (const n of [A, B]) {
            await waitStats(n, ch, { members: 0, connections: 0, anonymous: 0 }, 5000);
        }
    });

    it('SIGKILL of an instance: its members leave within pubsub_presence_ttl, once; others stay',
        async () => {
            const ch = chan('k');
            const K = (await startAll(1, {
                conf: confFor('    pubsub_redis_server %%REDIS_URL%%;'),
                redis, vars: { BE: String(be.port) },
            }))[0];
            extra.push(K);
            const dead = ['u1', 'u2', 'u3', 'u4', 'u5'].map(uid);
            const alive = [uid('v'), uid('v')];
            const w = await sseWatcher(B, ch, K);
            const onK = [];
            for (const id of dead) {
                onK.push(await sse(K, `/sub/${ch}?user=${id}`));
            }
            const onB = [];
            for (const id of alive) {
                onB.push(await sse(B, `/sub/${ch}?user=${id}`));
            }
            await pollJson(K, `/presence/${ch}`, (j) => dead.every((id) => idsOf(j).includes(id)),
                PROPAGATION, 'K lists its own members');
            await waitMembers(B, ch, [...dead, ...alive]);
            for (const id of dead) {
                await waitEv(w, 'join', id);
                await waitHook(be, 'online', id, ch);
            }

            killInstance(K);
            const t0 = Date.now();
            closeAll(onK);
            await waitMembers(B, ch, alive, TTL + 2000);
            process.stderr.write(`# members of the killed instance gone after ${Date.now() - t0} ms\n`);
            for (const id of dead) {
                await waitEv(w, 'leave', id, 1, Math.max(500, t0 + TTL + 2000 - Date.now()));
                await waitHook(be, 'offline', id, ch, 1, 2000);
            }
            await sleep(SETTLE);
            for (const id of dead) {
                assert.equal(countEv(w, 'join', id), 1, id);
                assert.equal(countEv(w, 'leave', id), 1, id);
                assertHook(be, ch, id, { online: 1, join: 1, leave: 1, offline: 1 });
            }
            // B's own members are untouched, on every instance still running
            for (const n of [A, B, Cx]) {
                const list = await waitMembers(n, ch, alive);
                assert.ok(list.members.every((m) => m.leaving === false && m.connections === 1));
            }
            for (const id of alive) {
                assert.equal(countEv(w, 'leave', id), 0, id);
                assertHook(be, ch, id, { leave: 0, offline: 0 });
            }
            closeAll([...onB, w]);
            await K.stop().catch(() => {});
            K.assertCleanLog({ allow });
        });

    it('Redis restarted without its data: the API answers 503 meanwhile, members are back within the ttl',
        async () => {
            const ch = chan('rr');
            const alice = uid('alice');
            const bob = uid('bob');
            const a = await sse(A, `/sub/${ch}?user=${alice}`);
            const b = await sse(B, `/sub/${ch}?user=${bob}`);
            await waitMembers(Cx, ch, [alice, bob]);

            const port = redis.port;
            await redis.kill();
            const down = await pollJson(A, `/presence/${ch}?stats`, (j) => j && j.error, PROPAGATION * 2,
                'an error while Redis is away');
            assert.equal(down.error, 'Redis is unavailable');
            assert.equal((await getJson(A, `/presence/${ch}?stats`)).status, 503);

            redis = await startRedis({ port });
            const t0 = Date.now();
            // reconnect (backoff up to 3 s) + one refresh (ttl / 4)
            for (const n of all) {
                await waitMembers(n, ch, [alice, bob], 3000 + TTL);
            }
            console.log(`# members back ${Date.now() - t0} ms after Redis restarted`);
            assert.equal(a.bodyEnded, false, 'subscribers stay connected');
            a.close();
            b.close();
            for (const n of all) {
                await waitStats(n, ch, { members: 0, connections: 0, anonymous: 0 },
                    LEAVE_DELAY + PROPAGATION);
            }
        });

    it('every instance stops with a clean error.log', async () => {
        for (const n of all) {
            await n.stop();
            n.assertCleanLog({ allow });
        }
    });
});

describe('redis presence: Redis Cluster, two instances', () => {
    let rc;
    let be;

    before(async () => {
        rc = await startRedisCluster({ masters: 3 });
        be = await startBackend({});
    });

    after(async () => {
        if (be) {
            await be.close();
        }
        if (rc) {
            await rc.stop();
        }
    });

    it('lists members of both instances on each, and a SIGKILLed instance\'s members leave within ttl',
        async () => {
            const lines = rc.seeds.map((u) => `    pubsub_redis_server ${u};`).join('\n');
            const [X, Y] = await startAll(2, { conf: confFor(lines), vars: { BE: String(be.port) } });
            try {
                // channels spread over the masters (their slots differ)
                const chans = [chan('rc'), chan('rc'), chan('rc')];
                const onX = {};
                const onY = {};
                const conns = { X: [], Y: [] };
                for (const ch of chans) {
                    onX[ch] = [uid('x'), uid('x')];
                    onY[ch] = [uid('y')];
                    for (const id of onX[ch]) {
                        conns.X.push(await sse(X, `/sub/${ch}?user=${id}`));
                    }
                    for (const id of onY[ch]) {
                        conns.Y.push(await sse(Y, `/sub/${ch}?user=${id}`));
                    }
                }
                await pollJson(X, `/presence/${chans[0]}`,
                    (j) => onX[chans[0]].every((id) => idsOf(j).includes(id)), PROPAGATION,
                    'X lists its own members');
                for (const ch of chans) {
                    for (const n of [X, Y]) {
                        await waitMembers(n, ch, [...onX[ch], ...onY[ch]]);
                        await waitStats(n, ch, { members: 3, connections: 3, anonymous: 0 });
                    }
                }
                const xid = onX[chans[1]][0];
                const st = await pollJson(Y, `/presence?user=${xid}`, (j) => j.online === true,
                    PROPAGATION, `${xid} online on Y`);
                assert.deepEqual(st.channels, [chans[1]]);

                killInstance(X);
                const t0 = Date.now();
                closeAll(conns.X);
                for (const ch of chans) {
                    await waitMembers(Y, ch, onY[ch], Math.max(500, t0 + TTL + 2000 - Date.now()));
                }
                process.stderr.write(
                    `# cluster: killed instance's members gone after ${Date.now() - t0} ms\n`);
                for (const ch of chans) {
                    for (const id of onX[ch]) {
                        await waitHook(be, 'offline', id, ch, 1, 2000);
                    }
                }
                await sleep(SETTLE);
                for (const ch of chans) {
                    for (const id of onX[ch]) {
                        assertHook(be, ch, id, { online: 1, join: 1, leave: 1, offline: 1 });
                    }
                    for (const id of onY[ch]) {
                        assertHook(be, ch, id, { online: 1, join: 1, leave: 0, offline: 0 });
                    }
                }
                closeAll(conns.Y);
                for (const ch of chans) {
                    await waitMembers(Y, ch, [], LEAVE_DELAY + PROPAGATION);
                }
            } finally {
                await X.stop().catch(() => {});
                await Y.stop();
            }
            X.assertCleanLog({ allow });
            Y.assertCleanLog({ allow });
        });
});
