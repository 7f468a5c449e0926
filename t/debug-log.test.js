'use strict';
// The module at `error_log ... debug`: nginx's debug log reads every timer
// event's data as a connection, so a module timer whose data is NULL
// crashed every worker at start.  Every subsystem with timers or posted
// events runs here (memory and Redis stores, presence with its tick and
// leave delay, channel events, hooks, EventSource, long-poll, WebSocket)
// and the workers must survive with a clean log.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { withNginx } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const C = require('./lib/clients');
const u = require('./lib/backend');
const { sleep } = require('./lib/util');

test('every subsystem runs with error_log at debug level', { timeout: 60000 }, async () => {
    const redis = await startRedis();
    const be = await u.startBackend();
    try {
        await withNginx({ workers: 2, logLevel: 'debug', redis, vars: { BE: be.port }, conf: `
            upstream rd { pubsub_redis_server %%REDIS_URL%%; }
            server {
                listen 127.0.0.1:%%PORT%%;
                location = /hook { proxy_pass http://127.0.0.1:%%BE%%; }
                location ~ ^/pub/(\\w+)$ { pubsub_publisher; pubsub_channel_id $1; }
                location ~ ^/sub/(\\w+)$ {
                    pubsub_subscriber;
                    pubsub_channel_id $1;
                    pubsub_presence on;
                    pubsub_presence_id $arg_user;
                    pubsub_presence_events on;
                    pubsub_presence_leave_delay 300ms;
                    pubsub_ping_interval 1s;
                    pubsub_subscribe_request /hook;
                    pubsub_unsubscribe_request /hook;
                    pubsub_channel_events_channel_id meta;
                }
                location ~ ^/rpub/(\\w+)$ {
                    pubsub_publisher; pubsub_channel_id $1; pubsub_redis_pass rd;
                }
                location ~ ^/rsub/(\\w+)$ {
                    pubsub_subscriber; pubsub_channel_id $1; pubsub_redis_pass rd;
                    pubsub_presence on; pubsub_presence_id $arg_user;
                }
                location = /presence { pubsub_presence_api; }
            }` }, async (ngx) => {
            const es = C.sseStream({ port: ngx.port, path: '/sub/a?user=ann' });
            assert.equal((await es.response).status, 200);
            const ws = await C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/a?user=bob`);
            const lp = C.longPoll({ port: ngx.port, path: '/sub/a?user=cy' });
            const res = C.sseStream({ port: ngx.port, path: '/rsub/b?user=dee' });
            assert.equal((await res.response).status, 200);

            assert.ok([201, 202].includes(
                (await C.httpRequest({ port: ngx.port, method: 'POST', path: '/pub/a', body: 'x' })).status));
            assert.ok([201, 202].includes(
                (await C.httpRequest({ port: ngx.port, method: 'POST', path: '/rpub/b', body: 'y' })).status));
            await ws.next(5000);
            await lp.messages.next(5000);
            await sleep(1500); // pings, the presence tick, the sweep
            es.close();
            res.close();
            await ws.close();
            await lp.stop();
            await sleep(800); // leave delays expire
            const w = ngx.workerPids();
            assert.equal(w.length, 2, 'both workers still run');
        });
    } finally {
        await be.close();
        await redis.stop();
    }
});
