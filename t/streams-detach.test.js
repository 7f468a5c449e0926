'use strict';
// Streams that shed their HTTP request (issue 17): once an EventSource,
// chunked, multipart or raw stream over HTTP/1.x is under way, the request
// is freed and the subscriber drives the connection alone. What must not
// change: a request that something else still needs stays whole (a slot
// of limit_conn, a body filter that rewrites the stream), a client that
// goes away is noticed, and an HTTP/1.0 stream (no chunked coding) is
// delimited by the connection's close. A WebSocket, which frees its
// request after the 101, keeps its limit_conn slot too.

const { describe, it } = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { useNginx } = require('./lib/nginx');
const { httpRequest, publish, sseStream, chunkedStream, wsConnect } = require('./lib/clients');
const { sleep, waitUntil } = require('./lib/util');

const CONF = `
    limit_conn_zone $binary_remote_addr zone=detach_perip:1m;

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
        location ~ ^/subt/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            pubsub_subscriber_timeout 1s;
        }
        location ~ ^/lim/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            limit_conn detach_perip 1;
        }
        location ~ ^/filtered/(\\w+)$ {
            pubsub_subscriber;
            pubsub_channel_id $1;
            sub_filter 'hello' 'HELLO';
            sub_filter_once off;
            sub_filter_types *;
        }
        location = /status { pubsub_status; }
    }
`;

describe('streams without their request', { timeout: 60000 }, () => {
    const ngx = useNginx({ conf: CONF, workers: 1 });
    let seq = 0;
    const chan = (what) => `${what}_${process.pid}_${seq++}`;
    const pub = async (ch, body) => {
        const r = await publish({ port: ngx.port, path: `/pub/${ch}` }, body);
        assert.ok(r.status === 201 || r.status === 202, `publish: ${r.status}`);
    };
    const subscriptions = async () => JSON.parse(
        (await httpRequest({ port: ngx.port, path: '/status' })).text).subscriptions;

    it('keeps a stream counted by limit_conn until it ends', async () => {
        const ch = chan('lim');
        const first = sseStream({ port: ngx.port, path: `/lim/${ch}` });
        assert.strictEqual((await first.response).status, 200);
        await pub(ch, 'one');
        assert.strictEqual((await first.next(5000)).data, 'one');
        await sleep(200);   // past the moment a request could have been freed

        const second = sseStream({ port: ngx.port, path: `/lim/${ch}` });
        assert.strictEqual((await second.response).status, 503);
        await second.done;

        await pub(ch, 'two');
        assert.strictEqual((await first.next(5000)).data, 'two');
        await first.close();

        await waitUntil(async () => {
            const s = sseStream({ port: ngx.port, path: `/lim/${ch}` });
            const status = (await s.response).status;
            await s.close();
            return status === 200;
        }, { timeout: 5000, what: 'the slot free again' });
    });

    it('keeps a WebSocket counted by limit_conn until it closes', async () => {
        const ch = chan('wslim');
        const url = `ws://127.0.0.1:${ngx.port}/lim/${ch}`;
        const first = await wsConnect(url);
        await pub(ch, 'one');
        assert.strictEqual((await first.messages.next(5000)).text, 'one');
        await sleep(200);   // past the moment the request is freed

        await assert.rejects(wsConnect(url), (e) => e.status === 503);

        first.close();
        await first.closed;
        await waitUntil(async () => {
            try {
                const c = await wsConnect(url);
                c.close();
                await c.closed;
                return true;
            } catch (e) {
                return false;
            }
        }, { timeout: 5000, what: 'the slot free again' });
    });

    it('keeps a stream whose body a filter rewrites', async () => {
        const ch = chan('flt');
        const s = sseStream({ port: ngx.port, path: `/filtered/${ch}` });
        assert.strictEqual((await s.response).status, 200);
        await pub(ch, 'hello 1');
        assert.strictEqual((await s.next(5000)).data, 'HELLO 1');
        await sleep(200);
        await pub(ch, 'hello 2');
        assert.strictEqual((await s.next(5000)).data, 'HELLO 2');
        await s.close();
    });

    it('notices a client that goes away', async () => {
        const ch = chan('gone');
        const base = await subscriptions();
        const es = sseStream({ port: ngx.port, path: `/sub/${ch}` });
        const ck = chunkedStream({ port: ngx.port, path: `/sub/${ch}` });
        assert.strictEqual((await es.response).status, 200);
        assert.strictEqual((await ck.response).status, 200);
        await pub(ch, 'm1');
        assert.strictEqual((await es.next(5000)).data, 'm1');
        assert.strictEqual((await ck.messages.next(5000)).toString(), 'm1');
        await sleep(200);
        assert.strictEqual(await subscriptions(), base + 2);

        await es.close();
        await ck.close();
        await waitUntil(async () => (await subscriptions()) === base,
            { timeout: 5000, what: 'both subscriptions gone' });

        await pub(ch, 'm2');   // nobody left to write to
        assert.strictEqual(await subscriptions(), base);
    });

    it('ends an HTTP/1.0 stream by closing the connection', async () => {
        const ch = chan('h10');
        let buf = Buffer.alloc(0);
        let closed = false;
        const sock = net.connect(ngx.port, '127.0.0.1', () => sock.write(
            `GET /subt/${ch} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n`));
        sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
        sock.on('close', () => { closed = true; });
        sock.on('error', () => { closed = true; });

        await waitUntil(() => buf.includes(': hi\n\n'), { what: 'the preamble' });
        await sleep(200);
        await pub(ch, 'plain');
        await waitUntil(() => closed, { timeout: 5000, what: 'the end of the stream' });

        const text = buf.toString('latin1');
        const head = text.slice(0, text.indexOf('\r\n\r\n'));
        assert.match(head, /^HTTP\/1\.1 200 /);
        assert.doesNotMatch(head, /transfer-encoding/i);
        const body = text.slice(text.indexOf('\r\n\r\n') + 4);
        assert.match(body, /^: hi\n\nid: [0-9]+:[0-9]+\ndata: plain\n\n:408: 408 Request Timeout\n\n$/);
    });
});
