'use strict';
// Issue 2: publishing over HTTP, EventSource and long-poll subscribers,
// resuming, channel info, and every bad input of SPEC section 10 that the
// HTTP transports see.

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, it, test } = require('node:test');
const { useNginx, nginxCheck } = require('./lib/nginx');
const C = require('./lib/clients');

const conf = `
map $arg_buf $buflen {
    ""       10;
    default  $arg_buf;
}
server {
    listen 127.0.0.1:%%PORT%%;
    client_max_body_size 64k;

    location ~ ^/pub/(.*)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length $buflen;
        pubsub_max_channel_id_length 64;
    }
    location ~ ^/sub/(.*)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_max_channel_id_length 64;
    }
    location ~ ^/sub-timeout/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_timeout 1s;
    }
    location ~ ^/sub-newest/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_first_message newest;
    }
    location ~ ^/sub-last2/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_first_message -2;
    }
    location ~ ^/sub-2nd/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_first_message 2;
    }
    location ~ ^/sub-es-only/(\\w+)$ {
        pubsub_subscriber eventsource;
        pubsub_channel_id $1;
        pubsub_ping_interval 300ms;
        pubsub_eventsource_event ev;
    }
    location ~ ^/sub-existing/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscribe_existing_channels_only on;
    }
    location ~ ^/poll/(\\w+)$ {
        pubsub_subscriber intervalpoll;
        pubsub_channel_id $1;
    }
    location ~ ^/lp-multi/(\\w+)$ {
        pubsub_subscriber longpoll;
        pubsub_channel_id $1;
        pubsub_longpoll_multipart_response on;
    }
    location ~ ^/cors/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
        pubsub_allowed_origins "https://good.example http://also.example";
    }
    location = /noid {
        pubsub_publisher;
    }
    location ~ ^/multi/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1 $1-copy;
    }
    location ~ ^/ttl/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_timeout 1s;
    }
    location ~ ^/grp/([^/]+)/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_group $1;
        pubsub_channel_id $2;
    }
    location ~ ^/wsps/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
    }
}`;

let seq = 0;
const chan = (name) => `${name}${process.pid}x${++seq}`;

