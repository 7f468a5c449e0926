'use strict';
// The example deployment (examples/app/, issue 18) end to end: nginx runs
// examples/nginx.conf as scripts/example.sh lays it out (only its ports and
// the app's leave delay changed, see exampleConf), the app's backend
// (examples/app/server.js) runs in this process, and headless Chromium drives
// two users through the chat page:
//   log in, see each other in the member list, exchange messages, one
//   message refused by the app's spam check (only its sender is told), one
//   rewritten, an announcement through the app's API, a tab closed: "left"
//   after the leave delay, then "last seen";
// and the app's hook log holds exactly one subscribe and one unsubscribe per
// connection.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { Nginx, makePrefix, MODULE_PATH, REPO } = require('./lib/nginx');
const { launchBrowser } = require('./lib/browser');
const { freePort, waitUntil } = require('./lib/util');
const { createApp } = require('../examples/app/server.js');

const LEAVE_DELAY_MS = 2000;

// examples/nginx.conf with free ports for its listeners and the app's
// upstream, a shorter leave delay for the app, in the foreground. Every
// replaced text must be there as many times as expected, so that a change of
// the example that this test no longer follows fails here.
function exampleConf({ port, internal, app }) {
    let text = fs.readFileSync(path.join(REPO, 'examples/nginx.conf'), 'utf8');
    const replace = (from, to, count) => {
        const n = text.split(from).length - 1;
        assert.equal(n, count, `examples/nginx.conf: "${from}" ${n} times, expected ${count}`);
        text = text.split(from).join(to);
    };
    replace('listen 127.0.0.1:8080;', `listen 127.0.0.1:${port};`, 1);
    replace('listen 127.0.0.1:8081;', `listen 127.0.0.1:${internal};`, 1);
    replace('server 127.0.0.1:8090;', `server 127.0.0.1:${app};`, 1);
    replace('pubsub_presence_leave_delay 5s;', `pubsub_presence_leave_delay ${LEAVE_DELAY_MS}ms;`, 1);
    const head = ['daemon off;'];
    if (process.getuid() === 0) {
        head.push('user root;');
    }
    return `${head.join('\n')}\n${text}`;
}

// nginx with the example config, in a prefix laid out as scripts/example.sh
// lays out build/example/
async function startExample(ports) {
    const prefix = await makePrefix();
    for (const d of ['modules', 'temp']) {
        fs.mkdirSync(path.join(prefix, d));
    }
    fs.symlinkSync(MODULE_PATH, path.join(prefix, 'modules/ngx_pubsub_module.so'));
    fs.rmSync(path.join(prefix, 'html'), { recursive: true });
    fs.symlinkSync(path.join(REPO, 'examples/html'), path.join(prefix, 'html'));
    fs.symlinkSync(path.join(REPO, 'examples/chat'), path.join(prefix, 'chat'));
    const ngx = new Nginx({}, prefix, [ports.port, ports.internal], {});
    fs.writeFileSync(ngx.confPath, exampleConf(ports));
    return ngx.start();
}

async function login(browser, url, name) {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(15000);
    page.__log = [];
    page.on('console', (m) => page.__log.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => page.__log.push(`pageerror: ${e.message}`));
    await page.goto(url);
    await page.fill('#name', name);
    await page.fill('#password', 'demo');
    await Promise.all([page.waitForURL('**/app/chat.html'), page.click('#login')]);
    return page;
}

const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent));
const members = (page) => page.$$eval('#members li', (els) => els.map((e) => e.dataset.id).sort());

function waitLog(page, sel, text) {
    return page.waitForFunction(([s, t]) => [...document.querySelectorAll(s)]
        .some((e) => e.textContent.includes(t)), [sel, text]);
}

async function say(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
}

