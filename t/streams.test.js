'use strict';
// The streaming HTTP subscribers: chunked (TE: chunked), multipart/mixed
// (Accept: multipart/mixed) and raw stream, checked byte by byte on a raw
// socket: order, resume, end of stream on delete and timeout, and bad
// inputs (HTTP/1.0 and HTTP/2 chunked requests, clients that go away, slow
// readers dropped by pubsub_subscriber_max_pending).

const { describe, it } = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const http = require('node:http');
const { useNginx } = require('./lib/nginx');
const { sleep, waitUntil } = require('./lib/util');

const CONF = `
    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT2%% http2;
        location ~ ^/pub/(\\w+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            pubsub_message_buffer_length 100;
            client_max_body_size 2m;
        }
        location ~ ^/pubsmall/(\\w+)$ {
            pubsub_publisher;
            pubsub_channel_id $1;
            pubsub_message_buffer_length 2;
            client_max_body_size 2m;
        }
        location ~ ^/sub/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
        }
        location ~ ^/subt/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_subscriber_timeout 1s;
        }
        location ~ ^/raw/(\\w+)$ {
            pubsub_subscriber rawstream;
            pubsub_channel_id $1;
        }
        location ~ ^/rawsep/(\\w+)$ {
            pubsub_subscriber rawstream;
            pubsub_channel_id $1;
            pubsub_subscriber_http_raw_stream_separator "\\r\\n--"; # + "\\n" (as nchan)
        }
        location ~ ^/rawt/(\\w+)$ {
            pubsub_subscriber rawstream;
            pubsub_channel_id $1;
            pubsub_subscriber_timeout 1s;
        }
        location ~ ^/slow/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_subscriber_max_pending 64k;
        }
    }
`;

// A request on a raw socket whose response bytes are kept as they arrive.
class RawResponse {
    constructor(port, head) {
        this.buf = Buffer.alloc(0);
        this.ended = false;
        this.sock = net.connect(port, '127.0.0.1', () => this.sock.write(head));
        this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); });
        this.sock.on('close', () => { this.ended = true; });
        this.sock.on('error', () => { this.ended = true; });
    }

    headEnd() {
        return this.buf.indexOf('\r\n\r\n');
    }

    async head(ms = 5000) {
        await waitUntil(() => this.headEnd() >= 0 || this.ended, { timeout: ms, what: 'headers' });
        const text = this.buf.subarray(0, this.headEnd()).toString('latin1');
        const [status, ...lines] = text.split('\r\n');
        const headers = {};
        for (const l of lines) {
            const i = l.indexOf(':');
            headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        return { status: Number(status.split(' ')[1]), statusLine: status, headers };
    }

    // Raw body bytes (still chunk-encoded when the response is chunked).
    body() {
        const e = this.headEnd();
        return e < 0 ? Buffer.alloc(0) : this.buf.subarray(e + 4);
    }

    // The complete chunks of a chunked body: {chunks: [Buffer], last: bool}.
    chunks() {
        const b = this.body();
        const chunks = [];
        let pos = 0;
        let last = false;
        for (;;) {
            const eol = b.indexOf('\r\n', pos);
            if (eol < 0) {
                break;
            }
            const size = parseInt(b.subarray(pos, eol).toString('latin1'), 16);
            assert.ok(!Number.isNaN(size), `chunk size at ${pos}`);
            if (size === 0) {
                last = b.subarray(eol, eol + 4).toString() === '\r\n\r\n';
                break;
            }
            if (b.length < eol + 2 + size + 2) {
                break;
            }
            chunks.push(b.subarray(eol + 2, eol + 2 + size));
            assert.strictEqual(b.subarray(eol + 2 + size, eol + 4 + size).toString(), '\r\n');
            pos = eol + 4 + size;
        }
        return { chunks, last };
    }

    // The body with chunked coding removed.
    decoded() {
        return Buffer.concat(this.chunks().chunks);
    }

    close() {
        this.sock.destroy();
    }
}

