/**
 * The sampler interface, shaped like Optuna's BaseSampler: a sampler may sample a whole vector at
 * once when a trial starts (relative sampling: multivariate TPE, NSGA-II, Grid) and/or one parameter
 * at a time as the objective asks (independent sampling). A new algorithm is one new file.
 *
 * Contract with the study:
 * - `inferRelativeSearchSpace` + `sampleRelative` run inside `ask()`. Everything `sampleRelative`
 *   returns is written into the trial's params at once, so every peer sees the in-flight trial as a
 *   constant-liar placeholder right away. Return only parameters the trial will use.
 * - `sampleIndependent` runs when the objective suggests a parameter that relative sampling did not
 *   cover (or covered with another distribution).
 * - Samplers read history only through `study.getTrials()`; RUNNING trials are other workers'
 *   (and other peers') in-flight trials.
 */
import type { Distribution, ParamValue } from '../distributions.js';
import type { FrozenTrial, TrialState } from '../storage/storage.js';
import type { Study } from '../study.js';

export type SearchSpace = Record<string, Distribution>;

export interface Sampler {
  inferRelativeSearchSpace(study: Study, trial: FrozenTrial): SearchSpace;
  sampleRelative(study: Study, trial: FrozenTrial, searchSpace: SearchSpace): Record<string, ParamValue>;
  sampleIndependent(study: Study, trial: FrozenTrial, paramName: string, distribution: Distribution): ParamValue;
  /** Called in `ask()` before relative sampling. */
  beforeTrial?(study: Study, trial: FrozenTrial): void;
  /** Called when a trial finishes, before its state is stored. */
  afterTrial?(study: Study, trial: FrozenTrial, state: TrialState, values: readonly number[] | null): void;
}
