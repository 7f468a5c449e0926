'use strict';
// Starts real nginx instances for integration tests, each in its own temp
// prefix with its own free loopback ports, in the spirit of nginx-tests.

const fs = require('node:fs');
const fsp = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert');
const { spawn, execFile } = require('node:child_process');
const { LOOPBACK, sleep, raceTimeout, waitUntil, freePort, canConnect } = require('./util');

const REPO = path.resolve(__dirname, '..', '..');
const NGINX_BIN = process.env.NGINX_BIN || '/usr/sbin/nginx';
const MODULE_PATH = process.env.PUBSUB_MODULE ||
    path.join(REPO, 'build', 'nginx', 'ngx_pubsub_module.so');
const KEEP_PREFIX = !!process.env.PUBSUB_KEEP_PREFIX;

// Masters started by this process, killed on exit so nothing outlives a crash.
const live = new Set();
process.on('exit', () => {
    for (const n of live) {
        n.killNow();
    }
});

const PLACEHOLDER = /%%([A-Z][A-Z0-9_]*)%%/g;

// Allocates a port for every %%PORT%%, %%PORT2%%, ... placeholder in `text`.
async function allocatePorts(text, minCount) {
    let count = Math.max(1, minCount || 1);
    for (const m of text.matchAll(/%%PORT(\d*)%%/g)) {
        count = Math.max(count, m[1] ? Number(m[1]) : 1);
    }
    const ports = [];
    for (let i = 0; i < count; i++) {
        ports.push(await freePort());
    }
    return ports;
}

// Replaces %%PORT%%/%%PORTn%%, %%PREFIX%%, %%REDIS_PORT%%, %%REDIS_URL%% and
// caller-given %%NAME%% variables. An unknown placeholder is an error.
function substitute(text, vars) {
    return text.replace(PLACEHOLDER, (all, name) => {
        if (!(name in vars)) {
            throw new Error(`nginx config: unknown placeholder ${all}`);
        }
        return String(vars[name]);
    });
}

function buildVars(prefix, ports, redis, extra) {
    const vars = { PREFIX: prefix, ...extra };
    ports.forEach((p, i) => {
        vars[i === 0 ? 'PORT' : `PORT${i + 1}`] = p;
    });
    vars.PORT1 = ports[0];
    if (redis) {
        vars.REDIS_PORT = redis.port;
        vars.REDIS_URL = redis.url;
    }
    return vars;
}

// Tests only listen on loopback: `listen 8080;` would bind every address.
function checkListen(text) {
    for (const m of text.matchAll(/(?:^|[\s{;])listen\s+([^;\s]+)/g)) {
        if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|unix):/.test(m[1])) {
            throw new Error(`nginx config: "listen ${m[1]}" must name 127.0.0.1 ` +
                '(write listen 127.0.0.1:%%PORT%%)');
        }
    }
}

function renderConf(prefix, vars, opts) {
    checkListen(opts.conf || '');
    const lines = [];
    if (opts.modules !== false) {
        lines.push(`load_module ${opts.modulePath || MODULE_PATH};`);
    }
    for (const m of opts.loadModules || []) {
        lines.push(`load_module ${path.resolve(m)};`);
    }
    if (typeof process.getuid === 'function' && process.getuid() === 0) {
        lines.push('user root;');
    }
    lines.push(
        'daemon off;',
        'master_process on;',
        `worker_processes ${opts.workers || 1};`,
        `pid ${prefix}/logs/nginx.pid;`,
        `error_log ${prefix}/logs/error.log ${opts.logLevel || 'info'};`,
        `worker_shutdown_timeout ${opts.shutdownTimeout || '5s'};`,
    );
    if (opts.main) {
        lines.push(substitute(opts.main, vars));
    }
    lines.push(
        '',
        'events {',
        `    worker_connections ${opts.workerConnections || 4096};`,
        '}',
        '',
        'http {',
        `    access_log ${prefix}/logs/access.log;`,
        `    client_body_temp_path ${prefix}/tmp/client_body;`,
        `    proxy_temp_path ${prefix}/tmp/proxy;`,
        `    fastcgi_temp_path ${prefix}/tmp/fastcgi;`,
        `    uwsgi_temp_path ${prefix}/tmp/uwsgi;`,
        `    scgi_temp_path ${prefix}/tmp/scgi;`,
        '',
        substitute(opts.conf || '', vars),
        '}',
        '',
    );
    return lines.join('\n');
}

