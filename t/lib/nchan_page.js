'use strict';
// Drives NchanSubscriber.js (npm nchan@1.0.10) in Debian's chromium through
// playwright-core, against an nginx that serves the page, the script and
// the pub/sub locations from one origin.  Used by t/browser*.test.js.

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { REPO } = require('./nginx');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const NCHAN_JS = path.join(REPO, 'node_modules', 'nchan', 'NchanSubscriber.js');

// The test page: window.T has start(name, url, opts), stop(name), got(name).
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>pubsub browser test</title>
<script src="/NchanSubscriber.js"></script>
<script>
window.T = {
    subs: {}, msgs: {}, events: {},
    start(name, url, opts) {
        const s = new NchanSubscriber(url, opts);
        T.subs[name] = s;
        T.msgs[name] = [];
        T.events[name] = [];
        s.on('message', (m, meta) => T.msgs[name].push({ data: m, id: meta && meta.id }));
        s.on('connect', () => T.events[name].push('connect'));
        s.on('error', (c, t) => T.events[name].push('error ' + c + ' ' + t));
        s.on('disconnect', () => T.events[name].push('disconnect'));
        s.start();
        return s.transport && s.transport.name;
    },
    stop(name) {
        const s = T.subs[name];
        s.stop();
        return s.lastMessageId;
    },
    got(name) { return T.msgs[name]; },
};
</script></head><body>ok</body></html>
`;

// nginx config body: page + script + /pub/<id> and /sub/<id>.
function conf(extraSub = '') {
    return `
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /NchanSubscriber.js {
            default_type application/javascript;
            alias ${NCHAN_JS};
        }
        location = /page.html {
            default_type text/html;
            alias %%PREFIX%%/html/page.html;
        }
        location ~ ^/pub/(\\w+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            # a long-poll client is slower than the publisher: keep all
            pubsub_message_buffer_length 100;
        }
        location ~ ^/sub/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            ${extraSub}
        }
    }
