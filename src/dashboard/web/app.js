// The dashboard page: one ES module, no framework. It keeps the study's trials in memory, fed by
// the server's event stream (a snapshot, then only the trials that changed), and draws the current
// view with the same figure functions peertune exports (src/visualization), through Plotly.
import { decodeTrial, STATES } from '/mod/visualization/data.js';
import * as F from '/mod/visualization/figures.js';

const $ = (sel, root = document) => root.querySelector(sel);
const h = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
};
const fmt = (v) => (v === null || v === undefined ? '' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/\.?0+$/, '')) : typeof v === 'object' ? JSON.stringify(v) : String(v));
const ago = (ms) => (ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : ms < 3600000 ? `${(ms / 60000).toFixed(1)} min` : `${(ms / 3600000).toFixed(1)} h`);
const peerLabel = F.peerLabel;

// Observable state for tests and for people poking at the page from devtools.
const dash = (window.__dash = { renders: 0, version: -1, trials: 0, deltas: 0, errors: [], timing: { moduleStart: performance.now() } });

const S = {
  config: null,
  name: null, // study open in the stream
  es: null,
  study: null, // { studyId, studyName, directions, ... }
  params: [],
  owners: [],
  trials: new Map(), // trialId -> PlotTrial
  sorted: null,
  peers: null,
  route: { page: 'list' },
  opt: { logY: false, includePruned: false, xAxis: 'number', objective: 0, px: null, py: null, bins: 30, evaluator: 'auto', pareto3d: true, hvRef: '' },
  brush: new Map(), // parcoords dimension label -> constraintrange
  table: { sort: 'number', desc: false, filter: '' },
  importance: { key: null, body: null, at: 0, loading: false },
};

function trialsSorted() {
  if (!S.sorted) S.sorted = [...S.trials.values()].sort((a, b) => a.number - b.number);
  return S.sorted;
}
const plotStudy = () => ({ directions: S.study.directions, trials: trialsSorted() });
const multi = () => S.study && S.study.directions.length > 1;

// ---------------------------------------------------------------- stream

function openStream(name) {
  if (S.name === name && S.es) return;
  if (S.es) S.es.close();
  S.name = name;
  S.study = null;
  S.trials = new Map();
  S.sorted = null;
  S.brush = new Map();
  S.importance = { key: null, body: null, at: 0, loading: false };
  // boot.js may have opened this stream already, while the modules loaded: adopt it.
  const early = window.__peertuneEarly;
  window.__peertuneEarly = null;
  const adopted = early && early.name === name && early.es.readyState !== 2 ? early : null;
  if (adopted) dash.timing.streamOpen = adopted.openedAt ?? undefined;
  if (early && !adopted) early.es.close();
  const es = adopted ? adopted.es : new EventSource(`/api/studies/${encodeURIComponent(name)}/events`);
  S.es = es;
  if (es.readyState === 1) setLive(true);
  es.addEventListener('open', () => setLive(true));
  es.addEventListener('error', () => setLive(false));
  es.addEventListener('snapshot', (ev) => {
    dash.timing.snapshotReceived ??= performance.now();
    const s = JSON.parse(ev.data);
    S.study = s.study;
    S.params = s.params;
    S.owners = s.owners;
    S.trials = new Map();
    for (const r of s.rows) {
      const t = decodeTrial(r, S.params, S.owners);
      S.trials.set(t.trialId, t);
    }
    S.sorted = null;
    dash.version = s.version;
    dash.timing.snapshotDecoded ??= performance.now();
    scheduleRender();
  });
  es.addEventListener('delta', (ev) => {
    const d = JSON.parse(ev.data);
    S.params = d.params;
    S.owners = d.owners;
    for (const r of d.rows) {
      const t = decodeTrial(r, S.params, S.owners);
      S.trials.set(t.trialId, t);
    }
    for (const id of d.removed) S.trials.delete(id);
    S.sorted = null;
    dash.version = d.version;
    dash.deltas++;
    scheduleRender();
  });
  es.addEventListener('peers', (ev) => {
    S.peers = JSON.parse(ev.data);
    // Once a second: the peers view's ages, and RUNNING bars of the timeline growing to now.
    if (S.route.view === 'peers' || (S.route.view === 'timeline' && trialsSorted().some((t) => t.state === 'RUNNING'))) scheduleRender();
  });
  if (adopted) {
    const missed = adopted.events;
    adopted.events = null;
    for (const ev of missed) es.dispatchEvent(new MessageEvent(ev.type, { data: ev.data }));
  }
}

function setLive(on) {
  const el = $('#live');
  el.textContent = on ? 'live' : 'reconnecting';
  el.className = `live ${on ? 'on' : 'off'}`;
}

// ---------------------------------------------------------------- routing

