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
import { checkOptions, rules } from '../errors.js';
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

/** Best of the reported values ignoring NaN (NaN when every value is NaN), like numpy's nanmin/nanmax. */
export function bestIgnoringNaN(values: Iterable<number>, direction: StudyDirection): number {
  let best = NaN;
  for (const v of values) {
    if (Number.isNaN(v)) continue;
    if (Number.isNaN(best) || (direction === 'maximize' ? v > best : v < best)) best = v;
  }
  return best;
}

/**
 * numpy's `nanpercentile` (default 'linear' method, numpy 1.24 as Debian's Optuna 3.1 uses), operation
 * for operation so ties and infinities come out bit-identical: NaN values are dropped (NaN if nothing is
 * left); the virtual index is (n - 1) * (q / 100); at or past the last index both neighbours are the
 * last value and the weight is index + 1; the lerp is a + (b - a) * g for g < 0.5 and
 * b - (b - a) * (1 - g) otherwise (so inf - inf gives NaN exactly where numpy does).
 */
export function nanPercentile(values: readonly number[], q: number): number {
  const xs = values.filter((v) => !Number.isNaN(v)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const n = xs.length;
  if (n === 0) return NaN;
  const virtual = (n - 1) * (q / 100);
  let previous = Math.floor(virtual);
  let a: number;
  let b: number;
  if (virtual >= n - 1) {
    previous = -1; // numpy's index for "the last value", which also enters the weight below
    a = b = xs[n - 1]!;
  } else {
    a = xs[previous]!;
    b = xs[previous + 1]!;
  }
  const g = virtual - previous;
  const diff = b - a;
  return g >= 0.5 ? b - diff * (1 - g) : a + diff * g;
}

const PERCENTILE_RULES = {
  nStartupTrials: rules.integer(0),
  nWarmupSteps: rules.integer(0),
  intervalSteps: rules.integer(1),
  nMinTrials: rules.integer(1),
};

export class PercentilePruner implements Pruner {
  readonly percentile: number;
  readonly nStartupTrials: number;
  readonly nWarmupSteps: number;
  readonly intervalSteps: number;
  readonly nMinTrials: number;

  constructor(percentile: number, opts: PercentilePrunerOptions = {}, name = 'PercentilePruner') {
    checkOptions(name, { percentile }, { percentile: rules.required(rules.finite(0, 100)) });
    checkOptions(name, opts, PERCENTILE_RULES, { rejectUnknown: true });
    this.percentile = percentile;
    this.nStartupTrials = opts.nStartupTrials ?? 5;
    this.nWarmupSteps = opts.nWarmupSteps ?? 0;
    this.intervalSteps = opts.intervalSteps ?? 1;
    this.nMinTrials = opts.nMinTrials ?? 1;
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
