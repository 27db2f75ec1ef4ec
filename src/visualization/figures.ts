/**
 * Optuna's plots as Plotly figure objects (`{ data, layout }`), computed from a `PlotStudy`. The
 * dashboard renders these same objects in the page; `writeHtml` writes one to a self-contained file.
 *
 * Semantics follow optuna.visualization (which trials count, what a line means); the look is
 * Plotly's default. Where Optuna's figure grows too fast for big studies, these bin or merge traces:
 * contour is a binned mean on a grid (Optuna's z-matrix is one cell per unique value, so the
 * dashboard switches it off past 100 trials), intermediate values past 50 curves share one trace,
 * and scatters switch to WebGL (`scattergl`) past 1,000 points.
 */
import type { Distribution } from '../distributions.js';
import type { StudyDirection } from '../storage/storage.js';
import { PlotError, paramCoordinate, paramsOf, isLogParam, targetOf, type PlotStudy, type PlotTrial, type Target } from './data.js';
import { hypervolume } from '../hypervolume.js';
import { nonDominatedIndices } from './pareto.js';

export interface Figure {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
  /** Trial numbers behind the rows of data[0] (parallel coordinate brushing maps lines back to trials). */
  trialNumbers?: number[];
  /**
   * Parallel coordinate: every axis's coordinate for every trial in `trialNumbers`, also when the
   * drawn lines are a sample, so a brush selects among all trials.
   */
  axes?: { label: string; values: (number | null)[] }[];
}

export interface TargetOptions {
  /** Optuna's `target`: the number to plot for a trial (default: its value, or `values[objective]`). */
  target?: Target;
  /** Which objective of a multi-objective study (default 0; required there unless `target` is given). */
  objective?: number;
  /** Axis title for the target (default "Objective Value"). */
  targetName?: string;
}

const WEBGL_ABOVE = 1000;
const scatterType = (n: number): string => (n > WEBGL_ABOVE ? 'scattergl' : 'scatter');
const label = (opts: TargetOptions | undefined): string => opts?.targetName ?? 'Objective Value';

function directionOf(study: PlotStudy, opts: TargetOptions | undefined): StudyDirection {
  return opts?.target ? 'minimize' : (study.directions[opts?.objective ?? 0] ?? 'minimize');
}

function complete(study: PlotStudy, target: Target): { t: PlotTrial; y: number }[] {
  const out: { t: PlotTrial; y: number }[] = [];
  for (const t of study.trials) {
    if (t.state !== 'COMPLETE') continue;
    const y = target(t);
    if (y !== null && Number.isFinite(y)) out.push({ t, y });
  }
  return out;
}

function emptyFigure(title: string, why: string): Figure {
  return {
    data: [],
    layout: { title: { text: title }, annotations: [{ text: why, showarrow: false, xref: 'paper', yref: 'paper', x: 0.5, y: 0.5 }], xaxis: { visible: false }, yaxis: { visible: false } },
  };
}

// ---------------------------------------------------------------- optimization history

export interface HistoryOptions extends TargetOptions {
  logY?: boolean;
  /**
   * Most markers drawn (default 20,000): past it, every k-th trial plus every trial that improved the
   * best value (the best line stays exact), so 100,000 trials stay interactive.
   */
  maxPoints?: number;
  /** Also plot PRUNED trials (at their last intermediate value); the best line stays COMPLETE-only. */
  includePruned?: boolean;
  xAxis?: 'number' | 'datetime_start' | 'datetime_complete';
}

