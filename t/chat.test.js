'use strict';
// examples/chat/ end to end in headless Chromium: two users see each other
// in the member list; one closes the page and leaves after the delay.

const assert = require('node:assert/strict');
const path = require('node:path');
const { nginxTest } = require('./lib/nginx');
const { launchBrowser } = require('./lib/browser');

const CHAT = path.resolve(__dirname, '../examples/chat');

// the chat locations of examples/nginx.conf
const conf = `
types { text/html html; }
server {
    listen 127.0.0.1:%%PORT%%;
    location /chat/ { alias ${CHAT}/; index index.html; }
    location ~ ^/chat/sub/([\\w.-]+)$ {
        pubsub_subscriber eventsource websocket longpoll;
        pubsub_channel_group chat;
        pubsub_channel_id $1;
        pubsub_presence on;
        pubsub_presence_id $arg_user;
        pubsub_presence_events on;
        pubsub_presence_leave_delay 2s;
    }
    location ~ ^/chat/pub/([\\w.-]+)$ {
        pubsub_publisher; pubsub_channel_group chat; pubsub_channel_id $1;
    }
    location ~ ^/chat/presence/([\\w.-]+)$ {
        pubsub_presence_api; pubsub_channel_group chat; pubsub_channel_id $1;
    }
}`;

const listed = (page) => page.$$eval('#members li', (els) => els.map((e) => e.dataset.id).sort());

nginxTest('chat: two users see each other, one leaves after the delay',
    { conf, workers: 4, test: { timeout: 60000 } }, async (ngx) => {
        const browser = await launchBrowser();
        try {
            const room = `r${Date.now() % 100000}`;
            const alice = await (await browser.newContext()).newPage();
            const bob = await (await browser.newContext()).newPage();
            await alice.goto(ngx.url(`/chat/?user=alice&room=${room}`));
            await bob.goto(ngx.url(`/chat/?user=bob&room=${room}`));

            await alice.waitForFunction(() => document.querySelectorAll('#members li').length === 2,
                null, { timeout: 10000 });
            await bob.waitForFunction(() => document.querySelectorAll('#members li').length === 2,
                null, { timeout: 10000 });
            assert.deepEqual(await listed(alice), ['alice', 'bob']);
            assert.deepEqual(await listed(bob), ['alice', 'bob']);

            const closed = Date.now();
            await bob.close();
            // within the delay bob is still there (a page reload would not flap)
            await new Promise((r) => setTimeout(r, 800));
            assert.deepEqual(await listed(alice), ['alice', 'bob']);
            await alice.waitForFunction(() => document.querySelectorAll('#members li').length === 1,
                null, { timeout: 10000 });
            assert.ok(Date.now() - closed >= 1900, 'left after the 2s delay');
            assert.deepEqual(await listed(alice), ['alice']);
            const log = await alice.$$eval('#log li.sys', (els) => els.map((e) => e.textContent));
            assert.ok(log.includes('bob left'), JSON.stringify(log));
        } finally {
            await browser.close();
        }
    });
