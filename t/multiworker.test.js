'use strict';
// Every worker delivers every message (issue 4): connections spread over 4
// workers, cross-worker delivery exactly once and in order, cluster-wide
// counts, reload and SIGKILL under live traffic with resuming SSE and
// long-poll subscribers, multiplexed subscriptions, group limits, a full
// zone (507) that recovers, and a soak that leaves shared memory flat.

const assert = require('node:assert');
const http = require('node:http');
const { test } = require('node:test');
const { withNginx } = require('./lib/nginx');
const { httpRequest, sseStream } = require('./lib/clients');
const { sleep, waitUntil, LOOPBACK } = require('./lib/util');

const WORKERS = 4;

const CONF = `
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        add_header X-Worker $pid always;
        pubsub_message_buffer_length 1000;
        location ~ ^/pub/(.+)$ { pubsub_publisher; pubsub_channel_id $1; }
        location ~ ^/sub/(.+)$ { pubsub_subscriber; pubsub_channel_id $1; }
        location ~ ^/multi/(.+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_channel_id_split_delimiter ",";
        }
        location ~ ^/glim/(.+)$ {
            pubsub_pubsub;
            pubsub_channel_group limited;
            pubsub_channel_id $1;
            pubsub_group_max_channels 2;
            pubsub_group_max_subscribers 3;
        }
        location ~ ^/gmem/(.+)$ {
            pubsub_publisher;
            pubsub_channel_group memlimited;
            pubsub_channel_id $1;
            pubsub_group_max_messages_memory 16k;
        }
        location = /status { pubsub_status; }
    }
`;

// Killing a worker: nginx's own alert, and the slab mutex force-unlock.
const KILL_ALERTS = [
    /\[alert\].*worker process \d+ exited on signal 9/,
    /\[alert\].*shared memory zone "ngx_pubsub" was locked by \d+/,
];

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function pub(port, channel, body, path = '/pub/') {
    return httpRequest({ port, method: 'POST', path: path + channel, body, agent,
        keepAlive: true, headers: { 'Content-Type': 'text/plain' } });
}

async function info(port, channel) {
    const r = await httpRequest({ port, path: `/pub/${channel}`,
        headers: { Accept: 'application/json' } });
    return r.status === 200 ? JSON.parse(r.text) : null;
}

async function status(port) {
    return JSON.parse((await httpRequest({ port, path: '/status' })).text);
}

// An EventSource client that reconnects with Last-Event-ID like a browser.
class ResumingSse {
    constructor(port, path) {
        this.port = port;
        this.path = path;
        this.data = [];
        this.ids = [];
        this.workers = new Set();
        this.connects = 0;
        this.lastId = null;
        this.stopped = false;
        this.loop = this.run();
    }

    async run() {
        while (!this.stopped) {
            const headers = this.lastId ? { 'Last-Event-ID': this.lastId } : {};
            const s = sseStream({ port: this.port, path: this.path, headers, timeout: 120000 });
            this.cur = s;
            try {
                const head = await s.response;
                assert.strictEqual(head.status, 200);
                this.workers.add(head.headers['x-worker']);
                this.connects++;
                for (;;) {
                    const ev = await s.next(120000);
                    this.data.push(ev.data);
                    this.ids.push(ev.id);
                    this.lastId = ev.id;
                }
            } catch {
                // closed (reload, killed worker, stop): reconnect
            }
            s.close();
            // nginx is gone (a failed test): give up instead of spinning
            this.failures = s.head ? 0 : (this.failures || 0) + 1;
            if (this.failures > 100) {
                this.stopped = true;
            }
            if (!this.stopped) {
                await sleep(30);
            }
        }
    }

    async stop() {
        this.stopped = true;
        if (this.cur) {
            this.cur.close();
        }
        await this.loop;
    }
}

// A long-poll client (If-Modified-Since / If-None-Match) that retries when
// its connection is closed.
class ResumingLongPoll {
    constructor(port, path) {
        this.port = port;
        this.path = path;
        this.data = [];
        this.lastModified = null;
        this.etag = null;
        this.stopped = false;
        this.loop = this.run();
    }

