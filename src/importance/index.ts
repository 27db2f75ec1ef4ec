/**
 * Parameter importances, as Optuna's `optuna.importance`: `getParamImportances(study, { evaluator,
 * params, target, normalize })` returns `{ param: importance }` ordered from most to least important.
 *
 * Evaluators:
 * - FanovaImportanceEvaluator (the default, as Optuna 3.x/4.x): a 64-tree random forest, max depth 64,
 *   fitted on the COMPLETE trials; importance = share of the forest's variance explained by the
 *   param's marginal (fanova.ts).
 * - MeanDecreaseImpurityImportanceEvaluator: the same forest's impurity decrease per param.
 * - PedAnovaImportanceEvaluator: no model; how differently the top trials are spread over a param
 *   than all trials (Pearson divergence of Parzen densities, Watanabe et al. 2023). Cheapest: the
 *   dashboard uses it for big studies.
 *
 * Which trials and params: COMPLETE trials with a finite target that contain every evaluated param;
 * params default to those present with one distribution in every COMPLETE trial (Optuna's
 * intersection search space); a single-valued param gets 0. Columns follow Optuna's search space
 * transform without log or step transforms: a number is one column over [low, high], a categorical
 * is one one-hot column per choice over [0, 1].
 */
import type { Distribution, ParamValue } from '../distributions.js';
import type { PlotStudy, PlotTrial } from '../visualization/data.js';
import { fitForest, type Tree } from './forest.js';
import { fanovaImportances } from './fanova.js';
import { PeertuneError } from '../errors.js';

export interface ImportanceEvaluator {
  readonly name: string;
  /** Raw (unnormalised) importance per param, for trials that all contain every param. */
  evaluate(input: ImportanceInput): Record<string, number>;
}

export interface ImportanceInput {
  params: { name: string; distribution: Distribution }[];
  trials: PlotTrial[];
  /** target per trial, aligned with `trials`; smaller is better (maximize targets are negated). */
  y: Float64Array;
}

export interface ImportanceOptions {
  evaluator?: ImportanceEvaluator;
  params?: string[];
  /** Optuna's target: the number to explain (required for multi-objective studies). */
  target?: (t: PlotTrial) => number | null;
  /** Scale so importances sum to 1 (default true, as Optuna). */
  normalize?: boolean;
}

export class ImportanceError extends PeertuneError {
  override name = 'ImportanceError';
}

function single(d: Distribution): boolean {
  if (d.type === 'categorical') return d.choices.length <= 1;
  return d.low === d.high;
}

function sameDistribution(a: Distribution, b: Distribution): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function getParamImportances(study: PlotStudy, opts: ImportanceOptions = {}): Record<string, number> {
  if (study.directions.length > 1 && !opts.target) {
    throw new ImportanceError('getParamImportances of a multi-objective study needs a target (e.g. { target: (t) => t.values[0] })');
  }
  const evaluator = opts.evaluator ?? new FanovaImportanceEvaluator();
  const target = opts.target ?? ((t: PlotTrial) => (t.values ? t.values[0]! : null));
  const done = study.trials.filter((t) => {
    if (t.state !== 'COMPLETE') return false;
    const v = target(t);
    return v !== null && Number.isFinite(v);
  });
  let params: { name: string; distribution: Distribution }[];
  if (opts.params) {
    params = opts.params.map((name) => {
      const holder = done.find((t) => name in t.distributions);
      if (!holder) throw new ImportanceError(`param "${name}" is in no COMPLETE trial`);
      return { name, distribution: holder.distributions[name]! };
    });
  } else {
    params = [];
    if (done.length) {
      for (const [name, d] of Object.entries(done[0]!.distributions)) {
        if (done.every((t) => t.distributions[name] && sameDistribution(t.distributions[name]!, d))) params.push({ name, distribution: d });
      }
    }
  }
  const trials = done.filter((t) => params.every((p) => p.name in t.params));
  if (trials.length < 2) return {};
  const flip = !opts.target && study.directions[0] === 'maximize' ? -1 : 1;
  const y = Float64Array.from(trials, (t) => flip * target(t)!);
  const active = params.filter((p) => !single(p.distribution));
  const raw = active.length ? evaluator.evaluate({ params: active, trials, y }) : {};
  const out: [string, number][] = params.map((p) => [p.name, Math.max(0, raw[p.name] ?? 0)]);
  const total = out.reduce((s, e) => s + e[1], 0);
  const normalized = opts.normalize !== false && total > 0 ? out.map(([k, v]) => [k, v / total] as [string, number]) : out;
  return Object.fromEntries(normalized.sort((a, b) => b[1] - a[1]));
}