export function plotOptimizationHistory(study: PlotStudy, opts: HistoryOptions = {}): Figure {
  const target = targetOf(study, opts, 'plotOptimizationHistory');
  const dir = directionOf(study, opts);
  const xAxis = opts.xAxis ?? 'number';
  const pts: { t: PlotTrial; y: number; x: number }[] = [];
  for (const t of study.trials) {
    if (!(t.state === 'COMPLETE' || (opts.includePruned && t.state === 'PRUNED'))) continue;
    const y = target(t);
    if (y === null || !Number.isFinite(y)) continue;
    const date = xAxis === 'datetime_start' ? t.datetimeStart : xAxis === 'datetime_complete' ? t.datetimeComplete : null;
    const x = xAxis === 'number' ? t.number : date ? date.getTime() : NaN;
    if (Number.isFinite(x)) pts.push({ t, y, x });
  }
  if (pts.length === 0) return emptyFigure('Optimization History Plot', 'No finished trials yet');
  pts.sort((a, b) => a.x - b.x);
  const asX = (x: number): number | string => (xAxis === 'number' ? x : new Date(x).toISOString());
  // Best-so-far, kept only where it changes (drawn as steps, so nothing is lost).
  const bx: (number | string)[] = [];
  const by: number[] = [];
  const improved = new Set<PlotTrial>();
  let best = dir === 'minimize' ? Infinity : -Infinity;
  for (const p of pts) {
    if (p.t.state !== 'COMPLETE') continue;
    const b = dir === 'minimize' ? Math.min(best, p.y) : Math.max(best, p.y);
    if (b !== best || bx.length === 0) {
      improved.add(p.t);
      bx.push(asX(p.x));
      by.push(b);
    }
    best = b;
  }
  const lastComplete = [...pts].reverse().find((p) => p.t.state === 'COMPLETE');
  if (lastComplete && bx[bx.length - 1] !== asX(lastComplete.x)) {
    bx.push(asX(lastComplete.x));
    by.push(best);
  }
  const maxPoints = opts.maxPoints ?? 20_000;
  const stride = Math.ceil(pts.length / maxPoints);
  const shown = stride > 1 ? pts.filter((p, i) => i % stride === 0 || improved.has(p.t)) : pts;
  const type = scatterType(shown.length);
  const data: Record<string, unknown>[] = [];
  for (const state of opts.includePruned ? (['COMPLETE', 'PRUNED'] as const) : (['COMPLETE'] as const)) {
    const sel = shown.filter((p) => p.t.state === state);
    if (!sel.length) continue;
    data.push({
      type,
      mode: 'markers',
      name: state === 'COMPLETE' ? label(opts) : 'Pruned',
      x: sel.map((p) => asX(p.x)),
      y: sel.map((p) => p.y),
      text: sel.map((p) => `Trial ${p.t.number}`),
      customdata: sel.map((p) => p.t.number),
      marker: { size: 6, color: state === 'COMPLETE' ? '#1f77b4' : '#bbbbbb' },
    });
  }
  // Few points (one per improvement): SVG on top of the markers.
  data.push({ type: 'scatter', mode: 'lines', name: 'Best Value', x: bx, y: by, line: { color: '#d62728', shape: 'hv' } });
  return {
    data,
    layout: {
      title: { text: stride > 1 ? `Optimization History Plot (every ${stride}th of ${pts.length} trials and every improvement)` : 'Optimization History Plot' },
      xaxis: { title: { text: xAxis === 'number' ? 'Trial' : xAxis === 'datetime_start' ? 'Datetime start' : 'Datetime complete' }, type: xAxis === 'number' ? 'linear' : 'date' },
      yaxis: { title: { text: label(opts) }, type: opts.logY ? 'log' : 'linear' },
      uirevision: 'history',
    },
  };
}

// ---------------------------------------------------------------- intermediate values

