/**
 * The pruner interface, shaped like Optuna's BasePruner: given the study and a RUNNING trial's
 * current snapshot (with its reported intermediate values), decide whether to stop it now.
 * Pruners read the replicated history, so on a swarm every peer's reports count.
 */
import type { FrozenTrial, TrialTemplate } from '../storage/storage.js';
import type { Study } from '../study.js';

export interface Pruner {
  prune(study: Study, trial: FrozenTrial): boolean;
  /**
   * Optional, for pruners that schedule a population (PopulationBasedTraining): whether optimize() may
   * start a trial now, should wait for the history to change, or has nothing left to run.
   */
  admit?(study: Study): 'start' | 'wait' | 'done';
  /** Optional: a trial this process should run next (a PBT continuation); `ask()` creates it. */
  nextTrial?(study: Study): TrialTemplate | null;
}