    async run() {
        while (!this.stopped) {
            const headers = {};
            if (this.lastModified) {
                headers['If-Modified-Since'] = this.lastModified;
                headers['If-None-Match'] = this.etag;
            }
            let r;
            try {
                r = await httpRequest({ port: this.port, path: this.path, headers,
                    timeout: 120000 });
            } catch {
                this.failures = (this.failures || 0) + 1;
                if (this.failures > 100) {
                    this.stopped = true;
                }
                if (!this.stopped) {
                    await sleep(30);
                }
                continue;
            }
            this.failures = 0;
            if (r.status === 200) {
                this.data.push(r.text);
                this.lastModified = r.headers['last-modified'];
                this.etag = r.headers.etag;
            } else if (!this.stopped) {
                await sleep(30);
            }
        }
    }

    async stop() {
        this.stopped = true;
        // a message wakes a waiting poll
        await this.loop;
    }
}

function expectExactly(got, want, who) {
    assert.strictEqual(got.length, want.length,
        `${who}: ${got.length} messages, want ${want.length}`);
    assert.deepStrictEqual(got, want, `${who}: not every message once and in order`);
}

function workerOpts(extra = {}) {
    return { conf: CONF, workers: WORKERS, ...extra, test: { timeout: 180000 } };
}

test('connections spread over all workers; each message reaches every subscriber once',
    { timeout: 60000 }, () => withNginx(workerOpts(), async (ngx) => {
        const subs = [];
        for (let i = 0; i < 24; i++) {
            subs.push(new ResumingSse(ngx.port, '/sub/spread'));
        }
        await waitUntil(() => subs.every((s) => s.connects === 1),
            { timeout: 5000, what: 'subscribers connected' });
        const subWorkers = new Set(subs.flatMap((s) => [...s.workers]));
        assert.strictEqual(subWorkers.size, WORKERS, `subscribers on ${[...subWorkers]}`);

        await waitUntil(async () => (await info(ngx.port, 'spread') || {}).subscribers === 24,
            { timeout: 3000, what: 'cluster-wide subscriber count' });

        const want = [];
        const pubWorkers = new Set();
        for (let i = 0; i < 60; i++) {
            want.push(`m${i}`);
            // a fresh connection each time: publishers land on every worker
            const r = await httpRequest({ port: ngx.port, method: 'POST',
                path: '/pub/spread', body: `m${i}` });
            assert.strictEqual(r.status, 201);
            pubWorkers.add(r.headers['x-worker']);
        }
        assert.strictEqual(pubWorkers.size, WORKERS, `publishers on ${[...pubWorkers]}`);
        await waitUntil(() => subs.every((s) => s.data.length >= 60),
            { timeout: 5000, what: 'every message everywhere' });
        await sleep(200);
        for (const s of subs) {
            expectExactly(s.data, want, `subscriber on worker ${[...s.workers]}`);
        }
        const st = await status(ngx.port);
        assert.strictEqual(st.subscribers, 24);
        for (const s of subs) {
            await s.stop();
        }
        await waitUntil(async () => (await info(ngx.port, 'spread')).subscribers === 0,
            { timeout: 3000, what: 'subscriber count back to 0' });
    }));

async function trafficWhile(ngx, name, disrupt) {
    const sse = [];
    const lp = [];
    for (let i = 0; i < 12; i++) {
        sse.push(new ResumingSse(ngx.port, `/sub/${name}`));
    }
    for (let i = 0; i < 6; i++) {
        lp.push(new ResumingLongPoll(ngx.port, `/sub/${name}`));
    }
    await waitUntil(() => sse.every((s) => s.connects >= 1),
        { timeout: 5000, what: 'SSE subscribers connected' });
    await sleep(300);  // long-polls waiting
    const want = [];
    const total = 300;
    for (let i = 0; i < total; i++) {
        want.push(`${name}-${i}`);
        for (;;) {
            const r = await pub(ngx.port, name, want[i]).catch((e) => ({ status: 0, e }));
            if (r.status === 201 || r.status === 202) {
                break;
            }
            await sleep(20);  // the connection went away with its worker: publish again
        }
        if (i === 100) {
            await disrupt();
        }
        if (i % 10 === 0) {
            await sleep(5);
        }
    }
    await waitUntil(() => sse.every((s) => s.data.length >= total) &&
        lp.every((l) => l.data.length >= total),
    { timeout: 20000, what: 'every subscriber caught up' });
    await sleep(300);
    for (const s of sse) {
        expectExactly(s.data, want, `SSE subscriber (${s.connects} connections)`);
    }
    for (const l of lp) {
        expectExactly(l.data, want, 'long-poll subscriber');
    }
    // Stored messages survived: a new subscriber from the start gets them all.
    const fresh = new ResumingSse(ngx.port, `/sub/${name}`);
    await waitUntil(() => fresh.data.length >= total, { timeout: 5000, what: 'replay' });
    expectExactly(fresh.data, want, 'subscriber replaying the buffer');
    await fresh.stop();
    for (const s of sse) {
        await s.stop();
    }
    // wake the waiting long-polls so they can stop
    const stopping = lp.map((l) => l.stop());
    await pub(ngx.port, name, 'bye');
    await Promise.all(stopping);
    return { sse, lp };
}

