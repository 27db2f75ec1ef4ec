/**
 * Constraints, with Optuna's semantics: a sampler given `constraintsFunc` calls it on every trial that
 * finishes COMPLETE or PRUNED and stores the values on the trial as the system attribute `constraints`
 * (so they replicate with the trial). A trial is feasible when every value is <= 0. Samplers rank
 * infeasible trials after feasible ones, by their total violation; `bestTrial` and `bestTrials` look at
 * feasible trials only. Trials without the attribute count as feasible there, as in Optuna.
 */
import { PeertuneError } from '../errors.js';
import type { FrozenTrial, TrialState } from '../storage/storage.js';
import type { Study } from '../study.js';

export const CONSTRAINTS_KEY = 'constraints';

export type ConstraintsFunc = (trial: FrozenTrial) => readonly number[];

export class ConstraintsError extends PeertuneError {
  override name = 'ConstraintsError';
}

/** The stored constraint values of a trial, or null when it has none. */
export function constraintValues(trial: FrozenTrial): number[] | null {
  const c = trial.systemAttrs[CONSTRAINTS_KEY];
  if (!Array.isArray(c) || !c.every((v) => typeof v === 'number')) return null;
  return c as number[];
}

/** Feasible: no stored constraints, or every value <= 0. */
export function isFeasible(trial: FrozenTrial): boolean {
  const c = constraintValues(trial);
  return c === null || c.every((v) => v <= 0);
}

/**
 * Total violation (sum of the positive parts) for ranking: 0 when feasible; Infinity for a trial that
 * lacks constraint values in a study whose sampler computes them (it cannot be shown feasible).
 */
export function violation(trial: FrozenTrial): number {
  const c = constraintValues(trial);
  if (c === null) return Infinity;
  let s = 0;
  for (const v of c) if (v > 0) s += v;
  return s;
}

/** The sampler side: runs `constraintsFunc` for a finishing trial and stores its values. */
export function recordConstraints(fn: ConstraintsFunc, study: Study, trial: FrozenTrial, state: TrialState, values: readonly number[] | null): void {
  if (state !== 'COMPLETE' && state !== 'PRUNED') return;
  const seen: FrozenTrial = { ...trial, state, values, value: values && values.length === 1 ? values[0]! : null };
  const out = fn(seen);
  if (!Array.isArray(out) && !(ArrayBuffer.isView(out) && !(out instanceof DataView))) {
    throw new ConstraintsError(`constraintsFunc must return an array of numbers, got ${typeof out}`);
  }
  const arr = Array.from(out as ArrayLike<number>);
  for (const [i, v] of arr.entries()) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConstraintsError(`constraintsFunc returned ${String(v)} at index ${i} for trial ${trial.number}; constraint values must be finite numbers`);
  }
  study.storage.setTrialSystemAttr(study.studyId, trial.trialId, CONSTRAINTS_KEY, arr);
}

export function checkConstraintsFunc(owner: string, fn: unknown): ConstraintsFunc | null {
  if (fn === undefined || fn === null) return null;
  if (typeof fn !== 'function') throw new ConstraintsError(`${owner}: constraintsFunc must be a function of a trial returning numbers, got ${typeof fn}`);
  return fn as ConstraintsFunc;
}
