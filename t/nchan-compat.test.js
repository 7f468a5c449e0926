'use strict';
// Issue 15, items 1-5: where ngx_pubsub differed from nchan in ways a real
// client sees.  NchanSubscriber.js (npm nchan@1.0.10, unchanged) in Debian's
// Chromium where the client is a browser; raw HTTP where it is not.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');
const { useNginx } = require('./lib/nginx');
const C = require('./lib/clients');
const B = require('./lib/browser');

const pubsubConf = `
server {
    listen 127.0.0.1:%%PORT%%;
    ${B.nchanScriptLocation()}
    ${B.htmlPageLocation('/index.html', { script: '/NchanSubscriber.js' })}
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
    }
    location ~ ^/ipoll/(\\w+)$ {
        pubsub_subscriber intervalpoll;
        pubsub_channel_id $1;
    }
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
        pubsub_message_buffer_length 100;
    }
}`;

// JSON channel info of `ch` (subscribers, messages, last_message_id), from
// the publisher location `/<loc>/<ch>`.
async function info(port, ch, loc = 'pub') {
    const r = await C.httpRequest({ port, path: `/${loc}/${ch}`,
        headers: { Accept: 'application/json' } });
    return r.status === 200 ? JSON.parse(r.text) : { subscribers: 0, messages: 0 };
}