// ---------------------------------------------------------------- forest evaluators

interface Encoded {
  X: Float64Array[];
  bounds: [number, number][];
  groups: number[][];
}

function encode(input: ImportanceInput): Encoded {
  const X: Float64Array[] = [];
  const bounds: [number, number][] = [];
  const groups: number[][] = [];
  const n = input.trials.length;
  for (const p of input.params) {
    const d = p.distribution;
    const g: number[] = [];
    if (d.type === 'categorical') {
      d.choices.forEach((c) => {
        g.push(X.length);
        X.push(Float64Array.from(input.trials, (t) => (choiceEquals(t.params[p.name]!, c) ? 1 : 0)));
        bounds.push([0, 1]);
      });
    } else {
      g.push(X.length);
      X.push(Float64Array.from(input.trials, (t) => Number(t.params[p.name])));
      bounds.push([d.low, d.high]);
    }
    groups.push(g);
  }
  void n;
  return { X, bounds, groups };
}

function choiceEquals(a: ParamValue, b: ParamValue): boolean {
  return a === b || (typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b));
}

export interface ForestEvaluatorOptions {
  nTrees?: number;
  maxDepth?: number;
  seed?: number;
}

abstract class ForestEvaluator implements ImportanceEvaluator {
  abstract readonly name: string;
  protected readonly nTrees: number;
  protected readonly maxDepth: number;
  protected readonly seed: number | undefined;
  constructor(opts: ForestEvaluatorOptions = {}) {
    this.nTrees = opts.nTrees ?? 64;
    this.maxDepth = opts.maxDepth ?? 64;
    this.seed = opts.seed;
    for (const k of ['nTrees', 'maxDepth'] as const) {
      const v = this[k];
      if (!Number.isInteger(v) || v < 1) throw new ImportanceError(`${k} must be a positive integer, got ${String(v)}`);
    }
  }
  evaluate(input: ImportanceInput): Record<string, number> {
    const enc = encode(input);
    const trees = fitForest(enc.X, input.y, { nTrees: this.nTrees, maxDepth: this.maxDepth, seed: this.seed });
    const values = this.score(trees, enc);
    return Object.fromEntries(input.params.map((p, i) => [p.name, values[i]!]));
  }
  protected abstract score(trees: Tree[], enc: Encoded): number[];
}

export class FanovaImportanceEvaluator extends ForestEvaluator {
  readonly name = 'fanova';
  protected score(trees: Tree[], enc: Encoded): number[] {
    return fanovaImportances(trees, enc.bounds, enc.groups);
  }
}

export class MeanDecreaseImpurityImportanceEvaluator extends ForestEvaluator {
  readonly name = 'mdi';
  protected score(trees: Tree[], enc: Encoded): number[] {
    const colOf = new Map<number, number>();
    enc.groups.forEach((g, i) => g.forEach((c) => colOf.set(c, i)));
    const sums = new Array<number>(enc.groups.length).fill(0);
    for (const t of trees) {
      // sklearn normalises each tree's impurity decreases to sum 1 before averaging.
      const per = new Array<number>(enc.groups.length).fill(0);
      let total = 0;
      for (let n = 0; n < t.size; n++) {
        if (t.feature[n]! < 0) continue;
        per[colOf.get(t.feature[n]!)!]! += t.gain[n]!;
        total += t.gain[n]!;
      }
      if (total > 0) per.forEach((v, i) => (sums[i]! += v / total));
    }
    return sums.map((s) => s / trees.length);
  }
}

