'use strict';
// Raw-TCP WebSocket client for tests that need to misbehave (bad frames,
// abrupt death, never answering pings): maskedFrame() builds a client frame,
// parseFrames() splits server frames, rawWs() does the handshake by hand.

const crypto = require('node:crypto');
const net = require('node:net');
const tls = require('node:tls');
const { withTimeout } = require('./util');

function maskedFrame(opcode, payload, { fin = true, rsv = 0, mask = true } = {}) {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const len = data.length;
    let head;
    if (len < 126) {
        head = Buffer.alloc(2);
        head[1] = len;
    } else if (len < 65536) {
        head = Buffer.alloc(4);
        head[1] = 126;
        head.writeUInt16BE(len, 2);
    } else {
        head = Buffer.alloc(10);
        head[1] = 127;
        head.writeBigUInt64BE(BigInt(len), 2);
    }
    head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
    if (!mask) {
        return Buffer.concat([head, data]);
    }
    head[1] |= 0x80;
    const key = crypto.randomBytes(4);
    const body = Buffer.from(data);
    for (let i = 0; i < body.length; i++) {
        body[i] ^= key[i & 3];
    }
    return Buffer.concat([head, key, body]);
}

// Parses unmasked server frames out of buf; returns [frames, rest].
function parseFrames(buf) {
    const frames = [];
    let off = 0;
    for (;;) {
        if (buf.length - off < 2) {
            break;
        }
        const b0 = buf[off];
        let len = buf[off + 1] & 0x7f;
        let hl = 2;
        if (len === 126) {
            if (buf.length - off < 4) break;
            len = buf.readUInt16BE(off + 2);
            hl = 4;
        } else if (len === 127) {
            if (buf.length - off < 10) break;
            len = Number(buf.readBigUInt64BE(off + 2));
            hl = 10;
        }
        if (buf.length - off < hl + len) {
            break;
        }
        const payload = buf.subarray(off + hl, off + hl + len);
        const f = { fin: !!(b0 & 0x80), rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, payload };
        if (f.opcode === 8) {
            f.code = payload.length >= 2 ? payload.readUInt16BE(0) : null;
            f.reason = payload.subarray(2).toString('utf8');
        }
        frames.push(f);
        off += hl + len;
    }
    return [frames, buf.subarray(off)];
}

// Opens a TCP connection, sends a handshake (plus `after` bytes in the same
// write) and collects the HTTP response head and then server frames.
// tlsOpts: connect over TLS (wss://) with these tls.connect() options.
function rawWs(port, path, { headers = {}, omit = [], after = null, tls: tlsOpts = null } = {}) {
    return new Promise((resolve, reject) => {
        const sock = tlsOpts
            ? tls.connect({ port, host: '127.0.0.1', ...tlsOpts })
            : net.connect(port, '127.0.0.1');
        const key = crypto.randomBytes(16).toString('base64');
        const h = {
            Host: `127.0.0.1:${port}`,
            Upgrade: 'websocket',
            Connection: 'Upgrade',
            'Sec-WebSocket-Key': key,
            'Sec-WebSocket-Version': '13',
            ...headers,
        };
        let req = `GET ${path} HTTP/1.1\r\n`;
        for (const [k, v] of Object.entries(h)) {
            if (!omit.includes(k)) {
                req += `${k}: ${v}\r\n`;
            }
        }
        req += '\r\n';
        const c = {
            sock, status: null, headers: {}, body: Buffer.alloc(0), frames: [],
            ended: false, waiters: [],
        };
        let buf = Buffer.alloc(0);
        const wake = () => {
            const w = c.waiters;
            c.waiters = [];
            w.forEach((f) => f());
        };
        c.changed = () => new Promise((r) => c.waiters.push(r));
        c.waitFrame = async (pred, ms = 5000) => {
            const deadline = Date.now() + ms;
            for (;;) {
                const f = c.frames.find(pred);
                if (f) return f;
                if (c.ended) throw new Error('connection ended without the frame');
                const left = deadline - Date.now();
                if (left <= 0) throw new Error(`no such frame within ${ms} ms`);
                await withTimeout(c.changed(), left, 'frame').catch(() => {});
            }
        };
        c.waitEnd = async (ms = 5000) => {
            const deadline = Date.now() + ms;
            while (!c.ended) {
                const left = deadline - Date.now();
                if (left <= 0) throw new Error(`connection not closed within ${ms} ms`);
                await withTimeout(c.changed(), left, 'end').catch(() => {});
            }
        };
        c.send = (b) => sock.write(b);
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            if (c.status === null) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) return;
                const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
                c.status = Number(lines[0].split(' ')[1]);
                for (const l of lines.slice(1)) {
                    const i = l.indexOf(':');
                    c.headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
                }
                buf = buf.subarray(end + 4);
                if (c.status !== 101) {
                    c.body = buf;
                }
                resolve(c);
            }
            if (c.status === 101) {
                const [frames, rest] = parseFrames(buf);
                c.frames.push(...frames);
                buf = rest;
            } else {
                c.body = buf;
            }
            wake();
        });
        sock.on('error', () => {});
        sock.on('close', () => {
            c.ended = true;
            wake();
            if (c.status === null) reject(new Error('closed before a response'));
        });
        sock.write(after ? Buffer.concat([Buffer.from(req), after]) : req);
        setTimeout(() => {
            if (c.status === null) {
                sock.destroy();
                reject(new Error('no handshake response'));
            }
        }, 5000).unref();
    });
}

module.exports = { maskedFrame, parseFrames, rawWs };