export function plotIntermediateValues(study: PlotStudy, opts: { maxSeparateTraces?: number } = {}): Figure {
  const withIv = study.trials.filter((t) => t.intermediateValues.size > 0);
  if (withIv.length === 0) return emptyFigure('Intermediate Values Plot', 'No trial reported intermediate values');
  const layout = { title: { text: 'Intermediate Values Plot' }, xaxis: { title: { text: 'Step' } }, yaxis: { title: { text: 'Intermediate Value' } }, uirevision: 'iv', showlegend: withIv.length <= 20 };
  const sortedSteps = (t: PlotTrial): [number, number][] => [...t.intermediateValues].sort((a, b) => a[0] - b[0]);
  if (withIv.length <= (opts.maxSeparateTraces ?? 50)) {
    return {
      data: withIv.map((t) => {
        const s = sortedSteps(t);
        return { type: 'scatter', mode: 'lines+markers', name: `Trial${t.number}`, x: s.map((p) => p[0]), y: s.map((p) => p[1]), marker: { size: 4 }, opacity: t.state === 'PRUNED' ? 0.5 : 1 };
      }),
      layout,
    };
  }
  // Many curves: one trace per state, curves separated by nulls (hundreds of traces make Plotly crawl).
  const data: Record<string, unknown>[] = [];
  for (const [state, color] of [['COMPLETE', 'rgba(31,119,180,0.5)'], ['PRUNED', 'rgba(150,150,150,0.4)'], ['RUNNING', 'rgba(44,160,44,0.8)'], ['FAIL', 'rgba(214,39,40,0.5)']] as const) {
    const x: (number | null)[] = [];
    const y: (number | null)[] = [];
    for (const t of withIv) {
      if (t.state !== state) continue;
      for (const [s, v] of sortedSteps(t)) {
        x.push(s);
        y.push(v);
      }
      x.push(null);
      y.push(null);
    }
    if (x.length) data.push({ type: scatterType(x.length), mode: 'lines', name: state, x, y, line: { color, width: 1 }, connectgaps: false });
  }
  return { data, layout: { ...layout, showlegend: true } };
}

// ---------------------------------------------------------------- param importances

/** Horizontal bars, largest on top (Optuna's layout); `importances` as returned by getParamImportances. */
export function importanceFigure(importances: Readonly<Record<string, number>>, opts: { title?: string } = {}): Figure {
  const entries = Object.entries(importances).sort((a, b) => a[1] - b[1]);
  if (!entries.length) return emptyFigure('Hyperparameter Importances', 'Needs at least two COMPLETE trials with params');
  return {
    data: [
      {
        type: 'bar',
        orientation: 'h',
        x: entries.map((e) => e[1]),
        y: entries.map((e) => e[0]),
        text: entries.map((e) => (e[1] < 0.01 ? '<0.01' : e[1].toFixed(2))),
        textposition: 'outside',
        marker: { color: '#1f77b4' },
        hovertemplate: '%{y}: %{x:.4f}<extra></extra>',
      },
    ],
    layout: { title: { text: opts.title ?? 'Hyperparameter Importances' }, xaxis: { title: { text: 'Importance' } }, yaxis: { automargin: true }, margin: { l: 120 } },
  };
}

// ---------------------------------------------------------------- parallel coordinate

function axisOf(info: { name: string; distribution: Distribution }, values: (number | null)[]): Record<string, unknown> {
  const d = info.distribution;
  if (d.type === 'categorical') {
    return { label: info.name, values, tickvals: d.choices.map((_, i) => i), ticktext: d.choices.map((c) => String(c)), range: [0, Math.max(1, d.choices.length - 1)] };
  }
  if (d.log) {
    const lv = values.map((v) => (v !== null && v > 0 ? Math.log10(v) : null));
    const lo = Math.floor(Math.log10(d.low));
    const hi = Math.ceil(Math.log10(d.high));
    const ticks: number[] = [];
    for (let k = lo; k <= hi; k++) ticks.push(k);
    return { label: info.name, values: lv, tickvals: ticks, ticktext: ticks.map((k) => `1e${k}`), range: [Math.log10(d.low), Math.log10(d.high)] };
  }
  return { label: info.name, values, range: [d.low, d.high] };
}

