/**
 * SuccessiveHalvingPruner: asynchronous successive halving (ASHA, Li et al. 2018) as in Optuna 3.1.
 * Rung k ends at step minResource * reductionFactor^(minEarlyStoppingRate + k); a trial reaching the
 * end of a rung goes on only if its value is in the top 1/reductionFactor of all trials that reached
 * that rung so far (the first few trials of a rung, too few to rank, go on if they are the best).
 *
 * Rung values are derived from intermediate values, never stored: a trial's value at rung k is its
 * value at the first step it reported at or after the rung's end. Every peer therefore computes the
 * same rungs from the same replicated reports, including reports from peers that run another pruner
 * or the Python client. The one thing stored is a trial's own progress, the number of rungs judged so
 * far (system attr `ashaJudgedRungs`, written by the trial's owner while it runs; Optuna's count of
 * `completed_rung_k` keys). It serves two ends: a rung is judged once, when the trial first reaches
 * it, as ASHA requires (a trial promoted early is never demoted when better trials arrive later, even
 * after its owner restarts); and a trial that one report carried past several rung ends, then was
 * pruned at the first of them, is not counted at the rungs above.
 *
 * Where this differs from Optuna: a trial that reported without being judged by this pruner (it ran
 * before 'auto' could estimate minResource, or on a peer with another pruner) counts at every rung its
 * reports reach, where Optuna would not count it at all.
 */
import { logger } from '../logging.js';
import type { FrozenTrial, StudyDirection } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Pruner } from './base.js';
import { OptionError, checkOptions, rules } from '../errors.js';
import { lastStep } from './percentile.js';

export interface SuccessiveHalvingPrunerOptions {
  /**
   * Steps in the first rung (default 'auto': 1/100 of the longest COMPLETE trial seen when the pruner
   * first finds one, at least 1; no pruning until a trial has completed).
   */
  minResource?: 'auto' | number;
  /** Keep the top 1/reductionFactor at each rung (default 4). */
  reductionFactor?: number;
  /** Skips the first rungs: rung k ends at minResource * reductionFactor^(this + k) (default 0). */
  minEarlyStoppingRate?: number;
  /** Trials that must reach a rung before any of them may go on; earlier ones are pruned (default 0). */
  bootstrapCount?: number;
}

/** The system attr holding how many rungs of the trial were judged (passed, plus the one it failed). */
export const JUDGED_RUNGS_ATTR = 'ashaJudgedRungs';

function judgedRungs(trial: FrozenTrial): number | null {
  const v = trial.systemAttrs[JUDGED_RUNGS_ATTR];
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null;
}

interface RungConfig {
  minResource: number;
  reductionFactor: number;
  minEarlyStoppingRate: number;
  bootstrapCount: number;
}

/** Value of a trial at a rung ending at `rungEnd`: its report at the first step >= rungEnd, if any. */
function rungValue(trial: FrozenTrial, rungEnd: number): number | undefined {
  const exact = trial.intermediateValues.get(rungEnd);
  if (exact !== undefined) return exact;
  let step = Infinity;
  for (const s of trial.intermediateValues.keys()) if (s >= rungEnd && s < step) step = s;
  return step === Infinity ? undefined : trial.intermediateValues.get(step);
}

/**
 * ASHA's promotion rule: with n values at the rung, the trial must be at least as good as the
 * (floor(n / eta))-th best; with fewer than eta values it must be the best.
 */
function promotable(value: number, competing: number[], reductionFactor: number, direction: StudyDirection): boolean {
  const k = Math.max(0, Math.floor(competing.length / reductionFactor) - 1);
  // NaN is the worst value a rung can hold.
  const worst = direction === 'maximize' ? -Infinity : Infinity;
  const sorted = competing.map((v) => (Number.isNaN(v) ? worst : v)).sort((a, b) => (direction === 'maximize' ? b - a : a - b));
  return direction === 'maximize' ? value >= sorted[k]! : value <= sorted[k]!;
}

/**
 * Judges the rungs the trial reached since its last check against `competitors` (other trials in the
 * same bracket; Hyperband passes its bracket's trials). Records the trial's progress when it is the
 * owner's RUNNING trial.
 */