const VIEWS = [
  ['history', 'History'],
  ['intermediate', 'Intermediate values'],
  ['importance', 'Importances'],
  ['parallel', 'Parallel coordinate'],
  ['slice', 'Slice'],
  ['contour', 'Contour'],
  ['rank', 'Rank'],
  ['edf', 'EDF'],
  ['timeline', 'Timeline'],
  ['pareto', 'Pareto front', true],
  ['hypervolume', 'Hypervolume', true],
  ['trials', 'Trials'],
  ['peers', 'Peers'],
];

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (parts[0] === 'study' && parts[1]) {
    if (parts[2] === 'trial') return { page: 'study', name: parts[1], view: 'trial', number: Number(parts[3]) };
    return { page: 'study', name: parts[1], view: parts[2] || 'history' };
  }
  return { page: 'list' };
}

const link = (name, view, extra = '') => `#/study/${encodeURIComponent(name)}/${view}${extra}`;

async function route() {
  S.route = parseRoute();
  if (S.route.page === 'list') {
    if (S.es) S.es.close();
    S.es = null;
    S.name = null;
    $('#tabs').replaceChildren();
    $('#summary').replaceChildren();
    $('#crumb').textContent = 'studies';
    await renderStudyList();
    return;
  }
  openStream(S.route.name);
  scheduleRender(true);
}

// ---------------------------------------------------------------- render loop

// Plotly is an async script of index.html (the server writes its tags): it evaluates while the
// snapshot streams in and the page's modules load.
const plotlyReady = new Promise((resolve, reject) => {
  if (window.Plotly) return resolve();
  const s = document.getElementById('plotly');
  if (!s) return reject(new Error('the page has no Plotly script'));
  s.addEventListener('load', () => resolve());
  s.addEventListener('error', () => reject(new Error(`could not load ${s.src}`)));
});

// Traces the split Plotly build loads on first use (3-D scatter): true once the figure's are there.
const lazyTraces = new Map();
function tracesReady(fig) {
  const lazy = window.Plotly.peertuneLazy;
  if (!lazy) return true;
  let ready = true;
  for (const d of fig.data) {
    if (!lazy[d.type]) continue;
    let p = lazyTraces.get(d.type);
    if (!p) {
      p = { done: false };
      p.promise = lazy[d.type]().then(() => ((p.done = true), scheduleRender(true)), (e) => dash.errors.push(`could not load the ${d.type} trace: ${e}`));
      lazyTraces.set(d.type, p);
    }
    if (!p.done) ready = false;
  }
  return ready;
}

plotlyReady.then(() => ((dash.timing.plotlyLoaded = performance.now()), warmUp(), scheduleRender(true)), (e) => dash.errors.push(String(e)));

let pending = false;
let lastRender = 0;
function scheduleRender(now = false) {
  if (pending) return;
  pending = true;
  // Live updates redraw at most ~8 times a second; a route change redraws at once.
  const wait = now ? 0 : Math.max(0, 120 - (performance.now() - lastRender));
  setTimeout(() => {
    pending = false;
    lastRender = performance.now();
    try {
      render();
    } catch (e) {
      dash.errors.push(String(e && e.stack ? e.stack : e));
      $('#main').replaceChildren(h('p', { class: 'error' }, `Could not draw this view: ${e.message}`));
      throw e;
    }
  }, wait);
}

let mounted = null; // { key, update() } of the view currently in #main

function render() {
  if (S.route.page !== 'study') return;
  if (!S.study) {
    if (!warmPlot?.isConnected) $('#main').replaceChildren(h('p', { class: 'muted' }, 'Loading the replica…'));
    warmUp();
    return;
  }
  renderTabs();
  renderSummary();
  const key = `${S.route.name}/${S.route.view}/${S.route.number ?? ''}`;
  if (!mounted || mounted.key !== key) {
    const v = mountView(S.route.view);
    mounted = { key, ...v };
    $('#main').replaceChildren(v.el);
  }
  mounted.update();
  dash.rendered = trialsSorted();
  dash.timing.firstRender ??= performance.now();
  dash.renders++;
  dash.trials = S.trials.size;
  $('#main').dataset.view = S.route.view;
  $('#main').dataset.version = String(dash.version);
}

function renderTabs() {
  const nav = $('#tabs');
  nav.replaceChildren(
    ...VIEWS.filter(([, , mo]) => !mo || multi()).map(([v, label]) => h('a', { href: link(S.name, v), class: S.route.view === v ? 'active' : '', 'data-tab': v }, label)),
  );
  $('#crumb').replaceChildren(h('a', { href: '#/' }, 'studies'), ' / ', h('a', { href: link(S.name, 'history') }, S.study.studyName));
}

