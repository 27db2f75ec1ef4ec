/**
 * ThresholdPruner: stop a trial as soon as its latest intermediate value leaves [lower, upper] (or is
 * NaN). It needs no other trial, so it behaves the same on one process and on a swarm; useful to
 * catch diverging runs early.
 */
import type { FrozenTrial } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Pruner } from './base.js';
import { OptionError, checkOptions, rules } from '../errors.js';
import { isFirstInIntervalStep, lastStep } from './percentile.js';

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

const BOUND = { valid: 'a number (Infinity allowed, NaN not)', test: (v: unknown) => v === null || (typeof v === 'number' && !Number.isNaN(v)) };

export class ThresholdPruner implements Pruner {
  readonly lower: number;
  readonly upper: number;
  readonly nWarmupSteps: number;
  readonly intervalSteps: number;

  constructor(opts: ThresholdPrunerOptions) {
    if (opts === null || typeof opts !== 'object') {
      throw new OptionError('ThresholdPruner: pass an options object with at least one of lower or upper, e.g. { upper: 1.0 }', 'options', opts);
    }
    checkOptions(
      'ThresholdPruner',
      opts,
      { lower: BOUND, upper: BOUND, nWarmupSteps: rules.integer(0), intervalSteps: rules.integer(1) },
      { rejectUnknown: true },
    );
    if ((opts.lower ?? null) === null && (opts.upper ?? null) === null) {
      throw new OptionError('ThresholdPruner: give at least one of lower or upper (both are missing)', 'lower', undefined);
    }
    this.lower = opts.lower ?? -Infinity;
    this.upper = opts.upper ?? Infinity;
    if (this.lower > this.upper) {
      throw new OptionError(`ThresholdPruner: lower (${this.lower}) must be <= upper (${this.upper})`, 'lower', this.lower);
    }
    this.nWarmupSteps = opts.nWarmupSteps ?? 0;
    this.intervalSteps = opts.intervalSteps ?? 1;
  }

  prune(_study: Study, trial: FrozenTrial): boolean {
    const step = lastStep(trial);
    if (step === null || step < this.nWarmupSteps) return false;
    if (!isFirstInIntervalStep(step, trial.intermediateValues.keys(), this.nWarmupSteps, this.intervalSteps)) return false;
    const latest = trial.intermediateValues.get(step)!;
    return Number.isNaN(latest) || latest < this.lower || latest > this.upper;
  }
}