test('the example app: two users, messages, a refusal, a leave; paired hooks',
    { timeout: 120000 }, async () => {
        const ports = { port: await freePort(), internal: await freePort(), app: await freePort() };
        const app = createApp({ port: ports.app, log: false,
            publishUrl: `http://127.0.0.1:${ports.internal}/app/pub/` });
        await app.listen();
        let ngx = null;
        let browser = null;
        let ok = false;
        try {
            ngx = await startExample(ports);
            browser = await launchBrowser();
            const url = ngx.url('/app/');

            const alice = await login(browser, url, 'alice');
            const bob = await login(browser, url, 'bob');

            // both in the member list of both (presence API + join events)
            for (const p of [alice, bob]) {
                await p.waitForFunction(() => document.querySelectorAll('#members li').length === 2);
                assert.deepEqual(await members(p), ['alice', 'bob']);
            }
            // and the app's own table (subscribe hooks) says since when
            await alice.waitForFunction(() => {
                const since = document.querySelector('#members li[data-id="bob"] .since');
                return since && / since /.test(since.textContent);
            });

            // messages both ways, through the app's hook
            await say(alice, 'hello bob');
            await waitLog(bob, '#log li.msg', 'alice: hello bob');
            await say(bob, 'hi alice');
            await waitLog(alice, '#log li.msg', 'bob: hi alice');

            // refused by the spam check: bob is told, alice gets nothing; the
            // next message goes through (its publisher socket reconnected)
            await say(bob, 'buy spam now');
            await waitLog(bob, '#log li.refused', 'Not sent: "buy spam now"');
            assert.match((await texts(bob, '#log li.refused'))[0], /"spam" is not allowed here \(403\)/);
            await say(bob, '   lots    of   space   ');
            await waitLog(alice, '#log li.msg', 'bob: lots of space'); // the hook's rewrite
            await waitLog(bob, '#log li.msg', 'bob: lots of space');
            for (const p of [alice, bob]) {
                const all = await texts(p, '#log li');
                assert.ok(!all.some((t) => /spam/.test(t) && !/^Not sent/.test(t)), all.join('\n'));
            }
            assert.deepEqual(await texts(alice, '#log li.refused'), []);

            // the app's API publishes after its own checks
            await alice.fill('#announce', 'meeting at noon');
            await alice.press('#announce', 'Enter');
            for (const p of [alice, bob]) {
                await waitLog(p, '#log li.announce', 'Announcement from alice: meeting at noon');
            }

            // bob closes his tab: "left" after the leave delay, then "last seen"
            const closed = Date.now();
            await bob.close();
            await waitLog(alice, '#log li.sys', 'bob left');
            assert.ok(Date.now() - closed >= LEAVE_DELAY_MS - 100, 'bob left after the leave delay');
            await alice.waitForSelector('#seen li[data-id="bob"]');
            assert.match((await texts(alice, '#seen li'))[0], /^bob, last seen /);
            assert.deepEqual(await members(alice), ['alice']);
            assert.deepEqual(await texts(alice, '#seen li[data-id="alice"]'), []);

            // the presence hook fed the app's activity log
            await waitUntil(() => app.activity.some((a) => a.event === 'leave' && a.id === 'bob'),
                { timeout: 10000, what: 'leave of bob in the activity log' });
            const events = app.activity.map((a) => `${a.event} ${a.id}`);
            for (const e of ['online alice', 'join alice', 'online bob', 'join bob', 'leave bob',
                'offline bob']) {
                assert.ok(events.includes(e), `${e} in ${JSON.stringify(events)}`);
            }

            // alice goes too; then every connection had exactly one
            // subscribe and one unsubscribe
            await alice.close();
            const pairs = () => {
                const by = new Map();
                for (const h of app.hookLog.filter((x) => /subscribe$/.test(x.hook))) {
                    const k = h.conn;
                    if (!by.has(k)) {
                        by.set(k, { user: h.user, subscribe: 0, unsubscribe: 0 });
                    }
                    by.get(k)[h.hook]++;
                }
                return by;
            };
            await waitUntil(() => [...pairs().values()].every((c) => c.unsubscribe > 0),
                { timeout: 10000, what: 'an unsubscribe hook for every connection' });
            const conns = pairs();
            assert.ok(!conns.has(null), 'every subscriber connection carried its ?conn= id');
            assert.deepEqual([...new Set([...conns.values()].map((c) => c.user))].sort(),
                ['alice', 'bob']);
            for (const [conn, c] of conns) {
                assert.deepEqual([c.subscribe, c.unsubscribe], [1, 1],
                    `connection ${conn} of ${c.user}: ${JSON.stringify(app.hookLog)}`);
            }
            // and every subscriber and publisher was authorized by the app
            assert.ok(app.hookLog.some((h) => h.hook === 'authorize' && h.transport === 'websocket'
                && h.answer === 200));
            assert.ok(app.hookLog.some((h) => h.hook === 'authorize' && h.transport === 'eventsource'
                && h.answer === 200));
            ok = true;
        } finally {
            if (browser) {
                await browser.close();
            }
            if (ngx) {
                await ngx.stop({ keep: true });
                if (ok) {
                    ngx.assertCleanLog();
                    fs.rmSync(ngx.prefix, { recursive: true, force: true });
                } else {
                    process.stderr.write(`# nginx prefix kept: ${ngx.prefix}\n`);
                }
            }
            await app.close();
        }
    });