function bestOf(trials, k = 0) {
  const max = S.study.directions[k] === 'maximize';
  let best = null;
  for (const t of trials) {
    if (t.state !== 'COMPLETE' || !t.values) continue;
    const v = t.values[k];
    if (best === null || (max ? v > best.values[k] : v < best.values[k])) best = t;
  }
  return best;
}

function renderSummary() {
  const trials = trialsSorted();
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const t of trials) counts[t.state]++;
  const items = [
    h('span', {}, 'directions: ', h('b', {}, S.study.directions.join(', '))),
    h('span', {}, 'trials: ', h('b', { id: 'trial-count', 'data-count': trials.length }, trials.length)),
    ...STATES.filter((s) => counts[s]).map((s) => h('span', {}, h('span', { class: `badge ${s}` }, s), ' ', h('b', { 'data-state-count': s }, counts[s]))),
  ];
  if (!multi()) {
    const b = bestOf(trials);
    items.push(
      h('span', {}, 'best value: ', b ? h('b', { id: 'best-value', 'data-value': String(b.values[0]) }, fmt(b.values[0])) : h('b', { id: 'best-value' }, '—'), b ? h('span', {}, ' (', h('a', { href: link(S.name, 'trial', `/${b.number}`), id: 'best-trial' }, `trial ${b.number}`), ')') : ''),
    );
  } else {
    items.push(
      h('label', {}, 'objective ', h('select', { id: 'objective', onchange: (e) => ((S.opt.objective = Number(e.target.value)), (mounted = null), scheduleRender(true)) }, ...S.study.directions.map((d, i) => h('option', { value: i, selected: i === S.opt.objective }, `${i} (${d})`)))),
    );
  }
  if (S.peers) items.push(h('span', {}, 'peers online: ', h('b', { id: 'peers-online' }, S.peers.peers.filter((p) => p.online).length)));
  $('#summary').replaceChildren(...items);
}

// ---------------------------------------------------------------- plots

function plotInto(el, fig) {
  // Until Plotly has loaded the rest of the page (summary, table, peers) is already usable.
  if (!window.Plotly || !tracesReady(fig)) return;
  const layout = { autosize: true, margin: { t: 40, l: 60, r: 20, b: 50 }, ...fig.layout };
  Plotly.react(el, fig.data, layout, { responsive: true, displaylogo: false });
  dash.timing.firstPlot ??= performance.now();
  el.dataset.traces = String(fig.data.length);
  el.dataset.points = String(fig.data.reduce((n, d) => n + (Array.isArray(d.x) ? d.x.length : Array.isArray(d.y) ? d.y.length : 0), 0));
  if (!el.__peertuneClick) {
    el.__peertuneClick = true;
    el.on?.('plotly_click', (ev) => {
      const n = ev?.points?.[0]?.customdata;
      if (typeof n === 'number') location.hash = link(S.name, 'trial', `/${n}`);
    });
  }
}

const target = () => ({ objective: S.opt.objective, targetName: multi() ? `Objective ${S.opt.objective}` : undefined });

function checkbox(label, key, id) {
  return h('label', {}, h('input', { type: 'checkbox', id, checked: S.opt[key], onchange: (e) => ((S.opt[key] = e.target.checked), scheduleRender(true)) }), ' ', label);
}
function select(label, key, options, id, numeric = false) {
  return h('label', {}, `${label} `, h('select', { id, onchange: (e) => ((S.opt[key] = numeric ? Number(e.target.value) : e.target.value), scheduleRender(true)) }, ...options.map(([v, text]) => h('option', { value: v, selected: String(S.opt[key]) === String(v) }, text))));
}

// While the snapshot is still on its way and Plotly is loaded, the history view's plot element
// gets Plotly's WebGL set-up (a context and its programs, ~150 ms here) with one invisible point, so
// drawing 10,000 trials later only uploads them. Large studies are the ones whose snapshot is late.
let warmPlot = null;
function warmUp() {
  if (warmPlot || !window.Plotly || S.study || S.route.page !== 'study' || S.route.view !== 'history') return;
  warmPlot = h('div', { class: 'plot', id: 'plot' });
  $('#main').replaceChildren(h('div', { class: 'controls' }), warmPlot);
  Plotly.newPlot(warmPlot, [{ type: 'scattergl', mode: 'markers', x: [0], y: [0], marker: { opacity: 0 }, hoverinfo: 'skip', showlegend: false }], { margin: { t: 40, l: 60, r: 20, b: 50 }, xaxis: { visible: false }, yaxis: { visible: false } }, { responsive: true, displaylogo: false });
}

function plotView(makeFig, controls = () => []) {
  const box = h('div', { class: 'controls' });
  const warm = warmPlot?.isConnected && S.route.view === 'history' ? warmPlot : null;
  warmPlot = warm ? null : warmPlot;
  const el = warm ?? h('div', { class: 'plot', id: 'plot' });
  return {
    el: h('div', {}, box, el),
    update() {
      box.replaceChildren(...controls());
      plotInto(el, makeFig());
    },
  };
}

