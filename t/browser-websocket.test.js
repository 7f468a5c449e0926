'use strict';
// NchanSubscriber.js (npm nchan@1.0.10) in Debian's chromium over
// WebSocket (the ws+meta.nchan subprotocol): same checks as
// t/browser.test.js.

const { transportSuite } = require('./lib/nchan_page');

transportSuite('websocket');
