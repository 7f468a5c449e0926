'use strict';
// Channel-group limits (pubsub_group_max_*) in Redis locations: enforced
// cluster-wide for every nginx instance sharing the Redis (docs/redis.md
// "Group limits"). Two instances on one redis-server, then one case on a
// Redis Cluster.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');
const { startNginxes, stopNginxes, useRedisNginxes } = require('./lib/nginx');
const { startRedisCluster } = require('./lib/redis');
const { sleep } = require('./lib/util');
const C = require('./lib/clients');

const CHANNELS = /Group limit reached for number of channels\./;
const SUBSCRIBERS = /Group limit reached for number of subscribers\./;
const MEMORY = /Group limit reached for messages memory\./;

function confFor(servers) {
    return `
upstream redis_up {
${servers.map((u) => `    pubsub_redis_server ${u};`).join('\n')}
}
server {
    listen 127.0.0.1:%%PORT%%;
    pubsub_redis_pass redis_up;
    # channels: at most 3 in group gc
    location ~ ^/gc/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_group gc;
        pubsub_channel_id $1;
        pubsub_group_max_channels 3;
    }
    location ~ ^/gk/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_group gk;
        pubsub_channel_id $1;
        pubsub_group_max_channels 5;
    }
    # subscribers: at most 3 in group gs
    location ~ ^/gs/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_group gs;
        pubsub_channel_id $1;
        pubsub_group_max_subscribers 3;
    }
    # messages memory: 16k in group gm
    location ~ ^/gm/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_group gm;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 100;
        pubsub_group_max_messages_memory 16k;
    }
    location ~ ^/gm1/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_group gm;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 1;
        pubsub_group_max_messages_memory 16k;
    }
    # messages memory with messages that expire
    location ~ ^/gx/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_group gx;
        pubsub_channel_id $1;
        pubsub_message_timeout 2s;
        pubsub_group_max_messages_memory 7000;
    }
    # the same groups without limits
    location ~ ^/free/(\\w+)/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_group $1;
        pubsub_channel_id $2;
    }
}`;
}

const instances = (servers, n) => startNginxes(n, { conf: confFor(servers), workers: 2 });
const stopAll = (ngxs) => stopNginxes(ngxs);

function pub(ngx, path, body = 'x') {
    return C.publish({ port: ngx.port, path }, body);
}

async function sse(ngx, path) {
    const s = C.sseStream({ port: ngx.port, path });
    const res = await s.response;
    return { s, status: res.status };
}

function get(ngx, path) {
    return C.httpRequest({ port: ngx.port, path, headers: { Accept: 'text/event-stream' },
        timeout: 3000 }).catch((e) => ({ status: 0, text: String(e) }));
}