function request(port, path, headers = {}, version = '1.1') {
    const lines = [`GET ${path} HTTP/${version}`, 'Host: 127.0.0.1'];
    for (const [k, v] of Object.entries(headers)) {
        lines.push(`${k}: ${v}`);
    }
    return new RawResponse(port, `${lines.join('\r\n')}\r\n\r\n`);
}

function httpReq(url, { method = 'GET', body, headers = {} } = {}) {
    return new Promise((resolve, reject) => {
        const data = body === undefined ? null : Buffer.from(body);
        const req = http.request(url, {
            method,
            headers: data ? { ...headers, 'Content-Length': data.length } : headers,
            timeout: 5000,
            agent: false,
        }, (res) => {
            const parts = [];
            res.on('data', (c) => parts.push(c));
            res.on('end', () => resolve({
                status: res.statusCode, headers: res.headers, body: Buffer.concat(parts),
            }));
        });
        req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
        req.on('error', reject);
        req.end(data);
    });
}

describe('streaming subscribers', { timeout: 120000 }, () => {
    const ngx = useNginx({ conf: CONF });
    let seq = 0;
    const chan = (what) => `${what}_${process.pid}_${seq++}`;

    async function pub(ch, body, contentType = 'text/plain', where = 'pub') {
        const r = await httpReq(ngx.url(`/${where}/${ch}`), {
            method: 'POST', body, headers: { 'Content-Type': contentType },
        });
        assert.ok(r.status === 201 || r.status === 202, `publish: ${r.status} ${r.body}`);
    }

    // The id of the first message after `after` (long-poll answer headers).
    async function idAfter(ch, after) {
        const r = await httpReq(ngx.url(`/sub/${ch}${after ? `?last_event_id=${after}` : ''}`));
        assert.strictEqual(r.status, 200);
        return `${Date.parse(r.headers['last-modified']) / 1000}:${r.headers.etag}`;
    }

    const started = (s) => s.head().then((h) => {
        assert.strictEqual(h.status, 200, h.statusLine);
        return h;
    });

    describe('chunked', () => {
        it('sends each message as one chunk, in order, and skips empty ones', async () => {
            const ch = chan('ck');
            const s = request(ngx.port, `/sub/${ch}`, { TE: 'chunked' });
            const h = await started(s);
            assert.strictEqual(h.headers['transfer-encoding'], 'chunked');
            const big = Buffer.from('ü€🎉x'.repeat(820)); // > 8 KB of UTF-8
            const want = ['one', 'two\nlines\r\n', big.toString(), 'last'];
            await pub(ch, 'one');
            await pub(ch, '');
            await pub(ch, want[1]);
            await pub(ch, big, 'application/octet-stream');
            await pub(ch, 'last');
            await waitUntil(() => s.chunks().chunks.length >= 4, { what: '4 chunks' });
            await sleep(200);
            assert.deepStrictEqual(s.chunks().chunks.map((c) => c.toString()), want);
            assert.ok(s.chunks().chunks[2].equals(big), '8 KB payload byte-exact');
            s.close();
        });

        it('resumes from last_event_id and Last-Event-ID', async () => {
            const ch = chan('ckr');
            for (const m of ['m1', 'm2', 'm3']) {
                await pub(ch, m);
            }
            const id1 = await idAfter(ch);
            for (const [path, hdrs] of [[`/sub/${ch}?last_event_id=${encodeURIComponent(id1)}`, {}],
                [`/sub/${ch}`, { 'Last-Event-ID': id1 }]]) {
                const s = request(ngx.port, path, { TE: 'chunked', ...hdrs });
                await started(s);
                await waitUntil(() => s.chunks().chunks.length >= 2, { what: 'resumed chunks' });
                await sleep(150);
                assert.deepStrictEqual(s.chunks().chunks.map(String), ['m2', 'm3']);
                s.close();
            }
        });

        it('ends the body with the last chunk when the channel is deleted', async () => {
            const ch = chan('ckd');
            const s = request(ngx.port, `/sub/${ch}`, { TE: 'chunked' });
            await started(s);
            await pub(ch, 'before');
            await waitUntil(() => s.chunks().chunks.length === 1, { what: 'a chunk' });
            const d = await httpReq(ngx.url(`/pub/${ch}`), { method: 'DELETE' });
            assert.strictEqual(d.status, 200);
            await waitUntil(() => s.chunks().last, { what: 'last chunk' });
            assert.ok(s.body().toString().endsWith('before\r\n0\r\n\r\n'));
            s.close();
        });

        it('ends the body on pubsub_subscriber_timeout', async () => {
            const ch = chan('ckt');
            const t0 = Date.now();
            const s = request(ngx.port, `/subt/${ch}`, { TE: 'chunked' });
            await started(s);
            await waitUntil(() => s.chunks().last, { what: 'last chunk', timeout: 4000 });
            assert.ok(Date.now() - t0 >= 900, 'not before the timeout');
            s.close();
        });

        it('refuses HTTP/1.0 and HTTP/2 with 406 (no chunked coding there)', async () => {
            const s = request(ngx.port, `/sub/${chan('ck10')}`, { TE: 'chunked' }, '1.0');
            const h = await s.head();
            assert.strictEqual(h.status, 406);
            await waitUntil(() => s.ended, { what: 'close' });
            assert.match(s.body().toString(), /needs HTTP\/1\.1/);

            // HTTP/2 (prior knowledge) with a hand-built HEADERS frame: real
            // clients do not send "te: chunked" over HTTP/2 (RFC 9113 8.2.2).
            const path = `/sub/${chan('ck2')}`;
            const lit = (name, value) => Buffer.concat([Buffer.from([0, name.length]),
                Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
            const block = Buffer.concat([Buffer.from([0x82, 0x86]),
                Buffer.from([0x04, path.length]), Buffer.from(path),
                Buffer.from([0x01, 9]), Buffer.from('127.0.0.1'), lit('te', 'chunked')]);
            const frame = (type, flags, stream, payload) => {
                const h = Buffer.alloc(9);
                h.writeUIntBE(payload.length, 0, 3);
                h[3] = type;
                h[4] = flags;
                h.writeUInt32BE(stream, 5);
                return Buffer.concat([h, payload]);
            };
            const sock = net.connect(ngx.ports[1], '127.0.0.1');
            let got = Buffer.alloc(0);
            sock.on('data', (d) => { got = Buffer.concat([got, d]); });
            sock.on('error', () => {});
            sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
                frame(4, 0, 0, Buffer.alloc(0)), frame(1, 5, 1, block)]));
            const frames = () => {
                const out = [];
                for (let p = 0; p + 9 <= got.length;) {
                    const len = got.readUIntBE(p, 3);
                    if (p + 9 + len > got.length) {
                        break;
                    }
                    out.push({ type: got[p + 3], flags: got[p + 4],
                        stream: got.readUInt32BE(p + 5) & 0x7fffffff,
                        payload: got.subarray(p + 9, p + 9 + len) });
                    p += 9 + len;
                }
                return out;
            };
            await waitUntil(() => frames().some((f) => f.type === 0 && f.stream === 1
                && (f.flags & 1)), { what: 'HTTP/2 response' });
            const hf = frames().find((f) => f.type === 1 && f.stream === 1);
            assert.ok(hf.payload.includes('406'), 'HTTP/2 :status 406');
            const body = Buffer.concat(frames().filter((f) => f.type === 0 && f.stream === 1)
                .map((f) => f.payload)).toString();
            assert.match(body, /needs HTTP\/1\.1/);
            sock.destroy();
        });

        it('rejects a bad resume id with 400', async () => {
            const s = request(ngx.port, `/sub/${chan('ckb')}?last_event_id=nonsense`,
                { TE: 'chunked' });
            assert.strictEqual((await s.head()).status, 400);
            s.close();
        });
    });

    describe('multipart/mixed', () => {
        const mp = (ch, hdrs = {}, where = 'sub') =>
            request(ngx.port, `/${where}/${ch}`, { Accept: 'multipart/mixed', ...hdrs });
        const boundaryOf = (h) => {
            const m = /^multipart\/mixed; boundary=([0-9A-Za-z]{32})$/.exec(h.headers['content-type']);
            assert.ok(m, `content-type ${h.headers['content-type']}`);
            return m[1];
        };
        const date = (id) => new Date(Number(id.split(':')[0]) * 1000).toUTCString();

        it('matches nchan\'s bytes: parts that end with the next boundary', async () => {
            const ch = chan('mp');
            const s = mp(ch);
            const b = boundaryOf(await started(s));
            await waitUntil(() => s.decoded().length >= 34, { what: 'first boundary' });
            assert.strictEqual(s.decoded().toString(), `--${b}`);
            await pub(ch, 'hello', 'text/x-one');
            await pub(ch, '', 'text/plain');
            await pub(ch, 'multi\r\nline\n');
            const id0 = await idAfter(ch);
            const id1 = await idAfter(ch, id0);
            const id2 = await idAfter(ch, id1);
            const part = (id, ct, data) => `\r\nLast-Modified: ${date(id)}\r\n` +
                `Etag: ${id.split(':')[1]}\r\nContent-Type: ${ct}\r\n\r\n${data}\r\n--${b}`;
            const want = `--${b}${part(id0, 'text/x-one', 'hello')}` +
                `${part(id1, 'text/plain', '')}${part(id2, 'text/plain', 'multi\r\nline\n')}`;
            await waitUntil(() => s.decoded().length >= want.length, { what: '3 parts' });
            assert.strictEqual(s.decoded().toString(), want);

            const d = await httpReq(ngx.url(`/pub/${ch}`), { method: 'DELETE' });
            assert.strictEqual(d.status, 200);
            await waitUntil(() => s.chunks().last, { what: 'end of body' });
            assert.strictEqual(s.decoded().toString(), `${want}--\r\n`);
            s.close();
        });

        it('resumes from last_event_id, and ends on timeout', async () => {
            const ch = chan('mpr');
            for (const m of ['r1', 'r2', 'r3']) {
                await pub(ch, m);
            }
            const id1 = await idAfter(ch);
            const r = request(ngx.port, `/subt/${ch}?last_event_id=${id1}`,
                { Accept: 'multipart/mixed' });
            const b = boundaryOf(await started(r));
            await waitUntil(() => r.chunks().last, { what: 'timeout end', timeout: 4000 });
            const parts = r.decoded().toString().split(`--${b}`);
            assert.strictEqual(parts.length, 4, JSON.stringify(parts));
            assert.deepStrictEqual(parts.slice(1, 3).map((p) => p.split('\r\n\r\n')[1]),
                ['r2\r\n', 'r3\r\n']);
            assert.strictEqual(parts[3], '--\r\n');
        });

        it('marks the first part after dropped messages with X-Pubsub-Gap: 1', async () => {
            const ch = chan('mpg');
            await pub(ch, 'g1', 'text/plain', 'pubsmall');
            const id1 = await idAfter(ch);
            for (const m of ['g2', 'g3', 'g4', 'g5']) {
                await pub(ch, m, 'text/plain', 'pubsmall');
            }
            const s = mp(ch, { 'Last-Event-ID': id1 });
            const b = boundaryOf(await started(s));
            await waitUntil(() => s.decoded().toString().split(`--${b}`).length >= 4,
                { what: '2 parts' });
            const parts = s.decoded().toString().split(`--${b}`).slice(1, 3);
            assert.match(parts[0], /\r\nX-Pubsub-Gap: 1\r\n\r\ng4\r\n$/);
            assert.doesNotMatch(parts[1], /X-Pubsub-Gap/);
            assert.match(parts[1], /\r\n\r\ng5\r\n$/);
            s.close();
        });
    });

    describe('raw stream', () => {
        it('sends <payload><separator> per message, empty ones too', async () => {
            const ch = chan('raw');
            const s = request(ngx.port, `/raw/${ch}`);
            const h = await started(s);
            assert.strictEqual(h.headers['content-length'], undefined);
            for (const m of ['msgA', '', '{"b":1}', 'two\nlines']) {
                await pub(ch, m);
            }
            const want = 'msgA\n\n{"b":1}\ntwo\nlines\n';
            await waitUntil(() => s.decoded().length >= want.length, { what: 'raw body' });
            assert.strictEqual(s.decoded().toString(), want);
            s.close();

            // HTTP/1.0: no chunking, the end of the body is the close
            const ch2 = chan('raw10');
            const r = request(ngx.port, `/rawt/${ch2}`, {}, '1.0');
            await started(r);
            await pub(ch2, 'x');
            await waitUntil(() => r.ended, { what: 'close on timeout', timeout: 4000 });
            assert.strictEqual(r.body().toString(), 'x\n');
        });

        it('uses pubsub_subscriber_http_raw_stream_separator, resumes, ends on delete',
            async () => {
                const ch = chan('raws');
                for (const m of ['a', 'b', 'c']) {
                    await pub(ch, m);
                }
                const id1 = await idAfter(ch);
                const s = request(ngx.port, `/rawsep/${ch}`, { 'Last-Event-ID': id1 });
                await started(s);
                await pub(ch, 'd');
                const want = 'b\r\n--\nc\r\n--\nd\r\n--\n';
                await waitUntil(() => s.decoded().length >= want.length, { what: 'raw body' });
                assert.strictEqual(s.decoded().toString(), want);
                await httpReq(ngx.url(`/pub/${ch}`), { method: 'DELETE' });
                await waitUntil(() => s.chunks().last, { what: 'end of body' });
                s.close();
            });
    });

    describe('bad clients', () => {
        it('survives subscribers that disconnect mid-stream', async () => {
            const workers = ngx.workerPids();
            const ch = chan('gone');
            const subs = [
                request(ngx.port, `/sub/${ch}`, { TE: 'chunked' }),
                request(ngx.port, `/sub/${ch}`, { Accept: 'multipart/mixed' }),
                request(ngx.port, `/raw/${ch}`),
            ];
            for (const s of subs) {
                await started(s);
            }
            await pub(ch, 'x'.repeat(20000));
            await waitUntil(() => subs.every((s) => s.body().length > 100), { what: 'data' });
            for (const s of subs) {
                s.sock.resetAndDestroy();
            }
            for (let i = 0; i < 20; i++) {
                await pub(ch, `after ${i} ${'y'.repeat(5000)}`);
            }
            const s = request(ngx.port, `/sub/${ch}?last_event_id=0:0`, { TE: 'chunked' });
            await started(s);
            await waitUntil(() => s.chunks().chunks.length === 21, { what: 'replay' });
            s.close();
            const info = await httpReq(ngx.url(`/pub/${ch}`), { headers: { Accept: 'text/json' } });
            assert.strictEqual(info.status, 200);
            assert.deepStrictEqual(ngx.workerPids(), workers, 'no worker died');
        });

        it('drops a reader that falls pubsub_subscriber_max_pending behind', async () => {
            const ch = chan('slow');
            const mark = ngx.logMark();
            const s = request(ngx.port, `/slow/${ch}`, { TE: 'chunked' });
            await started(s);
            s.sock.pause();
            const big = 'z'.repeat(512 * 1024);
            let dropped = false;
            for (let i = 0; i < 60 && !dropped; i++) {
                await pub(ch, big, 'text/plain', 'pubsmall');
                dropped = /subscriber dropped: \d+ bytes unsent/.test(ngx.errorLog(mark));
            }
            assert.ok(dropped, 'the slow reader was dropped');
            s.sock.resume();
            await waitUntil(() => s.ended, { what: 'connection closed', timeout: 10000 });
            assert.ok(!s.chunks().last, 'a dropped reader gets no clean end of body');

            const f = request(ngx.port, `/slow/${ch}`, { TE: 'chunked' });
            await started(f);
            await pub(ch, 'fresh', 'text/plain', 'pubsmall');
            await waitUntil(() => f.chunks().chunks.some((c) => c.toString() === 'fresh'),
                { what: 'fresh reader' });
            f.close();
        });
    });
});
