'use strict';
// Starts throw-away redis-server instances on free loopback ports, and a
// tiny RESP client for tests.

const fsp = require('node:fs/promises');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { spawn } = require('node:child_process');
const { LOOPBACK, sleep, raceTimeout, freePort, withTimeout } = require('./util');

const REDIS_BIN = process.env.REDIS_BIN || '/usr/bin/redis-server';

const live = new Set();
process.on('exit', () => {
    for (const r of live) {
        try {
            process.kill(r.pid, 'SIGKILL');
        } catch {
            // gone
        }
    }
});

function encodeCommand(args) {
    let out = `*${args.length}\r\n`;
    for (const a of args) {
        const b = Buffer.from(String(a));
        out += `$${b.length}\r\n${b.toString('binary')}\r\n`;
    }
    return Buffer.from(out, 'binary');
}

// Parses one RESP reply at buf[pos]; returns [value, nextPos] or null if incomplete.
function parseReply(buf, pos = 0) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) {
        return null;
    }
    const type = String.fromCharCode(buf[pos]);
    const line = buf.toString('utf8', pos + 1, eol);
    const next = eol + 2;
    switch (type) {
    case '+':
        return [line, next];
    case '-': {
        const err = new Error(line);
        err.redisError = true;
        return [err, next];
    }
    case ':':
        return [Number(line), next];
    case '$': {
        const len = Number(line);
        if (len < 0) {
            return [null, next];
        }
        if (buf.length < next + len + 2) {
            return null;
        }
        return [buf.toString('utf8', next, next + len), next + len + 2];
    }
    case '*': {
        const n = Number(line);
        if (n < 0) {
            return [null, next];
        }
        const arr = [];
        let p = next;
        for (let i = 0; i < n; i++) {
            const r = parseReply(buf, p);
            if (!r) {
                return null;
            }
            arr.push(r[0]);
            p = r[1];
        }
        return [arr, p];
    }
    default:
        throw new Error(`bad RESP reply type ${JSON.stringify(type)}`);
    }
}

// Sends one command over a fresh connection; resolves with the reply
// (a Redis error reply resolves as an Error object, it does not reject).
function redisCommand(port, args, { host = LOOPBACK, timeout = 3000 } = {}) {
    return withTimeout(new Promise((resolve, reject) => {
        const sock = net.connect({ port, host });
        let buf = Buffer.alloc(0);
        sock.on('connect', () => sock.write(encodeCommand(args)));
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            let r;
            try {
                r = parseReply(buf);
            } catch (e) {
                sock.destroy();
                reject(e);
                return;
            }
            if (r) {
                sock.destroy();
                resolve(r[0]);
            }
        });
        sock.on('error', reject);
        sock.on('close', () => reject(new Error('redis connection closed before a reply')));
    }), timeout, `redis ${args[0]}`);
}

class Redis {
    constructor(port, dir, proc) {
        this.port = port;
        this.host = LOOPBACK;
        this.url = `redis://${LOOPBACK}:${port}`;
        this.dir = dir;
        this.proc = proc;
        this.pid = proc.pid;
        this.output = '';
        this.exited = null;
        this.exitPromise = new Promise((resolve) => {
            proc.on('exit', (code, signal) => {
                this.exited = { code, signal };
                live.delete(this);
                resolve(this.exited);
            });
        });
        proc.stdout.on('data', (d) => { this.output += d; });
        proc.stderr.on('data', (d) => { this.output += d; });
    }

    command(...args) {
        return redisCommand(this.port, args);
    }

    async waitReady(timeout) {
        const deadline = Date.now() + timeout;
        for (;;) {
            if (this.exited) {
                throw new Error(`redis-server exited: ${JSON.stringify(this.exited)}\n${this.output}`);
            }
            const pong = await this.command('PING').catch(() => null);
            if (pong === 'PONG') {
                return this;
            }
            if (Date.now() > deadline) {
                throw new Error(`redis-server not ready in ${timeout} ms\n${this.output}`);
            }
            await sleep(20);
        }
    }

    // SIGTERM (SHUTDOWN NOSAVE semantics with --save ''), then SIGKILL.
    async stop({ timeout = 5000 } = {}) {
        if (!this.exited) {
            try {
                process.kill(this.pid, 'SIGTERM');
            } catch {
                // gone
            }
            const r = await raceTimeout(this.exitPromise, timeout);
            if (!r) {
                await this.kill();
            }
        }
        await fsp.rm(this.dir, { recursive: true, force: true }).catch(() => {});
    }

