'use strict';
// The official browser client, NchanSubscriber.js from npm nchan@1.0.10,
// unchanged, in Debian's chromium (playwright-core, no downloaded browser):
// EventSource and long-poll.  WebSocket: t/browser-websocket.test.js.

const { transportSuite } = require('./lib/nchan_page');

transportSuite('eventsource');
transportSuite('longpoll');
