'use strict';
// Issue 3's closing check: a WebSocket, an EventSource and a long-poll
// NchanSubscriber (npm nchan@1.0.10, unchanged) in ONE Chromium page all
// get the same messages, in order, exactly once — published with curl
// (HTTP POST) and by a WebSocket publisher.

const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { nginxTest } = require('./lib/nginx');
const C = require('./lib/clients');
const B = require('./lib/browser');

const run = promisify(execFile);

const conf = `
server {
    listen 127.0.0.1:%%PORT%%;
    ${B.nchanScriptLocation()}
    ${B.htmlPageLocation('/index.html', { script: '/NchanSubscriber.js' })}
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 100;
    }
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 100;
    }
}`;

nginxTest('websocket, eventsource and longpoll subscribers in one page get the same messages',
    { conf, workers: 2, test: { timeout: 60000 } }, async (ngx) => {
        await B.withBrowserPage(async (page) => {
            await page.goto(ngx.url('/index.html'));
            const url = ngx.url('/sub/room');
            for (const t of ['websocket', 'eventsource', 'longpoll']) {
                await B.nchanSubscribe(page, t, url, { subscriber: t, reconnect: 'session' });
            }
            // wait until all three are connected (channel info counts them)
            const end = Date.now() + 10000;
            for (;;) {
                const r = await C.httpRequest({ port: ngx.port, path: '/pub/room',
                    headers: { Accept: 'application/json' } });
                if (r.status === 200 && JSON.parse(r.text).subscribers >= 3) {
                    break;
                }
                assert.ok(Date.now() < end, 'subscribers did not connect');
                await new Promise((res) => setTimeout(res, 100));
            }

            const want = [];
            // curl, as a user would
            for (let i = 1; i <= 5; i++) {
                const body = `curl ${i} ✓`;
                want.push(body);
                await run('curl', ['-s', '-o', '/dev/null', '-X', 'POST', '--data-binary', body,
                    '-H', 'Content-Type: text/plain', ngx.url('/pub/room')]);
            }
            // a WebSocket publisher
            const wsPub = await C.wsConnect(ngx.wsUrl('/pub/room'));
            for (let i = 1; i <= 5; i++) {
                const body = `ws ${i}\nsecond line`;
                want.push(body);
                wsPub.send(body);
                await wsPub.messages.next(3000);   // channel info after each message
            }
            wsPub.close(1000, 'done');

            for (const t of ['websocket', 'eventsource', 'longpoll']) {
                const st = await B.nchanWaitMessages(page, t, want.length, 15000);
                assert.equal(st.transport, t);
                assert.deepEqual(st.messages.map((m) => m.msg), want, `${t} got ${JSON.stringify(st.messages.map((m) => m.msg))}`);
            }
            await new Promise((res) => setTimeout(res, 300));
            for (const t of ['websocket', 'eventsource', 'longpoll']) {
                const st = await B.nchanState(page, t);
                assert.equal(st.messages.length, want.length, `${t}: nothing repeated`);
                // every transport saw the same ids
                assert.equal(st.lastMessageId !== undefined, true);
            }
            const ids = {};
            for (const t of ['websocket', 'eventsource']) {
                ids[t] = (await B.nchanState(page, t)).messages.map((m) => m.meta.id);
            }
            assert.deepEqual(ids.websocket, ids.eventsource);
            for (const t of ['websocket', 'eventsource', 'longpoll']) {
                await B.nchanStop(page, t);
            }
        });
    });