// ---------------------------------------------------------------- PED-ANOVA

export interface PedAnovaOptions {
  /** Share of trials counted as "top" (default 0.1, at least 2 trials). */
  targetQuantile?: number;
  /** Share of the best trials forming the local region compared against (default 1.0 = all). */
  regionQuantile?: number;
}

const PED_STEPS = 50;

export class PedAnovaImportanceEvaluator implements ImportanceEvaluator {
  readonly name = 'ped-anova';
  private readonly targetQuantile: number;
  private readonly regionQuantile: number;
  constructor(opts: PedAnovaOptions = {}) {
    this.targetQuantile = opts.targetQuantile ?? 0.1;
    this.regionQuantile = opts.regionQuantile ?? 1.0;
    if (!(this.targetQuantile > 0 && this.targetQuantile < this.regionQuantile && this.regionQuantile <= 1)) {
      throw new ImportanceError(`PedAnovaImportanceEvaluator needs 0 < targetQuantile < regionQuantile <= 1, got ${this.targetQuantile} and ${this.regionQuantile}`);
    }
  }
  evaluate(input: ImportanceInput): Record<string, number> {
    const order = input.trials.map((_, i) => i).sort((a, b) => input.y[a]! - input.y[b]!);
    const n = order.length;
    const nTop = Math.max(2, Math.ceil(n * this.targetQuantile));
    const nRegion = Math.max(nTop + 1, Math.ceil(n * this.regionQuantile));
    if (n <= 2) return {};
    const top = order.slice(0, nTop);
    const region = order.slice(0, Math.min(n, nRegion));
    const out: Record<string, number> = {};
    for (const p of input.params) {
      const grid = (t: PlotTrial): number => gridIndex(p.distribution, t.params[p.name]!);
      const size = p.distribution.type === 'categorical' ? p.distribution.choices.length : PED_STEPS;
      const cat = p.distribution.type === 'categorical';
      const pTop = parzen(top.map((i) => grid(input.trials[i]!)), size, cat);
      const pLocal = parzen(region.map((i) => grid(input.trials[i]!)), size, cat);
      let div = 0;
      for (let k = 0; k < size; k++) div += pLocal[k]! * (pTop[k]! / pLocal[k]! - 1) ** 2;
      out[p.name] = div;
    }
    return out;
  }
}

function gridIndex(d: Distribution, v: ParamValue): number {
  if (d.type === 'categorical') return Math.max(0, d.choices.indexOf(v));
  const x = Number(v);
  const log = d.log && d.low > 0;
  const lo = log ? Math.log(d.low) : d.low;
  const hi = log ? Math.log(d.high) : d.high;
  if (hi <= lo) return 0;
  const u = ((log ? Math.log(x) : x) - lo) / (hi - lo);
  return Math.min(PED_STEPS - 1, Math.max(0, Math.round(u * (PED_STEPS - 1))));
}

/** Density on grid points 0..size-1 of a Gaussian KDE (Scott's bandwidth) plus one uniform prior sample. */
function parzen(points: number[], size: number, categorical: boolean): Float64Array {
  const p = new Float64Array(size);
  if (categorical) {
    for (const x of points) p[x]! += 1;
    for (let k = 0; k < size; k++) p[k]! += 1 / size;
  } else {
    const n = points.length;
    const m = points.reduce((s, x) => s + x, 0) / n;
    const sd = Math.sqrt(points.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, n - 1));
    const bw = Math.max(0.5, 1.059 * (sd || 1) * n ** -0.2);
    for (const x of points) {
      let z = 0;
      const row = new Float64Array(size);
      for (let k = 0; k < size; k++) {
        row[k] = Math.exp(-0.5 * ((k - x) / bw) ** 2);
        z += row[k]!;
      }
      for (let k = 0; k < size; k++) p[k]! += row[k]! / z;
    }
    for (let k = 0; k < size; k++) p[k]! += 1 / size;
  }
  let total = 0;
  for (let k = 0; k < size; k++) total += p[k]!;
  for (let k = 0; k < size; k++) p[k] = p[k]! / total + 1e-12;
  return p;
}
