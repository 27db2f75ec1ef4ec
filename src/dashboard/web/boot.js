// Runs before the page's modules load: opens the study's event stream at once, so the server builds
// the snapshot while the browser fetches and evaluates the rest (app.js adopts the stream and replays
// what arrived before it).
(function () {
  var m = /^#\/study\/([^/]+)/.exec(location.hash);
  if (!m || typeof EventSource === 'undefined') return;
  var name = decodeURIComponent(m[1]);
  var es = new EventSource('/api/studies/' + encodeURIComponent(name) + '/events');
  var early = { name: name, es: es, events: [], openedAt: null };
  es.addEventListener('open', function () {
    if (early.openedAt === null) early.openedAt = performance.now();
  });
  ['snapshot', 'delta', 'peers'].forEach(function (type) {
    es.addEventListener(type, function (ev) {
      if (early.events) early.events.push(ev);
    });
  });
  window.__peertuneEarly = early;
})();
