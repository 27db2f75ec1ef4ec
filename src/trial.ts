/**
 * Trial: what an objective function receives. Define-by-run: each `suggest*` call names a parameter
 * and its distribution, and the sampler answers. Conditional spaces need nothing special: a
 * parameter that is never suggested is simply absent from the trial.
 */
import {
  DistributionError,
  categoricalDistribution,
  contains,
  describeDistribution,
  distributionsEqual,
  floatDistribution,
  intDistribution,
  isSingle,
  singleValue,
  type Distribution,
  type ParamValue,
} from './distributions.js';
import { PeertuneError, StudyUsageError } from './errors.js';
import { logger } from './logging.js';
import type { FrozenTrial } from './storage/storage.js';
import type { Study } from './study.js';
import type { Checkpoint, CheckpointRef } from './checkpoints/manager.js';

/** Thrown by an objective (or the command protocol) to end a trial as PRUNED. */
export class TrialPruned extends PeertuneError {
  override name = 'TrialPruned';
  constructor(message = 'trial was pruned') {
    super(message);
  }
}

export class Trial {
  /** Params sampled by relative sampling at `ask()`: written already, confirmed when suggested. */
  private readonly relative: Map<string, { value: ParamValue; distribution: Distribution }>;
  private readonly fixed: Record<string, ParamValue>;
  private readonly localParams: Record<string, ParamValue> = {};
  private readonly localDistributions: Record<string, Distribution> = {};

  /** @internal created by Study.ask() */
  constructor(
    readonly study: Study,
    readonly trialId: string,
    relativeParams: Record<string, ParamValue>,
    relativeSpace: Record<string, Distribution>,
  ) {
    this.relative = new Map(Object.entries(relativeParams).map(([k, v]) => [k, { value: v, distribution: relativeSpace[k]! }]));
    const snap = this.snapshot();
    this.fixed = { ...((snap.systemAttrs['fixedParams'] as Record<string, ParamValue> | undefined) ?? {}) };
  }

  /** The trial's current stored snapshot. */
  snapshot(): FrozenTrial {
    return this.study.storage.getTrial(this.study.studyId, this.trialId);
  }

  get number(): number {
    return this.snapshot().number;
  }

  /**
   * Stores `path` (a file or a directory) as this trial's newest checkpoint; resolves once it is in
   * this peer's blob store, so the caller may delete its copy. `step` is the training step it was
   * taken at, `metrics` what ranks it (the study's checkpointConfig.scoreAttribute).
   */
  async saveCheckpoint(path: string, opts: { step?: number; metrics?: Record<string, unknown> } = {}): Promise<CheckpointRef> {
    const m = await this.study.checkpoints();
    return m.save(this.study.studyId, this.trialId, path, opts);
  }

  /**
   * This trial's latest checkpoint, else the latest of the trial it retries or resumes, fetched from a
   * peer that holds it when it is not here and unpacked to a local path; null when there is none.
   */
  async getCheckpoint(): Promise<Checkpoint | null> {
    const m = await this.study.checkpoints();
    return m.get(this.study.studyId, this.trialId);
  }

  /** The trial's kept checkpoint references (no bytes), oldest first. */
  get checkpoints(): readonly CheckpointRef[] {
    return this.snapshot().checkpoints;
  }

  get params(): Readonly<Record<string, ParamValue>> {
    return { ...this.localParams };
  }

  get distributions(): Readonly<Record<string, Distribution>> {
    return { ...this.localDistributions };
  }

  get userAttrs(): Readonly<Record<string, unknown>> {
    return this.snapshot().userAttrs;
  }

  get datetimeStart(): Date | null {
    return this.snapshot().datetimeStart;
  }

  suggestFloat(name: string, low: number, high: number, opts: { log?: boolean; step?: number | null } = {}): number {
    return this.suggest(name, floatDistribution(name, low, high, opts, logger.warn)) as number;
  }

  suggestInt(name: string, low: number, high: number, opts: { log?: boolean; step?: number } = {}): number {
    return this.suggest(name, intDistribution(name, low, high, opts, logger.warn)) as number;
  }

  suggestCategorical<T extends ParamValue>(name: string, choices: readonly T[]): T {
    return this.suggest(name, categoricalDistribution(name, choices)) as T;
  }

  /** Suggests a parameter from an already-built distribution (used by the command protocol). */
  suggest(name: string, distribution: Distribution): ParamValue {
    if (typeof name !== 'string' || name.length === 0) throw new DistributionError('parameter name must be a non-empty string');
    const existing = this.localDistributions[name];
    if (existing) {
      if (!distributionsEqual(existing, distribution)) {
        throw new DistributionError(
          `parameter "${name}" was already suggested in this trial with ${describeDistribution(existing)}; it cannot be redefined as ${describeDistribution(distribution)}`,
        );
      }
      return this.localParams[name]!;
    }
    let value: ParamValue;
    const rel = this.relative.get(name);
    if (Object.prototype.hasOwnProperty.call(this.fixed, name)) {
      value = this.fixed[name]!;
      if (!contains(distribution, value)) {
        logger.warn(`Fixed parameter "${name}" with value ${JSON.stringify(value)} is out of range for ${describeDistribution(distribution)}.`);
      }
    } else if (isSingle(distribution)) {
      value = singleValue(distribution);
    } else if (rel && distributionsEqual(rel.distribution, distribution)) {
      value = rel.value;
    } else {
      value = this.study.sampler.sampleIndependent(this.study, this.snapshot(), name, distribution);
    }
    this.relative.delete(name);
    this.localParams[name] = value;
    this.localDistributions[name] = distribution;
    if (!rel || rel.value !== value || !distributionsEqual(rel.distribution, distribution)) {
      this.study.storage.setTrialParams(this.study.studyId, this.trialId, { [name]: value }, { [name]: distribution });
    }
    return value;
  }

  /** Reports an intermediate objective value at a step (an epoch, an iteration), for pruners. */
  report(value: number, step: number): void {
    if (this.study.directions.length > 1) {
      throw new StudyUsageError('report() is not supported for multi-objective studies (as in Optuna); pruning needs a single objective');
    }
    // NaN is a value (a diverging loss); Optuna stores it and the pruners prune on it.
    if (typeof value !== 'number') throw new StudyUsageError(`report(): value must be a number, got ${String(value)}`);
    if (!Number.isSafeInteger(step) || step < 0) throw new StudyUsageError(`report(): step must be a non-negative integer, got ${String(step)}`);
    const snap = this.snapshot();
    if (snap.intermediateValues.has(step)) {
      logger.warn(`The reported value is ignored because this step ${step} is already reported.`);
      return;
    }
    this.study.storage.setTrialIntermediateValue(this.study.studyId, this.trialId, step, value);
  }

  /** Asks the study's pruner whether this trial should stop now. */
  shouldPrune(): boolean {
    if (this.study.directions.length > 1) {
      throw new StudyUsageError('shouldPrune() is not supported for multi-objective studies (as in Optuna)');
    }
    return this.study.pruner.prune(this.study, this.snapshot());
  }

  setUserAttr(key: string, value: unknown): void {
    this.study.storage.setTrialUserAttr(this.study.studyId, this.trialId, key, value);
  }
}
