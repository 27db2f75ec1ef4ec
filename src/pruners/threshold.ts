/**
 * ThresholdPruner: stop a trial as soon as its latest intermediate value leaves [lower, upper] (or is
 * NaN). It needs no other trial, so it behaves the same on one process and on a swarm; useful to
 * catch diverging runs early.
 */
import type { FrozenTrial } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Pruner } from './base.js';
import { checkIntOption, checkOptions, describe, isFirstInIntervalStep, lastStep } from './percentile.js';

export interface ThresholdPrunerOptions {
  /** Values below this are pruned. */
  lower?: number;
  /** Values above this are pruned. */
  upper?: number;
  /** No pruning before this step (default 0). */
  nWarmupSteps?: number;
  /** Check only once per this many steps after the warmup (default 1). */
  intervalSteps?: number;
}

function checkBound(option: string, value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`ThresholdPruner: ${option} must be a number (Infinity allowed, NaN not), got ${describe(value)}`);
  }
  return value;
}

export class ThresholdPruner implements Pruner {
  readonly lower: number;
  readonly upper: number;
  readonly nWarmupSteps: number;
  readonly intervalSteps: number;

  constructor(opts: ThresholdPrunerOptions) {
    if (opts === null || typeof opts !== 'object') {
      throw new TypeError('ThresholdPruner: pass an options object with at least one of lower or upper, e.g. { upper: 1.0 }');
    }
    checkOptions('ThresholdPruner', opts, ['lower', 'upper', 'nWarmupSteps', 'intervalSteps']);
    const lower = checkBound('lower', opts.lower);
    const upper = checkBound('upper', opts.upper);
    if (lower === undefined && upper === undefined) {
      throw new TypeError('ThresholdPruner: give at least one of lower or upper (both are missing)');
    }
    this.lower = lower ?? -Infinity;
    this.upper = upper ?? Infinity;
    if (this.lower > this.upper) {
      throw new RangeError(`ThresholdPruner: lower (${this.lower}) must be <= upper (${this.upper})`);
    }
    this.nWarmupSteps = checkIntOption('ThresholdPruner', 'nWarmupSteps', opts.nWarmupSteps ?? 0, 0);
    this.intervalSteps = checkIntOption('ThresholdPruner', 'intervalSteps', opts.intervalSteps ?? 1, 1);
  }

  prune(_study: Study, trial: FrozenTrial): boolean {
    const step = lastStep(trial);
    if (step === null || step < this.nWarmupSteps) return false;
    if (!isFirstInIntervalStep(step, trial.intermediateValues.keys(), this.nWarmupSteps, this.intervalSteps)) return false;
    const latest = trial.intermediateValues.get(step)!;
    return Number.isNaN(latest) || latest < this.lower || latest > this.upper;
  }
}
