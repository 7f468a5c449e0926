'use strict';
// Self-tests of the test harness, against stock nginx only (no module).

const { test, describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { startNginx, nginxCheck, nginxTest, useNginx, withNginx } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const C = require('./lib/clients');
const B = require('./lib/browser');
const { canConnect } = require('./lib/util');

const OK_CONF = `
server {
    listen 127.0.0.1:%%PORT%%;
    location / { return 200 "ok"; }
}`;

test('start, serve, stop', async () => {
    const ngx = await startNginx({ modules: false, conf: OK_CONF, workers: 2 });
    try {
        assert.equal(ngx.workerPids().length, 2);
        assert.match(ngx.url('/x'), /^http:\/\/127\.0\.0\.1:\d+\/x$/);
        const r = await C.httpRequest({ port: ngx.port, path: '/' });
        assert.equal(r.status, 200);
        assert.equal(r.text, 'ok');
        assert.match(fs.readFileSync(ngx.confPath, 'utf8'), /user root;|worker_processes 2;/);
        assert.doesNotMatch(fs.readFileSync(ngx.confPath, 'utf8'), /\/etc\/nginx/);
    } finally {
        const res = await ngx.stop();
        assert.equal(res.killed, false);
        assert.equal(res.code, 0);
    }
    assert.equal(await canConnect(ngx.port), false);
    assert.equal(fs.existsSync(ngx.prefix), false, 'prefix removed after stop');
    ngx.assertCleanLog();
});

test('two instances at once on different ports', async () => {
    const a = await startNginx({ modules: false, conf: OK_CONF });
    const b = await startNginx({ modules: false,
        conf: OK_CONF.replace('"ok"', '"b"').replace('%%PORT%%;', '%%PORT%%; listen 127.0.0.1:%%PORT2%%;') });
    try {
        assert.notEqual(a.port, b.port);
        assert.equal(b.ports.length, 2);
        assert.equal((await C.httpRequest({ port: a.port })).text, 'ok');
        assert.equal((await C.httpRequest({ port: b.port })).text, 'b');
        assert.equal((await C.httpRequest({ port: b.ports[1] })).text, 'b');
        assert.notEqual(a.prefix, b.prefix);
    } finally {
        await Promise.all([a.stop(), b.stop()]);
    }
    a.assertCleanLog();
    b.assertCleanLog();
});

nginxTest('reload replaces workers and config', { modules: false, conf: OK_CONF, workers: 2 },
    async (ngx) => {
        const before = ngx.workerPids();
        const fresh = await ngx.reload(OK_CONF.replace('"ok"', '"v2"'));
        assert.equal(fresh.length, 2);
        for (const p of fresh) {
            assert.ok(!before.includes(p), 'new worker pids');
        }
        assert.equal((await C.httpRequest({ port: ngx.port })).text, 'v2');
        // plain SIGHUP with the same config
        await ngx.reload();
        assert.equal((await C.httpRequest({ port: ngx.port })).text, 'v2');
    });

test('a refused reload rejects, keeps serving, and dirties the log', async () => {
    const ngx = await startNginx({ modules: false, conf: OK_CONF });
    try {
        await assert.rejects(ngx.reload('server { listen 127.0.0.1:%%PORT%%; nonsense; }'),
            /reload refused: .*\[emerg\].*unknown directive "nonsense"/);
        assert.equal((await C.httpRequest({ port: ngx.port })).text, 'ok');
    } finally {
        await ngx.stop();
    }
    assert.throws(() => ngx.assertCleanLog(), /unknown directive "nonsense"/);
    ngx.assertCleanLog({ allow: [/unknown directive "nonsense"/] });
});

test('assertCleanLog finds planted [alert]/[crit] lines and honours allow', async () => {
    const ngx = await startNginx({ modules: false, conf: OK_CONF });
    await ngx.stop({ keep: true });
    try {
        ngx.assertCleanLog();
        fs.appendFileSync(ngx.errorLogPath,
            '2026/01/01 00:00:00 [alert] 1#1: worker process 2 exited on signal 9\n' +
            '2026/01/01 00:00:00 [crit] 1#1: something critical\n' +
            '2026/01/01 00:00:00 [error] 1#1: an error is fine\n');
        assert.equal(ngx.badLogLines().length, 2);
        assert.throws(() => ngx.assertCleanLog(), (e) => {
            assert.match(e.message, /2 unexpected alert\/crit\/emerg line\(s\)/);
            assert.match(e.message, /exited on signal 9/);
            return true;
        });
        assert.throws(() => ngx.assertCleanLog({ allow: [/exited on signal 9/] }),
            /something critical/);
        ngx.assertCleanLog({ allow: [/exited on signal 9/, /something critical/] });
    } finally {
        fs.rmSync(ngx.prefix, { recursive: true, force: true });
    }
});

test('log marks and waitForLog', async () => {
    await withNginx({ modules: false, conf: OK_CONF }, async (ngx) => {
        const mark = ngx.logMark();
        await ngx.reload();
        const m = await ngx.waitForLog(/start worker process (\d+)/, { since: mark });
        assert.ok(Number(m[1]) > 0);
        assert.doesNotMatch(ngx.errorLog(mark), /using the "epoll" event method[\s\S]*nginx\/1/);
    });
});

test('nginxCheck: good and broken configs, missing module', async () => {
    const good = await nginxCheck({ modules: false, conf: OK_CONF });
    assert.equal(good.ok, true, good.output);
    assert.match(good.output, /syntax is ok/);

    const bad = await nginxCheck({ modules: false, conf: 'server { listen 127.0.0.1:%%PORT%%; location / { return; } }' });
    assert.equal(bad.ok, false);
    assert.match(bad.output, /\[emerg\] invalid number of arguments in "return" directive/);

    const missing = await nginxCheck({ modules: false, loadModules: ['/nonexistent/ngx_x.so'], conf: OK_CONF });
    assert.equal(missing.ok, false);
    assert.match(missing.output, /dlopen\(\) "\/nonexistent\/ngx_x\.so" failed/);
});

test('config placeholders and loopback guard', async () => {
    await assert.rejects(startNginx({ modules: false, conf: 'server { listen %%PORT%%; }' }),
        /must name 127\.0\.0\.1/);
    await assert.rejects(startNginx({ modules: false, conf: 'server { listen 127.0.0.1:%%NOPE%%; }' }),
        /unknown placeholder %%NOPE%%/);
    await withNginx({
        modules: false,
        vars: { GREETING: 'hi' },
        files: { 'html/a.txt': 'file at %%PREFIX%%' },
        conf: `server { listen 127.0.0.1:%%PORT%%;
                        location = /g { return 200 "%%GREETING%%"; }
                        location = /a.txt { root %%PREFIX%%/html; } }`,
    }, async (ngx) => {
        assert.equal((await C.httpRequest({ port: ngx.port, path: '/g' })).text, 'hi');
        const r = await C.httpRequest({ port: ngx.port, path: '/a.txt' });
        assert.equal(r.status, 200);
        assert.equal(r.text, `file at ${ngx.prefix}`);
    });
});

test('start-up failure is reported with stderr and the error.log tail', async () => {
    await assert.rejects(
        startNginx({ modules: false, conf: 'server { listen 127.0.0.1:%%PORT%%; bogus_directive; }' }),
        (e) => {
            assert.match(e.message, /nginx exited during start-up/);
            assert.match(e.message, /unknown directive "bogus_directive"/);
            assert.match(e.message, /--- error\.log \(tail\) ---/);
            return true;
        });
});

describe('useNginx in a describe() suite', () => {
    const ngx = useNginx({ modules: false, conf: OK_CONF });
    it('has a running instance', async () => {
        assert.equal((await C.httpRequest({ port: ngx.port })).status, 200);
    });
    it('keeps the instance between tests', async () => {
        assert.equal(ngx.workerPids().length, 1);
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', body: 'x',
            headers: { 'X-A': 'b' } });
        assert.equal(r.status, 200);
    });
});