describe('publish and subscribe over HTTP', () => {
    const ngx = useNginx({ conf });
    const waitSubscribers = (ch, n) => waitSubscribersOn(ngx, ch, n);
    const pub = (ch, body, headers = {}, query = '') =>
        C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${ch}${query}`, body, headers });

    it('publishes with 202 and answers channel info in every format', async () => {
        const ch = chan('info');
        const r = await pub(ch, 'hello');
        assert.equal(r.status, 202);
        assert.match(r.text, /^queued messages: 1\r\n/);
        // nchan's text form ends on the id, with no line break (issue 15)
        assert.match(r.text, /\r\nlast message id: \d+:0$/);

        const json = await C.httpRequest({ port: ngx.port, path: `/pub/${ch}`,
            headers: { Accept: 'application/json' } });
        assert.equal(json.status, 200);
        assert.equal(json.headers['content-type'], 'application/json');
        const info = JSON.parse(json.text);
        assert.equal(info.messages, 1);
        assert.equal(info.subscribers, 0);
        assert.equal(info.requested, -1);
        assert.match(info.last_message_id, /^\d+:0$/);

        const xml = await C.httpRequest({ port: ngx.port, path: `/pub/${ch}`,
            headers: { Accept: 'text/xml' } });
        assert.match(xml.text, /<messages>1<\/messages>/);
        const yaml = await C.httpRequest({ port: ngx.port, path: `/pub/${ch}`,
            headers: { Accept: 'text/yaml' } });
        assert.match(yaml.text, /^---\nmessages: 1\n/);

        const missing = await C.httpRequest({ port: ngx.port, path: `/pub/${chan('none')}` });
        assert.equal(missing.status, 404);
    });

    it('delivers to EventSource and long-poll subscribers (201 when someone listens)', async () => {
        const ch = chan('both');
        const sse = C.sseStream({ port: ngx.port, path: `/sub/${ch}` });
        const head = await sse.response;
        assert.equal(head.status, 200);
        assert.match(head.headers['content-type'], /^text\/event-stream/);
        const lp = C.longPoll({ port: ngx.port, path: `/sub/${ch}` });
        await waitSubscribers(ch, 2);

        const r = await pub(ch, 'line one\nline two', { 'Content-Type': 'text/x-demo',
            'X-EventSource-Event': 'greeting' });
        assert.equal(r.status, 201);

        const ev = await sse.next(3000);
        assert.equal(ev.event, 'greeting');
        assert.equal(ev.data, 'line one\nline two');
        assert.match(ev.id, /^\d+:0$/);

        const got = await lp.messages.next(3000);
        assert.equal(got.text, 'line one\nline two');
        assert.equal(got.contentType, 'text/x-demo');
        // no-store, not no-cache: SPEC section 5 (issue 15)
        assert.equal(got.headers['cache-control'], 'no-store');
        assert.equal(got.etag, '0');
        assert.ok(got.lastModified);
        lp.stop();
        await sse.close();
    });

    it('keeps order and resumes EventSource with Last-Event-ID and ?last_event_id= without loss or repetition', async () => {
        const ch = chan('resume');
        const sse = C.sseStream({ port: ngx.port, path: `/sub/${ch}` });
        await sse.response;
        await waitSubscribers(ch, 1);
        for (let i = 1; i <= 5; i++) {
            await pub(ch, `m${i}`, {}, '?buf=100');
        }
        const first = [];
        for (let i = 0; i < 5; i++) {
            first.push(await sse.next(3000));
        }
        assert.deepEqual(first.map((e) => e.data), ['m1', 'm2', 'm3', 'm4', 'm5']);
        const ids = first.map((e) => e.id);
        await sse.close();
        for (let i = 6; i <= 8; i++) {
            await pub(ch, `m${i}`, {}, '?buf=100');
        }
        // header form
        const again = C.sseStream({ port: ngx.port, path: `/sub/${ch}`,
            headers: { 'Last-Event-ID': ids[4] } });
        const resumed = [];
        for (let i = 0; i < 3; i++) {
            resumed.push((await again.next(3000)).data);
        }
        assert.deepEqual(resumed, ['m6', 'm7', 'm8']);
        await new Promise((res) => setTimeout(res, 200));
        assert.equal(again.events.items.length, 3, 'nothing repeated');
        await again.close();
        // query form, URL-encoded
        const q = C.sseStream({ port: ngx.port,
            path: `/sub/${ch}?last_event_id=${encodeURIComponent(ids[2])}` });
        const fromQuery = [];
        for (let i = 0; i < 5; i++) {
            fromQuery.push((await q.next(3000)).data);
        }
        assert.deepEqual(fromQuery, ['m4', 'm5', 'm6', 'm7', 'm8']);
        await q.close();
    });

    it('resumes long-poll with If-Modified-Since and If-None-Match without loss or repetition', async () => {
        const ch = chan('lpresume');
        for (let i = 1; i <= 3; i++) {
            await pub(ch, `p${i}`, {}, '?buf=100');
        }
        const lp = C.longPoll({ port: ngx.port, path: `/sub/${ch}` });
        const got = [];
        for (let i = 0; i < 3; i++) {
            got.push((await lp.messages.next(3000)).text);
        }
        lp.stop();
        const { lastModified, etag } = lp;
        for (let i = 4; i <= 6; i++) {
            await pub(ch, `p${i}`, {}, '?buf=100');
        }
        const lp2 = C.longPoll({ port: ngx.port, path: `/sub/${ch}`, lastModified, etag });
        for (let i = 0; i < 3; i++) {
            got.push((await lp2.messages.next(3000)).text);
        }
        await new Promise((res) => setTimeout(res, 200));
        lp2.stop();
        assert.deepEqual(got, ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
        assert.equal(lp2.messages.items.length, 3);
    });

    it('signals a gap when the resume id is older than the buffer', async () => {
        const ch = chan('gap');
        const ids = [];
        for (let i = 1; i <= 5; i++) {
            const r = await C.httpRequest({ port: ngx.port, method: 'POST',
                path: `/pub/${ch}?buf=2`, body: `g${i}`, headers: { Accept: 'application/json' } });
            ids.push(JSON.parse(r.text).last_message_id);
        }
        const sse = C.sseStream({ port: ngx.port, path: `/sub/${ch}`,
            headers: { 'Last-Event-ID': ids[0] } });
        const gap = await sse.next(3000);
        assert.equal(gap.event, 'pubsub.gap');
        assert.equal(gap.id, undefined);
        assert.equal((await sse.next(3000)).data, 'g4');
        assert.equal((await sse.next(3000)).data, 'g5');
        await sse.close();

        const r = await C.httpRequest({ port: ngx.port,
            path: `/sub/${ch}?last_event_id=${encodeURIComponent(ids[0])}` });
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-pubsub-gap'], '1');
        assert.equal(r.text, 'g4');

        const noGap = await C.httpRequest({ port: ngx.port,
            path: `/sub/${ch}?last_event_id=${encodeURIComponent(ids[3])}` });
        assert.equal(noGap.headers['x-pubsub-gap'], undefined);
        assert.equal(noGap.text, 'g5');
    });

    it('honours pubsub_subscriber_first_message', async () => {
        const ch = chan('first');
        for (let i = 1; i <= 4; i++) {
            await pub(ch, `f${i}`, {}, '?buf=100');
        }
        assert.equal((await C.httpRequest({ port: ngx.port, path: `/sub/${ch}` })).text, 'f1');
        assert.equal((await C.httpRequest({ port: ngx.port, path: `/sub-2nd/${ch}` })).text, 'f2');
        assert.equal((await C.httpRequest({ port: ngx.port, path: `/sub-last2/${ch}` })).text, 'f3');
        const lp = C.longPoll({ port: ngx.port, path: `/sub-newest/${ch}` });
        await waitSubscribers(ch, 1);
        await pub(ch, 'f5', {}, '?buf=100');
        assert.equal((await lp.messages.next(3000)).text, 'f5');
        lp.stop();
    });

    it('answers 408 to a long-poll that reaches pubsub_subscriber_timeout', async () => {
        const t0 = Date.now();
        const r = await C.httpRequest({ port: ngx.port, path: `/sub-timeout/${chan('to')}` });
        assert.equal(r.status, 408);
        assert.ok(Date.now() - t0 >= 900);
    });

    it('pings EventSource subscribers and uses pubsub_eventsource_event', async () => {
        const ch = chan('ping');
        const sse = C.sseStream({ port: ngx.port, path: `/sub-es-only/${ch}` });
        await sse.response;
        await new Promise((res) => setTimeout(res, 700));
        const comments = sse.blocks.items.filter((b) => b.data === undefined && b.event === undefined);
        assert.ok(comments.length >= 2, `pings seen: ${comments.length}`);
        await pub(ch, 'x', { 'X-EventSource-Event': 'ignored' });
        const ev = await sse.next(3000);
        assert.equal(ev.event, 'ev');
        await sse.close();
        // a plain GET fits no transport enabled there
        const r = await C.httpRequest({ port: ngx.port, path: `/sub-es-only/${ch}` });
        assert.equal(r.status, 406);
    });

    it('answers interval-poll with 304 when there is nothing new', async () => {
        const ch = chan('poll');
        const none = await C.httpRequest({ port: ngx.port, path: `/poll/${ch}` });
        assert.equal(none.status, 304);
        await pub(ch, 'i1');
        const one = await C.httpRequest({ port: ngx.port, path: `/poll/${ch}` });
        assert.equal(one.status, 200);
        assert.equal(one.text, 'i1');
        const next = await C.httpRequest({ port: ngx.port, path: `/poll/${ch}`, headers: {
            'If-Modified-Since': one.headers['last-modified'], 'If-None-Match': one.headers.etag } });
        assert.equal(next.status, 304);
        assert.equal(next.headers.etag, one.headers.etag);
    });

    it('answers every waiting message at once with pubsub_longpoll_multipart_response', async () => {
        const ch = chan('lpm');
        await pub(ch, 'a', { 'Content-Type': 'text/plain' });
        await pub(ch, 'b');
        const r = await C.httpRequest({ port: ngx.port, path: `/lp-multi/${ch}` });
        assert.equal(r.status, 200);
        const boundary = /boundary=(\S+)/.exec(r.headers['content-type'])[1];
        const parts = C.parseMultipart(r.body, boundary);
        assert.deepEqual(parts.map((p) => p.text), ['a', 'b']);
        assert.equal(parts[0].headers['content-type'], 'text/plain');
        assert.equal(r.headers.etag, '1');
    });

    it('deletes a channel: subscribers are told, info is gone', async () => {
        const ch = chan('del');
        await pub(ch, 'd1');
        const sse = C.sseStream({ port: ngx.port, path: `/sub/${ch}` });
        assert.equal((await sse.next(3000)).data, 'd1');
        const lp = C.httpRequest({ port: ngx.port, path: `/sub/${ch}`, headers: {
            'Last-Event-ID': '9999999999:0' } });
        await waitSubscribers(ch, 2);
        const del = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: `/pub/${ch}` });
        assert.equal(del.status, 200);
        assert.equal((await lp).status, 410);
        const end = await sse.done;
        assert.ok(sse.blocks.items.some((b) => (b.comments || []).some((c) => /410/.test(c))));
        void end;
        assert.equal((await C.httpRequest({ port: ngx.port, path: `/pub/${ch}` })).status, 404);
        assert.equal((await C.httpRequest({ port: ngx.port, method: 'DELETE',
            path: `/pub/${ch}` })).status, 404);
    });

    it('publishes to each of several channel ids', async () => {
        const ch = chan('multi');
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/multi/${ch}`,
            body: 'both' });
        assert.equal(r.status, 202);
        assert.equal((await C.httpRequest({ port: ngx.port, path: `/sub/${ch}` })).text, 'both');
        assert.equal((await C.httpRequest({ port: ngx.port, path: `/sub/${ch}-copy` })).text, 'both');
    });

    it('drops expired messages (pubsub_message_timeout)', async () => {
        const ch = chan('ttl');
        await C.httpRequest({ port: ngx.port, method: 'POST', path: `/ttl/${ch}`, body: 'old' });
        await new Promise((res) => setTimeout(res, 2100));
        const info = await C.httpRequest({ port: ngx.port, path: `/pub/${ch}`,
            headers: { Accept: 'application/json' } });
        assert.equal(JSON.parse(info.text).messages, 0);
    });

    it('answers CORS preflights and refuses origins not allowed', async () => {
        const ch = chan('cors');
        const pre = await C.httpRequest({ port: ngx.port, method: 'OPTIONS', path: `/cors/${ch}`,
            headers: { Origin: 'https://good.example' } });
        assert.equal(pre.status, 204);
        assert.equal(pre.headers['access-control-allow-origin'], 'https://good.example');
        assert.match(pre.headers['access-control-allow-methods'], /POST/);
        assert.match(pre.headers['access-control-allow-headers'], /Last-Event-ID/);
        const ok = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/cors/${ch}`,
            body: 'c', headers: { Origin: 'http://also.example' } });
        assert.equal(ok.status, 202);
        assert.equal(ok.headers['access-control-allow-credentials'], 'true');
        const bad = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/cors/${ch}`,
            body: 'c', headers: { Origin: 'https://evil.example' } });
        assert.equal(bad.status, 403);
        const badSub = await C.httpRequest({ port: ngx.port, path: `/cors/${ch}`,
            headers: { Origin: 'https://evil.example' } });
        assert.equal(badSub.status, 403);
        const sub = await C.httpRequest({ port: ngx.port, path: `/cors/${ch}`,
            headers: { Origin: 'https://good.example' } });
        assert.equal(sub.status, 200);
        assert.match(sub.headers['access-control-expose-headers'], /Etag/);
    });
});