async function makePrefix() {
    const prefix = await fsp.mkdtemp(path.join(os.tmpdir(), 'ngx-pubsub-t-'));
    // mkdtemp gives 0700: workers running as another user could not read it.
    await fsp.chmod(prefix, 0o755);
    for (const d of ['conf', 'logs', 'tmp', 'html']) {
        await fsp.mkdir(path.join(prefix, d), { mode: 0o755 });
    }
    return prefix;
}

function tail(text, n = 30) {
    return text.split('\n').slice(-n - 1).join('\n');
}

function readIfExists(file) {
    try {
        return fs.readFileSync(file, 'utf8');
    } catch {
        return '';
    }
}

// Children of `ppid` as [{pid, cmd}], read from /proc.
function childrenOf(ppid) {
    const out = [];
    for (const ent of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(ent)) {
            continue;
        }
        try {
            const stat = fs.readFileSync(`/proc/${ent}/stat`, 'utf8');
            // pid (comm) state ppid ...; comm may contain spaces/parens.
            const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
            if (Number(rest[1]) !== ppid) {
                continue;
            }
            const cmd = fs.readFileSync(`/proc/${ent}/cmdline`, 'utf8').replace(/\0+$/, '');
            out.push({ pid: Number(ent), cmd: cmd.replace(/\0/g, ' ') });
        } catch {
            // raced with exit
        }
    }
    return out;
}