export function plotParallelCoordinate(study: PlotStudy, opts: TargetOptions & { params?: string[]; /** Lines drawn at most (default 5,000; a stride sample past it). */ maxLines?: number } = {}): Figure {
  const target = targetOf(study, opts, 'plotParallelCoordinate');
  const done = complete(study, target);
  const all = paramsOf(done.map((p) => p.t));
  // Default axes: the params every COMPLETE trial has (a conditional param would drop every trial
  // without it); asked-for params are shown and, as in Optuna, trials without one are left out.
  const params = opts.params ? all.filter((p) => opts.params!.includes(p.name)) : all.filter((p) => done.every((r) => p.name in r.t.params));
  const rows = done.filter((p) => params.every((q) => q.name in p.t.params));
  if (rows.length === 0 || params.length === 0) return emptyFigure('Parallel Coordinate Plot', 'No COMPLETE trials with these params');
  const ys = rows.map((r) => r.y);
  let lo = Infinity;
  let hi = -Infinity;
  for (const y of ys) {
    lo = Math.min(lo, y);
    hi = Math.max(hi, y);
  }
  const dims = [{ label: label(opts), values: ys as (number | null)[], range: [lo, hi] } as Record<string, unknown>];
  for (const p of params) dims.push(axisOf(p, rows.map((r) => paramCoordinate(p.distribution, r.t.params[p.name]!))));
  const axes = dims.map((d) => ({ label: d['label'] as string, values: d['values'] as (number | null)[] }));
  const stride = Math.ceil(rows.length / (opts.maxLines ?? 5000));
  const drawn = stride > 1 ? dims.map((d) => ({ ...d, values: (d['values'] as unknown[]).filter((_, i) => i % stride === 0) })) : dims;
  // Plotly's named 'Blues' is dark at the low end: the best trials come out darkest.
  const reverse = directionOf(study, opts) === 'maximize';
  return {
    data: [{ type: 'parcoords', dimensions: drawn, line: { color: stride > 1 ? ys.filter((_, i) => i % stride === 0) : ys, colorscale: 'Blues', reversescale: reverse, showscale: true, colorbar: { title: { text: label(opts) } } } }],
    layout: { title: { text: stride > 1 ? `Parallel Coordinate Plot (every ${stride}th of ${rows.length} trials drawn; brushes select among all)` : 'Parallel Coordinate Plot' }, uirevision: 'parcoords', margin: { t: 90, l: 70, r: 40, b: 40 } },
    trialNumbers: rows.map((r) => r.t.number),
    axes,
  };
}

// ---------------------------------------------------------------- slice

export function plotSlice(study: PlotStudy, opts: TargetOptions & { params?: string[] } = {}): Figure {
  const target = targetOf(study, opts, 'plotSlice');
  const done = complete(study, target);
  const all = paramsOf(done.map((p) => p.t));
  const params = opts.params ? all.filter((p) => opts.params!.includes(p.name)) : all;
  if (!done.length || !params.length) return emptyFigure('Slice Plot', 'No COMPLETE trials yet');
  const cols = Math.min(params.length, 4);
  const rowsN = Math.ceil(params.length / cols);
  const data: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = { title: { text: 'Slice Plot' }, showlegend: false, uirevision: 'slice', grid: { rows: rowsN, columns: cols, pattern: 'independent' }, height: Math.max(400, 300 * rowsN) };
  params.forEach((p, i) => {
    const sel = done.filter((r) => p.name in r.t.params);
    const ax = i === 0 ? '' : String(i + 1);
    const d = p.distribution;
    data.push({
      type: scatterType(sel.length),
      mode: 'markers',
      xaxis: `x${ax}`,
      yaxis: `y${ax}`,
      x: sel.map((r) => (d.type === 'categorical' ? String(r.t.params[p.name]) : r.t.params[p.name])),
      y: sel.map((r) => r.y),
      text: sel.map((r) => `Trial ${r.t.number}`),
      customdata: sel.map((r) => r.t.number),
      marker: { size: 5, color: sel.map((r) => r.t.number), colorscale: 'Blues', showscale: i === 0, colorbar: i === 0 ? { title: { text: 'Trial' } } : undefined, line: { width: 0.5, color: 'Grey' } },
    });
    layout[`xaxis${ax}`] = { title: { text: p.name }, type: d.type === 'categorical' ? 'category' : isLogParam(d) ? 'log' : 'linear' };
    layout[`yaxis${ax}`] = { title: { text: i % cols === 0 ? label(opts) : '' } };
  });
  return { data, layout };
}