    // SIGKILL at once (simulates a crash); the temp dir is kept for restart.
    async kill() {
        if (!this.exited) {
            try {
                process.kill(this.pid, 'SIGKILL');
            } catch {
                // gone
            }
            await raceTimeout(this.exitPromise, 3000);
        }
    }
}

// Starts redis-server on 127.0.0.1. Options: port (default: a free one),
// cluster (true: cluster-enabled node owning no slots; see startRedisCluster),
// args (extra command-line arguments), timeout (5000 ms).
async function startRedis({ port, cluster = false, args = [], timeout = 5000 } = {}) {
    port = port || await freePort();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ngx-pubsub-redis-'));
    const argv = [
        '--port', String(port), '--bind', LOOPBACK, '--save', '', '--appendonly', 'no',
        '--daemonize', 'no', '--dir', dir, '--logfile', '', '--protected-mode', 'no',
    ];
    if (cluster) {
        argv.push('--cluster-enabled', 'yes', '--cluster-config-file',
            path.join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000');
    }
    argv.push(...args);
    const proc = spawn(REDIS_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = new Redis(port, dir, proc);
    live.add(r);
    try {
        return await r.waitReady(timeout);
    } catch (e) {
        await r.stop();
        throw e;
    }
}

// A Redis Cluster of `masters` nodes (default 3) with `replicas` replicas
// each (default 0), slots split evenly over the masters. Returns
// {nodes (masters first), masters, replicas: [[...] per master], seeds:
// [url...] (masters), port (first node), command(), stop()}.
async function startRedisCluster({ masters = 3, replicas = 0, timeout = 15000 } = {}) {
    const nodes = [];
    const total = masters * (1 + replicas);
    const stopAll = () => Promise.all(nodes.map((n) => n.stop()));
    const replicaSets = [];
    try {
        for (let i = 0; i < total; i++) {
            nodes.push(await startRedis({ cluster: true }));
        }
        const per = Math.floor(16384 / masters);
        for (let i = 0; i < masters; i++) {
            const lo = i * per;
            const hi = i === masters - 1 ? 16383 : (i + 1) * per - 1;
            const r = await nodes[i].command('CLUSTER', 'ADDSLOTSRANGE', lo, hi);
            if (r instanceof Error) {
                throw r;
            }
        }
        for (let i = 1; i < total; i++) {
            await nodes[0].command('CLUSTER', 'MEET', LOOPBACK, nodes[i].port);
        }
        const deadline = Date.now() + timeout;
        const waitFor = async (what, check) => {
            for (;;) {
                if (await check()) {
                    return;
                }
                if (Date.now() > deadline) {
                    throw new Error(`redis cluster: ${what} not within ${timeout} ms`);
                }
                await sleep(100);
            }
        };
        await waitFor('all nodes known', async () => {
            const infos = await Promise.all(nodes.map((n) => n.command('CLUSTER', 'INFO')));
            return infos.every((s) => typeof s === 'string' &&
                new RegExp(`cluster_known_nodes:${total}\\b`).test(s));
        });
        for (let m = 0; m < masters; m++) {
            const id = await nodes[m].command('CLUSTER', 'MYID');
            const set = [];
            for (let k = 0; k < replicas; k++) {
                const rep = nodes[masters + m * replicas + k];
                await waitFor('a replica learns its master', async () =>
                    !((await rep.command('CLUSTER', 'REPLICATE', id)) instanceof Error));
                set.push(rep);
            }
            replicaSets.push(set);
        }
        await waitFor('cluster_state:ok and replicas in sync', async () => {
            const infos = await Promise.all(nodes.map((n) => n.command('CLUSTER', 'INFO')));
            if (!infos.every((s) => typeof s === 'string' && /cluster_state:ok/.test(s))) {
                return false;
            }
            for (const set of replicaSets) {
                for (const rep of set) {
                    const info = await rep.command('INFO', 'replication');
                    if (!/master_link_status:up/.test(info)) {
                        return false;
                    }
                }
            }
            return true;
        });
    } catch (e) {
        await stopAll();
        throw e;
    }
    return {
        nodes,
        masters: nodes.slice(0, masters),
        replicas: replicaSets,
        port: nodes[0].port,
        url: nodes[0].url,
        seeds: nodes.slice(0, masters).map((n) => n.url),
        command: (...args) => nodes[0].command(...args),
        stop: stopAll,
    };
}

module.exports = { startRedis, startRedisCluster, redisCommand, encodeCommand, parseReply };
