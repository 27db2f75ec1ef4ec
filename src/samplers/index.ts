/** All samplers, and the one a study gets when none is given. */
import type { Sampler } from './base.js';
import { TPESampler } from './tpe/sampler.js';

export type { Sampler, SearchSpace } from './base.js';
export { RandomSampler } from './random.js';
export { TPESampler, TPEOptionError, OPTUNA3_TPE_OPTIONS, defaultGamma, defaultWeights } from './tpe/sampler.js';
export type { TPESamplerOptions } from './tpe/sampler.js';
export { GridSampler } from './grid.js';
export { NSGAIISampler } from './nsga2.js';
export type { NSGAIISamplerOptions } from './nsga2.js';
export { IntersectionSearchSpace, GroupDecomposedSearchSpace } from './search-space.js';

/** Optuna's default is TPESampler; used when createStudy() gets no sampler. */
export function defaultSampler(): Sampler {
  return new TPESampler();
}
export { GPSampler } from './gp/sampler.js';
export { QMCSampler, SobolSequence, QMC_INDEX_KEY } from './qmc.js';
export type { QMCSamplerOptions } from './qmc.js';
export { CmaEsSampler, CMA_KEY } from './cmaes.js';
export type { CmaEsSamplerOptions } from './cmaes.js';
export type { GPSamplerOptions } from './gp/sampler.js';
export { CONSTRAINTS_KEY, ConstraintsError, isFeasible, constraintValues } from './constraints.js';
export type { ConstraintsFunc } from './constraints.js';