// ---------------------------------------------------------------- contour (binned) and rank

interface Binning {
  centers: number[];
  bin(v: number): number;
  axis: Record<string, unknown>;
}

function binning(name: string, d: Distribution, bins: number): Binning {
  if (d.type === 'categorical') {
    return { centers: d.choices.map((_, i) => i), bin: (v) => v, axis: { title: { text: name }, tickvals: d.choices.map((_, i) => i), ticktext: d.choices.map(String) } };
  }
  if (d.type === 'int' && (d.high - d.low) / d.step + 1 <= bins) bins = Math.round((d.high - d.low) / d.step) + 1;
  const log = d.log && d.low > 0;
  const lo = log ? Math.log10(d.low) : d.low;
  const hi = log ? Math.log10(d.high) : d.high;
  const w = (hi - lo) / bins || 1;
  const centers = Array.from({ length: bins }, (_, i) => lo + (i + 0.5) * w);
  return {
    centers: log ? centers.map((c) => 10 ** c) : centers,
    bin: (v) => Math.min(bins - 1, Math.max(0, Math.floor(((log ? Math.log10(v) : v) - lo) / w))),
    axis: { title: { text: name }, type: log ? 'log' : 'linear' },
  };
}

function pairParams(study: PlotStudy, done: { t: PlotTrial }[], params: string[] | undefined, what: string) {
  const all = paramsOf(done.map((p) => p.t));
  const chosen = params ? params.map((n) => all.find((p) => p.name === n)).filter((p) => p !== undefined) : all.slice(0, 2);
  if (params && chosen.length !== params.length) throw new PlotError(`${what}: unknown param in ${JSON.stringify(params)}; the study has ${all.map((p) => p.name).join(', ')}`);
  return chosen;
}

/** Contour of the mean target per cell of a bins x bins grid over two params, with the trials on top. */
export function plotContour(study: PlotStudy, opts: TargetOptions & { params?: [string, string]; bins?: number } = {}): Figure {
  const target = targetOf(study, opts, 'plotContour');
  const done = complete(study, target);
  const [px, py] = pairParams(study, done, opts.params, 'plotContour');
  if (!px || !py) return emptyFigure('Contour Plot', 'Needs two params and COMPLETE trials');
  const bx = binning(px.name, px.distribution, opts.bins ?? 30);
  const by = binning(py.name, py.distribution, opts.bins ?? 30);
  const sum = by.centers.map(() => bx.centers.map(() => 0));
  const cnt = by.centers.map(() => bx.centers.map(() => 0));
  const xs: number[] = [];
  const ys: number[] = [];
  const nums: number[] = [];
  for (const r of done) {
    const vx = paramCoordinate(px.distribution, r.t.params[px.name] ?? null);
    const vy = paramCoordinate(py.distribution, r.t.params[py.name] ?? null);
    if (vx === null || vy === null || !(px.name in r.t.params) || !(py.name in r.t.params)) continue;
    const i = bx.bin(vx);
    const j = by.bin(vy);
    sum[j]![i]! += r.y;
    cnt[j]![i]!++;
    xs.push(vx);
    ys.push(vy);
    nums.push(r.t.number);
  }
  if (!xs.length) return emptyFigure('Contour Plot', `No COMPLETE trial has both ${px.name} and ${py.name}`);
  const z = sum.map((row, j) => row.map((s, i) => (cnt[j]![i]! ? s / cnt[j]![i]! : null)));
  return {
    data: [
      { type: 'contour', x: bx.centers, y: by.centers, z, connectgaps: true, line: { smoothing: 1.3 }, colorscale: 'Blues', reversescale: directionOf(study, opts) === 'maximize', colorbar: { title: { text: label(opts) } }, hoverinfo: 'none' },
      { type: scatterType(xs.length), mode: 'markers', x: xs, y: ys, customdata: nums, text: nums.map((n) => `Trial ${n}`), marker: { color: 'black', size: 4, line: { color: 'white', width: 0.5 } }, showlegend: false },
    ],
    layout: { title: { text: 'Contour Plot' }, xaxis: bx.axis, yaxis: by.axis, uirevision: 'contour' },
  };
}