function pidAlive(pid) {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

class Nginx {
    constructor(opts, prefix, ports, vars) {
        this.opts = opts;
        this.prefix = prefix;
        this.ports = ports;
        this.port = ports[0];
        this.vars = vars;
        this.host = LOOPBACK;
        this.confPath = path.join(prefix, 'conf', 'nginx.conf');
        this.errorLogPath = path.join(prefix, 'logs', 'error.log');
        this.accessLogPath = path.join(prefix, 'logs', 'access.log');
        this.proc = null;
        this.pid = null;
        this.exited = null; // {code, signal} once the master is gone
        this.stderr = '';
        this.knownWorkers = new Set();
    }

    // http://127.0.0.1:<port>/path (n selects %%PORTn%%, 1-based).
    url(p = '/', n = 1) {
        return `http://${LOOPBACK}:${this.ports[n - 1]}${p}`;
    }

    wsUrl(p = '/', n = 1) {
        return `ws://${LOOPBACK}:${this.ports[n - 1]}${p}`;
    }

    // error.log text (from byte offset `mark`); still readable after stop()
    // removed the prefix.
    errorLog(mark = 0) {
        const text = this.savedLog !== undefined ? this.savedLog : readIfExists(this.errorLogPath);
        return text.slice(mark);
    }

    accessLog() {
        return readIfExists(this.accessLogPath);
    }

    // Current length of error.log, to read only later lines: errorLog(mark).
    logMark() {
        try {
            return fs.statSync(this.errorLogPath).size;
        } catch {
            return 0;
        }
    }

    async waitForLog(re, { since = 0, timeout = 5000 } = {}) {
        return waitUntil(() => re.exec(this.errorLog(since)), {
            timeout, what: `error.log line ${re}`,
        });
    }

    // Worker pids (not those shutting down after a reload, unless asked).
    workerPids({ all = false } = {}) {
        if (!this.pid || this.exited) {
            return [];
        }
        return childrenOf(this.pid)
            .filter((c) => /worker process/.test(c.cmd))
            .filter((c) => all || !/shutting down/.test(c.cmd))
            .map((c) => c.pid);
    }

    describeFailure(what) {
        const status = this.exited
            ? `master exited (code ${this.exited.code}, signal ${this.exited.signal})\n`
            : '';
        return `${what}\n${status}prefix: ${this.prefix}\n` +
            `--- stderr ---\n${tail(this.stderr)}\n` +
            `--- error.log (tail) ---\n${tail(this.errorLog())}`;
    }

    async start() {
        const args = ['-p', `${this.prefix}/`, '-c', this.confPath,
            '-e', this.errorLogPath];
        const proc = spawn(NGINX_BIN, args, {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, ...(this.opts.env || {}) },
        });
        this.proc = proc;
        this.pid = proc.pid;
        live.add(this);
        proc.stdout.on('data', (d) => { this.stderr += d; });
        proc.stderr.on('data', (d) => { this.stderr += d; });
        this.exitPromise = new Promise((resolve) => {
            proc.on('exit', (code, signal) => {
                this.exited = { code, signal };
                live.delete(this);
                resolve(this.exited);
            });
            proc.on('error', (err) => {
                this.stderr += `spawn error: ${err.message}\n`;
                this.exited = { code: -1, signal: null };
                live.delete(this);
                resolve(this.exited);
            });
        });
        const workers = this.opts.workers || 1;
        const timeout = this.opts.startTimeout || 10000;
        const deadline = Date.now() + timeout;
        for (;;) {
            if (this.exited) {
                const msg = this.describeFailure('nginx exited during start-up');
                await this.stop().catch(() => {});
                throw new Error(msg);
            }
            let ready = this.workerPids().length >= workers;
            for (const p of this.ports) {
                ready = ready && await canConnect(p);
            }
            if (ready && !this.exited) {
                break;
            }
            if (Date.now() > deadline) {
                const msg = this.describeFailure(`nginx not ready within ${timeout} ms`);
                await this.stop().catch(() => {});
                throw new Error(msg);
            }
            await sleep(20);
        }
        for (const w of this.workerPids()) {
            this.knownWorkers.add(w);
        }
        return this;
    }

    // Rewrites conf/nginx.conf (same prefix and ports) with new options.
    rewriteConf(newOpts) {
        this.opts = { ...this.opts, ...newOpts };
        fs.writeFileSync(this.confPath, renderConf(this.prefix, this.vars, this.opts));
    }

    // SIGHUP, then waits until `workers` new workers run. Optional new config
    // (a string for the http body, or an options object). A config that the
    // master refuses rejects with the [emerg] text (old workers keep running).
    async reload(conf, { timeout = 10000 } = {}) {
        if (conf !== undefined) {
            this.rewriteConf(typeof conf === 'string' ? { conf } : conf);
        }
        const old = new Set(this.workerPids({ all: true }));
        const mark = this.logMark();
        process.kill(this.pid, 'SIGHUP');
        const want = this.opts.workers || 1;
        const deadline = Date.now() + timeout;
        for (;;) {
            if (this.exited) {
                throw new Error(this.describeFailure('nginx exited during reload'));
            }
            const since = this.errorLog(mark);
            const emerg = since.split('\n').find((l) => /\[emerg\]/.test(l));
            if (emerg) {
                throw new Error(`reload refused: ${emerg}`);
            }
            const fresh = this.workerPids().filter((p) => !old.has(p));
            // Old workers accept until they handle the master's SIGQUIT; their
            // title changes just before they close the listening sockets.
            const oldActive = this.workerPids().filter((p) => old.has(p));
            if (fresh.length >= want && oldActive.length === 0) {
                for (const w of fresh) {
                    this.knownWorkers.add(w);
                }
                return fresh;
            }
            if (Date.now() > deadline) {
                throw new Error(this.describeFailure(`reload not done within ${timeout} ms`));
            }
            await sleep(25);
        }
    }

    // Graceful stop: SIGQUIT, wait, then SIGKILL. Removes the prefix unless
    // keep (or PUBSUB_KEEP_PREFIX) is set. Returns {code, signal, killed}.
    async stop({ timeout = 10000, keep = false } = {}) {
        let killed = false;
        if (this.proc && !this.exited) {
            const workers = this.workerPids({ all: true });
            try {
                process.kill(this.pid, 'SIGQUIT');
            } catch {
                // already gone
            }
            const res = await raceTimeout(this.exitPromise, timeout);
            if (!res) {
                killed = true;
                this.killNow(workers);
                await raceTimeout(this.exitPromise, 2000);
            }
        }
        this.stopped = true;
        if (!keep && !KEEP_PREFIX && !this.keepPrefix) {
            this.savedLog = readIfExists(this.errorLogPath);
            await fsp.rm(this.prefix, { recursive: true, force: true }).catch(() => {});
        }
        return { ...(this.exited || {}), killed };
    }

    killNow(workers) {
        const pids = new Set([...(workers || []), ...this.knownWorkers]);
        try {
            for (const w of this.workerPids({ all: true })) {
                pids.add(w);
            }
        } catch {
            // ignore
        }
        for (const p of [this.pid, ...pids]) {
            if (p && pidAlive(p)) {
                try {
                    process.kill(p, 'SIGKILL');
                } catch {
                    // ignore
                }
            }
        }
    }

    // Lines of error.log at [alert], [crit] or [emerg] that no allow regex matches.
    badLogLines({ allow = [], since = 0 } = {}) {
        return this.errorLog(since).split('\n')
            .filter((l) => /\[(alert|crit|emerg)\]/.test(l))
            .filter((l) => !allow.some((re) => re.test(l)));
    }

    assertCleanLog({ allow = [], since = 0 } = {}) {
        const bad = this.badLogLines({ allow, since });
        if (bad.length) {
            this.keepPrefix = true;
            assert.fail(`error.log of nginx in ${this.prefix} has ` +
                `${bad.length} unexpected alert/crit/emerg line(s):\n${bad.join('\n')}`);
        }
    }
}

