'use strict';
// Protocol clients for integration tests. Every wait has a timeout, so a
// broken server fails a test instead of hanging it.
//
//   httpRequest   one request over a fresh connection (node http, agent:false)
//   HttpStream    raw HTTP/1.1 response over a net.Socket (head, wire bytes,
//                 de-chunked body, transfer chunks); base of the readers below
//   sseStream     EventSource reader (event:/id:/data:/retry:, ':' comments)
//   chunkedStream TE: chunked reader, one message per transfer chunk
//   multipartStream  Accept: multipart/mixed reader, one message per part
//   rawStream     http-raw-stream reader, messages split by a separator
//   longPoll      nchan long-poll loop (If-Modified-Since / If-None-Match)
//   wsConnect     WebSocket (npm ws) that collects messages and the close code
//   eventSource   npm eventsource@2 (a real EventSource, reconnects with Last-Event-ID)

const http = require('node:http');
const net = require('node:net');
const { LOOPBACK, MessageQueue, withTimeout } = require('./util');

function portOf(opts) {
    if (typeof opts.port === 'number') {
        return opts.port;
    }
    if (opts.nginx) {
        return opts.nginx.port;
    }
    throw new Error('client: port (or nginx) is required');
}

// ---------------------------------------------------------------------------
// httpRequest

// One request on a fresh TCP connection. Resolves {status, statusText,
// headers, rawHeaders, body: Buffer, text}. keepAlive:false (default) sends
// Connection: close. body may be a string or Buffer.
function httpRequest(opts) {
    const { method = 'GET', path = '/', headers = {}, body, timeout = 10000,
        host = LOOPBACK, keepAlive = false, agent } = opts;
    const port = portOf(opts);
    const hdrs = { ...headers };
    if (!keepAlive && !Object.keys(hdrs).some((k) => k.toLowerCase() === 'connection')) {
        hdrs.Connection = 'close';
    }
    return new Promise((resolve, reject) => {
        const req = http.request({
            host, port, method, path, headers: hdrs,
            agent: agent !== undefined ? agent : false,
        }, (res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => {
                clearTimeout(timer);
                const buf = Buffer.concat(parts);
                resolve({
                    status: res.statusCode,
                    statusText: res.statusMessage,
                    headers: res.headers,
                    rawHeaders: res.rawHeaders,
                    body: buf,
                    text: buf.toString('utf8'),
                });
            });
            res.on('error', (e) => {
                clearTimeout(timer);
                reject(e);
            });
        });
        const timer = setTimeout(() => {
            req.destroy(new Error(`${method} ${path} timed out after ${timeout} ms`));
        }, timeout);
        req.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        if (body !== undefined && body !== null) {
            req.end(body);
        } else {
            req.end();
        }
    });
}

// Convenience: publish `body` with POST; resolves the httpRequest result.
function publish(opts, body, headers = {}) {
    return httpRequest({ ...opts, method: 'POST', body,
        headers: { 'Content-Type': 'text/plain', ...headers, ...(opts.headers || {}) } });
}

// ---------------------------------------------------------------------------
// HttpStream: raw HTTP/1.1 over a socket

function parseHead(text) {
    const lines = text.split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) {
        throw new Error(`bad HTTP status line: ${JSON.stringify(lines[0])}`);
    }
    const headers = {};
    const rawHeaders = [];
    for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i <= 0) {
            continue;
        }
        const name = l.slice(0, i).trim();
        const value = l.slice(i + 1).trim();
        rawHeaders.push(name, value);
        const key = name.toLowerCase();
        if (key === 'set-cookie') {
            (headers[key] = headers[key] || []).push(value);
        } else {
            headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
        }
    }
    return { httpVersion: m[1], status: Number(m[2]), statusText: m[3] || '', headers, rawHeaders };
}