/** Optuna's plot_rank for one pair: trials at (param x, param y) coloured by the rank of their target. */
export function plotRank(study: PlotStudy, opts: TargetOptions & { params?: [string, string] } = {}): Figure {
  const target = targetOf(study, opts, 'plotRank');
  const done = complete(study, target);
  const [px, py] = pairParams(study, done, opts.params, 'plotRank');
  if (!px || !py) return emptyFigure('Rank Plot', 'Needs two params and COMPLETE trials');
  const rows = done.filter((r) => px.name in r.t.params && py.name in r.t.params);
  if (!rows.length) return emptyFigure('Rank Plot', `No COMPLETE trial has both ${px.name} and ${py.name}`);
  const order = rows.map((_, i) => i).sort((a, b) => rows[a]!.y - rows[b]!.y);
  const rank = new Array<number>(rows.length);
  order.forEach((idx, k) => (rank[idx] = rows.length > 1 ? k / (rows.length - 1) : 0.5));
  const flip = directionOf(study, opts) === 'maximize';
  const coord = (p: typeof px, r: (typeof rows)[0]) => (p.distribution.type === 'categorical' ? String(r.t.params[p.name]) : r.t.params[p.name]);
  return {
    data: [
      {
        type: scatterType(rows.length),
        mode: 'markers',
        x: rows.map((r) => coord(px, r)),
        y: rows.map((r) => coord(py, r)),
        customdata: rows.map((r) => r.t.number),
        text: rows.map((r) => `Trial ${r.t.number}: ${r.y}`),
        marker: { size: 7, color: rank.map((q) => (flip ? 1 - q : q)), colorscale: 'RdYlBu', reversescale: true, showscale: true, colorbar: { title: { text: 'Rank (best=0)' } }, line: { width: 0.5, color: 'Grey' } },
      },
    ],
    layout: {
      title: { text: 'Rank Plot' },
      xaxis: { title: { text: px.name }, type: px.distribution.type === 'categorical' ? 'category' : isLogParam(px.distribution) ? 'log' : 'linear' },
      yaxis: { title: { text: py.name }, type: py.distribution.type === 'categorical' ? 'category' : isLogParam(py.distribution) ? 'log' : 'linear' },
      uirevision: 'rank',
    },
  };
}

// ---------------------------------------------------------------- EDF

export function plotEdf(study: PlotStudy, opts: TargetOptions = {}): Figure {
  const target = targetOf(study, opts, 'plotEdf');
  const ys = complete(study, target)
    .map((r) => r.y)
    .sort((a, b) => a - b);
  if (!ys.length) return emptyFigure('Empirical Distribution Function Plot', 'No COMPLETE trials yet');
  return {
    data: [{ type: scatterType(ys.length), mode: 'lines', name: 'EDF', x: ys, y: ys.map((_, i) => (i + 1) / ys.length), line: { shape: 'hv' } }],
    layout: { title: { text: 'Empirical Distribution Function Plot' }, xaxis: { title: { text: label(opts) } }, yaxis: { title: { text: 'Cumulative Probability' }, range: [0, 1.02] }, uirevision: 'edf' },
  };
}

// ---------------------------------------------------------------- timeline, one lane per peer

export const STATE_COLORS: Record<string, string> = { COMPLETE: '#1f77b4', PRUNED: '#ff7f0e', FAIL: '#d62728', RUNNING: '#2ca02c', WAITING: '#7f7f7f' };

/** Short, readable peer label (peer ids are 52 characters). */
export function peerLabel(peerId: string): string {
  return peerId.length > 12 ? `…${peerId.slice(-8)}` : peerId;
}