test('reload under live traffic: resuming subscribers lose nothing, see nothing twice',
    { timeout: 90000 }, () => withNginx(workerOpts(), async (ngx) => {
        const before = new Set(ngx.workerPids());
        const { sse } = await trafficWhile(ngx, 'reload', async () => {
            await ngx.reload();
        });
        const after = new Set(ngx.workerPids());
        assert.ok([...after].every((p) => !before.has(p)), 'new workers after reload');
        assert.ok(sse.every((s) => s.connects >= 2), 'old workers closed their subscribers');
        await waitUntil(async () => (await info(ngx.port, 'reload')).subscribers === 0,
            { timeout: 5000, what: 'subscriber count back to 0' });
        const st = await status(ngx.port);
        assert.ok(st.generation >= 1, 'the zone was adopted by the new configuration');
    }));

test('SIGKILL of a worker under traffic: restarted, no stuck channel, counts recover',
    { timeout: 90000 }, () => withNginx({ ...workerOpts(), allow: KILL_ALERTS },
        async (ngx) => {
            let victim = null;
            await trafficWhile(ngx, 'kill', async () => {
                victim = ngx.workerPids()[0];
                process.kill(victim, 'SIGKILL');
                await waitUntil(() => ngx.workerPids().length === WORKERS &&
                    !ngx.workerPids().includes(victim),
                { timeout: 5000, what: 'the master restarted the worker' });
            });
            await waitUntil(async () => (await info(ngx.port, 'kill')).subscribers === 0,
                { timeout: 5000, what: 'subscriber count back to 0' });
            // The channel still works on every worker.
            const s = new ResumingSse(ngx.port, '/sub/kill-after');
            await waitUntil(() => s.connects === 1, { timeout: 3000 });
            for (let i = 0; i < 20; i++) {
                await httpRequest({ port: ngx.port, method: 'POST', path: '/pub/kill-after',
                    body: `k${i}` });
            }
            await waitUntil(() => s.data.length === 20, { timeout: 3000, what: 'delivery' });
            await s.stop();
        }));

