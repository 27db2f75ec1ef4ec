/** All samplers, and the one a study gets when none is given. */
import type { Sampler } from './base.js';
import { RandomSampler } from './random.js';

export type { Sampler, SearchSpace } from './base.js';
export { RandomSampler } from './random.js';

/** Optuna's default is TPESampler; used when createStudy() gets no sampler. */
export function defaultSampler(): Sampler {
  return new RandomSampler();
}
