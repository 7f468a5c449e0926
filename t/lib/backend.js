'use strict';
// An application backend for hook tests (t/hooks*.test.js, t/tokens.test.js):
// startBackend() records every request nginx's hooks send it and answers per
// path.  Also: request() and eventsource() (plain node http clients), and a
// minimal startNginx(serverBlock) kept for hooks.test.js and tokens.test.js
// (new tests can use lib/nginx.js with `vars: {BACKEND_PORT: be.port}`).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const net = require('node:net');
const { spawn, execFileSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const MODULE = process.env.PUBSUB_MODULE || path.join(ROOT, 'build/nginx/ngx_pubsub_module.so');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

async function waitFor(pred, ms = 5000, what = 'condition') {
    const end = Date.now() + ms;
    for (;;) {
        const v = await pred();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await sleep(20);
    }
}

// A backend that records every request and answers per path with
// `routes[path](call)` -> {status, headers, body, delay} (default 200 "").
async function startBackend(routes = {}) {
    const calls = [];
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', async () => {
            const u = new URL(req.url, 'http://x');
            const call = {
                method: req.method, url: req.url, path: u.pathname,
                query: u.searchParams, headers: req.headers,
                body: Buffer.concat(chunks).toString(), t: Date.now(),
            };
            calls.push(call);
            const route = routes[u.pathname];
            const a = (route ? route(call) : null) || {};
            if (a.delay) await sleep(a.delay);
            if (a.destroy) { req.socket.destroy(); return; }
            res.writeHead(a.status || 200, a.headers || {});
            res.end(a.body || '');
        });
    });
    server.keepAliveTimeout = 1000;
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    return {
        port: server.address().port, calls, routes,
        of: (p) => calls.filter((c) => c.path === p),
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
    };
}

async function startNginx(serverBlock, { httpBlock = '', workers = 1, files = {} } = {}) {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'pubsub-hooks-'));
    fs.chmodSync(prefix, 0o755);
    for (const [name, content] of Object.entries(files)) {
        fs.writeFileSync(path.join(prefix, name), content);
    }
    const port = await freePort();
    const conf = `
load_module ${MODULE};
user root;
daemon off;
master_process on;
worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
worker_shutdown_timeout 20s;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${prefix}/client_body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;
    pubsub_shm_size 16m;
    ${httpBlock}
    server {
        listen 127.0.0.1:${port};
        ${serverBlock}
    }
}
`.replace(/\$PREFIX/g, prefix);
    const confPath = path.join(prefix, 'nginx.conf');
    fs.writeFileSync(confPath, conf);
    const proc = spawn('nginx', ['-p', prefix, '-c', confPath, '-e', `${prefix}/error.log`],
        { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stderr.on('data', (d) => { out += d; });
    let exited = false;
    proc.on('exit', () => { exited = true; });
    await waitFor(() => {
        if (exited) throw new Error(`nginx exited: ${out}`);
        return new Promise((resolve) => {
            const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
            s.on('error', () => resolve(false));
        });
    }, 10000, 'nginx to listen');
    const log = () => fs.readFileSync(path.join(prefix, 'error.log'), 'utf8');
    return {
        prefix, port, proc, log, confPath,
        url: (p) => `http://127.0.0.1:${port}${p}`,
        reload() {
            execFileSync('nginx', ['-p', prefix, '-c', confPath, '-e', `${prefix}/error.log`, '-s', 'reload']);
        },
        workerPids() {
            try {
                return execFileSync('pgrep', ['-P', String(proc.pid)]).toString().trim().split('\n')
                    .filter(Boolean).map(Number);
            } catch { return []; }
        },
        badLogLines() {
            return log().split('\n').filter((l) => /\[(alert|crit|emerg)\]/.test(l));
        },
        async stop() {
            if (exited) return;
            proc.kill('SIGQUIT');
            const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
            await new Promise((r) => (exited ? r() : proc.on('exit', r)));
            clearTimeout(t);
        },
    };
}

// A raw HTTP request; resolves with {status, headers, body}.
function request(url, { method = 'GET', headers = {}, body, agent = false, timeout = 10000 } = {}) {
    return new Promise((resolve, reject) => {
        const req = http.request(url, { method, headers, agent, timeout }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({
                status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString(),
            }));
        });
        req.on('timeout', () => req.destroy(new Error('request timeout')));
        req.on('error', reject);
        if (body !== undefined) req.write(body);
        req.end();
    });
}

// An EventSource subscriber; resolves once the response headers arrived.
function eventsource(url, headers = {}) {
    return new Promise((resolve, reject) => {
        const req = http.request(url, { headers: { Accept: 'text/event-stream', ...headers }, agent: false });
        let data = '';
        req.on('response', (res) => {
            res.on('data', (c) => { data += c; });
            res.on('error', () => {});
            resolve({
                status: res.statusCode, headers: res.headers, res, req,
                data: () => data,
                close: () => req.destroy(),
                reset: () => { req.socket.resetAndDestroy ? req.socket.resetAndDestroy() : req.socket.destroy(); },
            });
        });
        req.on('error', (e) => { if (!req.destroyed) reject(e); });
        req.end();
    });
}

module.exports = { startBackend, startNginx, request, eventsource, waitFor, sleep, freePort };
