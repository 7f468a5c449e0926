'use strict';
// pubsub_group_location (nchan's nchan_group_location): a group's channels,
// subscribers, messages and messages memory across workers (memory engine)
// and instances (Redis), limits from variables per tenant, limits stored
// with the group by POST, and DELETE of the group's channels.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { useNginx, useRedisNginxes, startNginxes, stopNginxes, nginxCheck } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const { waitUntil } = require('./lib/util');
const C = require('./lib/clients');

const CHANNELS = /Group limit reached for number of channels\./;
const SUBSCRIBERS = /Group limit reached for number of subscribers\./;
const MEMORY = /Group limit reached for messages memory\./;

let seq = 0;
const group = (p = 'g') => `${p}${Date.now() % 100000}x${++seq}`;

const locations = `
    location ~ ^/group/(\\w+)$ {
        pubsub_group_location;
        pubsub_channel_group $1;
        pubsub_group_max_channels $arg_max_channels;
        pubsub_group_max_subscribers $arg_max_subscribers;
        pubsub_group_max_messages_memory $arg_max_memory;
    }
    location ~ ^/ro/(\\w+)$ {
        pubsub_group_location get;
        pubsub_channel_group $1;
    }
    location ~ ^/ps/(\\w+)/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_group $1;
        pubsub_channel_id $2;
        pubsub_message_buffer_length 100;
        %%ACCOUNT%%
    }
    location ~ ^/own/(\\w+)/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_group $1;
        pubsub_channel_id $2;
        pubsub_group_max_channels 5;
    }
    # per-tenant limits from the request
    location ~ ^/tenant/(\\w+)/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_group $1;
        pubsub_channel_id $2;
        pubsub_group_max_channels $arg_max_channels;
        pubsub_group_max_subscribers $arg_max_subscribers;
        pubsub_group_max_messages_memory $arg_max_memory;
    }
`;

function pub(ngx, path, body = 'hello') {
    return C.publish({ port: ngx.port, path }, body);
}

// 201 when the channel has subscribers, 202 when not (nchan's)
async function published(ngx, path, body) {
    const r = await pub(ngx, path, body);
    assert.ok(r.status === 201 || r.status === 202, `${path}: ${r.status} ${r.text}`);
}

