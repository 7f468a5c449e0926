'use strict';
// pubsub_group_max_subscribers is one limit for every transport: SSE,
// long-poll and WebSocket subscribers (one channel or multiplexed) count
// against it alike, and the one over it is refused with 403 and nchan's
// text before anything else happens - for a WebSocket, before the 101.
// (Every transport subscribes through the one subscription object.)

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { useNginx } = require('./lib/nginx');
const C = require('./lib/clients');
const { sleep, waitUntil } = require('./lib/util');

const TEXT = /Group limit reached for number of subscribers\./;

let seq = 0;
const chan = (p = 'g') => `${p}${Date.now() % 100000}x${++seq}`;

const conf = `
server {
    listen 127.0.0.1:%%PORT%%;
    location ~ ^/sub/(\\w+)/(.+)$ {
        pubsub_subscriber;
        pubsub_channel_group $1;
        pubsub_channel_id $2;
        pubsub_channel_id_split_delimiter ",";
        pubsub_group_max_subscribers 3;
    }
    location = /status { pubsub_status; }
}`;

describe('group subscriber limit on every transport', () => {
    const ngx = useNginx({ conf, workers: 2, before, after });

    const url = (group, ids) => `ws://127.0.0.1:${ngx.port}/sub/${group}/${ids}`;
    const sse = (group, ids) => C.sseStream({ port: ngx.port, path: `/sub/${group}/${ids}` });

    async function refusedWs(group, ids) {
        await assert.rejects(C.wsConnect(url(group, ids)), (e) => {
            assert.equal(e.status, 403);
            assert.match(e.text, TEXT);
            return true;
        });
    }

    async function subscribers() {
        const s = JSON.parse((await C.httpRequest({ port: ngx.port, path: '/status' })).text);
        return s;
    }

    it('one-channel WebSocket subscribers: the fourth gets 403 before the 101', async () => {
        const g = chan('ws');
        const open = [];
        for (let i = 0; i < 3; i++) {
            open.push(await C.wsConnect(url(g, chan())));
        }
        await refusedWs(g, chan());
        // a freed place is usable again
        await open[0].close();
        await sleep(200);
        open[0] = await C.wsConnect(url(g, chan()));
        await refusedWs(g, chan());
        for (const w of open) {
            await w.close();
        }
    });

    it('multiplexed WebSocket subscribers count once per channel', async () => {
        const g = chan('mux');
        const two = await C.wsConnect(url(g, `${chan()},${chan()}`));
        const one = await C.wsConnect(url(g, chan()));
        // three channels subscribed: one more channel, on any transport, is over
        await refusedWs(g, `${chan()},${chan()}`);
        await refusedWs(g, chan());
        const r = await C.httpRequest({ port: ngx.port, path: `/sub/${g}/${chan()}`,
            headers: { Accept: 'text/event-stream' } });
        assert.equal(r.status, 403);
        assert.match(r.text, TEXT);
        await one.close();
        await two.close();
    });

    it('SSE, long-poll and WebSocket mixed share the limit', async () => {
        const g = chan('mix');
        const a = sse(g, chan());
        assert.equal((await a.response).status, 200);
        const ws = await C.wsConnect(url(g, chan()));
        const lp = C.longPoll({ port: ngx.port, path: `/sub/${g}/${chan()}`, pollTimeout: 10000 });
        await sleep(300); // the poll waits, subscribed
        await refusedWs(g, chan());
        const r = await C.httpRequest({ port: ngx.port, path: `/sub/${g}/${chan()}`,
            headers: { Accept: 'text/event-stream' } });
        assert.equal(r.status, 403);
        assert.match(r.text, TEXT);

        a.close();
        await ws.close();
        await lp.stop();
        // every place comes back: three new subscribers fit again
        await waitUntil(async () => {
            try {
                const w = await C.wsConnect(url(g, chan()));
                await w.close();
                return true;
            } catch (e) {
                return false;
            }
        }, { timeout: 5000, what: 'a free place in the group' });
    });

    it('refusals leave no subscriber counted', async () => {
        await waitUntil(async () => (await subscribers()).subscribers.total === 0,
            { timeout: 5000, what: 'no subscriber counted' });
    });
});
