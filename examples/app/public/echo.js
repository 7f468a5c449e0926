// The Echo page: laravel-echo and pusher-js, unchanged, against nginx's
// Pusher endpoint (location /pusher/app/ of examples/nginx.conf), as a
// Laravel app's resources/js/echo.js would use them (docs/laravel.md).
// - the member list: Echo.join(room).here / joining / leaving; the app
//   signs the presence subscription at /app/broadcasting/auth, as
//   Laravel's /broadcasting/auth does, for the logged-in user only;
// - messages: POSTed to the app (/app/api/echo/message), which checks them
//   (spam) and broadcasts them through Pusher's HTTP API; every page
//   listens for the event "message".
(function () {
  'use strict';
  var App = window.ExampleApp;
  function $(id) { return document.getElementById(id); }

  var members = {};   // id -> name
  function render() {
    var ul = $('members');
    ul.textContent = '';
    Object.keys(members).sort().forEach(function (id) {
      var li = document.createElement('li');
      li.dataset.id = id;
      li.textContent = members[id];
      ul.appendChild(li);
    });
    $('count').textContent = Object.keys(members).length;
  }
  // Echo hands the members' user_info: the app puts {id, name} in it
  function member(m) { return { id: String(m.id), name: m.name || m.id }; }

  App.me().then(function (u) {
    $('me').textContent = u.name;
    $('room').textContent = u.room;
    document.title = u.name + ' in ' + u.room + ' (Echo)';

    var echo = new Echo.default({
      broadcaster: 'pusher',
      Pusher: window.Pusher,
      key: 'example-key',            // pubsub_pusher_app key=
      cluster: 'mt1',                // pusher-js wants one; wsHost wins
      wsHost: location.hostname,
      wsPort: Number(location.port) || 80,
      wssPort: Number(location.port) || 443,
      wsPath: '/pusher',             // ws://host/pusher/app/<key>
      forceTLS: location.protocol === 'https:',
      enabledTransports: ['ws', 'wss'],
      authEndpoint: '/app/broadcasting/auth',
      withoutInterceptors: true
    });
    window.echo = echo;

    echo.join(u.room)
      .here(function (list) {
        members = {};
        list.forEach(function (m) { m = member(m); members[m.id] = m.name; });
        render();
      })
      .joining(function (m) {
        m = member(m);
        members[m.id] = m.name;
        render();
        App.say(m.name + ' joined', 'sys', m.id);
      })
      .leaving(function (m) {
        m = member(m);
        delete members[m.id];
        render();
        App.say(m.name + ' left', 'sys', m.id);
      })
      .listen('.message', function (m) { App.show(m); })
      .error(function (e) { App.say('Could not join: ' + JSON.stringify(e), 'refused'); });

    $('form').addEventListener('submit', function (e) {
      e.preventDefault();
      var text = $('text').value;
      if (!text) return;
      $('text').value = '';
      fetch('/app/api/echo/message', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: text })
      }).then(function (r) {
        if (!r.ok) {
          return r.text().then(function (t) {
            App.say('Not sent: "' + text + '": ' + t.trim() + ' (' + r.status + ')', 'refused');
          });
        }
      });
    });
  });
})();