function pairControls() {
  const names = S.params.map((p) => p.name);
  if (!S.opt.px || !names.includes(S.opt.px)) S.opt.px = names[0] ?? null;
  if (!S.opt.py || !names.includes(S.opt.py) || S.opt.py === S.opt.px) S.opt.py = names.find((n) => n !== S.opt.px) ?? null;
  return [select('x', 'px', names.map((n) => [n, n]), 'param-x'), select('y', 'py', names.map((n) => [n, n]), 'param-y')];
}
const pair = () => (S.opt.px && S.opt.py ? [S.opt.px, S.opt.py] : undefined);

function mountView(view) {
  switch (view) {
    case 'history':
      return plotView(
        () => F.plotOptimizationHistory(plotStudy(), { ...target(), logY: S.opt.logY, includePruned: S.opt.includePruned, xAxis: S.opt.xAxis }),
        () => [checkbox('log y', 'logY', 'log-y'), checkbox('include pruned', 'includePruned', 'include-pruned'), select('x axis', 'xAxis', [['number', 'trial number'], ['datetime_start', 'start time'], ['datetime_complete', 'complete time']], 'x-axis')],
      );
    case 'intermediate':
      return plotView(() => F.plotIntermediateValues(plotStudy()));
    case 'slice':
      return plotView(() => F.plotSlice(plotStudy(), target()));
    case 'contour':
      return plotView(() => F.plotContour(plotStudy(), { ...target(), params: pair(), bins: S.opt.bins }), () => [...pairControls(), select('bins', 'bins', [[10, '10'], [20, '20'], [30, '30'], [50, '50']], 'bins', true)]);
    case 'rank':
      return plotView(() => F.plotRank(plotStudy(), { ...target(), params: pair() }), pairControls);
    case 'edf':
      return plotView(() => F.plotEdf(plotStudy(), target()));
    case 'timeline':
      // One SVG bar per trial: the most recent 3,000 keep the page responsive.
      return plotView(() => F.plotTimeline(plotStudy(), { nRecentTrials: 3000 }));
    case 'pareto':
      return plotView(
        () => F.plotParetoFront(plotStudy(), { axisOrder: S.study.directions.length >= 3 && S.opt.pareto3d ? [0, 1, 2] : [0, 1] }),
        () => (S.study.directions.length >= 3 ? [checkbox('3-D', 'pareto3d', 'pareto-3d')] : []),
      );
    case 'hypervolume':
      return plotView(() => {
        const ref = S.opt.hvRef.trim() ? S.opt.hvRef.split(',').map(Number) : undefined;
        return F.plotHypervolumeHistory(plotStudy(), ref && ref.every(Number.isFinite) && ref.length === S.study.directions.length ? ref : undefined);
      }, () => [h('label', {}, 'reference point ', h('input', { id: 'hv-ref', value: S.opt.hvRef, placeholder: 'auto', onchange: (e) => ((S.opt.hvRef = e.target.value), scheduleRender(true)) }))]);
    case 'importance':
      return importanceView();
    case 'parallel':
      return parallelView();
    case 'trials':
      return tableView(() => trialsSorted());
    case 'peers':
      return peersView();
    case 'trial':
      return trialView();
    default:
      return { el: h('p', {}, `No view named ${view}`), update() {} };
  }
}

// ---------------------------------------------------------------- importances (computed by the server)

function importanceView() {
  const box = h('div', { class: 'controls' });
  const info = h('span', { class: 'muted', id: 'importance-info' });
  const el = h('div', { class: 'plot', id: 'plot' });
  const fetchNow = async () => {
    const key = `${dash.version}:${S.opt.evaluator}:${S.opt.objective}`;
    if (S.importance.loading || S.importance.key === key) return;
    // Live studies: at most one recomputation every 3 s.
    if (S.importance.body && performance.now() - S.importance.at < 3000 && S.importance.key?.split(':').slice(1).join(':') === key.split(':').slice(1).join(':')) {
      setTimeout(() => scheduleRender(), 3000);
      return;
    }
    S.importance.loading = true;
    try {
      const r = await fetch(`/api/studies/${encodeURIComponent(S.name)}/importances?evaluator=${S.opt.evaluator}&objective=${S.opt.objective}`);
      const body = await r.json();
      if (!r.ok) throw new Error(body.error);
      S.importance = { key, body, at: performance.now(), loading: false };
    } catch (e) {
      S.importance.loading = false;
      info.textContent = `importances failed: ${e.message}`;
      return;
    }
    scheduleRender(true);
  };
  return {
    el: h('div', {}, box, el),
    update() {
      box.replaceChildren(select('evaluator', 'evaluator', [['auto', 'auto (fANOVA ≤ 1000 trials, else PED-ANOVA)'], ['fanova', 'fANOVA'], ['ped-anova', 'PED-ANOVA'], ['mdi', 'mean decrease impurity']], 'evaluator'), info);
      const b = S.importance.body;
      if (b) {
        info.textContent = `${b.evaluator} on ${b.completeTrials} COMPLETE trials, ${b.ms} ms`;
        el.dataset.top = Object.keys(b.importances)[0] ?? '';
        plotInto(el, F.importanceFigure(b.importances, { title: `Hyperparameter Importances (${b.evaluator})` }));
      }
      void fetchNow();
    },
  };
}