async function waitSubscribers(port, ch, n, loc = 'pub') {
    const end = Date.now() + 15000;
    while ((await info(port, ch, loc)).subscribers < n) {
        assert.ok(Date.now() < end, `${ch}: ${n} subscribers did not connect`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

describe('long-poll responses are never cached (Cache-Control: no-store)', () => {
    const ngx = useNginx({ conf: pubsubConf, workers: 2, test: { timeout: 90000 } });

    it('every long-poll and interval-poll answer says no-store', async () => {
        await C.publish({ port: ngx.port, path: '/pub/nostore' }, 'one');
        const lp = await C.httpRequest({ port: ngx.port, path: '/sub/nostore' });
        assert.equal(lp.status, 200);
        assert.equal(lp.headers['cache-control'], 'no-store');
        const ip = await C.httpRequest({ port: ngx.port, path: '/ipoll/nostore',
            headers: { 'If-Modified-Since': lp.headers['last-modified'],
                'If-None-Match': lp.headers.etag } });
        assert.equal(ip.status, 304);
        assert.equal(ip.headers['cache-control'], 'no-store');
    });

    it('several long-pollers of one channel in one Chromium profile each get every message',
        { timeout: 90000 }, async () => {
            const browser = await B.launchBrowser();
            try {
                // one context = one profile: one HTTP cache for every tab
                const context = await browser.newContext();
                const tabs = [];
                // five pollers: under Chromium's six connections per host
                for (let i = 0; i < 5; i++) {
                    const page = await context.newPage();
                    page.setDefaultTimeout(20000);
                    await page.goto(ngx.url('/index.html'));
                    await B.nchanSubscribe(page, 'lp', ngx.url('/sub/tabs'),
                        { subscriber: 'longpoll', reconnect: false });
                    tabs.push(page);
                }
                // Chromium sends the first poll of one URL alone; the others
                // wait for its answer (cache lock): start with one
                await waitSubscribers(ngx.port, 'tabs', 1);

                const want = [];
                for (let i = 1; i <= 6; i++) {
                    want.push(`message ${i}`);
                    const r = await C.publish({ port: ngx.port, path: '/pub/tabs' }, `message ${i}`);
                    assert.ok(r.status === 201 || r.status === 202, `publish: ${r.status}`);
                    // every tab has it before the next one is sent: no tab
                    // may be held back behind another's poll
                    for (const [n, page] of tabs.entries()) {
                        const st = await B.nchanWaitMessages(page, 'lp', i, 15000)
                            .catch(async (e) => {
                                const s = await B.nchanState(page, 'lp');
                                throw new Error(`tab ${n}: ${e.message}; got ` +
                                    `${JSON.stringify(s.messages.map((m) => m.msg))} ` +
                                    `errors ${JSON.stringify(s.errors)}`);
                            });
                        assert.equal(st.messages[i - 1].msg, `message ${i}`, `tab ${n}`);
                    }
                }
                for (const [n, page] of tabs.entries()) {
                    const st = await B.nchanState(page, 'lp');
                    assert.deepEqual(st.messages.map((m) => m.msg), want, `tab ${n}`);
                    assert.deepEqual(st.errors, [], `tab ${n}`);
                    await B.nchanStop(page, 'lp');
                }
            } finally {
                await browser.close();
            }
        });
});

describe('channel info as text is nchan\'s, byte for byte', () => {
    const ngx = useNginx({ conf: pubsubConf });

    it('POST, GET and DELETE answer four CRLF-separated lines ending on the id', async () => {
        const p = await C.publish({ port: ngx.port, path: '/pub/textinfo' }, 'x');
        assert.equal(p.status, 202);
        assert.equal(p.headers['content-type'], 'text/plain');
        const m = /^queued messages: 1\r\nlast requested: -1 sec\. ago\r\nactive subscribers: 0\r\nlast message id: (\d+:\d+)$/
            .exec(p.text);
        assert.ok(m, JSON.stringify(p.text));
        const j = await info(ngx.port, 'textinfo');
        assert.equal(m[1], j.last_message_id);
        assert.equal(j.presence, 0, 'presence stays in the JSON form');

        const g = await C.httpRequest({ port: ngx.port, path: '/pub/textinfo' });
        assert.equal(g.text, `queued messages: 1\r\nlast requested: -1 sec. ago\r\n` +
            `active subscribers: 0\r\nlast message id: ${m[1]}`);
        const d = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: '/pub/textinfo' });
        assert.equal(d.status, 200);
        assert.match(d.text, /^queued messages: \d+\r\nlast requested: -?\d+ sec\. ago\r\nactive subscribers: \d+\r\nlast message id: \d+:\d+$/);
    });

    it('an app that reads the id from the reply resumes NchanSubscriber.js right after it',
        { timeout: 60000 }, async () => {
            await B.withBrowserPage(async (page) => {
                await page.goto(ngx.url('/index.html'));
                // publish from the page and take the id from its line, as
                // nchan's users do (split on LF, the rest of the line)
                const id = await page.evaluate(async () => {
                    const r = await fetch('/pub/textresume', { method: 'POST', body: 'before' });
                    const key = 'last message id: ';
                    const line = (await r.text()).split('\n').find((l) => l.startsWith(key));
                    return line && line.slice(key.length);
                });
                assert.match(id, /^\d+:\d+$/);
                for (const t of ['eventsource', 'longpoll']) {
                    await B.nchanSubscribe(page, t, ngx.url('/sub/textresume'),
                        { subscriber: t, id, reconnect: false });
                }
                await waitSubscribers(ngx.port, 'textresume', 2);
                const r = await C.publish({ port: ngx.port, path: '/pub/textresume' }, 'after');
                assert.equal(r.status, 201);
                for (const t of ['eventsource', 'longpoll']) {
                    const st = await B.nchanWaitMessages(page, t, 1, 15000);
                    assert.deepEqual(st.messages.map((x) => x.msg), ['after'], t);
                    assert.deepEqual(st.errors, [], t);
                }
                await new Promise((res) => setTimeout(res, 300));
                for (const t of ['eventsource', 'longpoll']) {
                    const st = await B.nchanState(page, t);
                    assert.deepEqual(st.messages.map((x) => x.msg), ['after'], `${t}: nothing more`);
                    await B.nchanStop(page, t);
                }
            });
        });
});

describe('long-poll resume ids nchan refuses are refused (400)', () => {
    const ngx = useNginx({ conf: `
server {
    listen 127.0.0.1:%%PORT%%;
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_timeout 2s;
    }
    location ~ ^/mux/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1_a $1_b $1_c;
        pubsub_subscriber_timeout 2s;
    }
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
    }
}` });

    const lastModified = 'Thu, 26 Nov 2026 08:00:00 GMT';
    const get = (path, headers) => C.httpRequest({ port: ngx.port, path, headers });
    const invalid = (r, what) => {
        assert.equal(r.status, 400, what);
        assert.equal(r.text, 'Message ID invalid.\n', what);
    };

    it('If-Modified-Since without If-None-Match', async () => {
        await C.publish({ port: ngx.port, path: '/pub/imsonly' }, 'm1');
        invalid(await get('/sub/imsonly', { 'If-Modified-Since': lastModified }), 'long-poll');
        invalid(await get('/sub/imsonly', { 'If-Modified-Since': lastModified,
            Accept: 'text/event-stream' }), 'eventsource');
        // the pair, as every client sends it, resumes
        const first = await get('/sub/imsonly');
        assert.equal(first.status, 200);
        assert.equal(first.text, 'm1');
        const pub = C.publish({ port: ngx.port, path: '/pub/imsonly' }, 'm2');
        const next = await get('/sub/imsonly', { 'If-Modified-Since': first.headers['last-modified'],
            'If-None-Match': first.headers.etag });
        await pub;
        assert.equal(next.status, 200);
        assert.equal(next.text, 'm2');
        // at the epoch it is no id at all (as nchan): the oldest message
        const epoch = await get('/sub/imsonly', { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' });
        assert.equal(epoch.status, 200);
        assert.equal(epoch.text, 'm1');
    });

    it('several tags for one channel', async () => {
        await C.publish({ port: ngx.port, path: '/pub/manytags' }, 'm1');
        for (const tags of ['0,99,110', '[0],99,110', '0,[1]', '[0],-']) {
            invalid(await get('/sub/manytags', { 'If-Modified-Since': lastModified,
                'If-None-Match': tags }), `If-None-Match: ${tags}`);
        }
        invalid(await get('/sub/manytags', { 'If-None-Match': '1795683054:0,99,110' }),
            'compound If-None-Match');
        invalid(await get(`/sub/manytags?last_event_id=${encodeURIComponent('1795683054:0,[1]')}`),
            'last_event_id');
        invalid(await get('/sub/manytags', { 'Last-Event-ID': '1795683054:0,1',
            Accept: 'text/event-stream' }), 'Last-Event-ID');
        // a one-channel WebSocket subscriber too, before the 101
        await assert.rejects(C.wsConnect(`ws://127.0.0.1:${ngx.port}/sub/manytags?last_event_id=${
            encodeURIComponent('1795683054:0,[1]')}`), (e) => {
            assert.equal(e.status, 400);
            assert.match(e.text, /Message ID invalid/);
            return true;
        });
        // one tag, bracketed or not, is a resume id
        for (const tag of ['0', '[0]']) {
            const r = await get('/sub/manytags', { 'If-Modified-Since': 'Thu, 01 Jan 2015 00:00:00 GMT',
                'If-None-Match': tag });
            assert.equal(r.status, 200, tag);
            assert.equal(r.text, 'm1', tag);
        }
    });

    it('a multiplexed subscriber still takes one tag per channel', async () => {
        await C.publish({ port: ngx.port, path: '/pub/mt_b' }, 'b1');
        const first = await get('/mux/mt');
        assert.equal(first.status, 200);
        assert.equal(first.text, 'b1');
        assert.equal(first.headers.etag, '-,[0],-');
        const pub = C.publish({ port: ngx.port, path: '/pub/mt_c' }, 'c1');
        const next = await get('/mux/mt', { 'If-Modified-Since': first.headers['last-modified'],
            'If-None-Match': first.headers.etag });
        await pub;
        assert.equal(next.status, 200);
        assert.equal(next.text, 'c1');
        invalid(await get('/mux/mt', { 'If-Modified-Since': first.headers['last-modified'],
            'If-None-Match': '0,[1]' }), 'two tags for three channels');
    });
});

describe('a POST handed to a publisher location with X-Accel-Redirect publishes', () => {
    const { startBackend } = require('./lib/backend');
    const { withNginx } = require('./lib/nginx');
    let be;

    before(async () => {
        // the application: checks the request, then hands it to `?to=`
        be = await startBackend({
            '/app': (call) => ({ headers: { 'X-Accel-Redirect': call.query.get('to'),
                'Set-Cookie': 'checked=1' } }),
            '/auth': () => ({ status: 200 }),
        });
    });
    after(async () => {
        await be.close();
    });

    const conf = () => `
server {
    listen 127.0.0.1:%%PORT%%;
    client_max_body_size 1m;
    client_body_buffer_size 16k;
    location = /app {
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }
    location = /app-unbuffered {
        proxy_request_buffering off;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%/app;
    }
    location ~ ^/pub/(\\w+)$ {
        internal;
        pubsub_publisher;
        pubsub_channel_id $1;
    }
    location ~ ^/ps/(\\w+)$ {
        pubsub_pubsub;
        pubsub_channel_id $1;
        pubsub_authorize_request /auth;
    }
    location = /auth {
        internal;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
        proxy_set_header X-Publisher-Type $pubsub_publisher_type;
    }
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
    }
    location ~ ^/info/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
    }
}`;
    const opts = () => ({ conf: conf(), vars: { BACKEND_PORT: be.port } });
    const app = (port, to, req = {}) => C.httpRequest({ port, method: 'POST',
        path: `/app?to=${encodeURIComponent(to)}`, ...req });

    it('publishes the body with its Content-Type and event name: 201 / 202 with channel info',
        async () => {
            await withNginx(opts(), async (ngx) => {
                const alone = await app(ngx.port, '/pub/xa', { body: 'nobody listens',
                    headers: { 'Content-Type': 'text/plain' } });
                assert.equal(alone.status, 202, alone.text);
                assert.match(alone.text, /^queued messages: 1\r\n/);
                assert.equal(alone.headers['set-cookie'][0], 'checked=1');
                assert.equal(be.of('/app').at(-1).body, 'nobody listens',
                    'the application saw the body');

                const lp = C.longPoll({ port: ngx.port, path: '/sub/xa' });
                assert.equal((await lp.messages.next(5000)).text, 'nobody listens');
                const sse = C.sseStream({ port: ngx.port, path: '/sub/xa',
                    headers: { 'Last-Event-ID': (await info(ngx.port, 'xa', 'info')).last_message_id } });
                await waitSubscribers(ngx.port, 'xa', 2, 'info');
                const r = await app(ngx.port, '/pub/xa', { body: '{"n":2}',
                    headers: { 'Content-Type': 'application/json', 'X-EventSource-Event': 'ev2' } });
                assert.equal(r.status, 201, r.text);
                const m = await lp.messages.next(5000);
                assert.equal(m.text, '{"n":2}');
                assert.equal(m.headers['content-type'], 'application/json');
                const ev = await sse.events.next(5000);
                assert.equal(ev.event, 'ev2');
                assert.equal(ev.data, '{"n":2}');
                await lp.stop();
                sse.close();
                assert.equal((await info(ngx.port, 'xa', 'info')).messages, 2);
            });
        });

    it('publishes a body the proxy spooled to a temp file, byte for byte', async () => {
        await withNginx(opts(), async (ngx) => {
            const big = Buffer.alloc(300 * 1024);
            for (let i = 0; i < big.length; i++) {
                big[i] = (i * 7 + (i >> 9)) & 0xff;
            }
            const r = await app(ngx.port, '/pub/xabig', { body: big,
                headers: { 'Content-Type': 'application/octet-stream' } });
            assert.equal(r.status, 202, r.text);
            const got = await C.httpRequest({ port: ngx.port, path: '/sub/xabig' });
            assert.equal(got.status, 200);
            assert.equal(got.body.length, big.length);
            assert.ok(got.body.equals(big), 'same bytes');
        });
    });

    it('on a pubsub location it publishes (hooks see a publisher) instead of long-polling',
        async () => {
            await withNginx(opts(), async (ngx) => {
                const before = be.of('/auth').length;
                const r = await app(ngx.port, '/ps/xaps', { body: 'via pubsub' });
                assert.equal(r.status, 202, r.text);
                const auth = be.of('/auth').slice(before);
                assert.equal(auth.length, 1);
                assert.equal(auth[0].headers['x-original-method'], 'POST');
                assert.equal(auth[0].headers['x-publisher-type'], 'http');
                const got = await C.httpRequest({ port: ngx.port, path: '/sub/xaps' });
                assert.equal(got.text, 'via pubsub');
            });
        });

    it('PUT publishes, DELETE deletes, GET stays channel info', async () => {
        await withNginx(opts(), async (ngx) => {
            const put = await app(ngx.port, '/pub/xam', { method: 'PUT', body: 'put' });
            assert.equal(put.status, 202, put.text);
            const get = await C.httpRequest({ port: ngx.port,
                path: `/app?to=${encodeURIComponent('/pub/xam')}` });
            assert.equal(get.status, 200);
            assert.match(get.text, /^queued messages: 1\r\n/);
            const lp = C.longPoll({ port: ngx.port, path: '/sub/xam',
                lastModified: new Date(Date.now() + 3600e3).toUTCString(), etag: '0' });
            await waitSubscribers(ngx.port, 'xam', 1, 'info');
            const del = await app(ngx.port, '/pub/xam', { method: 'DELETE' });
            assert.equal(del.status, 200, del.text);
            await lp.loop;
            assert.equal(lp.endStatus, 410);
            const gone = await C.httpRequest({ port: ngx.port, path: '/info/xam' });
            assert.equal(gone.status, 404);
        });
    });

    it('a body the proxy streamed to the application (no buffering) is refused, not lost',
        async () => {
            await withNginx(opts(), async (ngx) => {
                // more than nginx reads with the request head: streamed
                const r = await C.httpRequest({ port: ngx.port, method: 'POST',
                    path: `/app-unbuffered?to=${encodeURIComponent('/pub/xaunbuf')}`,
                    body: Buffer.alloc(200 * 1024, 'x') });
                assert.equal(r.status, 500);
                assert.equal(r.text, 'The request body was not kept for the publisher.\n');
                assert.equal((await C.httpRequest({ port: ngx.port, path: '/info/xaunbuf' })).status,
                    404);
            });
        });
});

describe('an EventSource stream ends with nchan\'s status comment', () => {
    const ngx = useNginx({ conf: `
server {
    listen 127.0.0.1:%%PORT%%;
    ${B.nchanScriptLocation()}
    ${B.htmlPageLocation('/index.html', { script: '/NchanSubscriber.js' })}
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
    }
    location ~ ^/subto/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_subscriber_timeout 1s;
    }
    location ~ ^/pub/(\\w+)$ {
        pubsub_publisher;
        pubsub_channel_id $1;
    }
}` });

    // What nchan's own EventSource client (nchan_tools) does with a comment
    // when the stream ends: "<code>: <message>" is the close status, else 0.
    const closeStatus = (sse) => {
        const m = sse.comments.map((c) => /^(\d+): (.*)/.exec(c)).filter(Boolean).pop();
        return m ? { code: Number(m[1]), message: m[2] } : { code: 0 };
    };

    it('channel delete: ":410: 410 Gone", then the end of the body', async () => {
        await C.publish({ port: ngx.port, path: '/pub/esdel' }, 'm1');
        const sse = C.sseStream({ port: ngx.port, path: '/sub/esdel' });
        assert.equal((await sse.events.next(5000)).data, 'm1');
        const d = await C.httpRequest({ port: ngx.port, method: 'DELETE', path: '/pub/esdel' });
        assert.equal(d.status, 200);
        await sse.done;
        assert.ok(sse.bodyEnded, 'the body ended cleanly');
        assert.ok(sse.text.endsWith('data: m1\n\n:410: 410 Gone\n\n'), JSON.stringify(sse.text));
        assert.deepEqual(closeStatus(sse), { code: 410, message: '410 Gone' });
    });

    it('subscriber timeout: ":408: 408 Request Timeout"', async () => {
        const sse = C.sseStream({ port: ngx.port, path: '/subto/esto' });
        await sse.done;
        assert.ok(sse.bodyEnded, 'the body ended cleanly');
        assert.equal(sse.text, ': hi\n\n:408: 408 Request Timeout\n\n');
        assert.deepEqual(closeStatus(sse), { code: 408, message: '408 Request Timeout' });
    });

    it('NchanSubscriber.js in Chromium: the stream ends on delete with those bytes',
        { timeout: 60000 }, async () => {
            await B.withBrowserPage(async (page) => {
                await page.goto(ngx.url('/index.html'));
                await B.nchanSubscribe(page, 'es', ngx.url('/sub/esbrowser'),
                    { subscriber: 'eventsource', reconnect: false });
                // the same stream read by the page's own fetch(), as bytes
                await page.evaluate((u) => {
                    window.raw = { text: '', done: false };
                    fetch(u, { headers: { Accept: 'text/event-stream' } }).then(async (r) => {
                        const rd = r.body.getReader();
                        const dec = new TextDecoder();
                        for (;;) {
                            const { value, done } = await rd.read();
                            if (done) {
                                break;
                            }
                            window.raw.text += dec.decode(value, { stream: true });
                        }
                        window.raw.done = true;
                    });
                }, ngx.url('/sub/esbrowser'));
                await waitSubscribers(ngx.port, 'esbrowser', 2);
                await C.publish({ port: ngx.port, path: '/pub/esbrowser' }, 'hello');
                const st = await B.nchanWaitMessages(page, 'es', 1, 10000);
                assert.deepEqual(st.messages.map((m) => m.msg), ['hello']);
                const d = await C.httpRequest({ port: ngx.port, method: 'DELETE',
                    path: '/pub/esbrowser' });
                assert.equal(d.status, 200);
                // NchanSubscriber.js sees the end of the stream
                await page.waitForFunction(() => window.__nchan.es.events.includes('disconnect'),
                    null, { timeout: 10000 });
                await page.waitForFunction(() => window.raw.done, null, { timeout: 10000 });
                const raw = await page.evaluate(() => window.raw.text);
                assert.match(raw, /^: hi\n\nid: \d+:0\ndata: hello\n\n:410: 410 Gone\n\n$/);
                await B.nchanStop(page, 'es');
            });
        });
});

// Item 6: a worker connects only to the Redis upstreams some location
// stores in.  Both upstreams point to loopback addresses where nothing
// listens: only the used one may be tried (and logged).
describe('Redis upstreams no location uses are not connected to', () => {
    const ngx = useNginx({
        conf: `
upstream redis_used {
    pubsub_redis_server redis://127.0.0.2:9;
}
upstream redis_unused {
    pubsub_redis_server redis://127.0.0.3:9;
}
server {
    listen 127.0.0.1:%%PORT%%;
    pubsub_redis_pass redis_unused;
    location = /plain {
        return 200 "plain\\n";
    }
    location ~ ^/sub/(\\w+)$ {
        pubsub_subscriber;
        pubsub_channel_id $1;
        pubsub_redis_pass redis_used;
    }
}`,
        workers: 2,
    });

    it('tries the used upstream and never the unused one', async () => {
        const r = await C.httpRequest({ port: ngx.port, path: '/plain' });
        assert.equal(r.status, 200);
        const end = Date.now() + 15000;
        while (!/127\.0\.0\.2:9\b/.test(ngx.errorLog())) {
            assert.ok(Date.now() < end, 'the used upstream was never tried');
            await new Promise((res) => setTimeout(res, 100));
        }
        // both workers tried the used one by now (they start together);
        // give the unused one the same time and more
        await new Promise((res) => setTimeout(res, 1500));
        assert.doesNotMatch(ngx.errorLog(), /127\.0\.0\.3/);
    });
});
