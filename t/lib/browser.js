'use strict';
// Headless Debian Chromium driven by playwright-core, plus helpers to run the
// official nchan browser client (npm `nchan`, NchanSubscriber.js) in a page.
//
// NchanSubscriber.js is a UMD file: loaded with a plain <script> it defines
// window.NchanSubscriber. It must run in a page served by the nginx under
// test (same origin, or XHR long-poll needs CORS). Two ways:
//   - nchanScriptLocation() gives a `location` block for the test config that
//     serves the file from node_modules (alias), then <script src=...>;
//   - or page.goto(nginx.url('/any-page')) then addNchanScript(page), which
//     injects the file's content with page.addScriptTag.

const fs = require('node:fs');
const fsp = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const { withTimeout } = require('./util');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const NCHAN_JS = require.resolve('nchan/NchanSubscriber.js');

const CHROMIUM_ARGS = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage',
];

// Launches headless Chromium. Returns a playwright Browser whose close()
// also removes its temp profile directory.
async function launchBrowser({ timeout = 20000, args = [] } = {}) {
    const { chromium } = require('playwright-core');
    const userDataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ngx-pubsub-chromium-'));
    // launchPersistentContext would be needed to use userDataDir with
    // playwright; a plain launch gets its own throw-away profile, and we pass
    // the directory explicitly so nothing lands in $HOME.
    const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        timeout,
        args: [...CHROMIUM_ARGS, ...args],
        env: { ...process.env, HOME: userDataDir, XDG_CONFIG_HOME: userDataDir,
            XDG_CACHE_HOME: userDataDir },
    });
    const close = browser.close.bind(browser);
    browser.close = async () => {
        await withTimeout(close(), 10000, 'browser close').catch(() => {});
        await fsp.rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    };
    return browser;
}

// Runs fn(page, browser) in a fresh browser; always closes it.
async function withBrowserPage(fn, opts = {}) {
    const browser = await launchBrowser(opts);
    try {
        const page = await browser.newPage();
        page.setDefaultTimeout(opts.pageTimeout || 10000);
        page.__consoleLog = [];
        page.on('console', (m) => page.__consoleLog.push(`${m.type()}: ${m.text()}`));
        page.on('pageerror', (e) => page.__consoleLog.push(`pageerror: ${e.message}`));
        return await fn(page, browser);
    } finally {
        await browser.close();
    }
}

// A location block for a test nginx config serving NchanSubscriber.js.
function nchanScriptLocation(uri = '/NchanSubscriber.js') {
    return `location = ${uri} { alias ${NCHAN_JS}; ` +
        'default_type application/javascript; }';
}

// A location block serving a minimal HTML page (for page.goto before
// addNchanScript, or with <script src> when `script` is given).
function htmlPageLocation(uri = '/index.html', { script = null, body = '' } = {}) {
    const tag = script ? `<script src="${script}"></script>` : '';
    const html = `<!doctype html><html><head><meta charset="utf-8">${tag}</head>` +
        `<body>${body}</body></html>`;
    return `location = ${uri} { default_type text/html; return 200 '${html}'; }`;
}

// Injects NchanSubscriber.js into the current page (window.NchanSubscriber).
async function addNchanScript(page) {
    await page.addScriptTag({ content: fs.readFileSync(NCHAN_JS, 'utf8') });
    const ok = await page.evaluate(() => typeof window.NchanSubscriber === 'function');
    if (!ok) {
        throw new Error('NchanSubscriber.js loaded but window.NchanSubscriber is missing');
    }
}

// Starts `new NchanSubscriber(url, opts)` in the page under `key`; messages,
// errors and connect/disconnect events are recorded in window.__nchan[key].
async function nchanSubscribe(page, key, url, opts = {}) {
    await page.evaluate(([k, u, o]) => {
        window.__nchan = window.__nchan || {};
        const rec = { messages: [], errors: [], events: [], transport: null };
        const sub = new window.NchanSubscriber(u, o);
        rec.sub = sub;
        sub.on('message', (msg, meta) => rec.messages.push({ msg, meta: { ...meta } }));
        sub.on('error', (code, text) => rec.errors.push([String(code), String(text)]));
        sub.on('connect', () => rec.events.push('connect'));
        sub.on('disconnect', () => rec.events.push('disconnect'));
        sub.on('transportSetup', (_opt, name) => { rec.transport = name; });
        window.__nchan[k] = rec;
        sub.start();
    }, [key, url, opts]);
}

// {messages:[{msg, meta}], errors, events, transport, lastMessageId}
function nchanState(page, key) {
    return page.evaluate((k) => {
        const r = window.__nchan[k];
        return { messages: r.messages, errors: r.errors, events: r.events,
            transport: r.transport, lastMessageId: r.sub.lastMessageId };
    }, key);
}

async function nchanWaitMessages(page, key, n, timeout = 10000) {
    await page.waitForFunction(([k, want]) => window.__nchan[k].messages.length >= want,
        [key, n], { timeout });
    return nchanState(page, key);
}

function nchanStop(page, key) {
    return page.evaluate((k) => window.__nchan[k].sub.stop(), key);
}

module.exports = {
    CHROMIUM, CHROMIUM_ARGS, NCHAN_JS, launchBrowser, withBrowserPage, nchanScriptLocation,
    htmlPageLocation, addNchanScript, nchanSubscribe, nchanState, nchanWaitMessages, nchanStop,
};