// Starts nginx. Options:
//   conf: string, body of http {}; %%PORT%%, %%PORT2%%..., %%PREFIX%%,
//         %%REDIS_PORT%%, %%REDIS_URL%% and opts.vars are substituted
//   main: extra main-context directives;  workers (1);  logLevel ('info')
//   modules (true: load PUBSUB_MODULE);  loadModules: extra .so paths
//   redis: a startRedis() handle;  vars: {NAME: value};  ports: min count
//   files: {relative path in prefix: content} written before start
//   startTimeout (10000 ms);  env: extra environment for nginx
async function startNginx(opts = {}) {
    if (typeof opts === 'string') {
        opts = { conf: opts };
    }
    const prefix = await makePrefix();
    let ngx;
    try {
        const ports = await allocatePorts(`${opts.conf || ''}\n${opts.main || ''}`, opts.ports);
        const vars = buildVars(prefix, ports, opts.redis, opts.vars);
        for (const [rel, content] of Object.entries(opts.files || {})) {
            const file = path.join(prefix, rel);
            await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
            await fsp.writeFile(file, substitute(String(content), vars));
        }
        ngx = new Nginx(opts, prefix, ports, vars);
        fs.writeFileSync(ngx.confPath, renderConf(prefix, vars, opts));
    } catch (e) {
        await fsp.rm(prefix, { recursive: true, force: true }).catch(() => {});
        throw e;
    }
    return ngx.start();
}

// Runs `nginx -t` on a config (same options as startNginx). Returns
// {ok, code, output, conf}; the prefix is removed afterwards.
async function nginxCheck(opts = {}) {
    if (typeof opts === 'string') {
        opts = { conf: opts };
    }
    const prefix = await makePrefix();
    try {
        const ports = await allocatePorts(`${opts.conf || ''}\n${opts.main || ''}`, opts.ports);
        const vars = buildVars(prefix, ports, opts.redis, opts.vars);
        const confText = renderConf(prefix, vars, opts);
        const confPath = path.join(prefix, 'conf', 'nginx.conf');
        await fsp.writeFile(confPath, confText);
        const errLog = path.join(prefix, 'logs', 'error.log');
        const res = await new Promise((resolve) => {
            execFile(NGINX_BIN, ['-t', '-p', `${prefix}/`, '-c', confPath, '-e', errLog],
                { timeout: 15000 }, (err, stdout, stderr) => {
                    resolve({ code: err ? (err.code ?? -1) : 0, output: `${stdout}${stderr}` });
                });
        });
        return { ok: res.code === 0, code: res.code, output: res.output, conf: confText };
    } finally {
        await fsp.rm(prefix, { recursive: true, force: true }).catch(() => {});
    }
}

