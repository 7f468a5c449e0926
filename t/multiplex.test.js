'use strict';
// Multiplexed subscriptions (docs/multiplexing.md) on every HTTP transport
// with worker_processes 2: delivery from every channel, in per-channel
// order, exactly once; resume with the compound id; the 255-channel limit;
// one subscribe/unsubscribe hook pair per channel (close, reset, channel
// delete, timeout, long-poll sessions); presence members per channel.

const assert = require('node:assert/strict');
const http = require('node:http');
const { describe, it, before, after } = require('node:test');
const { useNginx } = require('./lib/nginx');
const C = require('./lib/clients');
const u = require('./lib/backend');
const { withTimeout } = require('./lib/util');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let seq = 0;
const chan = (p = 'c') => `${p}${Date.now() % 100000}x${++seq}`;

const HOOKS = `
        pubsub_subscribe_request /hook/sub;
        pubsub_unsubscribe_request /hook/unsub;
        pubsub_longpoll_session_grace 1s;`;

const conf = `
server {
    listen 127.0.0.1:%%PORT%% reuseport;

    location = /hook/sub { proxy_pass http://127.0.0.1:%%BE%%; }
    location = /hook/unsub { proxy_pass http://127.0.0.1:%%BE%%; }

    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 200;
    }
    location ~ ^/m/(.+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_channel_id_split_delimiter ",";
    }
    # several pubsub_channel_id values
    location ~ ^/two/(\\w+)/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1 $2;
    }
    location ~ ^/raw/(.+)$ {
        pubsub_subscriber rawstream;
        pubsub_channel_id $1;
        pubsub_channel_id_split_delimiter ",";
    }
    location ~ ^/h/(.+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_channel_id_split_delimiter ",";${HOOKS}
    }
    location ~ ^/hraw/(.+)$ {
        pubsub_subscriber rawstream;
        pubsub_channel_id $1;
        pubsub_channel_id_split_delimiter ",";${HOOKS}
    }
    location ~ ^/ht/(.+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_channel_id_split_delimiter ",";
        pubsub_subscriber_timeout 1s;${HOOKS}
    }
    location ~ ^/p/(.+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_channel_id_split_delimiter ",";
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_events on;
        pubsub_presence_leave_delay 0;
    }
    location ~ ^/presence/(\\w+)$ { pubsub_presence_api; pubsub_channel_id $1; }
}`;

const opts = { conf, workers: 2, vars: {} };
let be;

before(async () => {
    be = await u.startBackend();
    opts.vars.BE = String(be.port);
});

after(async () => {
    if (be) {
        await be.close();
    }
});

const ngx = useNginx(opts);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

