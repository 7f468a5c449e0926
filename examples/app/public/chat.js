// The chat page's transport: plain browser APIs, no library.
// - receive: an EventSource on /app/sub/<room>: messages, and the presence
//   events pubsub.join / pubsub.leave;
// - send: a WebSocket on /app/pub/<room>. nginx hands every message to the
//   app's hook first; the app publishes its rewrite or refuses it, and a
//   refusal closes this socket with 1008 "<status> <reason>" (only the
//   sender sees it). nginx answers every published message with the
//   channel's info, which tells the page its oldest unanswered message
//   went out.
// Both connect with the token from the app; a new token (and a new
// connection id) on every reconnect.
(function () {
  'use strict';
  var App = window.ExampleApp;
  var wsBase = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;

  function connId() { return Math.random().toString(36).slice(2, 10); }

  App.start(function (me) {
    var room = me.room;
    var token = me.token;
    var lastId = null;

    // ---- receive
    var es = null;
    function subscribe() {
      App.me().then(function (u) {
        token = u.token;
        // conn: our own id for this connection; the app's hooks see it in
        // the query string (docs/hooks.md) and log it
        var url = '/app/sub/' + room + '?token=' + encodeURIComponent(token) +
          '&conn=' + connId() + (lastId ? '&last_event_id=' + encodeURIComponent(lastId) : '');
        es = new EventSource(url);
        es.onopen = function () { App.refreshMembers(room, token); };
        es.onmessage = function (e) {
          lastId = e.lastEventId || lastId;
          try { App.show(JSON.parse(e.data)); } catch (err) { /* not ours */ }
        };
        ['pubsub.join', 'pubsub.leave'].forEach(function (name) {
          es.addEventListener(name, function (e) {
            App.presenceChanged(JSON.parse(e.data), room, token);
          });
        });
        // reconnect ourselves: a fresh token, a new connection id, and the
        // last message id so that nothing is lost
        es.onerror = function () {
          es.close();
          setTimeout(subscribe, 1000);
        };
      }).catch(function () { setTimeout(subscribe, 3000); });
    }
    subscribe();

    // ---- send
    var ws = null;
    var outbox = [];    // typed, not sent yet
    var inflight = [];  // sent, not answered yet (oldest first)
    function flush() {
      while (ws && ws.readyState === WebSocket.OPEN && outbox.length) {
        var text = outbox.shift();
        inflight.push(text);
        ws.send(text);
      }
    }
    function openPublisher() {
      App.me().then(function (u) {
        var sock = new WebSocket(wsBase + '/app/pub/' + room + '?token=' + encodeURIComponent(u.token));
        ws = sock;
        sock.onopen = flush;
        sock.onmessage = function () { inflight.shift(); };   // published
        sock.onclose = function (e) {
          if (ws === sock) ws = null;
          var retry = 1000;
          if (e.code === 1008 && inflight.length) {
            // the oldest unanswered message is the refused one; the ones
            // after it were not published either: send them again
            var refused = inflight.shift();
            var m = /^(\d{3}) ?(.*)$/.exec(e.reason) || [null, '', e.reason];
            App.say('Not sent: "' + refused + '": ' + (m[2] || 'refused') +
                    (m[1] ? ' (' + m[1] + ')' : ''), 'refused');
            retry = 0;
          }
          outbox = inflight.concat(outbox);
          inflight = [];
          setTimeout(openPublisher, retry);
        };
      }).catch(function () { setTimeout(openPublisher, 3000); });
    }
    openPublisher();

    document.getElementById('form').addEventListener('submit', function (e) {
      e.preventDefault();
      var input = document.getElementById('text');
      if (!input.value.trim()) return;
      outbox.push(input.value);
      input.value = '';
      flush();
    });
  });
})();