// ---------------------------------------------------------------- parallel coordinate + brushed table

function inRange(v, cr) {
  if (!cr) return true;
  const ranges = Array.isArray(cr[0]) ? cr : [cr];
  return ranges.some(([a, b]) => v >= Math.min(a, b) && v <= Math.max(a, b));
}

function parallelView() {
  const el = h('div', { class: 'plot', id: 'plot' });
  const note = h('p', { class: 'muted' }, 'Drag along an axis to brush; the table below shows only the trials inside every brush.');
  let fig = null;
  const brushed = () => {
    if (!fig || S.brush.size === 0) return null;
    // fig.axes holds every trial's coordinates even when only a sample of lines is drawn.
    const axes = fig.axes ?? fig.data[0].dimensions;
    const keep = new Set();
    fig.trialNumbers.forEach((n, i) => {
      if (axes.every((d) => inRange(d.values[i], S.brush.get(d.label)))) keep.add(n);
    });
    return keep;
  };
  const table = tableView(() => {
    const keep = brushed();
    return keep ? trialsSorted().filter((t) => keep.has(t.number)) : trialsSorted();
  });
  let hooked = false;
  return {
    el: h('div', {}, note, el, h('h3', {}, 'Trials in the brush'), table.el),
    update() {
      fig = F.plotParallelCoordinate(plotStudy(), target());
      if (fig.data[0]) for (const d of fig.data[0].dimensions) if (S.brush.has(d.label)) d.constraintrange = S.brush.get(d.label);
      plotInto(el, fig);
      if (!hooked && el.on) {
        hooked = true;
        el.on('plotly_restyle', () => {
          S.brush = new Map();
          for (const d of el.data[0]?.dimensions ?? []) if (d.constraintrange && d.constraintrange.length) S.brush.set(d.label, d.constraintrange);
          table.update();
        });
      }
      table.update();
    },
  };
}

// ---------------------------------------------------------------- trial table (virtualised)

const ROW_H = 24;

function columns() {
  const cols = [
    { key: 'number', label: '#', cls: 'num', get: (t) => t.number },
    { key: 'state', label: 'state', get: (t) => t.state },
  ];
  if (S.study.directions.length === 1) cols.push({ key: 'value', label: 'value', get: (t) => (t.values ? t.values[0] : null) });
  else S.study.directions.forEach((_, i) => cols.push({ key: `values_${i}`, label: `values_${i}`, get: (t) => (t.values ? t.values[i] : null) }));
  for (const p of S.params) cols.push({ key: p.name, label: p.name, get: (t) => (p.name in t.params ? t.params[p.name] : undefined) });
  cols.push({ key: 'peer', label: 'peer', get: (t) => t.owner, show: peerLabel });
  cols.push({ key: 'duration', label: 'duration (s)', get: (t) => (t.datetimeStart && t.datetimeComplete ? (t.datetimeComplete - t.datetimeStart) / 1000 : null) });
  const ua = new Set();
  for (const t of trialsSorted()) for (const k of Object.keys(t.userAttrs)) ua.add(k);
  for (const k of ua) cols.push({ key: `attr.${k}`, label: `attr.${k}`, get: (t) => t.userAttrs[k] });
  return cols;
}

/** "x>0.5 state=COMPLETE peer~abcd attr.fold=2 word": clauses ANDed; a bare word matches any cell. */
function compileFilter(text, cols) {
  const clauses = text.trim().split(/\s+/).filter(Boolean);
  const byKey = new Map(cols.map((c) => [c.key.toLowerCase(), c]));
  const tests = clauses.map((cl) => {
    const m = /^([^<>=!~]+)(<=|>=|!=|=|<|>|~)(.*)$/.exec(cl);
    if (!m) {
      const w = cl.toLowerCase();
      return (t) => cols.some((c) => String(c.get(t) ?? '').toLowerCase().includes(w));
    }
    const col = byKey.get(m[1].toLowerCase()) ?? byKey.get(`attr.${m[1].toLowerCase()}`) ?? (m[1].toLowerCase() === 'owner' ? byKey.get('peer') : undefined);
    if (!col) throw new Error(`no column "${m[1]}" (columns: ${cols.map((c) => c.key).join(', ')})`);
    const op = m[2];
    const raw = m[3];
    const num = Number(raw);
    return (t) => {
      const v = col.get(t);
      if (op === '~') return String(v ?? '').toLowerCase().includes(raw.toLowerCase());
      if (v === undefined || v === null) return op === '!=';
      if (typeof v === 'number' && raw !== '' && Number.isFinite(num)) {
        return op === '=' ? v === num : op === '!=' ? v !== num : op === '<' ? v < num : op === '<=' ? v <= num : op === '>' ? v > num : v >= num;
      }
      const s = String(v);
      const cmp = s.localeCompare(raw);
      return op === '=' ? s === raw : op === '!=' ? s !== raw : op === '<' ? cmp < 0 : op === '<=' ? cmp <= 0 : op === '>' ? cmp > 0 : cmp >= 0;
    };
  });
  return (t) => tests.every((f) => f(t));
}