async function pub(channel, body) {
    const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${channel}`,
        body, agent, keepAlive: true, headers: { 'Content-Type': 'text/plain' } });
    assert.ok(r.status === 201 || r.status === 202, `publish ${channel}: ${r.status}`);
}

// Publishes n messages "<channel>-<i>" spread over the channels in a
// shuffled order; returns the bodies in publish order.
async function publishSpread(channels, n) {
    const sent = [];
    for (let i = 0; i < n; i++) {
        const c = channels[(i * 7 + (i >> 1)) % channels.length];
        const body = `${c}-${i}`;
        await pub(c, body);
        sent.push(body);
    }
    return sent;
}

// Every message once, each channel's in publish order.
function assertExactlyOnce(got, sent, what) {
    assert.deepEqual([...got].sort(), [...sent].sort(), `${what}: the same messages once`);
    const chans = new Set(sent.map((m) => m.split('-')[0]));
    for (const c of chans) {
        assert.deepEqual(got.filter((m) => m.startsWith(`${c}-`)),
            sent.filter((m) => m.startsWith(`${c}-`)), `${what}: order of ${c}`);
    }
}

function hookCalls(path, channel) {
    return be.of(path).filter((c) => c.headers['x-channel-id'] === channel);
}

// Waits for exactly `n` subscribe and unsubscribe hooks per channel.
async function hookPairs(channels, nSub, nUnsub, ms = 5000) {
    await u.waitFor(() => channels.every((c) => hookCalls('/hook/sub', c).length === nSub
        && hookCalls('/hook/unsub', c).length === nUnsub), ms,
    `hooks ${nSub}/${nUnsub} for ${channels}: ${channels.map((c) =>
        `${c}=${hookCalls('/hook/sub', c).length}/${hookCalls('/hook/unsub', c).length}`)}`);
    // none more afterwards
    await sleep(300);
    for (const c of channels) {
        assert.equal(hookCalls('/hook/sub', c).length, nSub, `subscribe hooks of ${c}`);
        assert.equal(hookCalls('/hook/unsub', c).length, nUnsub, `unsubscribe hooks of ${c}`);
    }
}

// A long-poll loop on one keep-alive connection: polling sessions live in
// one worker (docs/hooks.md), and reuseport spreads new connections.
function keepAlivePoll(path) {
    const ka = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const st = { got: [], statuses: [], stopped: false };
    st.loop = (async () => {
        let lm = null;
        let etag = null;
        while (!st.stopped) {
            const headers = { Accept: 'text/plain' };
            if (lm) {
                headers['If-Modified-Since'] = lm;
                headers['If-None-Match'] = etag;
            }
            const r = await C.httpRequest({ port: ngx.port, agent: ka, keepAlive: true,
                path, headers }).catch(() => null);
            if (!r) {
                return;
            }
            st.statuses.push(r.status);
            if (r.status !== 200) {
                return;
            }
            lm = r.headers['last-modified'];
            etag = r.headers.etag;
            st.got.push(r.text);
        }
    })();
    st.stop = async () => {
        st.stopped = true;
        ka.destroy();
        await withTimeout(st.loop, 3000, 'poll loop');
    };
    return st;
}

// A WebSocket with the stream interface the hook tests use.
function wsStream(path) {
    const p = C.wsConnect(`ws://127.0.0.1:${ngx.port}${path}`);
    let client = null;
    const st = {
        response: p.then((c) => {
            client = c;
            return { status: 101 };
        }, (e) => ({ status: e.status })),
        close: () => (client ? client.close() : null),
    };
    st.done = p.then((c) => c.closed.then((ci) => ({ bodyEnded: ci.reason === '410 Gone' })));
    st.reset = () => client.ws._socket.resetAndDestroy();
    return st;
}

async function getJson(path) {
    const r = await C.httpRequest({ port: ngx.port, path });
    return { status: r.status, json: r.text ? JSON.parse(r.text) : null };
}

async function memberIds(channel) {
    const r = await getJson(`/presence/${channel}`);
    assert.equal(r.status, 200);
    return r.json.members.map((m) => m.id).sort();
}