export function judgeRungs(study: Study, trial: FrozenTrial, competitors: readonly FrozenTrial[], cfg: RungConfig): boolean {
  const step = lastStep(trial);
  if (step === null) return false;
  const start = judgedRungs(trial) ?? 0;
  const direction = study.direction;
  let judged = start;
  let prune = false;
  for (;;) {
    const rung = judged;
    const rungEnd = cfg.minResource * cfg.reductionFactor ** (cfg.minEarlyStoppingRate + rung);
    if (step < rungEnd) break;
    const value = rungValue(trial, rungEnd)!;
    if (Number.isNaN(value)) {
      prune = true;
      break;
    }
    const competing = [value];
    for (const t of competitors) {
      if (t.trialId === trial.trialId) continue;
      const tJudged = judgedRungs(t);
      if (tJudged !== null && rung >= tJudged) continue;
      const v = rungValue(t, rungEnd);
      if (v !== undefined) competing.push(v);
    }
    judged++;
    if (competing.length <= cfg.bootstrapCount || !promotable(value, competing, cfg.reductionFactor, direction)) {
      prune = true;
      break;
    }
  }
  // A trial pruned for NaN at its first rung is recorded too (judged 0): Optuna never puts a NaN in a
  // rung, and without the record the trial would count at that rung as a trial nobody judged.
  const record = judged > start || (prune && judgedRungs(trial) === null);
  if (record && trial.state === 'RUNNING' && trial.owner === study.storage.ownerId) {
    study.storage.setTrialSystemAttr(study.studyId, trial.trialId, JUDGED_RUNGS_ATTR, judged);
  }
  return prune;
}

export class SuccessiveHalvingPruner implements Pruner {
  readonly minResource: 'auto' | number;
  readonly reductionFactor: number;
  readonly minEarlyStoppingRate: number;
  readonly bootstrapCount: number;
  /** 'auto' estimates, per study; fixed once made, as in Optuna, so rung ends never move under a trial. */
  private readonly estimated = new Map<string, number>();

  constructor(opts: SuccessiveHalvingPrunerOptions = {}) {
    const name = 'SuccessiveHalvingPruner';
    const int1 = rules.integer(1);
    checkOptions(
      name,
      opts,
      {
        minResource: { valid: "'auto' or an integer >= 1", test: (v) => v === 'auto' || int1.test(v) },
        reductionFactor: rules.integer(2),
        minEarlyStoppingRate: rules.integer(0),
        bootstrapCount: rules.integer(0),
      },
      { rejectUnknown: true },
    );
    const minResource = opts.minResource ?? 'auto';
    this.minResource = minResource;
    this.reductionFactor = opts.reductionFactor ?? 4;
    this.minEarlyStoppingRate = opts.minEarlyStoppingRate ?? 0;
    this.bootstrapCount = opts.bootstrapCount ?? 0;
    if (this.bootstrapCount > 0 && minResource === 'auto') {
      throw new OptionError(`${name}: bootstrapCount > 0 needs an integer minResource, not 'auto' (got bootstrapCount ${this.bootstrapCount})`, 'bootstrapCount', this.bootstrapCount);
    }
  }

  /** The first rung's length for this study, or null while 'auto' has no COMPLETE trial to go by. */
  resolvedMinResource(study: Study): number | null {
    if (this.minResource !== 'auto') return this.minResource;
    const known = this.estimated.get(study.studyId);
    if (known !== undefined) return known;
    let longest: number | null = null;
    for (const t of study.getTrials({ states: ['COMPLETE'] })) {
      const s = lastStep(t);
      if (s !== null && (longest === null || s > longest)) longest = s;
    }
    if (longest === null) return null;
    const estimate = Math.max(Math.floor(longest / 100), 1);
    this.estimated.set(study.studyId, estimate);
    logger.debug(`SuccessiveHalvingPruner: minResource 'auto' estimated as ${estimate} from a COMPLETE trial with ${longest} steps.`);
    return estimate;
  }

  prune(study: Study, trial: FrozenTrial): boolean {
    const minResource = this.resolvedMinResource(study);
    if (minResource === null) return false;
    return judgeRungs(study, trial, study.getTrials(), {
      minResource,
      reductionFactor: this.reductionFactor,
      minEarlyStoppingRate: this.minEarlyStoppingRate,
      bootstrapCount: this.bootstrapCount,
    });
  }
}