/** Gantt bars from start to complete (RUNNING: to `now`), one lane per owning peer, coloured by state. */
export function plotTimeline(study: PlotStudy, opts: { now?: number; nRecentTrials?: number } = {}): Figure {
  const now = opts.now ?? Date.now();
  let trials = study.trials.filter((t) => t.datetimeStart !== null);
  const total = trials.length;
  if (opts.nRecentTrials !== undefined) trials = trials.slice(-opts.nRecentTrials);
  if (!trials.length) return emptyFigure('Timeline Plot', 'No started trials yet');
  const lanes = [...new Set(trials.map((t) => t.owner))].sort();
  const data: Record<string, unknown>[] = [];
  for (const state of ['COMPLETE', 'PRUNED', 'FAIL', 'RUNNING', 'WAITING']) {
    const sel = trials.filter((t) => t.state === state);
    if (!sel.length) continue;
    data.push({
      type: 'bar',
      orientation: 'h',
      name: state,
      base: sel.map((t) => new Date(t.datetimeStart!.getTime()).toISOString()),
      x: sel.map((t) => Math.max(1, (t.datetimeComplete?.getTime() ?? now) - t.datetimeStart!.getTime())),
      y: sel.map((t) => peerLabel(t.owner)),
      customdata: sel.map((t) => t.number),
      text: sel.map((t) => `Trial ${t.number}`),
      textposition: 'none',
      hovertemplate: '%{text}<br>%{base} +%{x} ms<extra>' + state + '</extra>',
      marker: { color: STATE_COLORS[state] },
    });
  }
  return {
    data,
    layout: {
      title: { text: trials.length < total ? `Timeline Plot (the ${trials.length} most recent of ${total} trials)` : 'Timeline Plot' },
      barmode: 'overlay',
      xaxis: { type: 'date', title: { text: 'Datetime' } },
      yaxis: { title: { text: 'Peer' }, type: 'category', categoryarray: lanes.map(peerLabel), automargin: true },
      uirevision: 'timeline',
      height: Math.max(300, 80 + 40 * lanes.length),
    },
  };
}

// ---------------------------------------------------------------- Pareto front and hypervolume

function minimizeForm(values: readonly number[], directions: readonly StudyDirection[]): number[] {
  return values.map((v, i) => (directions[i] === 'maximize' ? -v : v));
}

export function plotParetoFront(study: PlotStudy, opts: { targetNames?: string[]; axisOrder?: number[]; includeDominatedTrials?: boolean } = {}): Figure {
  const m = study.directions.length;
  if (m < 2) throw new PlotError('plotParetoFront needs a multi-objective study (2 or 3 directions)');
  const axes = opts.axisOrder ?? (m >= 3 ? [0, 1, 2] : [0, 1]);
  if (axes.length !== 2 && axes.length !== 3) throw new PlotError(`plotParetoFront draws 2 or 3 objectives; axisOrder ${JSON.stringify(axes)}`);
  const done = study.trials.filter((t) => t.state === 'COMPLETE' && t.values && t.values.length === m && t.values.every(Number.isFinite));
  if (!done.length) return emptyFigure('Pareto-front Plot', 'No COMPLETE trials yet');
  const front = new Set(nonDominatedIndices(done.map((t) => minimizeForm(t.values!, study.directions))));
  const names = opts.targetNames ?? study.directions.map((_, i) => `Objective ${i}`);
  const three = axes.length === 3;
  const trace = (sel: PlotTrial[], name: string, color: string): Record<string, unknown> => ({
    type: three ? 'scatter3d' : scatterType(sel.length),
    mode: 'markers',
    name,
    x: sel.map((t) => t.values![axes[0]!]),
    y: sel.map((t) => t.values![axes[1]!]),
    ...(three ? { z: sel.map((t) => t.values![axes[2]!]) } : {}),
    customdata: sel.map((t) => t.number),
    text: sel.map((t) => `Trial ${t.number}`),
    marker: { color, size: three ? 3 : 6 },
  });
  const best = done.filter((_, i) => front.has(i));
  const rest = done.filter((_, i) => !front.has(i));
  const data = [trace(best, 'Best Trial', '#d62728')];
  if (opts.includeDominatedTrials !== false && rest.length) data.unshift(trace(rest, 'Trial', '#a6c8e6'));
  const layout: Record<string, unknown> = { title: { text: 'Pareto-front Plot' }, uirevision: 'pareto', ...(three ? { height: 640 } : {}) };
  if (three) layout['scene'] = { xaxis: { title: { text: names[axes[0]!] } }, yaxis: { title: { text: names[axes[1]!] } }, zaxis: { title: { text: names[axes[2]!] } } };
  else Object.assign(layout, { xaxis: { title: { text: names[axes[0]!] } }, yaxis: { title: { text: names[axes[1]!] } } });
  return { data, layout, trialNumbers: best.map((t) => t.number) };
}