describe('redis group limits', () => {
    const env = useRedisNginxes(2, { conf: confFor(['%%REDIS_URL%%']), workers: 2 });

    it('counts channels across instances; a deleted channel frees its slot', async () => {
        const [a, b] = env.ngxs;
        assert.equal((await pub(a, '/gc/a')).status, 202);
        assert.equal((await pub(b, '/gc/b')).status, 202);
        assert.equal((await pub(a, '/gc/c')).status, 202);
        // the group is full on both instances
        for (const n of [a, b]) {
            const r = await pub(n, '/gc/d');
            assert.equal(r.status, 403, r.text);
            assert.match(r.text, CHANNELS);
        }
        // existing channels still take messages, on either instance
        assert.equal((await pub(b, '/gc/a')).status, 202);
        assert.equal((await pub(a, '/gc/b')).status, 202);
        // a subscriber may not create a fourth channel either
        const refused = await get(b, '/gc/d');
        assert.equal(refused.status, 403, refused.text);
        assert.match(refused.text, CHANNELS);
        // but joins an existing one
        const ok = await sse(b, '/gc/c');
        assert.equal(ok.status, 200);
        ok.s.close();
        // another group is not affected; a location without limits may
        // still make channels in the group
        assert.equal((await pub(a, '/free/other/d')).status, 202);
        assert.equal((await pub(a, '/free/gc/e')).status, 202);
        assert.equal((await pub(a, '/gc/e')).status, 202, 'exists in Redis: not a new channel');

        // a, b, c, e now: deleting one frees a slot, on the other instance too
        const del = await C.httpRequest({ port: b.port, method: 'DELETE', path: '/gc/a' });
        assert.equal(del.status, 200, del.text);
        assert.equal((await pub(a, '/gc/d')).status, 403);
        const del2 = await C.httpRequest({ port: a.port, method: 'DELETE', path: '/gc/e' });
        assert.equal(del2.status, 200, del2.text);
        assert.equal((await pub(a, '/gc/d')).status, 202);
        assert.equal((await pub(b, '/gc/f')).status, 403);
        assert.equal(await env.redis.command('ZCARD', '{group:gc}:channels'), 3);
    });

    it('never exceeds the channel limit with concurrent creations', async () => {
        const [a, b] = env.ngxs;
        const all = await Promise.all(Array.from({ length: 24 },
            (_, i) => pub(i % 2 ? a : b, `/gk/k${i}`)));
        const ok = all.filter((r) => r.status === 202).length;
        const no = all.filter((r) => r.status === 403 && CHANNELS.test(r.text)).length;
        assert.equal(ok, 5);
        assert.equal(no, 19);
        assert.equal(await env.redis.command('ZCARD', '{group:gk}:channels'), 5);
    });

    it('counts subscribers across instances', async () => {
        const [a, b] = env.ngxs;
        const held = [];
        held.push(await sse(a, '/gs/x'));
        held.push(await sse(b, '/gs/y'));
        held.push(await sse(a, '/gs/y'));
        for (const h of held) {
            assert.equal(h.status, 200);
        }
        for (const n of [a, b]) {
            const r = await get(n, '/gs/z');
            assert.equal(r.status, 403, r.text);
            assert.match(r.text, SUBSCRIBERS);
        }
        // publishing is not limited by subscribers
        assert.equal((await pub(b, '/gs/x')).status, 201);
        // one leaves on A: one more may come on B
        held[0].s.close();
        let again;
        for (let i = 0; i < 30; i++) {
            again = await sse(b, '/gs/z');
            if (again.status === 200) {
                break;
            }
            again.s.close();
            await sleep(100);
        }
        assert.equal(again.status, 200);
        const over = await get(a, '/gs/x');
        assert.equal(over.status, 403);
        for (const h of [...held.slice(1), again]) {
            h.s.close();
        }
        // all gone: three come back
        await sleep(300);
        const back = [];
        for (let i = 0; i < 3; i++) {
            back.push(await sse(i % 2 ? a : b, `/gs/w${i}`));
        }
        assert.deepEqual(back.map((x) => x.status), [200, 200, 200]);
        for (const x of back) {
            x.s.close();
        }
    });

    it('counts the messages memory across instances', async () => {
        const [a, b] = env.ngxs;
        const big = 'x'.repeat(3000);
        let r;
        let n = 0;
        for (; n < 20; n++) {
            r = await pub(n % 2 ? b : a, `/gm/m${n % 3}`, big);
            if (r.status !== 202) {
                break;
            }
        }
        assert.equal(r.status, 403, r.text);
        assert.match(r.text, MEMORY);
        assert.equal(n, 5, '5 messages of 3000 bytes fit in 16k');
        assert.equal((await pub(b, '/gm/m9', big)).status, 403);
        // what a message pushes out of its channel's buffer does not count:
        // m0 holds 2 messages, a buffer of 1 keeps only the new one
        assert.equal((await pub(b, '/gm1/m0', big)).status, 202);
        assert.equal((await pub(a, '/gm/m9', big)).status, 202);
        assert.equal((await pub(a, '/gm/m9', big)).status, 403);
        // deleting a channel frees its messages
        const del = await C.httpRequest({ port: a.port, method: 'DELETE', path: '/gm/m1' });
        assert.equal(del.status, 200);
        assert.equal((await pub(b, '/gm/m9', big)).status, 202);
    });

    it('frees the memory of expired messages', async () => {
        const [a, b] = env.ngxs;
        const big = 'x'.repeat(3000);
        assert.equal((await pub(a, '/gx/e1', big)).status, 202);
        assert.equal((await pub(b, '/gx/e2', big)).status, 202);
        const r = await pub(a, '/gx/e3', big);
        assert.equal(r.status, 403);
        assert.match(r.text, MEMORY);
        await sleep(3200);
        assert.equal((await pub(b, '/gx/e3', big)).status, 202);
        assert.equal((await pub(a, '/gx/e1', big)).status, 202);
        assert.equal((await pub(a, '/gx/e2', big)).status, 403);
    });

    it('costs nothing in Redis for a location without limits', async () => {
        const [a] = env.ngxs;
        assert.equal((await pub(a, '/free/plain/p1')).status, 202);
        const s = await sse(a, '/free/plain/p1');
        assert.equal(s.status, 200);
        s.s.close();
        const keys = await env.redis.command('KEYS', '{group:plain}*');
        assert.deepEqual(keys, []);
    });
});

describe('redis group limits on a cluster', () => {
    it('counts channels and subscribers across instances and masters', async () => {
        const rc = await startRedisCluster({ masters: 3 });
        let ngxs;
        try {
            ngxs = await instances(rc.seeds, 2);
            const [a, b] = ngxs;
            const wait = async (fn) => {
                for (let i = 0; i < 50; i++) {
                    const r = await fn();
                    if (r.status !== 503) {
                        return r;
                    }
                    await sleep(100);
                }
                return fn();
            };
            // channels on different masters (their own slots), one group
            assert.equal((await wait(() => pub(a, '/gc/k1'))).status, 202);
            assert.equal((await wait(() => pub(b, '/gc/k2'))).status, 202);
            assert.equal((await pub(a, '/gc/k3')).status, 202);
            const no = await pub(b, '/gc/k4');
            assert.equal(no.status, 403);
            assert.match(no.text, CHANNELS);
            const del = await C.httpRequest({ port: a.port, method: 'DELETE', path: '/gc/k2' });
            assert.equal(del.status, 200);
            assert.equal((await pub(b, '/gc/k4')).status, 202);

            const held = [];
            held.push(await sse(a, '/gs/s1'));
            held.push(await sse(b, '/gs/s2'));
            held.push(await sse(b, '/gs/s3'));
            assert.deepEqual(held.map((h) => h.status), [200, 200, 200]);
            const over = await get(a, '/gs/s4');
            assert.equal(over.status, 403);
            assert.match(over.text, SUBSCRIBERS);
            for (const h of held) {
                h.s.close();
            }
        } finally {
            if (ngxs) {
                await stopAll(ngxs);
            }
            await rc.stop();
        }
    });
});
