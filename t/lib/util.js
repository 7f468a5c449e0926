'use strict';
// Small shared helpers: free ports, timeouts, a waitable message queue.

const net = require('node:net');

const LOOPBACK = '127.0.0.1';

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// Resolves with `promise`, or rejects with `what timed out after N ms`.
function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolves with `promise`'s value, or with null after ms; clears its timer
// so a finished race never keeps the process alive.
function raceTimeout(promise, ms) {
    let timer;
    const t = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), ms);
    });
    return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Polls `check` (sync or async, truthy = done) every `interval` ms until `timeout`.
async function waitUntil(check, { timeout = 5000, interval = 25, what = 'condition' } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
        const v = await check();
        if (v) {
            return v;
        }
        if (Date.now() >= deadline) {
            throw new Error(`waiting for ${what} timed out after ${timeout} ms`);
        }
        await sleep(interval);
    }
}

// Ports handed out by this process, so two allocations never collide even
// before the first one is bound by its server.
const handedOut = new Set();

function freePortOnce() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, LOOPBACK, () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

// A free TCP port on 127.0.0.1 (bind port 0, read it, close).
async function freePort() {
    for (let i = 0; i < 50; i++) {
        const port = await freePortOnce();
        if (!handedOut.has(port)) {
            handedOut.add(port);
            return port;
        }
    }
    throw new Error('could not find a free port');
}

// Resolves true once something accepts TCP connections on host:port.
function canConnect(port, host = LOOPBACK, ms = 500) {
    return new Promise((resolve) => {
        const sock = net.connect({ port, host });
        const done = (ok) => {
            sock.destroy();
            resolve(ok);
        };
        sock.setTimeout(ms, () => done(false));
        sock.once('connect', () => done(true));
        sock.once('error', () => done(false));
    });
}

// The kernel's queues of the loopback TCP connection from local port `from`
// to local port `to`, from /proc/net/tcp: {sent, received}, where sent is
// what `from` wrote that `to` has not acknowledged and received what `to`
// got and its process has not read. null when there is no such connection.
function tcpQueues(from, to) {
    const fs = require('node:fs');
    const hex = (p) => p.toString(16).toUpperCase().padStart(4, '0');
    let sent = null;
    let received = null;
    for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length < 5 || f[3] !== '01') {
            continue;
        }
        const [tx, rx] = f[4].split(':').map((x) => parseInt(x, 16));
        if (f[1].endsWith(`:${hex(from)}`) && f[2].endsWith(`:${hex(to)}`)) {
            sent = tx;
        } else if (f[1].endsWith(`:${hex(to)}`) && f[2].endsWith(`:${hex(from)}`)) {
            received = rx;
        }
    }
    return sent === null || received === null ? null : { sent, received };
}

// A queue of received items that tests can await with a timeout.
//   q.push(item); await q.next(ms); await q.waitFor(n, ms); q.items
// `fail(err)` / `end()` wake every waiter.
class MessageQueue {
    constructor(name = 'message') {
        this.name = name;
        this.items = [];
        this.taken = 0;
        this.ended = false;
        this.error = null;
        this.waiters = [];
    }

    push(item) {
        this.items.push(item);
        this.wake();
    }

    end(err) {
        if (!this.ended) {
            this.ended = true;
            this.error = err || null;
        }
        this.wake();
    }

    wake() {
        const w = this.waiters;
        this.waiters = [];
        for (const fn of w) {
            fn();
        }
    }

    changed() {
        return new Promise((resolve) => this.waiters.push(resolve));
    }

    // The next item not yet returned by next(), in order.
    async next(ms = 5000) {
        const deadline = Date.now() + ms;
        while (this.taken >= this.items.length) {
            if (this.ended) {
                const why = this.error ? `: ${this.error.message}` : '';
                throw new Error(`${this.name} stream ended before the next item${why}`);
            }
            const left = deadline - Date.now();
            if (left <= 0) {
                throw new Error(`no ${this.name} within ${ms} ms (have ${this.items.length})`);
            }
            await withTimeout(this.changed(), left, `waiting for ${this.name}`).catch(() => {});
        }
        return this.items[this.taken++];
    }

    // Waits until at least n items arrived in total; returns the first n.
    async waitFor(n, ms = 5000) {
        const deadline = Date.now() + ms;
        while (this.items.length < n) {
            if (this.ended) {
                const why = this.error ? `: ${this.error.message}` : '';
                throw new Error(`${this.name} stream ended with ${this.items.length}/${n}${why}`);
            }
            const left = deadline - Date.now();
            if (left <= 0) {
                throw new Error(`only ${this.items.length}/${n} ${this.name}s within ${ms} ms`);
            }
            await withTimeout(this.changed(), left, `waiting for ${this.name}`).catch(() => {});
        }
        return this.items.slice(0, n);
    }

    // Waits until the stream ends (or ms passes); returns the error or null.
    async waitEnd(ms = 5000) {
        const deadline = Date.now() + ms;
        while (!this.ended) {
            const left = deadline - Date.now();
            if (left <= 0) {
                throw new Error(`${this.name} stream did not end within ${ms} ms`);
            }
            await withTimeout(this.changed(), left, `waiting for end`).catch(() => {});
        }
        return this.error;
    }
}

module.exports = {
    LOOPBACK, sleep, withTimeout, raceTimeout, waitUntil, freePort, canConnect, MessageQueue,
    tcpQueues,
};