/**
 * Hypervolume of the Pareto front of the COMPLETE trials up to each trial number. `referencePoint`
 * in the study's own directions (as Optuna); default: the worst value seen per objective plus 10%
 * of its range, so every front point counts.
 */
export function hypervolumeHistory(study: PlotStudy, referencePoint?: readonly number[]): { numbers: number[]; values: number[]; reference: number[] } {
  const m = study.directions.length;
  const done = study.trials.filter((t) => t.state === 'COMPLETE' && t.values && t.values.length === m && t.values.every(Number.isFinite));
  const pts = done.map((t) => minimizeForm(t.values!, study.directions));
  let ref: number[];
  if (referencePoint) {
    if (referencePoint.length !== m) throw new PlotError(`referencePoint needs ${m} values (one per objective), got ${referencePoint.length}`);
    ref = minimizeForm(referencePoint, study.directions);
  } else {
    ref = Array.from({ length: m }, (_, k) => {
      let lo = Infinity;
      let hi = -Infinity;
      for (const p of pts) {
        lo = Math.min(lo, p[k]!);
        hi = Math.max(hi, p[k]!);
      }
      return pts.length ? hi + 0.1 * (hi - lo || Math.abs(hi) || 1) : 1;
    });
  }
  const numbers: number[] = [];
  const values: number[] = [];
  let front: number[][] = [];
  let hv = 0;
  for (let i = 0; i < done.length; i++) {
    const p = pts[i]!;
    const dominated = front.some((q) => q.every((x, k) => x <= p[k]!));
    if (!dominated) {
      front = front.filter((q) => !(p.every((x, k) => x <= q[k]!) && p.some((x, k) => x < q[k]!)));
      front.push(p);
      hv = hypervolume(front, ref);
    }
    numbers.push(done[i]!.number);
    values.push(hv);
  }
  return { numbers, values, reference: study.directions.map((d, k) => (d === 'maximize' ? -ref[k]! : ref[k]!)) };
}

export function plotHypervolumeHistory(study: PlotStudy, referencePoint?: readonly number[]): Figure {
  if (study.directions.length < 2) throw new PlotError('plotHypervolumeHistory needs a multi-objective study');
  const h = hypervolumeHistory(study, referencePoint);
  if (!h.numbers.length) return emptyFigure('Hypervolume History Plot', 'No COMPLETE trials yet');
  return {
    data: [{ type: scatterType(h.numbers.length), mode: 'lines+markers', name: 'Hypervolume', x: h.numbers, y: h.values, marker: { size: 4 } }],
    layout: { title: { text: 'Hypervolume History Plot' }, xaxis: { title: { text: 'Trial' } }, yaxis: { title: { text: 'Hypervolume' } }, uirevision: 'hv', annotations: [{ text: `reference point ${JSON.stringify(h.reference.map((v) => +v.toPrecision(4)))}`, showarrow: false, xref: 'paper', yref: 'paper', x: 1, y: 1.08, xanchor: 'right' }] },
  };
}