async function info(ngx, g, { accept = 'application/json', method = 'GET', query = '' } = {}) {
    const r = await C.httpRequest({ port: ngx.port, path: `/group/${g}${query}`, method,
        headers: { Accept: accept } });
    assert.equal(r.status, 200, r.text);
    return accept === 'application/json' ? JSON.parse(r.text) : r;
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

describe('pubsub_group_location (memory, 2 workers)', () => {
    const ngx = useNginx({ conf: `
server {
    listen 127.0.0.1:%%PORT%%;
${locations.replace('%%ACCOUNT%%', '')}
}`, workers: 2, before, after });

    it('counts channels, subscribers, messages and memory on every worker', async () => {
        const g = group();
        const empty = await info(ngx, g);
        assert.deepEqual(empty, { channels: 0, subscribers: 0, messages: 0, messages_memory: 0,
            messages_disk: 0, limits: { channels: 0, subscribers: 0, messages: 0,
                messages_memory: 0, messages_disk: 0 } });
        // subscribers on fresh connections: spread over both workers
        const subs = [];
        for (let i = 0; i < 4; i++) {
            const s = await sse(ngx, `/ps/${g}/c${i % 2}`);
            assert.equal(s.status, 200);
            subs.push(s.s);
        }
        for (let i = 0; i < 3; i++) {
            await published(ngx, `/ps/${g}/c0`);
        }
        await published(ngx, `/ps/${g}/c2`, 'x'.repeat(1000));
        const i1 = await info(ngx, g);
        assert.equal(i1.channels, 3);
        assert.equal(i1.subscribers, 4);
        assert.equal(i1.messages, 4);
        assert.ok(i1.messages_memory >= 1000 + 3 * 5, JSON.stringify(i1));
        // the text form is nchan's
        const t = await info(ngx, g, { accept: 'text/plain' });
        assert.equal(t.headers['content-type'], 'text/plain');
        assert.equal(t.text, `channels: 3\r\nsubscribers: 4\r\nmessages: 4\r\n`
            + `shared memory used by messages: ${i1.messages_memory} bytes\r\n`
            + 'disk space used by messages: 0 bytes\r\nlimits:\r\n  max channels: 0\r\n'
            + '  max subscribers: 0\r\n  max messages: 0\r\n  max messages shared memory: 0\r\n'
            + '  max messages disk space: 0\r\n');
        const x = await info(ngx, g, { accept: 'text/xml' });
        assert.match(x.text, /<group>\n {2}<channels>3<\/channels>\n {2}<subscribers>4</);
        const y = await info(ngx, g, { accept: 'text/yaml' });
        assert.match(y.text, /^---\nchannels: 3\nsubscribers: 4\nmessages: 4\n/);
        // subscribers leave: counted down on every worker
        for (const s of subs) {
            s.close();
        }
        await waitUntil(async () => (await info(ngx, g)).subscribers === 0,
            { what: 'no subscribers in the group' });
    });

    it('DELETE deletes the group\'s channels; subscribers get a channel delete', async () => {
        const g = group();
        const a = await sse(ngx, `/ps/${g}/a`);
        const b = await sse(ngx, `/ps/${g}/b`);
        await published(ngx, `/ps/${g}/b`);
        assert.equal((await b.s.next(5000)).data, 'hello');
        const other = group();
        await published(ngx, `/ps/${other}/a`);
        const r = await info(ngx, g, { method: 'DELETE' });
        assert.equal(r.channels, 0);
        assert.equal(r.messages, 0);
        // each stream ends as a channel delete ends it
        for (const s of [a.s, b.s]) {
            assert.equal((await s.done).bodyEnded, true);
        }
        assert.equal((await info(ngx, g)).subscribers, 0);
        // other groups keep theirs
        assert.equal((await info(ngx, other)).channels, 1);
        // a read-only group location refuses the other methods
        const ro = await C.httpRequest({ port: ngx.port, path: `/ro/${other}`, method: 'DELETE' });
        assert.equal(ro.status, 403);
        assert.equal((await info(ngx, other)).channels, 1);
        const ok = await C.httpRequest({ port: ngx.port, path: `/ro/${other}` });
        assert.equal(ok.status, 200);
        assert.match(ok.text, /^channels: 1\r\n/);
    });

    it('limits from variables differ per tenant and refuse with 403', async () => {
        const small = group('small');
        const big = group('big');
        for (const c of ['a', 'b']) {
            await published(ngx, `/tenant/${small}/${c}?max_channels=2`);
        }
        const r = await pub(ngx, `/tenant/${small}/c?max_channels=2`);
        assert.equal(r.status, 403);
        assert.match(r.text, CHANNELS);
        for (const c of ['a', 'b', 'c', 'd']) {
            await published(ngx, `/tenant/${big}/${c}?max_channels=4`);
        }
        assert.equal((await pub(ngx, `/tenant/${big}/e?max_channels=4`)).status, 403);
        // subscribers
        const s1 = await sse(ngx, `/tenant/${small}/a?max_subscribers=1`);
        assert.equal(s1.status, 200);
        const s2 = await get(ngx, `/tenant/${small}/b?max_subscribers=1`);
        assert.equal(s2.status, 403);
        assert.match(s2.text, SUBSCRIBERS);
        s1.s.close();
        // messages memory
        const m = group('mem');
        await published(ngx, `/tenant/${m}/a?max_memory=2k`, 'x'.repeat(1500));
        const over = await pub(ngx, `/tenant/${m}/a?max_memory=2k`, 'x'.repeat(1500));
        assert.equal(over.status, 403);
        assert.match(over.text, MEMORY);
        // a value that is not a number is refused, never "no limit"
        const bad = await pub(ngx, `/tenant/${small}/z?max_channels=lots`);
        assert.equal(bad.status, 403);
        const badSub = await get(ngx, `/tenant/${small}/a?max_subscribers=-3`);
        assert.equal(badSub.status, 403);
    });

    it('POST stores limits with the group: they apply where a location has none', async () => {
        const g = group('st');
        const set = await info(ngx, g, { method: 'POST', query: '?max_channels=2&max_subscribers=3' });
        assert.equal(set.limits.channels, 2);
        assert.equal(set.limits.subscribers, 3);
        assert.equal(set.limits.messages_memory, 0);
        await published(ngx, `/ps/${g}/a`);
        await published(ngx, `/ps/${g}/b`);
        const r = await pub(ngx, `/ps/${g}/c`);
        assert.equal(r.status, 403);
        assert.match(r.text, CHANNELS);
        // a location's own limit wins over the stored one
        await published(ngx, `/own/${g}/c`);
        await published(ngx, `/tenant/${g}/d?max_channels=10`);
        // an empty variable is no limit of the location's own: stored applies
        assert.equal((await pub(ngx, `/tenant/${g}/e`)).status, 403);
        // a POST without that argument leaves the stored limit; 0 removes it
        const kept = await info(ngx, g, { method: 'POST', query: '?max_memory=1m' });
        assert.equal(kept.limits.channels, 2);
        assert.equal(kept.limits.messages_memory, 1024 * 1024);
        const cleared = await info(ngx, g, { method: 'POST', query: '?max_channels=0' });
        assert.equal(cleared.limits.channels, 0);
        await published(ngx, `/ps/${g}/e`);
        // stored subscriber limit
        const subs = [];
        for (let i = 0; i < 3; i++) {
            const s = await sse(ngx, `/ps/${g}/a`);
            assert.equal(s.status, 200);
            subs.push(s.s);
        }
        const refused = await get(ngx, `/ps/${g}/a`);
        assert.equal(refused.status, 403);
        assert.match(refused.text, SUBSCRIBERS);
        for (const s of subs) {
            s.close();
        }
        // an invalid value is refused, nothing stored
        const bad = await C.httpRequest({ port: ngx.port, path: `/group/${g}?max_channels=x`,
            method: 'POST' });
        assert.equal(bad.status, 403);
        // the limits stay with a group that has no channel
        await info(ngx, g, { method: 'DELETE' });
        const after = await info(ngx, g);
        assert.equal(after.channels, 0);
        assert.equal(after.limits.subscribers, 3);
        assert.equal(after.limits.messages_memory, 1024 * 1024);
    });
});

describe('pubsub_group_location configuration', () => {
    const conf = (body) => `server { listen 127.0.0.1:%%PORT%%; location /x { ${body} } }`;

    it('takes get, set, delete or off; shares its location with no other role', async () => {
        for (const ok of ['pubsub_group_location;', 'pubsub_group_location get delete;',
            'pubsub_group_location off;', 'pubsub_subscriber_info; pubsub_channel_id a;',
            'pubsub_group_max_channels $arg_n; pubsub_group_max_messages_memory 2m; pubsub_pubsub; pubsub_channel_id a;']) {
            const r = await nginxCheck(conf(ok));
            assert.ok(r.ok, `${ok}: ${r.output}`);
        }
        for (const bad of ['pubsub_group_location put;',
            'pubsub_group_location; pubsub_publisher;',
            'pubsub_publisher; pubsub_group_location;',
            'pubsub_subscriber_info; pubsub_subscriber;',
            'pubsub_subscriber; pubsub_subscriber_info;',
            'pubsub_group_location; pubsub_subscriber_info;',
            'pubsub_presence_api; pubsub_group_location;',
            'pubsub_group_location; pubsub_presence_api;',
            'pubsub_group_max_channels lots;',
            'pubsub_group_max_messages_memory 2q;']) {
            const r = await nginxCheck(conf(bad));
            assert.equal(r.ok, false, `${bad} should fail nginx -t`);
        }
    });
});

describe('pubsub_group_location (Redis, two nginx on one redis-server)', () => {
    const env = useRedisNginxes(2, { conf: `
upstream redis_up {
    pubsub_redis_server %%REDIS_URL%%;
}
server {
    listen 127.0.0.1:%%PORT%%;
    pubsub_redis_pass redis_up;
${locations.replace('%%ACCOUNT%%', 'pubsub_group_max_channels 0;')}
}`, workers: 2 });

    it('counts across instances, from either', async () => {
        const [a, b] = env.ngxs;
        const g = group('r');
        const subs = [];
        for (const [n, c] of [[a, 'c0'], [b, 'c0'], [b, 'c1']]) {
            const s = await sse(n, `/ps/${g}/${c}`);
            assert.equal(s.status, 200);
            subs.push(s.s);
        }
        await published(a, `/ps/${g}/c0`, 'abc');
        await published(b, `/ps/${g}/c0`, 'abc');
        await published(b, `/ps/${g}/c2`, 'x'.repeat(100));
        await waitUntil(async () => (await info(a, g)).subscribers === 3,
            { what: '3 subscribers in the group' });
        for (const n of [a, b]) {
            const i = await info(n, g);
            assert.equal(i.channels, 3);
            assert.equal(i.subscribers, 3);
            assert.equal(i.messages, 3);
            // data + content type + event name, as Redis counts memory
            assert.equal(i.messages_memory, 2 * (3 + 10) + 100 + 10);
        }
        // DELETE on one instance: subscribers of both get a channel delete
        const d = await info(b, g, { method: 'DELETE' });
        assert.equal(d.channels, 0);
        assert.equal(d.messages, 0);
        for (const s of subs) {
            assert.equal((await s.done).bodyEnded, true);
        }
        await waitUntil(async () => (await info(a, g)).subscribers === 0,
            { what: 'no subscribers left' });
    });

    it('limits stored on one instance apply on the other; variables per tenant', async () => {
        const [a, b] = env.ngxs;
        const g = group('rs');
        const set = await info(a, g, { method: 'POST', query: '?max_channels=2' });
        assert.equal(set.limits.channels, 2);
        await published(b, `/ps/${g}/a`);
        await published(a, `/ps/${g}/b`);
        for (const n of [a, b]) {
            const r = await pub(n, `/ps/${g}/c`);
            assert.equal(r.status, 403, r.text);
            assert.match(r.text, CHANNELS);
        }
        // a location's own limit wins
        await published(b, `/tenant/${g}/c?max_channels=3`);
        assert.equal((await pub(a, `/tenant/${g}/d?max_channels=3`)).status, 403);
        // removed: free again
        await info(b, g, { method: 'POST', query: '?max_channels=0' });
        await published(a, `/ps/${g}/d`);
        // per-tenant subscriber limit from a variable, across instances
        const t = group('rt');
        const s1 = await sse(a, `/tenant/${t}/a?max_subscribers=1`);
        assert.equal(s1.status, 200);
        const s2 = await get(b, `/tenant/${t}/b?max_subscribers=1`);
        assert.equal(s2.status, 403);
        assert.match(s2.text, SUBSCRIBERS);
        s1.s.close();
    });
});

module.exports = { locations, info, pub, published, sse, get, group, CHANNELS, SUBSCRIBERS,
    startNginxes, stopNginxes, startRedis };
