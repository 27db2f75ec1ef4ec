/** All pruners, and the one a study gets when none is given. */
import type { Pruner } from './base.js';
import { MedianPruner } from './median.js';

export type { Pruner } from './base.js';
export { NopPruner } from './nop.js';
export { PercentilePruner, type PercentilePrunerOptions } from './percentile.js';
export { MedianPruner } from './median.js';
export { SuccessiveHalvingPruner, type SuccessiveHalvingPrunerOptions } from './successive-halving.js';
export { HyperbandPruner, type HyperbandPrunerOptions } from './hyperband.js';
export { ThresholdPruner, type ThresholdPrunerOptions } from './threshold.js';
export { PatientPruner, type PatientPrunerOptions } from './patient.js';

/** Optuna's default: MedianPruner with its defaults (5 startup trials, no warmup, every step). */
export function defaultPruner(): Pruner {
  return new MedianPruner();
}