describe('multiplexed delivery on every transport', () => {
    it('each transport gets every channel, in order, exactly once', async () => {
        const chans = [chan('a'), chan('b'), chan('c')];
        const list = chans.join(',');
        const sse = C.sseStream({ port: ngx.port, path: `/m/${list}` });
        const chunked = C.chunkedStream({ port: ngx.port, path: `/m/${list}` });
        const mp = C.multipartStream({ port: ngx.port, path: `/m/${list}` });
        const raw = C.rawStream({ port: ngx.port, path: `/raw/${list}` });
        for (const s of [sse, chunked, mp, raw]) {
            assert.equal((await s.response).status, 200);
        }
        assert.match(mp.head.headers['content-type'], /^multipart\/mixed; boundary=/);
        const lp = C.longPoll({ port: ngx.port, path: `/m/${list}`,
            headers: { Accept: 'text/plain' } });
        await sleep(200);

        const sent = await publishSpread(chans, 60);

        const sseEv = await sse.waitFor(60, 5000);
        assertExactlyOnce(sseEv.map((e) => e.data), sent, 'eventsource');
        const ch = await chunked.messages.waitFor(60, 5000);
        assertExactlyOnce(ch.map((b) => b.toString()), sent, 'chunked');
        const parts = await mp.parts.waitFor(60, 5000);
        assertExactlyOnce(parts.map((p) => p.text), sent, 'multipart');
        const rm = await raw.messages.waitFor(60, 5000);
        assertExactlyOnce(rm.map((m) => m.text), sent, 'raw stream');
        const lm = await lp.waitFor(60, 10000);
        assertExactlyOnce(lm.map((m) => m.text), sent, 'long-poll');

        // Multipart parts carry the compound position like nchan's.
        for (const p of parts) {
            assert.match(p.headers.etag, /^(\[?(\d+|-)\]?,){2}\[?(\d+|-)\]?$/);
            assert.equal((p.headers.etag.match(/\[/g) || []).length, 1, p.headers.etag);
            assert.ok(!Number.isNaN(Date.parse(p.headers['last-modified'])));
        }
        // The bracketed tag is the channel of the part.
        for (const p of parts) {
            const idx = p.headers.etag.split(',').findIndex((t) => t.startsWith('['));
            assert.ok(p.text.startsWith(`${chans[idx]}-`), `${p.headers.etag} ${p.text}`);
        }

        await sleep(300);
        assert.equal(sse.events.items.length, 60);
        assert.equal(chunked.messages.items.length, 60);
        assert.equal(mp.parts.items.length, 60);
        assert.equal(raw.messages.items.length, 60);
        for (const s of [sse, chunked, mp, raw]) {
            s.close();
        }
        await lp.stop();
    });

    it('several pubsub_channel_id values multiplex too', async () => {
        const a = chan('a');
        const b = chan('b');
        const s = C.chunkedStream({ port: ngx.port, path: `/two/${a}/${b}` });
        assert.equal((await s.response).status, 200);
        await sleep(100);
        await pub(b, 'one');
        await pub(a, 'two');
        const got = await s.messages.waitFor(2, 3000);
        assert.deepEqual(got.map(String), ['one', 'two']);
        s.close();
    });

    it('resumes from the compound id on chunked, multipart and raw', async () => {
        const chans = [chan('a'), chan('b')];
        const list = chans.join(',');
        const mp = C.multipartStream({ port: ngx.port, path: `/m/${list}` });
        await mp.response;
        await sleep(100);
        const sent = await publishSpread(chans, 10);
        const parts = await mp.parts.waitFor(10, 5000);
        mp.close();

        // The position after part k covers exactly the first k+1 messages.
        const k = 3;
        const seen = parts.slice(0, k + 1).map((p) => p.text);
        const rest = sent.filter((m) => !seen.includes(m));
        const lm = parts[k].headers['last-modified'];
        const tags = parts[k].headers.etag;

        const again = C.multipartStream({ port: ngx.port, path: `/m/${list}`,
            headers: { 'If-Modified-Since': lm, 'If-None-Match': tags } });
        assert.equal((await again.response).status, 200);
        const more = await again.parts.waitFor(rest.length, 5000);
        assertExactlyOnce(more.map((p) => p.text), rest, 'multipart resume');

        // The same position as a "time:tags" id for the other streams.
        const id = `${Date.parse(lm) / 1000}:${tags}`;
        const q = `?last_event_id=${encodeURIComponent(id)}`;
        const ch = C.chunkedStream({ port: ngx.port, path: `/m/${list}${q}` });
        const raw = C.rawStream({ port: ngx.port, path: `/raw/${list}${q}` });
        const sse = C.sseStream({ port: ngx.port, path: `/m/${list}`,
            headers: { 'Last-Event-ID': id } });
        const chm = await ch.messages.waitFor(rest.length, 5000);
        const rm = await raw.messages.waitFor(rest.length, 5000);
        const se = await sse.waitFor(rest.length, 5000);
        assertExactlyOnce(chm.map(String), rest, 'chunked resume');
        assertExactlyOnce(rm.map((m) => m.text), rest, 'raw resume');
        assertExactlyOnce(se.map((e) => e.data), rest, 'eventsource resume');
        await sleep(300);
        assert.equal(ch.messages.items.length, rest.length);
        assert.equal(raw.messages.items.length, rest.length);
        assert.equal(again.parts.items.length, rest.length);
        for (const s of [again, ch, raw, sse]) {
            s.close();
        }
    });

    it('255 channels are allowed, 256 are not; bad compound ids are 400', async () => {
        const many = Array.from({ length: 255 }, (_, i) => `x${seq}n${i}`);
        const list = many.join(',');
        const streams = [
            C.chunkedStream({ port: ngx.port, path: `/m/${list}` }),
            C.multipartStream({ port: ngx.port, path: `/m/${list}` }),
            C.rawStream({ port: ngx.port, path: `/raw/${list}` }),
        ];
        for (const s of streams) {
            assert.equal((await s.response).status, 200);
        }
        await sleep(100);
        await pub(many[254], 'last');
        await pub(many[0], 'first');
        assert.deepEqual((await streams[0].messages.waitFor(2, 3000)).map(String),
            ['last', 'first']);
        const parts = await streams[1].parts.waitFor(2, 3000);
        assert.equal(parts[1].headers.etag.split(',').length, 255);
        assert.deepEqual((await streams[2].messages.waitFor(2, 3000)).map((m) => m.text),
            ['last', 'first']);
        for (const s of streams) {
            s.close();
        }

        for (const [path, headers] of [[`/m/${list},y`, { TE: 'chunked' }],
            [`/m/${list},y`, { Accept: 'multipart/mixed' }], [`/raw/${list},y`, {}]]) {
            const r = await C.httpRequest({ port: ngx.port, path, headers });
            assert.equal(r.status, 400, `${path.slice(0, 8)} ${JSON.stringify(headers)}`);
        }
        for (const id of ['1:1,2,3', '1:[1],[2]', 'x:1']) {
            for (const [path, headers] of [['/m/q1,q2', { TE: 'chunked' }],
                ['/m/q1,q2', { Accept: 'multipart/mixed' }], ['/raw/q1,q2', {}]]) {
                const r = await C.httpRequest({ port: ngx.port, headers,
                    path: `${path}?last_event_id=${encodeURIComponent(id)}` });
                assert.equal(r.status, 400, `${id} ${path}`);
            }
        }
    });
});

describe('multiplexed WebSocket', () => {
    const url = (path) => `ws://127.0.0.1:${ngx.port}${path}`;

    it('gets every channel, in order, exactly once, with compound ids', async () => {
        const chans = [chan('w'), chan('w'), chan('w')];
        const list = chans.join(',');
        const plain = await C.wsConnect(url(`/m/${list}`));
        const meta = await C.wsConnect(url(`/m/${list}`), { protocol: 'ws+meta.nchan' });
        assert.equal(meta.protocol, 'ws+meta.nchan');
        const sent = await publishSpread(chans, 45);
        const pm = await plain.waitFor(45, 5000);
        assertExactlyOnce(pm.map((m) => m.text), sent, 'websocket');
        const mm = await meta.waitFor(45, 5000);
        assertExactlyOnce(mm.map((m) => m.meta.text), sent, 'ws+meta');
        for (const m of mm) {
            assert.match(m.meta.id, /^\d+:(\[?(\d+|-)\]?,){2}\[?(\d+|-)\]?$/);
            const idx = m.meta.id.split(':')[1].split(',').findIndex((t) => t.startsWith('['));
            assert.ok(m.meta.text.startsWith(`${chans[idx]}-`), `${m.meta.id} ${m.meta.text}`);
        }
        await sleep(300);
        assert.equal(plain.messages.items.length, 45);
        assert.equal(meta.messages.items.length, 45);

        // resume from the 10th compound id: exactly the rest
        const rest = sent.filter((m) => !mm.slice(0, 10).map((x) => x.meta.text).includes(m));
        const again = await C.wsConnect(
            url(`/m/${list}?last_event_id=${encodeURIComponent(mm[9].meta.id)}`),
            { protocol: 'ws+meta.nchan' });
        const more = await again.waitFor(rest.length, 5000);
        assertExactlyOnce(more.map((m) => m.meta.text), rest, 'ws resume');
        await sleep(300);
        assert.equal(again.messages.items.length, rest.length);
        for (const c of [plain, meta, again]) {
            await c.close();
        }
    });

    it('255 channels are allowed, 256 and bad ids are 400; delete closes', async () => {
        const many = Array.from({ length: 255 }, (_, i) => `w${seq}n${i}`);
        const c = await C.wsConnect(url(`/m/${many.join(',')}`));
        await pub(many[200], 'hello');
        assert.equal((await c.next(3000)).text, 'hello');
        await assert.rejects(C.wsConnect(url(`/m/${many.join(',')},z`)), (e) => e.status === 400);
        await assert.rejects(C.wsConnect(url('/m/q1,q2?last_event_id=1%3A1%2C2%2C3')),
            (e) => e.status === 400);
        // deleting one channel closes the connection (410 Gone)
        await C.httpRequest({ port: ngx.port, method: 'DELETE', path: `/pub/${many[200]}` });
        const ci = await withTimeout(c.closed, 3000, 'close');
        assert.equal(ci.reason, '410 Gone');
    });
});

describe('hooks: one pair per channel', () => {
    it('eventsource, chunked, multipart, raw: closed by the client', async () => {
        const cases = [
            ['eventsource', (p) => C.sseStream({ port: ngx.port, path: `/h/${p}` })],
            ['http-chunked', (p) => C.chunkedStream({ port: ngx.port, path: `/h/${p}` })],
            ['http-multipart', (p) => C.multipartStream({ port: ngx.port, path: `/h/${p}` })],
            ['http-raw-stream', (p) => C.rawStream({ port: ngx.port, path: `/hraw/${p}` })],
            ['websocket', (p) => wsStream(`/h/${p}`)],
        ];
        for (const [type, open] of cases) {
            const chans = [chan('h'), chan('h'), chan('h')];
            const s = open(chans.join(','));
            assert.equal((await s.response).status, type === 'websocket' ? 101 : 200);
            await hookPairs(chans, 1, 0);
            for (const c of chans) {
                assert.equal(hookCalls('/hook/sub', c)[0].headers['x-subscriber-type'], type);
            }
            s.close();
            await hookPairs(chans, 1, 1);
            assert.equal(hookCalls('/hook/unsub', chans[2])[0].headers['x-subscriber-type'],
                type);
        }
    });

    it('a reset connection and a subscriber timeout end every channel once', async () => {
        const chans = [chan('r'), chan('r')];
        const s = C.chunkedStream({ port: ngx.port, path: `/h/${chans.join(',')}` });
        assert.equal((await s.response).status, 200);
        await hookPairs(chans, 1, 0);
        s.sock.resetAndDestroy();
        await hookPairs(chans, 1, 1);
        const wc = [chan('r'), chan('r')];
        const w = wsStream(`/h/${wc.join(',')}`);
        assert.equal((await w.response).status, 101);
        await hookPairs(wc, 1, 0);
        w.reset();
        await hookPairs(wc, 1, 1);

        const t = [chan('t'), chan('t'), chan('t')];
        const mp = C.multipartStream({ port: ngx.port, path: `/ht/${t.join(',')}` });
        assert.equal((await mp.response).status, 200);
        await withTimeout(mp.done, 4000, 'timeout');   // 1s: the stream ends
        assert.ok(mp.finalBoundary);
        await hookPairs(t, 1, 1);
    });

    it('deleting one channel ends the subscription; each unsubscribe once', async () => {
        for (const open of [
            (p) => C.chunkedStream({ port: ngx.port, path: `/h/${p}` }),
            (p) => C.multipartStream({ port: ngx.port, path: `/h/${p}` }),
            (p) => C.sseStream({ port: ngx.port, path: `/h/${p}` }),
            (p) => C.rawStream({ port: ngx.port, path: `/hraw/${p}` }),
            (p) => wsStream(`/h/${p}`),
        ]) {
            const chans = [chan('d'), chan('d'), chan('d')];
            await pub(chans[1], 'exists');
            const s = open(chans.join(','));
            assert.ok([101, 200].includes((await s.response).status));
            await hookPairs(chans, 1, 0);
            const del = await C.httpRequest({ port: ngx.port, method: 'DELETE',
                path: `/pub/${chans[1]}` });
            assert.equal(del.status, 200);
            const end = await withTimeout(s.done, 3000, 'stream end');
            assert.equal(end.bodyEnded, true, 'the body ends');
            await hookPairs(chans, 1, 1);
            s.close();
        }
    });

    it('long-poll: one session per channel across polls', async () => {
        const chans = [chan('l'), chan('l')];
        const lp = keepAlivePoll(`/h/${chans.join(',')}`);
        await hookPairs(chans, 1, 0);
        for (let i = 0; i < 4; i++) {
            await pub(chans[i % 2], `m${i}`);
            await u.waitFor(() => lp.got.length === i + 1, 3000, `message ${i}`);
        }
        assert.deepEqual(lp.got, ['m0', 'm1', 'm2', 'm3']);
        // four answered polls and a fifth waiting: still one session each
        await sleep(100);
        for (const c of chans) {
            assert.equal(hookCalls('/hook/sub', c).length, 1, `subscribe hooks of ${c}`);
            assert.equal(hookCalls('/hook/unsub', c).length, 0, `unsubscribe hooks of ${c}`);
        }
        await lp.stop();
        // the sessions end after the grace (1s), each once
        await hookPairs(chans, 1, 1, 4000);

        // a deleted channel ends the polling sessions at once
        const d = [chan('ld'), chan('ld')];
        await pub(d[0], 'x');
        const lp2 = keepAlivePoll(`/h/${d.join(',')}`);
        await u.waitFor(() => lp2.got.length === 1, 3000, 'first message');
        await sleep(200);
        await C.httpRequest({ port: ngx.port, method: 'DELETE', path: `/pub/${d[0]}` });
        await withTimeout(lp2.loop, 3000, 'poll loop end');
        assert.deepEqual(lp2.statuses, [200, 410]);
        await hookPairs(d, 1, 1, 900);
    });
});

describe('presence per channel', () => {
    it('a multiplexed member joins and leaves every channel', async () => {
        const chans = [chan('p'), chan('p'), chan('p')];
        const list = chans.join(',');
        const alice = C.sseStream({ port: ngx.port, path: `/p/${list}?user=alice` });
        assert.equal((await alice.response).status, 200);
        const bob = C.chunkedStream({ port: ngx.port, path: `/p/${chans[1]},${chans[2]}?user=bob` });
        assert.equal((await bob.response).status, 200);
        await u.waitFor(async () => (await memberIds(chans[2])).length === 2, 3000, 'members');
        assert.deepEqual(await memberIds(chans[0]), ['alice']);
        assert.deepEqual(await memberIds(chans[1]), ['alice', 'bob']);
        assert.deepEqual(await memberIds(chans[2]), ['alice', 'bob']);

        // alice sees bob join channels 1 and 2 (events name their channel)
        const joins = new Set();
        await u.waitFor(async () => {
            for (const ev of alice.events.items) {
                if (ev.event === 'pubsub.join') {
                    const j = JSON.parse(ev.data);
                    if (j.member.id === 'bob') {
                        joins.add(j.channel);
                    }
                }
            }
            return joins.size === 2;
        }, 3000, 'join events');
        assert.deepEqual([...joins].sort(), [chans[1], chans[2]].sort());

        bob.close();
        await u.waitFor(async () => (await memberIds(chans[2])).length === 1, 3000, 'bob left');
        assert.deepEqual(await memberIds(chans[1]), ['alice']);
        // a multiplexed WebSocket member too
        const carol = await C.wsConnect(
            `ws://127.0.0.1:${ngx.port}/p/${chans[0]},${chans[2]}?user=carol`);
        await u.waitFor(async () => (await memberIds(chans[2])).length === 2, 3000, 'carol');
        assert.deepEqual(await memberIds(chans[0]), ['alice', 'carol']);
        assert.deepEqual(await memberIds(chans[2]), ['alice', 'carol']);
        assert.deepEqual(await memberIds(chans[1]), ['alice']);
        await carol.close();
        await u.waitFor(async () => (await memberIds(chans[2])).length === 1, 3000, 'carol left');

        alice.close();
        await u.waitFor(async () => (await memberIds(chans[0])).length === 0
            && (await memberIds(chans[1])).length === 0, 3000, 'alice left');
    });
});