function compare(a, b) {
  const na = a === undefined || a === null;
  const nb = b === undefined || b === null;
  if (na || nb) return na && nb ? 0 : na ? 1 : -1; // missing values last either way
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}

function tableView(source) {
  const filter = h('input', { class: 'filter', id: 'table-filter', placeholder: 'filter: x>0.5 state=COMPLETE peer~abcd attr.fold=2', value: S.table.filter });
  const count = h('span', { class: 'muted table-count', id: 'table-count' });
  const err = h('span', { class: 'error' });
  const head = h('div', { class: 'thead' });
  const spacer = h('div', { class: 'rows' });
  const body = h('div', { class: 'tbody', id: 'table-body' }, spacer);
  let rows = [];
  let cols = [];
  const paint = () => {
    const first = Math.max(0, Math.floor(body.scrollTop / ROW_H) - 5);
    const last = Math.min(rows.length, first + Math.ceil(body.clientHeight / ROW_H) + 10);
    const width = cols.reduce((w, c) => w + (c.cls === 'num' ? 70 : 120), 0);
    spacer.style.height = `${rows.length * ROW_H}px`;
    spacer.style.width = `${width}px`;
    const frag = [];
    for (let i = first; i < last; i++) {
      const t = rows[i];
      frag.push(
        h(
          'div',
          { class: 'tr', 'data-number': t.number, style: `top:${i * ROW_H}px;width:${width}px`, onclick: () => (location.hash = link(S.name, 'trial', `/${t.number}`)) },
          ...cols.map((c) => {
            const v = c.get(t);
            return h('div', { class: `cell ${c.cls ?? ''}`, title: fmt(v) }, c.key === 'state' ? h('span', { class: `badge ${v}` }, v) : c.show ? c.show(v) : fmt(v));
          }),
        ),
      );
    }
    spacer.replaceChildren(...frag);
  };
  body.addEventListener('scroll', () => requestAnimationFrame(paint));
  const update = () => {
    cols = columns();
    head.replaceChildren(
      ...cols.map((c) =>
        h(
          'div',
          { class: c.cls ?? '', 'data-col': c.key, onclick: () => ((S.table.desc = S.table.sort === c.key ? !S.table.desc : false), (S.table.sort = c.key), update()) },
          c.label,
          S.table.sort === c.key ? (S.table.desc ? ' ▼' : ' ▲') : '',
        ),
      ),
    );
    let all = source();
    err.textContent = '';
    if (S.table.filter.trim()) {
      try {
        all = all.filter(compileFilter(S.table.filter, cols));
      } catch (e) {
        err.textContent = e.message;
      }
    }
    const col = cols.find((c) => c.key === S.table.sort) ?? cols[0];
    const sign = S.table.desc ? -1 : 1;
    rows = all === trialsSorted() && col.key === 'number' && !S.table.desc ? all : [...all].sort((a, b) => {
      const av = col.get(a);
      const bv = col.get(b);
      const missing = av === undefined || av === null || bv === undefined || bv === null;
      return missing ? compare(av, bv) : sign * compare(av, bv) || a.number - b.number;
    });
    count.textContent = `${rows.length} of ${S.trials.size} trials`;
    count.dataset.count = String(rows.length);
    paint();
  };
  filter.addEventListener('input', () => {
    S.table.filter = filter.value;
    update();
  });
  return { el: h('div', {}, h('div', { class: 'controls' }, filter, count, err), h('div', { class: 'trial-table' }, h('div', { style: 'overflow-x:auto' }, head, body))), update };
}

// ---------------------------------------------------------------- peers

// A peer's advertised replica of the study against this one (its last heartbeat).
const REPLICA_LABEL = { self: 'this replica', agree: 'agree', behind: 'behind (lacks some of ours)', ahead: 'ahead (has changes we lack)', differs: 'differs', unknown: 'not advertised' };