test('redis: start, PING over a raw socket, stop', async () => {
    const r = await startRedis();
    try {
        const reply = await new Promise((resolve, reject) => {
            const s = net.connect({ port: r.port, host: '127.0.0.1' }, () => s.write('PING\r\n'));
            s.setTimeout(3000, () => reject(new Error('no PONG')));
            s.on('data', (d) => {
                s.destroy();
                resolve(d.toString());
            });
            s.on('error', reject);
        });
        assert.equal(reply, '+PONG\r\n');
        assert.equal(await r.command('SET', 'k', 'v'), 'OK');
        assert.equal(await r.command('GET', 'k'), 'v');
        assert.equal(await r.command('CONFIG', 'GET', 'save').then((a) => a[1]), '');
    } finally {
        await r.stop();
    }
    assert.equal(await canConnect(r.port), false);
    assert.equal(fs.existsSync(r.dir), false);
});

// Canned nchan-style responses, to check the stream parsers byte by byte
// (split into 1-byte writes to exercise partial reads).
function cannedServer(response) {
    const srv = net.createServer((sock) => {
        sock.once('data', async () => {
            for (const ch of Buffer.from(response)) {
                sock.write(Buffer.from([ch]));
            }
            sock.end();
        });
    });
    return new Promise((res) => srv.listen(0, '127.0.0.1', () => res(srv)));
}

