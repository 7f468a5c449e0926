'use strict';
// Issue 8, Redis Cluster: two nginx instances on a 3-master cluster
// (redis-server --cluster-enabled yes processes started by the tests):
// channels spread over every master, delivery in order and once across
// instances, resume across instances, and a failover under traffic.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { startNginxes, stopNginxes } = require('./lib/nginx');
const { startRedisCluster } = require('./lib/redis');
const { sleep } = require('./lib/util');
const C = require('./lib/clients');

function confFor(seeds) {
    return `
upstream redis_cluster {
${seeds.map((u) => `    pubsub_redis_server ${u};`).join('\n')}
}
server {
    listen 127.0.0.1:%%PORT%%;
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 5000;   # history covers the outages
        pubsub_redis_pass redis_cluster;
    }
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_cluster;
    }
}`;
}

function lastIdOf(text) {
    const m = /last message id: (\S+)/.exec(text);
    return m ? m[1] : null;
}

const instances = (seeds, n) => startNginxes(n, { conf: confFor(seeds), workers: 2 });
const stopAll = (ngxs) => stopNginxes(ngxs);

const { waitPublish } = C;

// SSE subscribers on every instance for every channel, attached (a probe
// published until each of them saw it); returns {key: [streams]}.
async function subscribeAll(ngxs, chans) {
    const subs = {};
    for (const ch of chans) {
        subs[ch] = [];
        for (const n of ngxs) {
            const s = C.sseStream({ port: n.port, path: `/sub/${ch}` });
            assert.equal((await s.response).status, 200);
            subs[ch].push(s);
        }
    }
    // every worker has SUBSCRIBEd once a probe reaches every stream
    for (const ch of chans) {
        await waitPublish(ngxs[0].port, `/pub/${ch}`, 'probe');
        for (const s of subs[ch]) {
            await s.waitFor(1, 5000);
        }
    }
    return subs;
}

function dataAfterProbe(stream) {
    return stream.events.items.map((e) => e.data).filter((d) => d !== 'probe');
}


// Each subscriber got, in order and at most once, a subsequence of what was
// tried, holding everything in `mustHave`; waits for `${ch}-last` first.
async function checkDelivery(subs, chans, tried, mustHave) {
    for (const ch of chans) {
        for (const s of subs[ch]) {
            const deadline = Date.now() + 10000;
            while (!dataAfterProbe(s).includes(`${ch}-last`)) {
                assert.ok(Date.now() < deadline,
                    `${ch}: the subscriber did not catch up: ${dataAfterProbe(s).slice(-5)}`);
                await sleep(50);
            }
            assert.equal(s.events.ended, false, 'the subscriber stayed connected');
            const got = dataAfterProbe(s);
            let k = 0;
            for (const d of got) {
                while (k < tried[ch].length && tried[ch][k] !== d) {
                    k++;
                }
                assert.ok(k < tried[ch].length, `${ch}: ${d} out of order or twice: ${
                    JSON.stringify(s.events.items.map((e) => [e.id, e.data, e.event]).slice(-40))}`);
                k++;
            }
            const have = new Set(got);
            for (const d of mustHave[ch]) {
                assert.ok(have.has(d), `${ch}: ${d} was acknowledged but lost`);
            }
            s.close();
        }
    }
}

// Publishes round after round on every channel, alternating instances,
// until stop(); records what was tried and what was acknowledged (201).
function traffic(ngxs, chans) {
    const t = { acked: {}, tried: {}, rounds: 0, stopped: false, since: null, after: {} };
    for (const ch of chans) {
        t.acked[ch] = [];
        t.tried[ch] = [];
        t.after[ch] = [];
    }
    t.done = (async () => {
        while (!t.stopped) {
            for (const ch of chans) {
                const body = `${ch}-${t.rounds}`;
                const via = ngxs[t.rounds % 2];
                const r = await C.publish({ port: via.port, path: `/pub/${ch}` }, body)
                    .catch(() => ({ status: 0 }));
                t.tried[ch].push(body);
                if (r.status === 201) {
                    t.acked[ch].push(body);
                    if (t.since !== null) {
                        t.after[ch].push(body);
                    }
                }
            }
            t.rounds++;
            await sleep(20);
        }
    })();
    t.stop = async () => {
        t.stopped = true;
        await t.done;
        for (const ch of chans) {
            const r = await waitPublish(ngxs[1].port, `/pub/${ch}`, `${ch}-last`);
            assert.equal(r.status, 201);
            t.acked[ch].push(`${ch}-last`);
            t.tried[ch].push(`${ch}-last`);
            t.after[ch].push(`${ch}-last`);
        }
    };
    return t;
}

