/**
 * HyperbandPruner: several successive-halving brackets, from aggressive (bracket 0: first rung ends at
 * minResource) to patient (the last bracket's first rung ends near maxResource), as in Optuna 3.1.
 * Each trial belongs to one bracket and is only compared with trials of that bracket.
 *
 * The bracket is a hash of (study name, trial id), weighted by Hyperband's per-bracket budgets, so
 * every peer puts every trial in the same bracket without talking to anyone. Optuna hashes the trial
 * number instead; numbers are a display order here, the trial id is what is unique across the swarm.
 */
import { logger } from '../logging.js';
import { Rng } from '../rng.js';
import type { FrozenTrial } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Pruner } from './base.js';
import { OptionError, checkOptions, describeValue, rules } from '../errors.js';
import { lastStep } from './percentile.js';
import { judgeRungs } from './successive-halving.js';

export interface HyperbandPrunerOptions {
  /** Steps in the first rung of the most aggressive bracket (default 1). */
  minResource?: number;
  /**
   * Steps of a full trial (default 'auto': the longest COMPLETE trial's last step + 1, fixed once
   * known; no pruning until a trial has completed).
   */
  maxResource?: 'auto' | number;
  /** Keep the top 1/reductionFactor at each rung (default 3). */
  reductionFactor?: number;
  /** Trials that must reach a rung before any of them may go on (default 0). */
  bootstrapCount?: number;
}

interface Brackets {
  maxResource: number;
  /** Hyperband's share of trials per bracket: ceil(n * eta^s / (s + 1)) with s = n - 1 - bracket. */
  budgets: number[];
  total: number;
}

export class HyperbandPruner implements Pruner {
  readonly minResource: number;
  readonly maxResource: 'auto' | number;
  readonly reductionFactor: number;
  readonly bootstrapCount: number;
  private readonly brackets = new Map<string, Brackets>();
  /** Bracket per `studyName \0 trialId`; a trial's bracket never changes, so hashing once is enough. */
  private readonly bracketCache = new Map<string, number>();

  constructor(opts: HyperbandPrunerOptions = {}) {
    const name = 'HyperbandPruner';
    checkOptions(
      name,
      opts,
      { minResource: rules.integer(1), maxResource: { valid: "'auto' or an integer >= minResource", test: (v) => v === 'auto' || rules.integer(1).test(v) }, reductionFactor: rules.integer(2), bootstrapCount: rules.integer(0) },
      { rejectUnknown: true },
    );
    this.minResource = opts.minResource ?? 1;
    const maxResource = opts.maxResource ?? 'auto';
    if (maxResource !== 'auto' && !(rules.integer(this.minResource).test(maxResource))) {
      throw new OptionError(`${name}: maxResource must be 'auto' or an integer >= minResource (${this.minResource}), got ${describeValue(maxResource)}`, 'maxResource', maxResource);
    }
    this.maxResource = maxResource;
    this.reductionFactor = opts.reductionFactor ?? 3;
    this.bootstrapCount = opts.bootstrapCount ?? 0;
    if (this.bootstrapCount > 0 && maxResource === 'auto') {
      throw new OptionError(`${name}: bootstrapCount > 0 needs an integer maxResource, not 'auto' (got bootstrapCount ${this.bootstrapCount})`, 'bootstrapCount', this.bootstrapCount);
    }
  }

  private bracketsFor(study: Study): Brackets | null {
    const known = this.brackets.get(study.studyId);
    if (known) return known;
    let maxResource: number;
    if (this.maxResource === 'auto') {
      let longest: number | null = null;
      for (const t of study.getTrials({ states: ['COMPLETE'] })) {
        const s = lastStep(t);
        if (s !== null && (longest === null || s > longest)) longest = s;
      }
      if (longest === null) return null;
      maxResource = longest + 1;
    } else {
      maxResource = this.maxResource;
    }
    // Optuna's count, floor(log_eta(max / min)) + 1, with its floating-point log: where the log rounds
    // below an integer (log(1000) / log(10) = 2.9999999999999996) Optuna has one bracket fewer, and so
    // does peertune, so that both split trials alike.
    const n = Math.floor(Math.log(maxResource / this.minResource) / Math.log(this.reductionFactor)) + 1;
    const budgets: number[] = [];
    for (let b = 0; b < n; b++) {
      const s = n - 1 - b;
      budgets.push(Math.ceil((n * this.reductionFactor ** s) / (s + 1)));
    }
    const brackets = { maxResource, budgets, total: budgets.reduce((a, b) => a + b, 0) };
    this.brackets.set(study.studyId, brackets);
    logger.debug(`HyperbandPruner: ${n} brackets for maxResource ${maxResource}, trial shares [${budgets.join(', ')}].`);
    return brackets;
  }

  /** Number of brackets for this study, or null while maxResource 'auto' is not known yet. */
  nBrackets(study: Study): number | null {
    return this.bracketsFor(study)?.budgets.length ?? null;
  }

  /** The trial's bracket (0 = most aggressive); the same on every peer. Null while brackets are unknown. */
  bracketOf(study: Study, trial: Pick<FrozenTrial, 'trialId'>): number | null {
    const brackets = this.bracketsFor(study);
    if (!brackets) return null;
    const key = `${study.studyName}\u0000${trial.trialId}`;
    let bracket = this.bracketCache.get(key);
    if (bracket === undefined) {
      let n = Rng.from('hyperband', study.studyName, trial.trialId).int(0, brackets.total - 1);
      bracket = 0;
      while (n >= brackets.budgets[bracket]!) n -= brackets.budgets[bracket++]!;
      this.bracketCache.set(key, bracket);
    }
    return bracket;
  }

  prune(study: Study, trial: FrozenTrial): boolean {
    const bracket = this.bracketOf(study, trial);
    if (bracket === null) return false;
    const peers = study.getTrials().filter((t) => this.bracketOf(study, t) === bracket);
    return judgeRungs(study, trial, peers, {
      minResource: this.minResource,
      reductionFactor: this.reductionFactor,
      minEarlyStoppingRate: bracket,
      bootstrapCount: this.bootstrapCount,
    });
  }
}