function peersView() {
  const el = h('div', { id: 'peers' });
  return {
    el,
    update() {
      const p = S.peers;
      if (!p) return el.replaceChildren(h('p', { class: 'muted' }, 'Waiting for the first peer report…'));
      const now = p.now;
      const runningAge = (r) => (r.startedAt ? ago(now - r.startedAt) : '?');
      const rows = p.peers
        .slice()
        .sort((a, b) => Number(b.self) - Number(a.self) || Number(b.online) - Number(a.online) || a.peerId.localeCompare(b.peerId))
        .map((x) =>
          h(
            'tr',
            { 'data-peer': x.peerId, 'data-online': String(x.online) },
            h('td', { title: x.peerId }, peerLabel(x.peerId), x.self ? ' (this dashboard)' : ''),
            h('td', {}, h('span', { class: `badge ${x.online ? 'online' : 'offline'}`, 'data-status': x.online ? 'online' : 'offline' }, x.online ? 'online' : 'offline'), x.connected ? ' connected' : ''),
            h('td', {}, x.self ? '—' : x.lastSeen ? `${ago(now - x.lastSeen)} ago` : 'never'),
            h('td', {}, x.trialsRun),
            h('td', {}, Object.entries(x.states).map(([s, n]) => h('span', {}, h('span', { class: `badge ${s}` }, s), ` ${n} `))),
            h('td', {}, x.running.length ? x.running.map((r) => h('div', {}, h('a', { href: link(S.name, 'trial', `/${r.number}`) }, `#${r.number}`), ` for ${runningAge(r)}`)) : '—'),
            h('td', { class: 'replica', 'data-replica': x.replica, title: x.digest ? `digest ${x.digest}, ${x.changes} changes (as of its last heartbeat)` : 'no digest advertised for this study' }, h('span', { class: `badge replica-${x.replica}` }, REPLICA_LABEL[x.replica] ?? x.replica)),
            h('td', { class: 'rejects', 'data-rejects': x.rejects ?? '' }, x.self ? '—' : x.rejects === null ? '?' : h('span', { class: x.rejects > 0 ? 'error' : '' }, x.rejects)),
            h('td', { class: 'muted' }, x.addresses.slice(0, 2).join(' ')),
          ),
        );
      const rejects = Object.entries(p.rejects ?? {});
      el.replaceChildren(
        h('table', { class: 'simple', id: 'peers-table' }, h('thead', {}, h('tr', {}, ...['peer', 'status', 'last seen', 'trials', 'by state', 'RUNNING (age)', 'replica', 'rejected from it', 'addresses'].map((c) => h('th', {}, c)))), h('tbody', {}, rows)),
        h('h3', {}, 'This replica'),
        p.replica
          ? h('p', {}, `trials ${p.replica.trials}${p.replica.changes !== null ? `, changes ${p.replica.changes}` : ''}, changes waiting for dependencies ${p.replica.pendingChanges}, heads digest `, h('code', { id: 'heads' }, p.replica.heads), ' (equal digests on two peers mean equal replicas; each peer advertises its digest in its heartbeat)')
          : h('p', { class: 'muted' }, 'in-memory storage: no replica'),
        h('h3', {}, 'Replica counters: rejected messages by reason, sync sessions (all peers together)'),
        rejects.length ? h('table', { class: 'simple' }, h('tbody', {}, rejects.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, v))))) : h('p', { class: 'muted', id: 'no-rejects' }, 'none'),
      );
    },
  };
}

// ---------------------------------------------------------------- trial detail

function kv(obj) {
  const entries = Object.entries(obj);
  if (!entries.length) return h('p', { class: 'muted' }, 'none');
  return h('table', { class: 'simple' }, h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, typeof v === 'string' && v.includes('\n') ? h('pre', {}, v) : fmt(v))))));
}

