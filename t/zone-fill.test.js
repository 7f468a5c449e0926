'use strict';
// SPEC §11: no anonymous client can take the store from publishers.
// Subscribing to channels that have no messages - thousands of long-polls
// and multiplexed long-polls to new channels, held open or dropped - cannot
// make a publish to an existing channel fail: such channels take at most a
// quarter of pubsub_shm_size (beyond it a subscriber to a new channel gets
// 507 with a clear reason), and a channel nobody published to goes as soon
// as its last subscriber does. Two workers, a small zone; the workers
// survive and log no [alert]/[crit]/[emerg] (checked by useNginx).

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, it, before, after } = require('node:test');
const { useNginx } = require('./lib/nginx');
const C = require('./lib/clients');
const { waitUntil } = require('./lib/util');

const REASON = 'Too many channels without messages: shared memory is kept for messages.';

const conf = `
pubsub_shm_size 1m;
server {
    listen 127.0.0.1:%%PORT%%;
    location ~ ^/sub/(.+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_channel_id_split_delimiter ",";
    }
    location ~ ^/pub/(.+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 200;
    }
    location = /status { pubsub_status; }
}`;

// A long-poll held open on its own connection: `done` resolves with the
// response head and body if nginx answers, or null once we close it.
function holdLongPoll(port, path) {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const done = new Promise((resolve) => {
        sock.on('data', (d) => {
            data += d;
        });
        sock.on('error', () => {});
        sock.on('close', () => resolve(data ? parse(data) : null));
    });
    sock.on('connect', () => {
        sock.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
    });
    return { sock, done, answered: () => data.length > 0 };
}

function parse(text) {
    const m = /^HTTP\/1\.1 (\d+)/.exec(text);
    const i = text.indexOf('\r\n\r\n');
    return { status: m ? Number(m[1]) : 0, body: i >= 0 ? text.slice(i + 4) : '' };
}

describe('channels without messages cannot fill the zone', () => {
    const ngx = useNginx({ conf, workers: 2, before, after });

    async function status() {
        return JSON.parse((await C.httpRequest({ port: ngx.port, path: '/status' })).text);
    }

    it('held-open subscribers to new channels: publishers to existing ones are unaffected',
        { timeout: 120000 }, async () => {
            const pids = ngx.workerPids().sort();
            assert.equal(pids.length, 2);
            const first = await C.publish({ port: ngx.port, path: '/pub/news' }, 'first');
            assert.equal(first.status, 202);
            const reader = C.sseStream({ port: ngx.port, path: '/sub/news' });
            await waitUntil(async () => (await status()).subscriptions === 1,
                { what: 'the reader subscribed' });

            // 2500 long-polls to one new channel each and 200 multiplexed
            // long-polls to ten new channels each, all held open.
            const held = [];
            for (let i = 0; i < 2500; i++) {
                held.push(holdLongPoll(ngx.port, `/sub/fresh-${i}`));
            }
            for (let i = 0; i < 200; i++) {
                const ids = Array.from({ length: 10 }, (_, j) => `mux-${i}-${j}`).join(',');
                held.push(holdLongPoll(ngx.port, `/sub/${ids}`));
            }
            // every request is either waiting (counted) or answered
            await waitUntil(async () => {
                const s = await status();
                const waiting = s.subscribers.longpoll;
                return waiting + held.filter((h) => h.answered()).length === held.length;
            }, { timeout: 60000, what: 'every long-poll waiting or answered' });

            const s = await status();
            assert.ok(s.unpublished_channels.refused > 0, JSON.stringify(s));
            assert.ok(s.unpublished_channels.bytes <= s.unpublished_channels.limit);
            assert.equal(s.unpublished_channels.limit, s.shm.size / 4);
            assert.ok(s.unpublished_channels.channels > 500, JSON.stringify(s));
            const answered = held.filter((h) => h.answered());
            assert.ok(answered.length > 1000, `${answered.length} refused`);

            // one more subscriber to a new channel is refused with the reason
            const r = await C.httpRequest({ port: ngx.port, path: '/sub/one-more' });
            assert.equal(r.status, 507);
            assert.match(r.text, new RegExp(REASON.replace(/[.:]/g, '\\$&')));

            // the existing channel takes 150 messages of 1000 bytes
            const payload = 'p'.repeat(1000);
            for (let i = 0; i < 150; i++) {
                const p = await C.publish({ port: ngx.port, path: '/pub/news' }, payload);
                assert.equal(p.status, 201, `publish ${i}: ${p.status} ${p.text}`);
            }
            await reader.waitFor(151);  // "first" and these
            // a subscriber to it is welcome (it gets the oldest message)
            const late = await C.httpRequest({ port: ngx.port, path: '/sub/news' });
            assert.equal(late.status, 200);
            // and a publisher may still make a channel
            const made = await C.publish({ port: ngx.port, path: '/pub/by-publisher' }, 'x');
            assert.equal(made.status, 202);

            for (const h of held) {
                h.sock.destroy();
            }
            const refused = await Promise.all(held.map((h) => h.done));
            for (const a of refused.filter((x) => x)) {
                assert.equal(a.status, 507);
                assert.match(a.body, /Too many channels without messages/);
            }
            reader.close();

            // their channels went with them, without waiting for the sweep
            await waitUntil(async () => {
                const t = await status();
                return t.unpublished_channels.channels === 0 && t.channels === 2
                    && t.subscriptions === 0;
            }, { timeout: 20000, what: 'the channels without messages freed' });
            assert.equal((await status()).unpublished_channels.bytes, 0);

            // subscribers to new channels are welcome again
            const lp = C.longPoll({ port: ngx.port, path: '/sub/after' });
            await waitUntil(async () => (await status()).subscriptions === 1,
                { what: 'the long-poll waiting' });
            assert.equal((await C.publish({ port: ngx.port, path: '/pub/after' }, 'hi')).status,
                201);
            await lp.waitFor(1);
            await lp.stop();

            assert.deepEqual(ngx.workerPids().sort(), pids);
        });

    it('thousands of long-polls to new channels that come and go leave nothing behind',
        { timeout: 120000 }, async () => {
            const before = await status();
            for (let round = 0; round < 10; round++) {
                const batch = [];
                for (let i = 0; i < 200; i++) {
                    batch.push(holdLongPoll(ngx.port, `/sub/churn-${round}-${i}`));
                }
                await waitUntil(async () => (await status()).subscribers.longpoll === 200,
                    { timeout: 20000, what: `round ${round} waiting` });
                for (const h of batch) {
                    h.sock.destroy();
                }
                await Promise.all(batch.map((h) => h.done));
            }
            await waitUntil(async () => {
                const t = await status();
                return t.subscriptions === 0 && t.channels === before.channels;
            }, { timeout: 20000, what: 'every churned channel freed' });
            const t = await status();
            assert.equal(t.unpublished_channels.channels, 0);
            assert.equal(t.unpublished_channels.refused, before.unpublished_channels.refused);
            const p = await C.publish({ port: ngx.port, path: '/pub/news' }, 'still here');
            assert.equal(p.status, 202);
        });
});