test('multiplexed subscriptions: compound ids, resume across all channels',
    { timeout: 60000 }, () => withNginx(workerOpts(), async (ngx) => {
        const s = new ResumingSse(ngx.port, '/multi/m1,m2');
        await waitUntil(() => s.connects === 1, { timeout: 3000 });
        const order = ['m1', 'm2', 'm2', 'm1', 'm2'];
        for (const [i, c] of order.entries()) {
            await httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${c}`,
                body: `${c}-${i}` });
        }
        await waitUntil(() => s.data.length === 5, { timeout: 3000, what: 'multiplexed' });
        assert.deepStrictEqual(s.data, ['m1-0', 'm2-1', 'm2-2', 'm1-3', 'm2-4']);
        const t = s.ids[0].split(':')[0];
        // nchan's observed sequence when all five share a second
        if (s.ids.every((id) => id.startsWith(`${t}:`))) {
            assert.deepStrictEqual(s.ids.map((id) => id.split(':')[1]),
                ['[0],-', '0,[0]', '0,[1]', '[1],1', '1,[2]']);
        }
        await s.stop();

        // SSE resume from the second id: the three after it, once.
        const r = sseStream({ port: ngx.port, path: '/multi/m1,m2',
            headers: { 'Last-Event-ID': s.ids[1] } });
        const evs = await r.waitFor(3, 3000);
        // Per channel in order; across channels within one second the ids
        // cannot tell the publish order apart (docs/multiplexing.md).
        assert.deepStrictEqual(evs.map((e) => e.data).sort(), ['m1-3', 'm2-2', 'm2-4']);
        assert.deepStrictEqual(evs.map((e) => e.data).filter((d) => d.startsWith('m2')),
            ['m2-2', 'm2-4']);
        await sleep(200);
        assert.strictEqual(r.events.items.length, 3);
        r.close();

        // Long-poll through every message from the start: each exactly once.
        const lp = new ResumingLongPoll(ngx.port, '/multi/m1,m2');
        await waitUntil(() => lp.data.length === 5, { timeout: 3000, what: 'long-poll' });
        assert.deepStrictEqual([...lp.data].sort(), [...s.data].sort());
        const stopping = lp.stop();
        await httpRequest({ port: ngx.port, method: 'POST', path: '/pub/m2', body: 'x' });
        await stopping;

        // Bad compound ids.
        for (const id of ['1:1,2,3', '1:[1],[2]', 'x:1']) {
            const b = await httpRequest({ port: ngx.port, path: `/multi/m1,m2?last_event_id=${encodeURIComponent(id)}` });
            assert.strictEqual(b.status, 400, id);
        }
        // 255 channels are allowed, 256 are not.
        const many = Array.from({ length: 255 }, (_, i) => `c${i}`).join(',');
        const ok = sseStream({ port: ngx.port, path: `/multi/${many}` });
        assert.strictEqual((await ok.response).status, 200);
        ok.close();
        const tooMany = await httpRequest({ port: ngx.port, path: `/multi/${many},x` });
        assert.strictEqual(tooMany.status, 400);
    }));

test('group limits answer 403 with the reason', { timeout: 60000 },
    () => withNginx(workerOpts(), async (ngx) => {
        assert.strictEqual((await pub(ngx.port, 'a', 'x', '/glim/')).status, 202);
        assert.strictEqual((await pub(ngx.port, 'b', 'x', '/glim/')).status, 202);
        const no = await pub(ngx.port, 'c', 'x', '/glim/');
        assert.strictEqual(no.status, 403);
        assert.match(no.text, /Group limit reached for number of channels\./);
        assert.strictEqual((await pub(ngx.port, 'c', 'x')).status, 202, 'other group');

        const subs = [];
        for (let i = 0; i < 3; i++) {
            const s = sseStream({ port: ngx.port, path: '/glim/a' });
            assert.strictEqual((await s.response).status, 200);
            subs.push(s);
        }
        const fourth = await httpRequest({ port: ngx.port, path: '/glim/b',
            headers: { Accept: 'text/event-stream' } });
        assert.strictEqual(fourth.status, 403);
        assert.match(fourth.text, /Group limit reached for number of subscribers\./);
        subs[0].close();
        await sleep(200);
        const again = sseStream({ port: ngx.port, path: '/glim/b' });
        assert.strictEqual((await again.response).status, 200);
        again.close();
        for (const s of subs) {
            s.close();
        }

        const big = 'x'.repeat(3000);
        let r;
        let n = 0;
        for (; n < 20; n++) {
            r = await pub(ngx.port, `m${n % 3}`, big, '/gmem/');
            if (r.status !== 202) {
                break;
            }
        }
        assert.strictEqual(r.status, 403);
        assert.match(r.text, /Group limit reached for messages memory\./);
        assert.ok(n >= 4 && n <= 6, `${n} messages fit in 16k`);
    }));

test('a full zone answers 507 and recovers as messages expire', { timeout: 60000 },
    () => withNginx({ workers: WORKERS, conf: `
        pubsub_shm_size 512k;
        server {
            listen 127.0.0.1:%%PORT%% reuseport;
            location ~ ^/pub/(.+)$ {
                pubsub_publisher;
                pubsub_channel_id $1;
                pubsub_message_buffer_length 10000;
                pubsub_message_timeout 2s;
            }
            location = /status { pubsub_status; }
        }` }, async (ngx) => {
        const body = 'y'.repeat(8000);
        let full = null;
        for (let i = 0; i < 200; i++) {
            const r = await pub(ngx.port, `f${i % 4}`, body);
            if (r.status === 507) {
                full = i;
                break;
            }
            assert.strictEqual(r.status, 202);
        }
        assert.ok(full !== null && full > 10, `507 after ${full} messages`);
        await sleep(3200);
        const r = await pub(ngx.port, 'f0', body);
        assert.strictEqual(r.status, 202, 'publishing works again once messages expired');
    }));

test('soak: publishing many messages into buffer-10 channels leaves shm flat',
    { timeout: 200000 }, () => withNginx({ workers: WORKERS, conf: `
        server {
            listen 127.0.0.1:%%PORT%% reuseport;
            location ~ ^/pub/(.+)$ {
                pubsub_publisher;
                pubsub_channel_id $1;
                pubsub_message_buffer_length 10;
            }
            location ~ ^/sub/(.+)$ { pubsub_subscriber; pubsub_channel_id $1; }
            location = /status { pubsub_status; }
        }` }, async (ngx) => {
        // 1,000,000 messages, or as many as fit in the time budget (the
        // test prints how many it published).
        const total = Number(process.env.PUBSUB_SOAK_MESSAGES || 1000000);
        const budgetMs = Number(process.env.PUBSUB_SOAK_MS || 100000);
        const channels = 50;
        const soakAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
        const body = 'z'.repeat(100);
        // Light subscribers (count events, no parsing) on several workers,
        // so that the cross-worker path runs under load too.
        const subs = [];
        for (let i = 0; i < 8; i++) {
            const sub = { events: 0, tail: '', res: null };
            sub.req = http.get({ host: LOOPBACK, port: ngx.port, path: `/sub/s${i % 2}`,
                headers: { Accept: 'text/event-stream' }, agent: false }, (res) => {
                sub.res = res;
                res.on('data', (d) => {
                    const text = sub.tail + d.toString('latin1');
                    sub.events += text.split('\ndata: ').length - 1;
                    sub.tail = text.slice(-7);
                });
                res.on('error', () => {});
            });
            sub.req.on('error', () => {});
            subs.push(sub);
        }
        const publishOne = (i) => httpRequest({ port: ngx.port, method: 'POST',
            path: `/pub/s${i % channels}`, body, agent: soakAgent, keepAlive: true });
        // warm up: every channel full
        for (let i = 0; i < channels * 20; i++) {
            await publishOne(i);
        }
        const baseline = (await status(ngx.port)).shm_used;
        const start = Date.now();
        let sent = 0;
        const worker = async (k) => {
            for (let i = k; i < total && Date.now() - start < budgetMs; i += 8) {
                const r = await publishOne(i);
                assert.ok(r.status === 201 || r.status === 202, `status ${r.status}`);
                sent++;
            }
        };
        await Promise.all(Array.from({ length: 8 }, (_, k) => worker(k)));
        const secs = (Date.now() - start) / 1000;
        process.stderr.write(`# soak: ${sent} messages in ${secs.toFixed(1)} s ` +
            `(${Math.round(sent / secs)}/s)\n`);
        const st = await status(ngx.port);
        assert.ok(st.shm_used <= baseline + 8 * 4096,
            `shm used ${st.shm_used} after, ${baseline} before`);
        assert.strictEqual(st.messages, channels * 10);
        // Still delivering after the soak (a slow reader may have been
        // dropped by pubsub_subscriber_max_pending: not counted).
        const live = subs.filter((x) => x.res && !x.res.destroyed && !x.res.complete);
        assert.ok(live.length > 0, 'soak subscribers still connected');
        const before = live.map((x) => x.events);
        await publishOne(0);
        await publishOne(1);
        await waitUntil(() => live.every((x, i) => x.events > before[i]),
            { timeout: 10000, what: 'delivery after the soak' });
        for (const x of subs) {
            x.req.destroy();
        }
        soakAgent.destroy();
        assert.ok(sent >= Math.min(total, 20000), `only ${sent} messages published`);
    }));

test.after(() => agent.destroy());
