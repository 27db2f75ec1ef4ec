/**
 * PercentilePruner (and the step helpers every step-based pruner shares): stop a trial whose best
 * intermediate value so far is worse than the given percentile of the COMPLETE trials' values at the
 * same step. On a swarm the COMPLETE trials are everyone's, as merged into this peer's replica.
 *
 * Which trials count, as in Optuna 3.1: only COMPLETE trials, both for the `nStartupTrials` count and
 * for the percentile. PRUNED trials are left out on purpose: they were stopped because they were bad,
 * so counting them at early steps would drag the percentile towards bad values and prune less; RUNNING
 * trials are left out because their values at a step may still be missing or move.
 */
import type { FrozenTrial, StudyDirection } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Pruner } from './base.js';

export interface PercentilePrunerOptions {
  /** No pruning until this many trials are COMPLETE (default 5). */
  nStartupTrials?: number;
  /** No pruning before this step of the trial (default 0). */
  nWarmupSteps?: number;
  /** Check only once per this many steps after the warmup (default 1). */
  intervalSteps?: number;
  /** No pruning at a step until this many COMPLETE trials reported a value at that step (default 1). */
  nMinTrials?: number;
}

/** The trial's highest reported step, or null before its first report. */
export function lastStep(trial: FrozenTrial): number | null {
  let last: number | null = null;
  for (const s of trial.intermediateValues.keys()) if (last === null || s > last) last = s;
  return last;
}

/**
 * Whether `step` is the first report at or after the latest pruning point of the interval grid
 * (warmup, warmup + interval, ...). Steps may be reported sparsely, so this compares against the
 * previous reported step rather than asking "is step on the grid".
 */
export function isFirstInIntervalStep(step: number, steps: Iterable<number>, nWarmupSteps: number, intervalSteps: number): boolean {
  const nearestPruningStep = Math.floor((step - nWarmupSteps) / intervalSteps) * intervalSteps + nWarmupSteps;
  let previous = -1;
  for (const s of steps) if (s !== step && s > previous) previous = s;
  return previous < nearestPruningStep;
}

/** Validates an integer option; the message names the pruner, the option and the valid range. */
export function checkIntOption(pruner: string, option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new RangeError(`${pruner}: ${option} must be an integer >= ${min}, got ${describe(value)}`);
  }
  return value;
}

/**
 * Checks that options are an object with only known keys, so a misspelt option (`nStartupTrial`) is
 * an error instead of a silently ignored default.
 */
export function checkOptions(pruner: string, opts: unknown, known: readonly string[]): void {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new TypeError(`${pruner}: options must be an object, got ${describe(opts)}`);
  }
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) throw new TypeError(`${pruner}: unknown option "${key}"; valid options are ${known.join(', ')}`);
  }
}

export function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** Best of the reported values ignoring NaN (NaN when every value is NaN), like numpy's nanmin/nanmax. */
export function bestIgnoringNaN(values: Iterable<number>, direction: StudyDirection): number {
  let best = NaN;
  for (const v of values) {
    if (Number.isNaN(v)) continue;
    if (Number.isNaN(best) || (direction === 'maximize' ? v > best : v < best)) best = v;
  }
  return best;
}

/** numpy's nanpercentile with linear interpolation: NaN values are ignored; NaN if nothing is left. */
function nanPercentile(values: number[], q: number): number {
  const xs = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const pos = (q / 100) * (xs.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = xs[lo]!;
  const b = xs[hi]!;
  // Guards inf - inf = NaN when both neighbours are the same infinity.
  if (lo === hi || a === b) return a;
  return a + (b - a) * (pos - lo);
}

export class PercentilePruner implements Pruner {
  readonly percentile: number;
  readonly nStartupTrials: number;
  readonly nWarmupSteps: number;
  readonly intervalSteps: number;
  readonly nMinTrials: number;

  constructor(percentile: number, opts: PercentilePrunerOptions = {}, name = 'PercentilePruner') {
    if (typeof percentile !== 'number' || !(percentile >= 0 && percentile <= 100)) {
      throw new RangeError(`${name}: percentile must be a number in [0, 100], got ${describe(percentile)}`);
    }
    checkOptions(name, opts, ['nStartupTrials', 'nWarmupSteps', 'intervalSteps', 'nMinTrials']);
    this.percentile = percentile;
    this.nStartupTrials = checkIntOption(name, 'nStartupTrials', opts.nStartupTrials ?? 5, 0);
    this.nWarmupSteps = checkIntOption(name, 'nWarmupSteps', opts.nWarmupSteps ?? 0, 0);
    this.intervalSteps = checkIntOption(name, 'intervalSteps', opts.intervalSteps ?? 1, 1);
    this.nMinTrials = checkIntOption(name, 'nMinTrials', opts.nMinTrials ?? 1, 1);
  }

  prune(study: Study, trial: FrozenTrial): boolean {
    const complete = study.getTrials({ states: ['COMPLETE'] });
    if (complete.length === 0 || complete.length < this.nStartupTrials) return false;
    const step = lastStep(trial);
    if (step === null || step < this.nWarmupSteps) return false;
    if (!isFirstInIntervalStep(step, trial.intermediateValues.keys(), this.nWarmupSteps, this.intervalSteps)) return false;

    const direction = study.direction;
    const best = bestIgnoringNaN(trial.intermediateValues.values(), direction);
    // A trial that only ever reported NaN cannot be getting anywhere (Optuna prunes it too).
    if (Number.isNaN(best)) return true;

    const atStep: number[] = [];
    for (const t of complete) {
      const v = t.intermediateValues.get(step);
      if (v !== undefined) atStep.push(v);
    }
    if (atStep.length < this.nMinTrials) return false;
    // "Worse than the p-th percentile" mirrors for maximization: the p-th best is the (100-p)-th value.
    const threshold = nanPercentile(atStep, direction === 'maximize' ? 100 - this.percentile : this.percentile);
    if (Number.isNaN(threshold)) return false;
    return direction === 'maximize' ? best < threshold : best > threshold;
  }
}
