// What every page of the example app shares, whatever client library it
// connects with: the token from the app, the member list from nginx's
// presence API, "recently here" and the activity log from the app, showing
// messages, and the announcement form (the app's own API).
// A page adds its transport in its own script: see chat.js.
window.ExampleApp = (function () {
  'use strict';

  function $(id) { return document.getElementById(id); }

  function time(ms) { return new Date(ms).toLocaleTimeString(); }

  // The user and a fresh token (sub, info, channels, publish; minutes long).
  function me() {
    return fetch('/app/api/me', { cache: 'no-store' }).then(function (r) {
      if (r.status === 401) { location.href = '/app/'; throw new Error('not logged in'); }
      if (!r.ok) throw new Error('/app/api/me: ' + r.status);
      return r.json();
    });
  }

  function say(text, cls, user) {
    var log = $('log');
    var li = document.createElement('li');
    li.textContent = text;
    if (cls) li.className = cls;
    if (user) li.dataset.user = user;
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
    return li;
  }

  // A message of the room, as the app's hook (or API) published it.
  function show(m) {
    if (m.type === 'announce') say('Announcement from ' + m.name + ': ' + m.text, 'announce', m.user);
    else if (m.type === 'message') say(m.name + ': ' + m.text, 'msg', m.user);
  }

  var present = {};   // ids in the member list
  var lastState = null;

  function renderMembers(list) {
    present = {};
    list.forEach(function (m) { present[m.id] = true; });
    if (lastState) renderSeen(lastState.users);
    var ul = $('members');
    ul.textContent = '';
    list.forEach(function (m) {
      var li = document.createElement('li');
      li.textContent = ((m.info && m.info.name) || m.id) +
        (m.connections > 1 ? ' (' + m.connections + ')' : '');
      li.dataset.id = m.id;
      if (m.leaving) li.className = 'leaving';
      var since = document.createElement('span');
      since.className = 'since';
      li.appendChild(since);
      ul.appendChild(li);
    });
    $('count').textContent = list.length;
    renderSince();
  }

  // "online since", from the app's table (subscribe hooks)
  function renderSince() {
    if (!lastState) return;
    var by = {};
    lastState.users.forEach(function (u) { by[u.id] = u; });
    [].forEach.call(document.querySelectorAll('#members li'), function (li) {
      var u = by[li.dataset.id];
      li.lastChild.textContent = u && u.connections > 0 && u.since ? ' since ' + time(u.since) : '';
    });
  }

  // nginx's presence API, page by page (events only say what changed).
  var loading = null;
  function refreshMembers(room, token) {
    if (loading) { loading.again = [room, token]; return; }
    loading = { again: null };
    var all = [];
    (function page(cursor) {
      var url = '/app/presence/' + room + '?limit=200&token=' + encodeURIComponent(token) +
        (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
      fetch(url, { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (j) {
        all = all.concat(j.members);
        if (j.next_cursor) return page(j.next_cursor);
        renderMembers(all);
        var again = loading.again;
        loading = null;
        if (again) refreshMembers(again[0], again[1]);
      }).catch(function () { loading = null; });
    })(null);
  }

  // The app's own view, from its hooks: who left and when they were last
  // seen (its "online now / last seen" table, kept by the subscribe and
  // unsubscribe hooks; not those still in the member list,
  // which keeps a member for the leave delay), and the activity log
  // (presence hook).
  function renderSeen(users) {
    var seen = $('seen');
    seen.textContent = '';
    users.filter(function (u) { return u.connections === 0 && u.lastSeen && !present[u.id]; })
      .sort(function (a, b) { return b.lastSeen - a.lastSeen; })
      .forEach(function (u) {
        var li = document.createElement('li');
        li.dataset.id = u.id;
        li.textContent = u.name + ', last seen ' + time(u.lastSeen);
        seen.appendChild(li);
      });
  }

  function refreshState() {
    return fetch('/app/api/state', { cache: 'no-store' }).then(function (r) { return r.json(); })
      .then(function (s) {
        lastState = s;
        renderSeen(s.users);
        renderSince();
        var act = $('activity');
        act.textContent = '';
        s.activity.slice().reverse().forEach(function (a) {
          var li = document.createElement('li');
          li.dataset.event = a.event;
          li.dataset.id = a.id;
          li.textContent = time(a.at) + ' ' + a.name + ' ' +
            ({ join: 'joined ', leave: 'left ', online: 'came online', offline: 'went offline' }[a.event] || a.event) +
            (a.channel ? a.channel : '');
          act.appendChild(li);
        });
      }).catch(function () {});
  }

  // A join or leave event: the list, and the app's view a little later (its
  // presence hook may still be on its way).
  function presenceChanged(ev, room, token) {
    var name = (ev.member.info && ev.member.info.name) || ev.member.id;
    say(name + (ev.event === 'join' ? ' joined' : ' left'), 'sys', ev.member.id);
    refreshMembers(room, token);
    refreshState();
    setTimeout(refreshState, 1000);
  }

  // Starts the page: connect(user) opens the page's connections.
  function start(connect) {
    me().then(function (u) {
      $('me').textContent = u.name;
      $('room').textContent = u.room;
      document.title = u.name + ' in ' + u.room;
      $('announce-form').addEventListener('submit', function (e) {
        e.preventDefault();
        var input = $('announce');
        if (!input.value) return;
        fetch('/app/api/announce', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text: input.value })
        }).then(function (r) {
          if (!r.ok) return r.text().then(function (t) { say('Announcement refused: ' + t.trim(), 'refused'); });
        });
        input.value = '';
      });
      refreshState();
      connect(u);
    });
  }

  return { me: me, say: say, show: show, refreshMembers: refreshMembers,
           refreshState: refreshState, presenceChanged: presenceChanged, start: start };
})();