// Sends one request and parses the response incrementally.
//   await s.response        -> {status, statusText, headers, rawHeaders}
//   s.raw                   all bytes after the response head, as on the wire
//   s.body                  de-chunked body so far
//   s.chunks                MessageQueue of transfer chunks (chunked), or of
//                           data reads (otherwise)
//   await s.done            resolves when the body ended or the socket closed
//   s.close()               closes the socket mid-stream
// Subclasses override onBody(buf) to parse the body as it arrives.
class HttpStream {
    constructor(opts) {
        const { method = 'GET', path = '/', headers = {}, body, host = LOOPBACK,
            timeout = 30000 } = opts;
        this.port = portOf(opts);
        this.raw = Buffer.alloc(0);
        this.body = Buffer.alloc(0);
        this.head = null;
        this.chunks = new MessageQueue('chunk');
        this.bodyEnded = false;
        this.closedByUs = false;
        this.headBuf = Buffer.alloc(0);
        this.chunkBuf = Buffer.alloc(0);
        this.chunked = false;
        this.remaining = null; // content-length left, or null
        this.responsePromise = new Promise((resolve, reject) => {
            this.resolveHead = resolve;
            this.rejectHead = reject;
        });
        this.responsePromise.catch(() => {});
        this.done = new Promise((resolve) => {
            this.resolveDone = resolve;
        });

        const lines = [`${method} ${path} HTTP/1.1`];
        const have = new Set(Object.keys(headers).map((k) => k.toLowerCase()));
        if (!have.has('host')) {
            lines.push(`Host: ${host}:${this.port}`);
        }
        for (const [k, v] of Object.entries(headers)) {
            for (const one of Array.isArray(v) ? v : [v]) {
                lines.push(`${k}: ${one}`);
            }
        }
        const payload = body === undefined || body === null ? null : Buffer.from(body);
        if (payload && !have.has('content-length')) {
            lines.push(`Content-Length: ${payload.length}`);
        }
        const reqHead = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`);

        this.sock = net.connect({ host, port: this.port });
        this.sock.on('connect', () => {
            this.sock.write(payload ? Buffer.concat([reqHead, payload]) : reqHead);
        });
        this.sock.on('data', (d) => this.onData(d));
        this.sock.on('error', (e) => this.finish(e));
        this.sock.on('close', () => this.finish(null));
        this.timer = setTimeout(() => {
            this.finish(new Error(`${method} ${path}: stream still open after ${timeout} ms`));
        }, timeout);
    }

    get response() {
        return this.responsePromise;
    }

    get text() {
        return this.body.toString('utf8');
    }

    onData(d) {
        if (!this.head) {
            this.headBuf = Buffer.concat([this.headBuf, d]);
            const end = this.headBuf.indexOf('\r\n\r\n');
            if (end < 0) {
                return;
            }
            try {
                this.head = parseHead(this.headBuf.toString('latin1', 0, end));
            } catch (e) {
                this.finish(e);
                return;
            }
            const te = (this.head.headers['transfer-encoding'] || '').toLowerCase();
            this.chunked = te.includes('chunked');
            const cl = this.head.headers['content-length'];
            if (!this.chunked && cl !== undefined) {
                this.remaining = Number(cl);
            }
            this.resolveHead(this.head);
            const rest = this.headBuf.subarray(end + 4);
            this.headBuf = null;
            if (this.remaining === 0 || [204, 304].includes(this.head.status)) {
                this.endBody();
                return;
            }
            if (rest.length) {
                this.onWire(rest);
            }
            return;
        }
        this.onWire(d);
    }

    onWire(d) {
        if (this.bodyEnded) {
            return;
        }
        this.raw = Buffer.concat([this.raw, d]);
        if (!this.chunked) {
            let part = d;
            if (this.remaining !== null) {
                part = d.subarray(0, this.remaining);
                this.remaining -= part.length;
            }
            this.deliver(part);
            if (this.remaining === 0) {
                this.endBody();
            }
            return;
        }
        this.chunkBuf = Buffer.concat([this.chunkBuf, d]);
        for (;;) {
            const eol = this.chunkBuf.indexOf('\r\n');
            if (eol < 0) {
                return;
            }
            const sizeLine = this.chunkBuf.toString('latin1', 0, eol);
            const size = parseInt(sizeLine.split(';')[0], 16);
            if (Number.isNaN(size)) {
                this.finish(new Error(`bad chunk size line ${JSON.stringify(sizeLine)}`));
                return;
            }
            if (size === 0) {
                this.chunkBuf = Buffer.alloc(0);
                this.endBody();
                return;
            }
            if (this.chunkBuf.length < eol + 2 + size + 2) {
                return;
            }
            const data = this.chunkBuf.subarray(eol + 2, eol + 2 + size);
            if (this.chunkBuf.toString('latin1', eol + 2 + size, eol + 4 + size) !== '\r\n') {
                this.finish(new Error('chunk not followed by CRLF'));
                return;
            }
            this.chunkBuf = this.chunkBuf.subarray(eol + 4 + size);
            this.deliver(Buffer.from(data));
        }
    }

    deliver(buf) {
        if (!buf.length) {
            return;
        }
        this.body = Buffer.concat([this.body, buf]);
        this.chunks.push(buf);
        try {
            this.onBody(buf);
        } catch (e) {
            this.finish(e);
        }
    }

    // Hook for subclasses.
    onBody() {}

    onEnd() {}

    endBody() {
        if (this.bodyEnded) {
            return;
        }
        this.bodyEnded = true;
        this.finish(null);
    }

    finish(err) {
        if (this.finished) {
            return;
        }
        this.finished = true;
        clearTimeout(this.timer);
        this.error = err;
        if (!this.head) {
            this.rejectHead(err || new Error('connection closed before the response head'));
        }
        this.onEnd(err);
        this.chunks.end(err);
        this.sock.destroy();
        this.resolveDone({ error: err, bodyEnded: this.bodyEnded });
    }

    // Closes the connection (e.g. mid-stream).
    close() {
        this.closedByUs = true;
        this.finish(null);
        return this.done;
    }
}

// ---------------------------------------------------------------------------
// EventSource

// Parses an SSE body. blocks: every dispatched block (comments included), as
// {event, id, data, retry, comments:[...], raw}; events: blocks with a data
// or event field (what a browser would dispatch, plus named events).
class SseStream extends HttpStream {
    constructor(opts) {
        super({ ...opts, headers: { Accept: 'text/event-stream', ...(opts.headers || {}) } });
        this.blocks = new MessageQueue('SSE block');
        this.events = new MessageQueue('SSE event');
        this.lineBuf = '';
        this.cur = null;
        this.decoder = new (require('node:string_decoder').StringDecoder)('utf8');
    }

    get comments() {
        return this.blocks.items.flatMap((b) => b.comments);
    }

    onBody(buf) {
        this.lineBuf += this.decoder.write(buf);
        for (;;) {
            const m = /\r\n|\r|\n/.exec(this.lineBuf);
            if (!m) {
                return;
            }
            // A lone \r at the end may be the first half of \r\n.
            if (m[0] === '\r' && m.index === this.lineBuf.length - 1) {
                return;
            }
            const line = this.lineBuf.slice(0, m.index);
            this.lineBuf = this.lineBuf.slice(m.index + m[0].length);
            this.onLine(line, m[0]);
        }
    }

    onLine(line, eol) {
        if (line === '') {
            if (this.cur) {
                const b = this.cur;
                this.cur = null;
                this.blocks.push(b);
                if (b.data !== undefined || b.event !== undefined) {
                    this.events.push(b);
                }
            }
            return;
        }
        const b = this.cur || (this.cur = { event: undefined, id: undefined, data: undefined,
            retry: undefined, comments: [], raw: '' });
        b.raw += line + eol;
        if (line.startsWith(':')) {
            b.comments.push(line.slice(1).replace(/^ /, ''));
            return;
        }
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? '' : line.slice(i + 1);
        if (value.startsWith(' ')) {
            value = value.slice(1);
        }
        if (field === 'data') {
            b.data = b.data === undefined ? value : `${b.data}\n${value}`;
        } else if (field === 'event') {
            b.event = value;
        } else if (field === 'id') {
            b.id = value;
        } else if (field === 'retry') {
            b.retry = Number(value);
        } else {
            (b.unknown = b.unknown || []).push(line);
        }
    }

    onEnd(err) {
        this.blocks.end(err);
        this.events.end(err);
    }

    // Next event with data/event (skips comment-only blocks).
    next(ms) {
        return this.events.next(ms);
    }

    waitFor(n, ms) {
        return this.events.waitFor(n, ms);
    }
}

function sseStream(opts) {
    return new SseStream(opts);
}

// ---------------------------------------------------------------------------
// chunked, multipart/mixed, raw stream

// One message per transfer chunk: await s.chunks.next(ms).
function chunkedStream(opts) {
    const s = new HttpStream({ ...opts, headers: { TE: 'chunked', ...(opts.headers || {}) } });
    s.messages = s.chunks;
    return s;
}

function parsePartHeaders(text) {
    const headers = {};
    for (const l of text.split('\r\n')) {
        const i = l.indexOf(':');
        if (i > 0) {
            headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
    }
    return headers;
}

function boundaryOf(contentType) {
    const m = /boundary=("?)([^";]+)\1/i.exec(contentType || '');
    return m ? m[2] : null;
}

// Splits a complete multipart/mixed body into [{headers, body, text}].
// Tolerates nchan's form, where the first delimiter has no leading CRLF and
// each part ends with the next delimiter.
function parseMultipart(body, boundary) {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const delim = Buffer.from(`--${boundary}`);
    const parts = [];
    let pos = buf.indexOf(delim);
    if (pos < 0) {
        throw new Error(`multipart body without boundary ${boundary}`);
    }
    pos += delim.length;
    for (;;) {
        if (buf.toString('latin1', pos, pos + 2) === '--') {
            break;
        }
        const next = buf.indexOf(Buffer.from(`\r\n--${boundary}`), pos);
        if (next < 0) {
            break;
        }
        parts.push(splitPart(buf.subarray(pos, next)));
        pos = next + 2 + delim.length;
    }
    return parts;
}

function splitPart(part) {
    // part = CRLF headers CRLF CRLF payload  (headers may be empty)
    let p = part;
    if (p.toString('latin1', 0, 2) === '\r\n') {
        p = p.subarray(2);
    }
    let headers = {};
    let payload;
    if (p.toString('latin1', 0, 2) === '\r\n') {
        payload = p.subarray(2);
    } else {
        const e = p.indexOf('\r\n\r\n');
        if (e < 0) {
            throw new Error(`multipart part without header end: ${JSON.stringify(p.toString())}`);
        }
        headers = parsePartHeaders(p.toString('latin1', 0, e));
        payload = p.subarray(e + 4);
    }
    return { headers, body: Buffer.from(payload), text: payload.toString('utf8') };
}

// Accept: multipart/mixed stream; s.parts is a MessageQueue of
// {headers, body, text}; s.finalBoundary tells whether --boundary-- arrived.
class MultipartStream extends HttpStream {
    constructor(opts) {
        super({ ...opts, headers: { Accept: 'multipart/mixed', ...(opts.headers || {}) } });
        this.parts = new MessageQueue('multipart part');
        this.messages = this.parts;
        this.buf = Buffer.alloc(0);
        this.started = false;
        this.finalBoundary = false;
    }

    onBody(d) {
        if (!this.boundary) {
            this.boundary = boundaryOf(this.head.headers['content-type']);
            if (!this.boundary) {
                throw new Error(`no boundary in ${this.head.headers['content-type']}`);
            }
        }
        this.buf = Buffer.concat([this.buf, d]);
        const delim = `--${this.boundary}`;
        if (!this.started) {
            const i = this.buf.indexOf(delim);
            if (i < 0) {
                return;
            }
            this.buf = this.buf.subarray(i + delim.length);
            this.started = true;
        }
        for (;;) {
            if (this.buf.length >= 2 && this.buf.toString('latin1', 0, 2) === '--') {
                this.finalBoundary = true;
                return;
            }
            const next = this.buf.indexOf(`\r\n${delim}`);
            if (next < 0) {
                return;
            }
            this.parts.push(splitPart(this.buf.subarray(0, next)));
            this.buf = this.buf.subarray(next + 2 + delim.length);
        }
    }

    onEnd(err) {
        this.parts.end(err);
    }
}

function multipartStream(opts) {
    return new MultipartStream(opts);
}

// http-raw-stream: messages separated by `separator` (default "\n").
class RawStream extends HttpStream {
    constructor(opts) {
        super(opts);
        this.separator = Buffer.from(opts.separator === undefined ? '\n' : opts.separator);
        this.messages = new MessageQueue('raw-stream message');
        this.buf = Buffer.alloc(0);
    }

    onBody(d) {
        this.buf = Buffer.concat([this.buf, d]);
        for (;;) {
            const i = this.buf.indexOf(this.separator);
            if (i < 0) {
                return;
            }
            const m = this.buf.subarray(0, i);
            this.messages.push({ body: Buffer.from(m), text: m.toString('utf8') });
            this.buf = this.buf.subarray(i + this.separator.length);
        }
    }

    onEnd(err) {
        this.messages.end(err);
    }
}

function rawStream(opts) {
    return new RawStream(opts);
}

// ---------------------------------------------------------------------------
// long-poll

// nchan's long-poll loop: GET; on 200 record the message and re-request with
// If-Modified-Since = Last-Modified and If-None-Match = Etag. 304
// (interval-poll) waits `interval` ms and polls again; 408 polls again.
// Any other status ends the loop (lp.endStatus). A multipart/mixed 200
// (nchan_longpoll_multipart_response on) yields one message per part.
//   lp.messages: MessageQueue of {status, headers, body, text, contentType,
//                lastModified, etag}
//   lp.responses: every response {status, headers, text}
//   lp.stop()
class LongPoll {
    constructor(opts) {
        this.opts = opts;
        this.port = portOf(opts);
        this.path = opts.path || '/';
        this.headers = opts.headers || {};
        this.pollTimeout = opts.pollTimeout || 30000;
        this.interval = opts.interval || 200;
        this.lastModified = opts.lastModified || null;
        this.etag = opts.etag || null;
        this.messages = new MessageQueue('long-poll message');
        this.responses = [];
        this.endStatus = null;
        this.stopped = false;
        this.req = null;
        this.loop = this.run().catch((e) => {
            this.messages.end(this.stopped ? null : e);
        });
    }

    pollOnce() {
        const headers = { ...this.headers };
        if (this.lastModified) {
            headers['If-Modified-Since'] = this.lastModified;
        }
        if (this.etag) {
            headers['If-None-Match'] = this.etag;
        }
        return new Promise((resolve, reject) => {
            const req = http.request({
                host: LOOPBACK, port: this.port, path: this.path, method: 'GET',
                headers: { Connection: 'close', ...headers }, agent: false,
            }, (res) => {
                const parts = [];
                res.on('data', (d) => parts.push(d));
                res.on('end', () => {
                    clearTimeout(timer);
                    const body = Buffer.concat(parts);
                    resolve({ status: res.statusCode, headers: res.headers, body,
                        text: body.toString('utf8') });
                });
                res.on('error', reject);
            });
            this.req = req;
            const timer = setTimeout(() => {
                req.destroy(new Error(`long-poll ${this.path} got no answer in ${this.pollTimeout} ms`));
            }, this.pollTimeout);
            req.on('error', (e) => {
                clearTimeout(timer);
                reject(e);
            });
            req.end();
        });
    }

    async run() {
        while (!this.stopped) {
            const r = await this.pollOnce();
            this.req = null;
            if (this.stopped) {
                break;
            }
            this.responses.push({ status: r.status, headers: r.headers, text: r.text });
            if (r.status === 200) {
                this.lastModified = r.headers['last-modified'] || this.lastModified;
                this.etag = r.headers.etag !== undefined ? r.headers.etag : this.etag;
                const ct = r.headers['content-type'];
                const boundary = /^multipart\/mixed/i.test(ct || '') ? boundaryOf(ct) : null;
                if (boundary) {
                    for (const p of parseMultipart(r.body, boundary)) {
                        this.messages.push({ status: 200, headers: p.headers, body: p.body,
                            text: p.text, contentType: p.headers['content-type'],
                            lastModified: p.headers['last-modified'], etag: p.headers.etag });
                    }
                } else {
                    this.messages.push({ status: 200, headers: r.headers, body: r.body,
                        text: r.text, contentType: ct, lastModified: r.headers['last-modified'],
                        etag: r.headers.etag });
                }
            } else if (r.status === 304) {
                await new Promise((res) => setTimeout(res, this.interval));
            } else if (r.status === 408) {
                if (r.headers.etag !== undefined) {
                    this.etag = r.headers.etag;
                }
            } else {
                this.endStatus = r.status;
                this.endResponse = r;
                this.messages.end(new Error(`long-poll ended with status ${r.status}`));
                return;
            }
        }
        this.messages.end(null);
    }

    next(ms) {
        return this.messages.next(ms);
    }

    waitFor(n, ms) {
        return this.messages.waitFor(n, ms);
    }

    async stop() {
        this.stopped = true;
        if (this.req) {
            this.req.destroy();
        }
        await withTimeout(this.loop, 5000, 'long-poll stop');
    }
}

function longPoll(opts) {
    return new LongPoll(opts);
}

// ---------------------------------------------------------------------------
// WebSocket

// Splits an nchan ws+meta.nchan frame: "id: X\ncontent-type: Y\n\n<payload>".
function parseWsMeta(data) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const end = buf.indexOf('\n\n');
    if (end < 0) {
        throw new Error(`ws+meta frame without header end: ${JSON.stringify(buf.toString())}`);
    }
    const meta = {};
    for (const line of buf.toString('utf8', 0, end).split('\n')) {
        const i = line.indexOf(':');
        if (i > 0) {
            meta[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
    }
    const payload = buf.subarray(end + 2);
    return { id: meta.id, contentType: meta['content-type'], meta, body: Buffer.from(payload),
        text: payload.toString('utf8') };
}

// Opens a WebSocket with npm ws. Resolves a client once open; rejects if the
// handshake fails, with err.status/err.headers/err.body when the server
// answered with an HTTP response instead of 101.
//   opts: protocol(s), headers, perMessageDeflate (false), timeout (5000),
//         maxPayload, origin; wss://: ca (a PEM to trust), rejectUnauthorized
//   c.messages: MessageQueue of {data: Buffer, text, isBinary, meta?}
//     (meta = parseWsMeta result when the protocol is ws+meta.nchan)
//   c.send(data, {binary}); c.close(code, reason); await c.closed -> {code, reason}
//   c.ping(payload) resolves with the pong payload; c.terminate()
function wsConnect(url, opts = {}) {
    const WebSocket = require('ws');
    const timeout = opts.timeout || 5000;
    const protocols = opts.protocols || opts.protocol;
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, protocols, {
            headers: opts.headers || {},
            perMessageDeflate: opts.perMessageDeflate || false,
            handshakeTimeout: timeout,
            maxPayload: opts.maxPayload || 100 * 1024 * 1024,
            origin: opts.origin,
            // wss:// to a test's self-signed certificate
            rejectUnauthorized: opts.rejectUnauthorized,
            ca: opts.ca,
        });
        const client = {
            ws,
            protocol: null,
            messages: new MessageQueue('ws message'),
            closeInfo: null,
            pongs: new MessageQueue('pong'),
        };
        client.closed = new Promise((res) => {
            ws.on('close', (code, reason) => {
                client.closeInfo = { code, reason: reason.toString('utf8') };
                client.messages.end(null);
                res(client.closeInfo);
            });
        });
        client.send = (data, o = {}) => new Promise((res, rej) => {
            ws.send(data, { binary: !!o.binary, compress: o.compress }, (e) => (e ? rej(e) : res()));
        });
        client.close = (code, reason) => {
            if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
                ws.close(code, reason);
            }
            return withTimeout(client.closed, timeout, 'websocket close');
        };
        client.terminate = () => ws.terminate();
        client.ping = (payload = '') => {
            ws.ping(payload);
            return client.pongs.next(timeout);
        };
        client.next = (ms) => client.messages.next(ms);
        client.waitFor = (n, ms) => client.messages.waitFor(n, ms);
        ws.on('pong', (d) => client.pongs.push(d));
        ws.on('message', (data, isBinary) => {
            const buf = Buffer.isBuffer(data) ? data : Buffer.concat([].concat(data));
            const m = { data: buf, text: buf.toString('utf8'), isBinary };
            if (client.protocol && client.protocol.startsWith('ws+meta.nchan')) {
                try {
                    m.meta = parseWsMeta(buf);
                } catch (e) {
                    m.metaError = e.message;
                }
            }
            client.messages.push(m);
        });
        ws.on('unexpected-response', (req, res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => {
                const body = Buffer.concat(parts);
                const err = new Error(`websocket handshake refused: ${res.statusCode}`);
                err.status = res.statusCode;
                err.headers = res.headers;
                err.body = body;
                err.text = body.toString('utf8');
                req.destroy();
                reject(err);
            });
        });
        ws.on('open', () => {
            client.protocol = ws.protocol;
            client.extensions = ws.extensions;
            resolve(client);
        });
        ws.on('error', (e) => {
            client.error = e;
            reject(e);
        });
    });
}

// ---------------------------------------------------------------------------
// npm eventsource@2 (plain node http; reconnects by itself, sending
// Last-Event-ID). events: extra named events to listen for.
//   es.messages: MessageQueue of {type, data, lastEventId}; es.errors; es.close()
function eventSource(url, { headers = {}, events = [] } = {}) {
    const EventSource = require('eventsource');
    const es = new EventSource(url, { headers });
    const out = {
        es,
        messages: new MessageQueue('EventSource message'),
        errors: [],
        opens: 0,
    };
    const onMsg = (e) => out.messages.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
    es.addEventListener('message', onMsg);
    for (const name of events) {
        es.addEventListener(name, onMsg);
    }
    es.addEventListener('open', () => { out.opens++; });
    es.addEventListener('error', (e) => out.errors.push(e));
    out.next = (ms) => out.messages.next(ms);
    out.waitFor = (n, ms) => out.messages.waitFor(n, ms);
    out.close = () => {
        es.close();
        out.messages.end(null);
    };
    return out;
}

// Publishes until the answer is 201 or 202 (Redis coming back, a cluster
// failing over); throws after `ms`.
async function waitPublish(port, path, body, ms = 10000) {
    const deadline = Date.now() + ms;
    for (;;) {
        const r = await publish({ port, path }, body).catch((e) => ({ status: 0, text: String(e) }));
        if (r.status === 201 || r.status === 202) {
            return r;
        }
        if (Date.now() > deadline) {
            throw new Error(`publish kept failing: ${r.status} ${r.text}`);
        }
        await new Promise((res) => setTimeout(res, 100));
    }
}

module.exports = {
    waitPublish,
    httpRequest, publish, HttpStream, sseStream, chunkedStream, multipartStream, rawStream,
    longPoll, wsConnect, parseWsMeta, parseMultipart, eventSource, MessageQueue,
};
