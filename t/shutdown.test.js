'use strict';
// Graceful shutdown (nginx -s reload): every HTTP subscriber still
// connected to an old worker gets a complete response, checked byte by
// byte on raw sockets: a waiting long-poll a 503 with Retry-After and its
// position, the streams (EventSource, chunked, multipart, raw stream) their
// proper end (the last chunk, the closing boundary), and no [alert].

const { describe, it } = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const http = require('node:http');
const { useNginx } = require('./lib/nginx');
const { waitUntil } = require('./lib/util');

const CONF = `
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/pub/(\\w+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
        }
        location ~ ^/sub/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
        }
        location ~ ^/raw/(\\w+)$ {
            pubsub_subscriber rawstream;
            pubsub_channel_id $1;
        }
        location = /status { pubsub_status; }
    }
`;

// A request on a raw socket: every byte until the server closes.
class Raw {
    constructor(port, path, headers = {}) {
        this.buf = Buffer.alloc(0);
        this.ended = false;
        const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1'];
        for (const [k, v] of Object.entries(headers)) {
            lines.push(`${k}: ${v}`);
        }
        this.sock = net.connect(port, '127.0.0.1',
            () => this.sock.write(`${lines.join('\r\n')}\r\n\r\n`));
        this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); });
        this.sock.on('close', () => { this.ended = true; });
        this.sock.on('error', () => { this.ended = true; });
    }

    head() {
        const e = this.buf.indexOf('\r\n\r\n');
        if (e < 0) {
            return null;
        }
        const [status, ...lines] = this.buf.subarray(0, e).toString('latin1').split('\r\n');
        const headers = {};
        for (const l of lines) {
            const i = l.indexOf(':');
            headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        return { statusLine: status, status: Number(status.split(' ')[1]), headers,
            body: this.buf.subarray(e + 4) };
    }

    // A chunked body decoded; `last`: it ends with the last chunk, nothing after.
    static dechunk(b) {
        const chunks = [];
        let pos = 0;
        for (;;) {
            const eol = b.indexOf('\r\n', pos);
            assert.ok(eol >= 0, `a chunk size line at ${pos}: ${JSON.stringify(b.toString())}`);
            const size = parseInt(b.subarray(pos, eol).toString('latin1'), 16);
            assert.ok(!Number.isNaN(size), `chunk size at ${pos}`);
            if (size === 0) {
                assert.strictEqual(b.subarray(eol).toString(), '\r\n\r\n', 'the last chunk ends the body');
                return Buffer.concat(chunks);
            }
            assert.ok(b.length >= eol + 4 + size, 'a whole chunk');
            chunks.push(b.subarray(eol + 2, eol + 2 + size));
            assert.strictEqual(b.subarray(eol + 2 + size, eol + 4 + size).toString(), '\r\n');
            pos = eol + 4 + size;
        }
    }
}

function getJson(port, path) {
    return new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path }, (res) => {
            let d = '';
            res.on('data', (c) => { d += c; });
            res.on('end', () => resolve(JSON.parse(d)));
        }).on('error', reject);
    });
}

function publish(port, ch, body) {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: `/pub/${ch}`, method: 'POST',
            headers: { 'Content-Type': 'text/plain' } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
        });
        req.on('error', reject);
        req.end(body);
    });
}

describe('graceful shutdown (reload)', () => {
    const ngx = useNginx({ conf: CONF, workers: 1 });

    it('ends every waiting subscriber with a complete response', async () => {
        const port = ngx.port;
        const base = (await getJson(port, '/status')).subscriptions;
        assert.strictEqual(await publish(port, 'old', 'm1'), 202);

        const lpNew = new Raw(port, '/sub/lpnew');
        const lpOld = new Raw(port, '/sub/old', { 'If-Modified-Since': 'Thu, 01 Jan 2099 00:00:00 GMT',
            'If-None-Match': '0' });
        const es = new Raw(port, '/sub/es', { Accept: 'text/event-stream' });
        const chunked = new Raw(port, '/sub/ch', { TE: 'chunked' });
        const mp = new Raw(port, '/sub/mp', { Accept: 'multipart/mixed' });
        const raw = new Raw(port, '/raw/raw');
        const all = [lpNew, lpOld, es, chunked, mp, raw];

        await waitUntil(async () => (await getJson(port, '/status')).subscriptions === base + 6,
            { timeout: 5000, what: 'six subscribers' });
        await waitUntil(() => [es, chunked, mp, raw].every((s) => s.head() !== null),
            { timeout: 5000, what: 'stream headers' });
        assert.strictEqual(await publish(port, 'ch', 'hello'), 201);
        await waitUntil(() => Raw.dechunk0(chunked), { timeout: 5000, what: 'a chunk' });

        await ngx.reload();
        await waitUntil(() => all.every((s) => s.ended), { timeout: 10000, what: 'all closed' });

        for (const lp of [lpNew, lpOld]) {
            const h = lp.head();
            assert.ok(h, `a status line: ${JSON.stringify(lp.buf.toString())}`);
            assert.strictEqual(h.statusLine, 'HTTP/1.1 503 Service Temporarily Unavailable');
            assert.strictEqual(h.headers['retry-after'], '1');
            assert.strictEqual(h.body.toString(), 'Server shutting down.\n');
            assert.strictEqual(Number(h.headers['content-length']), h.body.length);
        }
        // the tag of the position it was waiting at (nginx sends no
        // Last-Modified with a 503: the client keeps its If-Modified-Since)
        assert.strictEqual(lpOld.head().headers.etag, '0');
        assert.strictEqual(lpNew.head().headers.etag, undefined);

        for (const s of [es, chunked, mp, raw]) {
            const h = s.head();
            assert.strictEqual(h.status, 200);
            assert.strictEqual(h.headers['transfer-encoding'], 'chunked');
        }

        // a comment, as a timeout (":408: ...") or a delete (":410: ...") ends it
        const esBody = Raw.dechunk(es.head().body).toString();
        assert.ok(esBody.endsWith('\n\n:503: 503 Service Unavailable\n\n'), JSON.stringify(esBody));

        assert.strictEqual(Raw.dechunk(chunked.head().body).toString(), 'hello');

        const boundary = /boundary=([0-9A-Za-z]+)/.exec(mp.head().headers['content-type'])[1];
        const mpBody = Raw.dechunk(mp.head().body).toString();
        // no part yet: the opening boundary, then the closing "--"
        assert.strictEqual(mpBody, `--${boundary}--\r\n`);

        assert.strictEqual(Raw.dechunk(raw.head().body).length, 0);
    });
});

// whether a chunked body holds at least one complete data chunk yet
Raw.dechunk0 = (r) => {
    const h = r.head();
    if (!h) {
        return false;
    }
    const eol = h.body.indexOf('\r\n');
    if (eol < 0) {
        return false;
    }
    const size = parseInt(h.body.subarray(0, eol).toString('latin1'), 16);
    return size > 0 && h.body.length >= eol + 4 + size;
};
