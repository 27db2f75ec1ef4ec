/**
 * RandomSampler: independent uniform sampling (log-uniform for log parameters, uniform over the grid
 * for stepped ones). Each trial draws from its own stream seeded from (seed, trial id, parameter).
 */
import { toExternal, type Distribution, type ParamValue } from '../distributions.js';
import { Rng, randomSeed } from '../rng.js';
import type { FrozenTrial } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Sampler, SearchSpace } from './base.js';

/** One uniform draw from a distribution with the given generator (shared by every sampler's fallback). */
export function sampleUniform(rng: Rng, d: Distribution): ParamValue {
  switch (d.type) {
    case 'categorical':
      return d.choices[rng.int(0, d.choices.length - 1)]!;
    case 'int': {
      if (d.log) {
        const v = Math.exp(rng.uniform(Math.log(d.low - 0.5), Math.log(d.high + 0.5)));
        return toExternal(d, v);
      }
      const n = Math.floor((d.high - d.low) / d.step);
      return d.low + rng.int(0, n) * d.step;
    }
    case 'float': {
      if (d.log) return toExternal(d, Math.exp(rng.uniform(Math.log(d.low), Math.log(d.high))));
      if (d.step !== null) {
        const n = Math.round((d.high - d.low) / d.step);
        return toExternal(d, d.low + rng.int(0, n) * d.step);
      }
      return toExternal(d, rng.uniform(d.low, d.high));
    }
  }
}

export class RandomSampler implements Sampler {
  readonly seed: number;

  constructor(opts: { seed?: number } = {}) {
    this.seed = opts.seed ?? randomSeed();
  }

  inferRelativeSearchSpace(): SearchSpace {
    return {};
  }

  sampleRelative(): Record<string, ParamValue> {
    return {};
  }

  sampleIndependent(_study: Study, trial: FrozenTrial, paramName: string, distribution: Distribution): ParamValue {
    return sampleUniform(Rng.from(this.seed, trial.trialId, paramName), distribution);
  }
}