describe('redis cluster', () => {
    let rc;

    before(async () => {
        rc = await startRedisCluster({ masters: 3, replicas: 1 });
    });

    after(async () => {
        if (rc) {
            await rc.stop();
        }
    });

    it('spreads channels over every master and delivers across instances once', async () => {
        const ngxs = await instances(rc.seeds, 2);
        try {
            const chans = Array.from({ length: 9 }, (_, i) => `c${i}`);
            const subs = await subscribeAll(ngxs, chans);
            const ids = {};
            for (let i = 0; i < 8; i++) {
                for (const ch of chans) {
                    const via = ngxs[(i + ch.length) % 2];
                    const r = await C.publish({ port: via.port, path: `/pub/${ch}` }, `${ch}-${i}`);
                    assert.equal(r.status, 201, r.text);
                    (ids[ch] = ids[ch] || []).push(lastIdOf(r.text));
                }
            }
            for (const ch of chans) {
                for (const s of subs[ch]) {
                    const got = await s.waitFor(9, 5000);
                    assert.deepEqual(got.slice(1).map((e) => e.data),
                        Array.from({ length: 8 }, (_, i) => `${ch}-${i}`));
                    assert.deepEqual(got.slice(1).map((e) => e.id), ids[ch]);
                }
            }
            // every master holds some of the channels
            for (const m of rc.masters) {
                const size = await m.command('DBSIZE');
                assert.ok(size > 0, `master ${m.port} holds no keys`);
            }
            // info agrees on both instances
            const ia = await C.httpRequest({ port: ngxs[0].port, path: '/pub/c3' });
            const ib = await C.httpRequest({ port: ngxs[1].port, path: '/pub/c3' });
            assert.equal(lastIdOf(ia.text), ids.c3[7]);
            assert.equal(lastIdOf(ib.text), ids.c3[7]);
            assert.match(ia.text, /subscribers: 2/);
            await sleep(300);
            for (const ch of chans) {
                for (const s of subs[ch]) {
                    assert.equal(s.events.items.length, 9, 'nothing twice');
                    s.close();
                }
            }
            // the log says which pub/sub is used
            const log = ngxs[0].errorLog();
            assert.match(log, /connected to a cluster of 3 masters .*\(sharded pub\/sub\)/);
        } finally {
            await stopAll(ngxs);
        }
    });

    it('resumes on the other instance', async () => {
        const ngxs = await instances([rc.seeds[1]], 2);   // one seed is enough
        try {
            const ids = [];
            for (let i = 0; i < 5; i++) {
                const r = await C.publish({ port: ngxs[0].port, path: '/pub/res' }, `r${i}`);
                assert.equal(r.status, 202, r.text);   // no subscribers yet
                ids.push(lastIdOf(r.text));
            }
            const s = C.sseStream({ port: ngxs[1].port, path: '/sub/res',
                headers: { 'Last-Event-ID': ids[1] } });
            const got = await s.waitFor(3, 5000);
            assert.deepEqual(got.map((e) => e.data), ['r2', 'r3', 'r4']);
            assert.deepEqual(got.map((e) => e.id), ids.slice(2));
            const r = await C.publish({ port: ngxs[0].port, path: '/pub/res' }, 'r5');
            assert.equal(r.status, 201);
            assert.equal((await s.waitFor(4, 5000))[3].data, 'r5');
            s.close();
        } finally {
            await stopAll(ngxs);
        }
    });

    it('follows slots that move: ASK during a migration, MOVED after it', async () => {
        const ngxs = await instances(rc.seeds, 2);
        try {
            // whoever masters a slot now (the failover tests may run before)
            const ownerOf = async (slot) => {
                const map = await rc.masters[2].command('CLUSTER', 'SLOTS');
                const r = map.find((x) => x[0] <= slot && slot <= x[1]);
                return rc.nodes.find((x) => x.port === r[2][1]);
            };
            const masters = async () => {
                const map = await rc.masters[2].command('CLUSTER', 'SLOTS');
                return map.map((x) => rc.nodes.find((n) => n.port === x[2][1]));
            };
            const idOf = async (node) => node.command('CLUSTER', 'MYID');
            const tag = '{channel:default/mv}';
            const slot = await rc.masters[2].command('CLUSTER', 'KEYSLOT', tag);
            const from = await ownerOf(slot);
            const to = (await masters()).find((x) => x !== from);
            const fromId = await idOf(from);
            const toId = await idOf(to);

            // the slot is being migrated and its keys are not on `from`
            // (a new channel): `from` answers ASK, the command goes to `to`
            assert.equal(await to.command('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId), 'OK');
            assert.equal(await from.command('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId), 'OK');
            let r = await C.publish({ port: ngxs[0].port, path: '/pub/mv' }, 'asked');
            assert.equal(r.status, 202, r.text);
            assert.ok(await to.command('CLUSTER', 'COUNTKEYSINSLOT', slot) > 0,
                'written on the importing master');
            assert.equal(await from.command('CLUSTER', 'COUNTKEYSINSLOT', slot), 0);

            // the migration ends: `from` now answers MOVED
            for (const m of await masters()) {
                assert.equal(await m.command('CLUSTER', 'SETSLOT', slot, 'NODE', toId), 'OK');
            }
            const s = C.sseStream({ port: ngxs[1].port, path: '/sub/mv',
                headers: { 'Last-Event-ID': lastIdOf(r.text) } });
            assert.equal((await s.response).status, 200);
            const want = [];
            for (let i = 0; i < 6; i++) {
                r = await waitPublish(ngxs[i % 2].port, '/pub/mv', `moved${i}`);
                want.push(`moved${i}`);
            }
            const got = await s.waitFor(6, 8000);
            assert.deepEqual(got.map((e) => e.data), want);
            assert.equal(await from.command('CLUSTER', 'COUNTKEYSINSLOT', slot), 0);
            assert.equal(await to.command('HGET', tag, 'n'), '7');
            await sleep(300);
            assert.equal(s.events.items.length, 6, 'nothing twice');
            s.close();
        } finally {
            await stopAll(ngxs);
        }
    });

    it('follows a failover under traffic: nothing lost, nothing twice', async () => {
        const ngxs = await instances(rc.seeds, 2);
        try {
            const chans = Array.from({ length: 6 }, (_, i) => `f${i}`);
            const subs = await subscribeAll(ngxs, chans);
            const t = traffic(ngxs, chans);
            await sleep(500);
            // the replica of the first master takes over (a coordinated
            // manual failover: the old master hands over what it has)
            const rep = rc.replicas[0][0];
            assert.equal(await rep.command('CLUSTER', 'FAILOVER'), 'OK');
            const deadline = Date.now() + 10000;
            while (!/role:master/.test(await rep.command('INFO', 'replication'))) {
                assert.ok(Date.now() < deadline, 'the replica did not take over');
                await sleep(100);
            }
            await sleep(4000);   // traffic on the new map
            await t.stop();
            await checkDelivery(subs, chans, t.tried, t.acked);
            let refused = 0;
            for (const ch of chans) {
                refused += t.tried[ch].length - t.acked[ch].length;
            }
            const acked = t.acked;
            const n = t.rounds;
            assert.ok(acked.f0.length > 20, 'traffic went on');
            // refused publishes (503 during the switch) are allowed, not required
            assert.ok(refused < n * chans.length / 2, `too many refused: ${refused}`);
            // both instances followed the new map
            for (const x of ngxs) {
                const log = x.errorLog();
                assert.match(log, /slot map changed|connection lost/);
                assert.equal(log.match(/connected to a cluster of 3 masters/g).length >= 2, true);
            }
            process.stderr.write(`failover: ${n} rounds, ${refused} refused\n`);
        } finally {
            await stopAll(ngxs);
        }
    });

    it('follows a master killed under traffic: its replica takes over', async () => {
        const ngxs = await instances(rc.seeds, 2);
        try {
            const chans = Array.from({ length: 6 }, (_, i) => `k${i}`);
            const subs = await subscribeAll(ngxs, chans);
            const t = traffic(ngxs, chans);
            await sleep(500);
            // the second master dies (the first one was failed over
            // above); its replica is promoted once the others agree it
            // failed (cluster-node-timeout 2 s)
            const victim = rc.masters[1];
            const heirNode = rc.replicas[1][0];
            await victim.kill();
            const deadline = Date.now() + 15000;
            while (!/role:master/.test(await heirNode.command('INFO', 'replication'))) {
                assert.ok(Date.now() < deadline, 'the replica did not take over');
                await sleep(100);
            }
            // from here on, everything acknowledged must arrive
            t.since = Date.now();
            await sleep(5000);   // reconnect backoff is at most 3 s
            await t.stop();
            // a message acknowledged by the dying master just before it died
            // may not have reached its replica (Redis replicates
            // asynchronously): only what was acknowledged after the
            // takeover must arrive; nothing may come out of order or twice
            await checkDelivery(subs, chans, t.tried, t.after);
            for (const ch of chans) {
                assert.ok(t.after[ch].length > 5, `${ch}: traffic went on after the takeover`);
            }
        } finally {
            await stopAll(ngxs);
        }
    });
});

// Issue 8 follow-up: one master failing affects only the channels of its
// slots; the other masters' channels keep their publishes and their
// subscriptions.
describe('redis cluster: one master down', () => {
    let rc;

    before(async () => {
        rc = await startRedisCluster({ masters: 3, replicas: 1 });
        // else Redis itself answers CLUSTERDOWN for every slot from the
        // moment the master is marked failed until its replica took over
        for (const n of rc.nodes) {
            assert.equal(await n.command('CONFIG', 'SET', 'cluster-require-full-coverage', 'no'),
                'OK');
        }
    });

    after(async () => {
        if (rc) {
            await rc.stop();
        }
    });

    // `count` channel names per master, by the hash slot of their keys
    async function channelsByMaster(count) {
        const map = await rc.masters[0].command('CLUSTER', 'SLOTS');
        const byPort = new Map(rc.masters.map((m) => [m.port, []]));
        for (let i = 0; i < 200 && [...byPort.values()].some((l) => l.length < count); i++) {
            const name = `p${i}`;
            const slot = await rc.masters[0].command('CLUSTER', 'KEYSLOT', `{channel:default/${name}}`);
            const range = map.find((x) => x[0] <= slot && slot <= x[1]);
            const list = byPort.get(range[2][1]);
            if (list.length < count) {
                list.push(name);
            }
        }
        return rc.masters.map((m) => byPort.get(m.port));
    }

    // ids of the clients of `node` in sharded subscribe mode
    async function shardSubscribers(node) {
        const list = await node.command('CLIENT', 'LIST');
        return list.split('\n').filter((l) => /\bssub=[1-9]/.test(l))
            .map((l) => /\bid=(\d+)/.exec(l)[1]).sort();
    }

    it('keeps the other masters\' channels going while one is killed and replaced', async () => {
        const started = Date.now();
        const ngxs = await instances(rc.seeds, 2);
        try {
            const [c0, c1, c2] = await channelsByMaster(2);
            const victim = rc.masters[1];
            const heirNode = rc.replicas[1][0];
            const survivors = [...c0, ...c2];
            const chans = [...c0, ...c1, ...c2];
            const subs = await subscribeAll(ngxs, chans);
            const kept = [await shardSubscribers(rc.masters[0]),
                await shardSubscribers(rc.masters[2])];
            // the workers (of 2 x 2) with subscribers of the master's channels
            const onVictim = (await shardSubscribers(victim)).length;
            assert.ok(kept[0].length > 0 && kept[1].length > 0 && onVictim > 0);

            const t = traffic(ngxs, chans);
            await sleep(500);
            await victim.kill();
            const killedAt = Date.now();
            const deadline = Date.now() + 15000;
            while (!/role:master/.test(await heirNode.command('INFO', 'replication'))) {
                assert.ok(Date.now() < deadline, 'the replica did not take over');
                await sleep(100);
            }
            const promotedAfter = Date.now() - killedAt;
            t.since = Date.now();
            // the map check (3 s) or the repair (backoff <= 3 s) finds the heir
            await sleep(4500);
            await t.stop();

            // the surviving masters' channels: never refused, all delivered
            for (const ch of survivors) {
                assert.deepEqual(t.acked[ch], t.tried[ch],
                    `${ch} (a surviving master's channel) had publishes refused`);
            }
            // the killed master's channels: refused for a while, then back;
            // what was acknowledged after the takeover reaches everyone (a
            // message acknowledged just before the kill may be lost by
            // Redis's asynchronous replication)
            let refused = 0;
            for (const ch of c1) {
                refused += t.tried[ch].length - t.acked[ch].length;
                assert.ok(t.after[ch].length > 5, `${ch}: traffic went on after the takeover`);
            }
            // ... and so does everything the heir holds for them (nothing
            // lost for subscribers: what they missed is read from history)
            const history = `local out = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1] .. ':ids', 0, -1)) do
  out[#out + 1] = redis.call('HGET', KEYS[1] .. ':m:' .. id, 'd')
end
return out`;
            const mustHave = {};
            for (const ch of chans) {
                if (survivors.includes(ch)) {
                    mustHave[ch] = t.acked[ch];
                    continue;
                }
                const held = await heirNode.command('EVAL', history, 1, `{channel:default/${ch}}`);
                assert.ok(Array.isArray(held) && held.length > t.after[ch].length, String(held));
                mustHave[ch] = [...new Set([...t.after[ch], ...held.filter((d) => d !== 'probe')])];
            }
            await checkDelivery(subs, chans, t.tried, mustHave);

            // the surviving masters' subscriptions were never re-made (a
            // subscribe may still be settling: allow 3 s; on a failure the
            // workers' Redis log lines say what they did)
            const redisLog = () => ngxs.map((x) => x.errorLog().split('\n')
                .filter((l) => /redis/.test(l)).slice(-12).join('\n')).join('\n--\n');
            for (const [i, node] of [[0, rc.masters[0]], [1, rc.masters[2]]]) {
                let now = await shardSubscribers(node);
                for (let k = 0; k < 30 && JSON.stringify(now) !== JSON.stringify(kept[i]); k++) {
                    await sleep(100);
                    now = await shardSubscribers(node);
                }
                assert.deepEqual(now, kept[i], `surviving master ${i}:\n${redisLog()}`);
            }
            // and the workers moved their subscriptions to the heir
            assert.equal((await shardSubscribers(heirNode)).length, onVictim);
            for (const x of ngxs) {
                const log = x.errorLog();
                assert.equal(log.match(/connected to a cluster of 3 masters/g).length, 2,
                    'no worker reconnected to every master');
                assert.match(log, /master 127\.0\.0\.1:\d+: connection lost/);
                assert.match(log, new RegExp(`master 127\\.0\\.0\\.1:${heirNode.port} is up`));
            }
            process.stderr.write(`one master down: ${t.rounds} rounds, ${refused} refused on ` +
                `its channels, promoted after ${promotedAfter} ms, ` +
                `test ${Date.now() - started} ms\n`);
        } finally {
            await stopAll(ngxs);
        }
    });
});