`;
}

function nginxOpts(extraSub) {
    return { conf: conf(extraSub), files: { 'html/page.html': PAGE } };
}

function haveBrowser() {
    return fs.existsSync(CHROMIUM) && fs.existsSync(NCHAN_JS);
}

async function launch() {
    const { chromium } = require('playwright-core');
    return chromium.launch({
        executablePath: CHROMIUM,
        args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
        timeout: 30000,
    });
}

// POST body to url with a content type; resolves {status, body}.
function publish(url, body, contentType = 'text/plain; charset=utf-8') {
    const data = Buffer.from(body, 'utf8');
    return new Promise((resolve, reject) => {
        const req = http.request(url, {
            method: 'POST',
            headers: { 'Content-Type': contentType, 'Content-Length': data.length },
            timeout: 5000,
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({
                status: res.statusCode, body: Buffer.concat(chunks).toString(),
            }));
        });
        req.on('timeout', () => req.destroy(new Error(`POST ${url} timed out`)));
        req.on('error', reject);
        req.end(data);
    });
}

// Polls the page until subscriber `name` has n messages; returns them.
async function waitMessages(page, name, n, ms = 8000) {
    const deadline = Date.now() + ms;
    for (;;) {
        const got = await page.evaluate((k) => T.got(k), name);
        if (got.length >= n) {
            return got;
        }
        if (Date.now() > deadline) {
            const ev = await page.evaluate((k) => T.events[k], name);
            throw new Error(`${name}: ${got.length}/${n} messages within ${ms} ms ` +
                `(events: ${JSON.stringify(ev)}; got ${JSON.stringify(got).slice(0, 500)})`);
        }
        await new Promise((r) => setTimeout(r, 30));
    }
}

// Polls until the subscriber reported 'connect'.
async function waitConnected(page, name, ms = 8000) {
    const deadline = Date.now() + ms;
    while (!(await page.evaluate((k) => T.events[k].includes('connect'), name))) {
        if (Date.now() > deadline) {
            throw new Error(`${name}: no connect within ${ms} ms`);
        }
        await new Promise((r) => setTimeout(r, 30));
    }
}

module.exports = {
    CHROMIUM, NCHAN_JS, PAGE, conf, nginxOpts, haveBrowser, launch, publish,
    waitMessages, waitConnected,
};

// Payloads every transport should deliver; `expect` says what arrives when a
// transport cannot carry the payload byte for byte.
const PAYLOADS = [
    { name: 'multi-line', data: 'line one\nline two\n\nline four' },
    { name: 'trailing newline', data: 'ends with newline\n' },
    { name: 'unicode', data: 'héllo wörld ✓ 日本語 🎉 \u0000-free' },
    {
        name: '8 KB',
        data: Array.from({ length: 8192 }, (_, i) =>
            (i % 97 === 96 ? '\n' : String.fromCharCode(33 + (i % 90)))).join(''),
    },
    { name: 'empty', data: '' },
    // SSE treats CR and CRLF as line breaks: the browser gets LF instead
    { name: 'CRLF', data: 'crlf\r\nline', eventsource: 'crlf\nline' },
    { name: 'bare CR', data: 'cr\ronly', eventsource: 'cr\nonly' },
    { name: 'JSON', data: '{"a":[1,2,{"b":"c"}],"d":null}' },
];

// Registers the browser tests for one NchanSubscriber transport.
function transportSuite(transport) {
    const { describe, it, before, after } = require('node:test');
    const assert = require('node:assert');
    const { useNginx } = require('./nginx');

    describe(`NchanSubscriber.js over ${transport}`, { timeout: 120000 }, () => {
        const ngx = useNginx(nginxOpts());
        let browser;
        let page;

        before(async () => {
            browser = await launch();
            page = await browser.newPage();
            page.on('pageerror', (e) => process.stderr.write(`# page error: ${e}\n`));
            await page.goto(ngx.url('/page.html'));
            const ok = await page.evaluate(() => typeof NchanSubscriber);
            assert.strictEqual(ok, 'function', 'NchanSubscriber.js did not load');
        });

        after(async () => {
            if (browser) {
                await browser.close();
            }
        });

        const start = (name, ch, extra = {}) => page.evaluate(
            ([n, u, o]) => T.start(n, u, o),
            [name, `/sub/${ch}`, { subscriber: transport, ...extra }]);
        const pub = async (ch, body) => {
            const res = await publish(ngx.url(`/pub/${ch}`), body);
            assert.ok(res.status === 201 || res.status === 202,
                `publish to ${ch}: ${res.status} ${res.body}`);
        };
        const settle = () => new Promise((r) => setTimeout(r, 400));

        it('delivers published messages in order, exactly once', async () => {
            const ch = `order_${transport}`;
            assert.strictEqual(await start('order', ch), transport);
            await waitConnected(page, 'order');
            await settle();
            const want = [];
            for (let i = 0; i < 25; i++) {
                want.push(`message ${i}`);
                await pub(ch, `message ${i}`);
            }
            await waitMessages(page, 'order', want.length);
            await settle();
            const got = await page.evaluate(() => T.got('order'));
            assert.deepStrictEqual(got.map((m) => m.data), want);
            const ids = got.map((m) => m.id);
            assert.ok(ids.every((id) => typeof id === 'string' && /^\d+:\d+$/.test(id)),
                `message ids: ${ids.join(' ')}`);
            assert.strictEqual(new Set(ids).size, ids.length, 'ids are distinct');
            await page.evaluate(() => T.stop('order'));
        });

        it('resumes after stop() from the last id with exactly the missed messages',
            async () => {
                const ch = `resume_${transport}`;
                await start('r1', ch);
                await waitConnected(page, 'r1');
                await settle();
                for (const m of ['a1', 'a2', 'a3']) {
                    await pub(ch, m);
                }
                const first = await waitMessages(page, 'r1', 3);
                const lastId = await page.evaluate(() => T.stop('r1'));
                assert.strictEqual(lastId, first[2].id, 'lastMessageId is the last id');
                await settle();
                assert.deepStrictEqual(
                    (await page.evaluate(() => T.got('r1'))).map((m) => m.data),
                    ['a1', 'a2', 'a3']);

                for (const m of ['b1', 'b2', 'b3', 'b4']) {
                    await pub(ch, m);
                }
                await start('r2', ch, { id: lastId });
                await waitMessages(page, 'r2', 4);
                await pub(ch, 'c1');
                await waitMessages(page, 'r2', 5);
                await settle();
                const got = await page.evaluate(() => T.got('r2'));
                assert.deepStrictEqual(got.map((m) => m.data), ['b1', 'b2', 'b3', 'b4', 'c1']);
                await page.evaluate(() => T.stop('r2'));
            });

        it('carries multi-line, unicode, 8 KB and empty payloads', async () => {
            const ch = `payloads_${transport}`;
            await start('p', ch);
            await waitConnected(page, 'p');
            await settle();
            for (const p of PAYLOADS) {
                await pub(ch, p.data);
            }
            await pub(ch, 'the end');
            const got = await waitMessages(page, 'p', PAYLOADS.length + 1);
            await settle();
            const all = await page.evaluate(() => T.got('p'));
            assert.strictEqual(all.length, PAYLOADS.length + 1,
                `${all.length} messages: ${JSON.stringify(all.map((m) => m.data.slice(0, 20)))}`);
            PAYLOADS.forEach((p, i) => {
                const want = p[transport] !== undefined ? p[transport] : p.data;
                assert.strictEqual(got[i].data, want, `payload "${p.name}"`);
            });
            assert.strictEqual(got[PAYLOADS.length].data, 'the end');
            await page.evaluate(() => T.stop('p'));
        });
    });
}

module.exports.PAYLOADS = PAYLOADS;
module.exports.transportSuite = transportSuite;
