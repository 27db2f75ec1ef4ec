/**
 * PatientPruner: tolerate a trial that has not improved for `patience` reports, then hand the
 * decision to the wrapped pruner (or prune outright when there is none). It looks only at the
 * trial's own curve, so it adds no cross-peer state.
 */
import type { FrozenTrial } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Pruner } from './base.js';
import { OptionError, checkOptions, describeValue, rules } from '../errors.js';
import { bestIgnoringNaN } from './percentile.js';

export interface PatientPrunerOptions {
  /** Reports without improvement that are tolerated. */
  patience: number;
  /** How much better a value must be to count as an improvement (default 0). */
  minDelta?: number;
}

export class PatientPruner implements Pruner {
  readonly wrappedPruner: Pruner | null;
  readonly patience: number;
  readonly minDelta: number;

  constructor(wrappedPruner: Pruner | null, opts: PatientPrunerOptions) {
    if (wrappedPruner !== null && (typeof wrappedPruner !== 'object' || typeof wrappedPruner.prune !== 'function')) {
      throw new OptionError(`PatientPruner: wrappedPruner must be a pruner (an object with prune()) or null, got ${describeValue(wrappedPruner)}`, 'wrappedPruner', wrappedPruner);
    }
    if (opts === null || typeof opts !== 'object') {
      throw new OptionError('PatientPruner: pass options with patience, e.g. new PatientPruner(null, { patience: 3 })', 'options', opts);
    }
    checkOptions('PatientPruner', opts, { patience: rules.required(rules.integer(0)), minDelta: rules.finite(0) }, { rejectUnknown: true });
    this.wrappedPruner = wrappedPruner;
    this.patience = opts.patience;
    this.minDelta = opts.minDelta ?? 0;
  }

  prune(study: Study, trial: FrozenTrial): boolean {
    const steps = [...trial.intermediateValues.keys()].sort((a, b) => a - b);
    // Need at least one report before the patience window plus the window itself.
    if (steps.length <= this.patience + 1) return false;
    const split = steps.length - this.patience - 1;
    const values = (ss: number[]) => ss.map((s) => trial.intermediateValues.get(s)!);
    const direction = study.direction;
    const before = bestIgnoringNaN(values(steps.slice(0, split)), direction);
    const recent = bestIgnoringNaN(values(steps.slice(split)), direction);
    // NaN on either side compares false: no evidence of stagnation, so no prune (as numpy does in Optuna).
    const stagnant = direction === 'maximize' ? before - this.minDelta > recent : before + this.minDelta < recent;
    if (!stagnant) return false;
    return this.wrappedPruner ? this.wrappedPruner.prune(study, trial) : true;
  }
}