test('clients parse SSE, chunked and multipart streams', async () => {
    const sseBody = ': hi\n\nevent: e1\nid: 1:0\ndata: a\ndata: b\n\nid: 1:1\r\ndata:c\r\n\r\n:410: 410 Gone\n\n';
    let srv = await cannedServer('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n' + sseBody);
    try {
        const s = C.sseStream({ port: srv.address().port, path: '/' });
        assert.equal((await s.response).headers['content-type'], 'text/event-stream');
        const [e1, e2] = await s.waitFor(2);
        assert.deepEqual([e1.event, e1.id, e1.data], ['e1', '1:0', 'a\nb']);
        assert.deepEqual([e2.event, e2.id, e2.data], [undefined, '1:1', 'c']);
        await s.done;
        assert.deepEqual(s.comments, ['hi', '410: 410 Gone']);
        assert.equal(s.raw.toString(), sseBody);
    } finally {
        srv.close();
    }

    srv = await cannedServer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '5\r\nhello\r\nb\r\nhello\nworld\r\n0\r\n\r\n');
    try {
        const s = C.chunkedStream({ port: srv.address().port, path: '/' });
        const got = await s.chunks.waitFor(2);
        assert.deepEqual(got.map(String), ['hello', 'hello\nworld']);
        assert.equal((await s.done).bodyEnded, true);
    } finally {
        srv.close();
    }

    const b = 'XwV6GuDz/xu46Ez.ZGPcSs1aTOuB1zxa';
    srv = await cannedServer(`HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=${b}\r\n\r\n` +
        `--${b}\r\nEtag: 0\r\nContent-Type: text/plain\r\n\r\none\r\n--${b}` +
        `\r\nEtag: 1\r\n\r\ntwo\r\n\r\n--${b}--\r\n`);
    try {
        const s = C.multipartStream({ port: srv.address().port, path: '/' });
        const parts = await s.parts.waitFor(2);
        assert.deepEqual(parts.map((p) => [p.headers.etag, p.headers['content-type'], p.text]),
            [['0', 'text/plain', 'one'], ['1', undefined, 'two\r\n']]);
        await s.done;
        assert.equal(s.finalBoundary, true);
    } finally {
        srv.close();
    }
    assert.deepEqual(C.parseWsMeta('id: 1:0\ncontent-type: text/plain\n\nwsA'),
        { id: '1:0', contentType: 'text/plain', meta: { id: '1:0', 'content-type': 'text/plain' },
            body: Buffer.from('wsA'), text: 'wsA' });
});

nginxTest('chromium loads a page and NchanSubscriber.js from nginx', {
    modules: false,
    conf: `server {
        listen 127.0.0.1:%%PORT%%;
        ${B.nchanScriptLocation()}
        ${B.htmlPageLocation('/index.html', { script: '/NchanSubscriber.js', body: '<p id="p">hello</p>' })}
        location / { return 200 "ok"; }
    }`,
}, async (ngx) => {
    await B.withBrowserPage(async (page) => {
        const resp = await page.goto(ngx.url('/index.html'));
        assert.equal(resp.status(), 200);
        assert.equal(await page.textContent('#p'), 'hello');
        assert.equal(await page.evaluate(() => typeof window.NchanSubscriber), 'function');
        const txt = await page.evaluate(async () => (await fetch('/')).text());
        assert.equal(txt, 'ok');
        // the injection path works too, on a page without the script tag
        await page.goto(ngx.url('/'));
        await B.addNchanScript(page);
    });
});