function trialView() {
  const el = h('div', { id: 'trial' });
  const curve = h('div', { class: 'plot', id: 'trial-curve' });
  return {
    el: h('div', {}, el, curve),
    update() {
      const t = trialsSorted().find((x) => x.number === S.route.number);
      if (!t) {
        el.replaceChildren(h('p', {}, `No trial ${S.route.number} in this replica (yet).`));
        curve.style.display = 'none';
        return;
      }
      const sa = { ...t.systemAttrs };
      const stderr = sa.stderrTail;
      const reason = sa.failReason;
      const checkpoints = sa.checkpoints;
      delete sa.stderrTail;
      delete sa.failReason;
      delete sa.checkpoints;
      el.replaceChildren(
        h('h2', {}, `Trial ${t.number} `, h('span', { class: `badge ${t.state}`, id: 'trial-state' }, t.state)),
        h('table', { class: 'simple' }, h('tbody', {},
          h('tr', {}, h('th', {}, 'trial id'), h('td', {}, t.trialId)),
          h('tr', {}, h('th', {}, 'peer'), h('td', { title: t.owner }, t.owner)),
          h('tr', {}, h('th', {}, S.study.directions.length > 1 ? 'values' : 'value'), h('td', { id: 'trial-values' }, t.values ? t.values.map(fmt).join(', ') : '—')),
          h('tr', {}, h('th', {}, 'started'), h('td', {}, t.datetimeStart ? t.datetimeStart.toISOString() : '—')),
          h('tr', {}, h('th', {}, 'completed'), h('td', {}, t.datetimeComplete ? t.datetimeComplete.toISOString() : '—')),
          h('tr', {}, h('th', {}, 'duration'), h('td', {}, t.datetimeStart ? ago((t.datetimeComplete ?? new Date()) - t.datetimeStart) + (t.datetimeComplete ? '' : ' (running)') : '—')),
        )),
        reason ? h('div', {}, h('h3', {}, 'Fail reason'), h('pre', { id: 'fail-reason' }, String(reason))) : '',
        stderr ? h('div', {}, h('h3', {}, 'stderr (tail)'), h('pre', { id: 'stderr-tail' }, String(stderr))) : '',
        h('h3', {}, 'Params'),
        h('div', { id: 'trial-params' }, kv(t.params)),
        h('div', { class: 'grid2' }, h('div', {}, h('h3', {}, 'User attrs'), kv(t.userAttrs)), h('div', {}, h('h3', {}, 'System attrs'), kv(sa))),
        checkpoints ? h('div', {}, h('h3', {}, 'Checkpoints'), h('pre', {}, JSON.stringify(checkpoints, null, 2))) : '',
        h('h3', {}, 'Intermediate values'),
      );
      if (t.intermediateValues.size) {
        curve.style.display = '';
        plotInto(curve, F.plotIntermediateValues({ directions: S.study.directions, trials: [t] }));
      } else {
        curve.style.display = 'none';
      }
    },
  };
}

// ---------------------------------------------------------------- study list

let listTimer = null;
async function renderStudyList() {
  clearTimeout(listTimer);
  const main = $('#main');
  let body;
  try {
    const r = await fetch('/api/studies');
    body = await r.json();
    if (!r.ok) throw new Error(body.error);
  } catch (e) {
    main.replaceChildren(h('p', { class: 'error' }, `Could not list studies: ${e.message}`));
    return;
  }
  if (S.route.page !== 'list') return;
  main.replaceChildren(
    h('h2', {}, 'Studies'),
    body.studies.length
      ? h('table', { class: 'simple', id: 'study-list' },
          h('thead', {}, h('tr', {}, ...['study', 'directions', 'trials', 'by state', 'best value', 'peers online'].map((c) => h('th', {}, c)))),
          h('tbody', {}, body.studies.map((s) =>
            h('tr', { 'data-study': s.studyName, 'data-study-id': s.studyId },
              // A name several studies share links by id (and shows it): the name alone is ambiguous.
              h('td', {}, h('a', { href: link(s.ref ?? s.studyName, 'history') }, s.studyName), s.ref && s.ref !== s.studyName ? h('span', { class: 'study-id' }, ` ${s.studyId}`) : ''),
              h('td', {}, s.directions.join(', ')),
              h('td', { class: 'trials' }, s.trials),
              h('td', {}, Object.entries(s.states).filter(([, n]) => n).map(([k, n]) => h('span', {}, h('span', { class: `badge ${k}` }, k), ` ${n} `))),
              h('td', { class: 'best', 'data-value': s.best ? String(s.best.value) : '' }, s.best ? `${fmt(s.best.value)} (trial ${s.best.number})` : s.directions.length > 1 ? 'Pareto front' : '—'),
              h('td', { class: 'peers' }, `${s.peersOnline} / ${s.peersKnown}`),
            ))))
      : h('p', { class: 'muted' }, 'This replica has no studies yet.'),
  );
  dash.renders++;
  listTimer = setTimeout(() => S.route.page === 'list' && renderStudyList(), 2000);
}

// ---------------------------------------------------------------- start

/** For benchmarks: whether the last drawn view already had trial `n` finished. */
window.__dashTrial = (n) => !!dash.rendered && dash.rendered.some((t) => t.number === n && t.state === 'COMPLETE');
window.addEventListener('error', (e) => dash.errors.push(String(e.message)));
window.addEventListener('hashchange', () => void route());
// A study URL opens at once; the config (which study a bare URL opens) is only needed without one.
const routedEarly = !!location.hash;
if (routedEarly) void route();
const cfg = await (await fetch('/api/config')).json();
S.config = cfg;
if (!location.hash && (cfg.study ?? cfg.studyName)) location.hash = link(cfg.study ?? cfg.studyName, 'history');
else if (!routedEarly) void route();