describe('bad input', () => {
    const ngx = useNginx({ conf });

    it('no channel id: 400', async () => {
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: '/noid', body: 'x' });
        assert.equal(r.status, 400);
        assert.match(r.text, /No channel id/);
        const s = await C.httpRequest({ port: ngx.port, path: '/sub/' });
        assert.equal(s.status, 400);
    });

    it('over-long or control-character channel id: 400', async () => {
        const long = 'x'.repeat(65);
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${long}`, body: 'x' });
        assert.equal(r.status, 400);
        assert.match(r.text, /too long/);
        const s = await C.httpRequest({ port: ngx.port, path: `/sub/${long}` });
        assert.equal(s.status, 400);
        const ctl = await rawRequest(ngx.port, 'GET /sub/a%01b HTTP/1.0\r\n\r\n');
        assert.match(ctl, /^HTTP\/1.1 (200|400|408)/); // %01 stays encoded in $1: a valid id
    });

    it('bad resume ids: 400', async () => {
        for (const bad of ['garbage', '12', ':1', '1:', '1:x', '99999999999999999999999:1', '1:[0']) {
            const r = await C.httpRequest({ port: ngx.port,
                path: `/sub/${chan('badid')}?last_event_id=${encodeURIComponent(bad)}` });
            assert.equal(r.status, 400, bad);
            assert.match(r.text, /Message ID invalid/);
        }
        const h = await C.httpRequest({ port: ngx.port, path: `/sub/${chan('badid')}`,
            headers: { 'Last-Event-ID': 'nope' }, });
        assert.equal(h.status, 400);
        const sse = await C.httpRequest({ port: ngx.port, path: `/sub/${chan('badid')}`,
            headers: { 'Last-Event-ID': 'nope', Accept: 'text/event-stream' } });
        assert.equal(sse.status, 400);
        const ims = await C.httpRequest({ port: ngx.port, path: `/sub/${chan('badid')}`,
            headers: { 'If-Modified-Since': 'yesterday' } });
        assert.equal(ims.status, 400);
        const inm = await C.httpRequest({ port: ngx.port, path: `/sub/${chan('badid')}`,
            headers: { 'If-Modified-Since': 'Thu, 26 Nov 2026 08:00:00 GMT', 'If-None-Match': 'x' } });
        assert.equal(inm.status, 400);
    });

    it('wrong method: 405 with Allow', async () => {
        const r = await C.httpRequest({ port: ngx.port, method: 'PATCH', path: '/pub/x', body: 'x' });
        assert.equal(r.status, 405);
        assert.match(r.headers.allow, /POST/);
        const s = await C.httpRequest({ port: ngx.port, method: 'POST', path: '/sub/x', body: 'x' });
        assert.equal(s.status, 405);
        assert.equal(s.headers.allow, 'GET, OPTIONS');
    });

    it('body over client_max_body_size: 413', async () => {
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: '/pub/big',
            body: Buffer.alloc(65 * 1024, 'a') });
        assert.equal(r.status, 413);
    });

    it('a body spooled to a temp file is published whole', async () => {
        const ch = chan('spool');
        const body = Buffer.alloc(40 * 1024, 'b');
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${ch}`, body });
        assert.equal(r.status, 202);
        const s = await C.httpRequest({ port: ngx.port, path: `/sub/${ch}` });
        assert.equal(s.body.length, body.length);
        assert.ok(s.body.equals(body));
    });

    it('existing channels only: 403 for a channel never published to', async () => {
        const ch = chan('exist');
        const r = await C.httpRequest({ port: ngx.port, path: `/sub-existing/${ch}` });
        assert.equal(r.status, 403);
        await C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${ch}`, body: 'e' });
        const ok = await C.httpRequest({ port: ngx.port, path: `/sub-existing/${ch}` });
        assert.equal(ok.status, 200);
    });

    it('clients that disconnect mid-stream are cleaned up and the worker lives on', async () => {
        const ch = chan('drop');
        const streams = [];
        for (let i = 0; i < 20; i++) {
            const s = C.sseStream({ port: ngx.port, path: `/sub/${ch}` });
            await s.response;
            streams.push(s);
        }
        const polls = [];
        for (let i = 0; i < 10; i++) {
            polls.push(C.longPoll({ port: ngx.port, path: `/sub/${ch}` }));
        }
        await waitSubscribersOn(ngx, ch, 30);
        await C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${ch}`, body: 'x' });
        for (const s of streams) {
            await s.close();
        }
        // long-polls got their message and re-polled; now cut them mid-wait
        await new Promise((res) => setTimeout(res, 200));
        for (const p of polls) {
            p.stop();
        }
        await waitSubscribersOn(ngx, ch, 0);
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${ch}`, body: 'y' });
        assert.equal(r.status, 202);
    });

    it('a channel group with a control character: 400, like a bad channel id', async () => {
        const ch = chan('grp');
        for (const g of ['a%01b', 'a%0Ab', 'x%7F']) {
            const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/grp/${g}/${ch}`, body: 'x' });
            assert.equal(r.status, 400, g);
            assert.equal(r.text, 'Channel group contains a control character.\n', g);
        }
        const ok = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/grp/a%20b/${ch}`, body: 'x' });
        assert.equal(ok.status, 202);
    });

    it('a WebSocket handshake that is not a GET: 400, nothing published', async () => {
        const ch = chan('wspost');
        for (const method of ['POST', 'PUT']) {
            const res = await rawRequest(ngx.port, `${method} /wsps/${ch} HTTP/1.1\r\nHost: a\r\n` +
                'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
                'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello');
            assert.match(res, /^HTTP\/1.1 400 /, method);
        }
        // nothing was published: the first message of the channel is this one
        const r = await C.httpRequest({ port: ngx.port, method: 'POST', path: `/pub/${ch}`, body: 'first' });
        assert.equal(r.status, 202);
        assert.match(r.text, /^queued messages: 1\r\n/);
    });

    it('a WebSocket request where WebSocket is not enabled: 403', async () => {
        const res = await rawRequest(ngx.port, 'GET /poll/x HTTP/1.1\r\nHost: a\r\n' +
            'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
        assert.match(res, /^HTTP\/1.1 403/);
    });
});

test('the built module loads with nginx -t; bad directives are refused', async () => {
    const r = await nginxCheck({ conf });
    assert.ok(r.ok, r.output);
    const bad = await nginxCheck({ conf: 'server { listen 127.0.0.1:%%PORT%%; location / { pubsub_subscriber bogus; } }' });
    assert.equal(bad.ok, false);
    assert.match(bad.output, /invalid value "bogus"/);
    const dup = await nginxCheck({ conf: 'server { listen 127.0.0.1:%%PORT%%; location / { pubsub_publisher; pubsub_subscriber; } }' });
    assert.equal(dup.ok, false);
    const fm = await nginxCheck({ conf: 'server { listen 127.0.0.1:%%PORT%%; location / { pubsub_subscriber; pubsub_subscriber_first_message sometime; } }' });
    assert.equal(fm.ok, false);
});

// A location has one content handler: a second one would be silently
// ignored, so nginx -t refuses it, whatever the order (issue #19, item 3).
test('nginx -t refuses two content handlers in one location, and pubsub_status in if', async () => {
    const loc = (body) => `server { listen 127.0.0.1:%%PORT%%; location / { ${body} } }`;
    for (const body of [
        'pubsub_presence_api; pubsub_subscriber;',
        'pubsub_subscriber; pubsub_presence_api;',
        'pubsub_status; pubsub_subscriber;',
        'pubsub_subscriber; pubsub_status;',
        'pubsub_presence_api; pubsub_status;',
        'pubsub_status; pubsub_presence_api;',
        'proxy_pass http://127.0.0.1:9; pubsub_publisher;',
        'pubsub_pubsub; proxy_pass http://127.0.0.1:9;',
    ]) {
        const r = await nginxCheck({ conf: loc(body) });
        assert.equal(r.ok, false, `accepted: ${body}`);
        assert.match(r.output, /\[emerg\]/, body);
    }
    const ok = await nginxCheck({ conf: loc('pubsub_status;') });
    assert.ok(ok.ok, ok.output);
    const inIf = await nginxCheck({ conf: loc('if ($arg_x) { pubsub_status; }') });
    assert.equal(inIf.ok, false);
    assert.match(inIf.output, /"pubsub_status" directive is not allowed here/);
});

async function infoOf(port, ch) {
    const r = await C.httpRequest({ port, path: `/pub/${ch}`, headers: { Accept: 'application/json' } });
    return r.status === 200 ? JSON.parse(r.text) : { subscribers: 0, messages: 0 };
}

async function waitSubscribersOn(ngx, ch, n, ms = 3000) {
    const end = Date.now() + ms;
    let info;
    while (Date.now() < end) {
        info = await infoOf(ngx.port, ch);
        if (info.subscribers === n) {
            return;
        }
        await new Promise((res) => setTimeout(res, 50));
    }
    assert.fail(`channel ${ch}: ${info.subscribers} subscribers, wanted ${n}`);
}

function rawRequest(port, text) {
    return new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        let out = '';
        s.on('data', (d) => {
            out += d.toString('latin1');
            if (/\r\n\r\n/.test(out)) {
                s.destroy();
                resolve(out);
            }
        });
        s.on('error', reject);
        s.on('close', () => resolve(out));
        s.write(text);
        setTimeout(() => { s.destroy(); resolve(out); }, 3000);
    });
}
