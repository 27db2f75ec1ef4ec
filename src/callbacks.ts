/**
 * Callbacks for `optimize`. MaxTrialsCallback is Optuna's: it stops the study once the replica holds
 * `nTrials` trials in the given states. Counted after each trial, so with N workers or peers it can
 * overshoot by the trials already in flight; `optimize({ maxTrials })` checks before a trial starts
 * and counts this peer's own trials in flight, which is the tighter budget.
 */
import { checkOptions, rules } from './errors.js';
import type { TrialState } from './storage/storage.js';
import type { Study } from './study.js';

export class MaxTrialsCallback {
  constructor(
    readonly nTrials: number,
    readonly states: readonly TrialState[] = ['COMPLETE'],
  ) {
    checkOptions('MaxTrialsCallback', { nTrials }, { nTrials: rules.required({ valid: 'a non-negative integer', test: rules.integer(0).test }) });
  }

  /** Use as `callbacks: [cb.call]` or `callbacks: [(s, t) => cb.call(s)]`. */
  readonly call = (study: Study): void => {
    if (study.getTrials({ states: this.states }).length >= this.nTrials) study.stop();
  };
}