// Starts nginx, runs fn(nginx), stops it and asserts a clean error.log.
// opts.allow: regexes of alert/crit/emerg lines that are expected.
async function withNginx(opts, fn) {
    if (typeof opts === 'string') {
        opts = { conf: opts };
    }
    const ngx = await startNginx(opts);
    let ok = false;
    try {
        const r = await fn(ngx);
        ok = true;
        return r;
    } finally {
        await ngx.stop({ keep: true });
        if (ok) {
            ngx.assertCleanLog({ allow: opts.allow || [] });
            await fsp.rm(ngx.prefix, { recursive: true, force: true }).catch(() => {});
        } else if (!KEEP_PREFIX) {
            // keep the prefix of a failed test for inspection; say where it is
            process.stderr.write(`# nginx prefix kept: ${ngx.prefix}\n`);
        }
    }
}

// node:test wrapper: nginxTest(name, confOrOpts, async (nginx, t) => {...}).
function nginxTest(name, opts, fn) {
    const { test } = require('node:test');
    const testOpts = { timeout: 60000, ...((typeof opts === 'object' && opts.test) || {}) };
    return test(name, testOpts, (t) => withNginx(opts, (ngx) => fn(ngx, t)));
}

// For describe() suites: registers before/after hooks and returns a proxy
// that forwards to the running instance. after() stops nginx and asserts a
// clean error.log.
//   describe('x', () => { const ngx = useNginx({conf}); it('y', ...ngx.port...) })
function useNginx(opts) {
    const { before, after } = require('node:test');
    if (typeof opts === 'string') {
        opts = { conf: opts };
    }
    let inst = null;
    before(async () => {
        inst = await startNginx(opts);
    });
    after(async () => {
        if (!inst) {
            return;
        }
        await inst.stop({ keep: true });
        inst.assertCleanLog({ allow: opts.allow || [] });
        await fsp.rm(inst.prefix, { recursive: true, force: true }).catch(() => {});
    });
    return new Proxy({}, {
        get(_, prop) {
            if (!inst) {
                throw new Error(`useNginx: nginx not started yet (reading .${String(prop)})`);
            }
            const v = inst[prop];
            return typeof v === 'function' ? v.bind(inst) : v;
        },
    });
}

// Starts `n` instances with the same options (several nginx on one Redis);
// if one fails to start, those already started are stopped.
async function startNginxes(n, opts = {}) {
    const out = [];
    try {
        for (let i = 0; i < n; i++) {
            out.push(await startNginx(opts));
        }
    } catch (e) {
        await Promise.all(out.map((x) => x.stop()));
        throw e;
    }
    return out;
}

// Stops each instance, then (unless clean is false) checks its error.log.
async function stopNginxes(ngxs, { allow = [], clean = true } = {}) {
    for (const n of ngxs) {
        await n.stop();
        if (clean) {
            n.assertCleanLog({ allow });
        }
    }
}

// For describe() suites: before() starts a redis-server and `n` nginx
// instances sharing it (their conf names it %%REDIS_URL%%); after() stops
// the instances, checks their error.log, and stops the server.
//   describe('x', () => { const env = useRedisNginxes(2, {conf}); ...env.ngxs... })
function useRedisNginxes(n, opts) {
    const { before, after } = require('node:test');
    const { startRedis } = require('./redis');
    const env = { redis: null, ngxs: null };
    before(async () => {
        env.redis = await startRedis();
        env.ngxs = await startNginxes(n, { ...opts, redis: env.redis });
    });
    after(async () => {
        if (env.ngxs) {
            await stopNginxes(env.ngxs, { allow: opts.allow || [] });
        }
        if (env.redis) {
            await env.redis.stop();
        }
    });
    return env;
}

module.exports = {
    startNginx, startNginxes, stopNginxes, nginxCheck, withNginx, nginxTest, useNginx,
    useRedisNginxes,
    NGINX_BIN, MODULE_PATH, REPO, childrenOf, Nginx, makePrefix,
};