test('the example app: a token alone does not open a subscription without its session',
    { timeout: 30000 }, async () => {
        const ports = { port: await freePort(), internal: await freePort(), app: await freePort() };
        const app = createApp({ port: ports.app, log: false,
            publishUrl: `http://127.0.0.1:${ports.internal}/app/pub/` });
        await app.listen();
        const ngx = await startExample(ports);
        try {
            // log in, take the token, log out: the token is still unexpired,
            // but the authorize hook refuses it
            const res = await fetch(ngx.url('/app/login'), { method: 'POST', redirect: 'manual',
                headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
                body: 'name=carol&password=demo' });
            assert.equal(res.status, 303);
            const cookie = res.headers.get('set-cookie').split(';')[0];
            const me = await (await fetch(ngx.url('/app/api/me'), { headers: { cookie } })).json();
            assert.equal(me.id, 'carol');
            const sub = (headers) => fetch(ngx.url(`/app/sub/lobby?token=${me.token}`),
                { headers: { Accept: 'text/event-stream', ...headers } });

            const open = await sub({ cookie });
            assert.equal(open.status, 200);
            await open.body.cancel();

            await fetch(ngx.url('/app/logout'), { method: 'POST', redirect: 'manual',
                headers: { cookie } });
            const refused = await sub({ cookie });
            assert.equal(refused.status, 401);
            assert.equal(await refused.text(), 'not logged in\n');
            // no token: nginx refuses before the app is asked
            const noToken = await fetch(ngx.url('/app/sub/lobby'),
                { headers: { Accept: 'text/event-stream', cookie } });
            assert.equal(noToken.status, 401);
            assert.equal(await noToken.text(), 'token missing\n');
            // the public publisher takes WebSockets only (each message goes
            // through the app's hook); the app's own POSTs go to the
            // internal listener
            const pub = await fetch(ngx.url('/app/pub/lobby'), { method: 'POST', body: 'x' });
            assert.equal(pub.status, 405);
        } finally {
            await ngx.stop({ keep: true });
            ngx.assertCleanLog();
            fs.rmSync(ngx.prefix, { recursive: true, force: true });
            await app.close();
        }
    });

// The Echo page (examples/app/public/echo.html): laravel-echo and pusher-js
// against nginx's Pusher endpoint; the app signs the presence subscription
// (/app/broadcasting/auth) and broadcasts the messages through Pusher's HTTP
// API after its spam check.
test('the example app, Echo page: here/joining/leaving, messages through the app',
    { timeout: 60000 }, async () => {
        const ports = { port: await freePort(), internal: await freePort(), app: await freePort() };
        const app = createApp({ port: ports.app, log: false,
            publishUrl: `http://127.0.0.1:${ports.internal}/app/pub/`,
            pusherApiUrl: `http://127.0.0.1:${ports.internal}` });
        await app.listen();
        let ngx = null;
        let browser = null;
        let ok = false;
        const pages = [];
        try {
            ngx = await startExample(ports);
            // no session, no signature
            const anon = await fetch(ngx.url('/app/broadcasting/auth'), { method: 'POST',
                headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
                body: 'socket_id=1.2&channel_name=presence-lobby' });
            assert.equal(anon.status, 401);

            browser = await launchBrowser();
            const url = ngx.url('/app/');
            const open = async (name) => {
                const page = await login(browser, url, name);
                pages.push(page);
                await page.goto(ngx.url('/app/echo.html'));
                // here(): the member list holds at least oneself
                await page.waitForSelector(`#members li[data-id="${name}"]`);
                return page;
            };
            const alice = await open('alice');
            const bob = await open('bob');
            for (const p of [alice, bob]) {
                await p.waitForFunction(() => document.querySelectorAll('#members li').length === 2);
                assert.deepEqual(await members(p), ['alice', 'bob']);
            }
            await waitLog(alice, '#log li.sys', 'bob joined'); // joining()

            await say(alice, 'hello bob');
            await waitLog(bob, '#log li.msg', 'alice: hello bob');
            await say(bob, '  hi   alice ');
            await waitLog(alice, '#log li.msg', 'bob: hi alice');

            // the app's spam check: only bob is told, nothing is broadcast
            await say(bob, 'buy spam now');
            await waitLog(bob, '#log li.refused',
                'Not sent: "buy spam now": "spam" is not allowed here (403)');
            await say(bob, 'sorry');
            await waitLog(alice, '#log li.msg', 'bob: sorry');
            assert.ok(!(await texts(alice, '#log li')).some((t) => /spam/.test(t)));

            // bob closes his tab: leaving() after the leave delay
            await bob.close();
            await waitLog(alice, '#log li.sys', 'bob left');
            assert.deepEqual(await members(alice), ['alice']);
            ok = true;
        } finally {
            if (!ok) {
                for (const p of pages) {
                    process.stderr.write(`# page log: ${p.__log.join('\n# ')}\n`);
                }
            }
            if (browser) {
                await browser.close();
            }
            if (ngx) {
                await ngx.stop({ keep: true });
                if (ok) {
                    ngx.assertCleanLog();
                    fs.rmSync(ngx.prefix, { recursive: true, force: true });
                } else {
                    process.stderr.write(`# nginx prefix kept: ${ngx.prefix}\n`);
                }
            }
            await app.close();
        }
    });
