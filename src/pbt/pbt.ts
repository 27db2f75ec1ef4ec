/**
 * PopulationBasedTraining: Ray Tune's PBT scheduler as an Optuna pruner (asynchronous mode, and Ray's
 * `synch` mode where members wait for each other at every sync point). Plug it in
 * as the study's pruner; the objective reports a score every step, calls `shouldPrune()`, saves a
 * checkpoint at least once per perturbation interval and starts from `getCheckpoint()`.
 *
 * At a member's perturbation point (its time, the reported step by default, is at least
 * `perturbationInterval` past its last point and past `burnInPeriod`), the quantiles of the live
 * members' scores at their last points are computed from this peer's replica, so two peers holding the
 * same trials decide the same. A member in the bottom quantile clones a random top-quantile member:
 * params are immutable here (as in Optuna), so the bottom member's trial ends PRUNED with the reason,
 * and the next `ask()` on its peer creates a NEW trial with the explored values (clipped to their
 * distributions), the cloned checkpoint (the one the top member recorded at its last point, on any
 * peer: fetched from a holder if need be), `pbtParent` and the step it starts from. With
 * `populationSize`, `optimize()` starts members until the population is full, then only runs
 * continuations, and returns when every member has finished. The attrs it writes, and the lineage
 * reads, are in lineage.ts; the explore step is explore.ts.
 */
import { parseDistribution, type Distribution, type ParamValue } from '../distributions.js';
import { checkOptions, OptionError, rules } from '../errors.js';
import { logger } from '../logging.js';
import type { Pruner } from '../pruners/base.js';
import { lastStep } from '../pruners/percentile.js';
import { Rng, randomSeed } from '../rng.js';
import type { FrozenTrial, TrialTemplate } from '../storage/storage.js';
import type { Study } from '../study.js';
import { explore, type Mutation, type ParamChange } from './explore.js';
import { describeChanges, lastPoint, memberOf, offeredCheckpoint, type PerturbationPoint } from './lineage.js';
import type { CheckpointRef } from '../checkpoints/refs.js';

export interface PopulationBasedTrainingOptions {
  /**
   * What measures a member's progress: 'step' (default), the step given to `trial.report`, or
   * 'time_total_s', the seconds its lineage has trained (Ray's default).
   */
  timeAttr?: 'step' | 'time_total_s';
  /** Time between a member's perturbation points (Ray's default 60; steps or seconds after timeAttr). */
  perturbationInterval?: number;
  /** No perturbation before this time (default 0). */
  burnInPeriod?: number;
  /** The share of members in the top and in the bottom quantile, in [0, 0.5] (default 0.25). */
  quantileFraction?: number;
  /** The chance that a mutated parameter is drawn anew instead of perturbed (default 0.25). */
  resampleProbability?: number;
  /** Numeric parameters are multiplied by one of these (default [1.2, 0.8]). */
  perturbationFactors?: readonly number[];
  /** The parameters PBT changes and how: a distribution, a list of choices, or a function that draws a value. */
  hyperparamMutations?: Readonly<Record<string, Mutation>>;
  /** Called with the explored config; returns the config to use (clipped to the distributions afterwards). */
  customExploreFn?: (config: Record<string, ParamValue>) => Record<string, ParamValue>;
  /**
   * Members in the whole study (Ray's num_samples): optimize() starts new members until this many exist,
   * then runs only continuations, and returns once all have finished. Without it, optimize() starts a
   * new member whenever no continuation is waiting (bounded by nTrials or timeout as usual).
   */
  populationSize?: number;
  /** Seed of the exploit and explore draws (each decision draws from (seed, trial id, step)). */
  seed?: number;
  /**
   * Ray's synchronous mode: at each sync point (every perturbationInterval of time, after burnInPeriod)
   * a member's trial ends PRUNED and its continuation waits until every live member has reached that
   * point; then the bottom quantile clones the top one and the others continue from their own
   * checkpoints with the same params. Default false (asynchronous).
   */
  synch?: boolean;
}

type Scored = PerturbationPoint & { score: number };

/** A continuation decided here: ready (async mode) or to be decided at a sync point's barrier (synch). */
interface Pending {
  replaced: string;
  template?: TrialTemplate;
  sync?: number;
}

const OPTION_RULES = {
  timeAttr: rules.oneOf(['step', 'time_total_s']),
  perturbationInterval: rules.positive(),
  burnInPeriod: rules.finite(0),
  quantileFraction: rules.finite(0, 0.5),
  resampleProbability: rules.finite(0, 1),
  perturbationFactors: {
    valid: 'a non-empty array of positive numbers',
    test: (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((f) => typeof f === 'number' && Number.isFinite(f) && f > 0),
  },
  hyperparamMutations: {
    valid: 'an object mapping parameter names to a distribution, a non-empty list of choices or a function',
    test: (v: unknown) =>
      !!v && typeof v === 'object' && !Array.isArray(v) &&
      Object.values(v).every((m) => typeof m === 'function' || (Array.isArray(m) && m.length > 0) || (!!m && typeof m === 'object' && ['float', 'int', 'categorical'].includes((m as { type?: string }).type ?? ''))),
  },
  customExploreFn: { valid: 'a function', test: (v: unknown) => typeof v === 'function' },
  populationSize: rules.integer(2),
  seed: rules.integer(0),
  synch: rules.boolean(),
};

export class PopulationBasedTraining implements Pruner {
  readonly timeAttr: 'step' | 'time_total_s';
  readonly perturbationInterval: number;
  readonly burnInPeriod: number;
  readonly quantileFraction: number;
  readonly resampleProbability: number;
  readonly perturbationFactors: readonly number[];
  readonly hyperparamMutations: Readonly<Record<string, Mutation>>;
  readonly customExploreFn: PopulationBasedTrainingOptions['customExploreFn'];
  readonly populationSize: number | undefined;
  readonly seed: number;
  readonly synch: boolean;
  /** Continuations decided in this process, by study, not yet created (the next ask() takes one). */
  private readonly pending = new Map<string, Pending[]>();

  constructor(opts: PopulationBasedTrainingOptions = {}) {
    checkOptions('PopulationBasedTraining', opts, OPTION_RULES, { rejectUnknown: true });
    if (!opts.hyperparamMutations && !opts.customExploreFn) {
      throw new OptionError('PopulationBasedTraining: give hyperparamMutations or customExploreFn (or both), or PBT has nothing to explore', 'hyperparamMutations', undefined);
    }
    this.timeAttr = opts.timeAttr ?? 'step';
    this.perturbationInterval = opts.perturbationInterval ?? 60;
    this.burnInPeriod = opts.burnInPeriod ?? 0;
    this.quantileFraction = opts.quantileFraction ?? 0.25;
    this.resampleProbability = opts.resampleProbability ?? 0.25;
    this.perturbationFactors = [...(opts.perturbationFactors ?? [1.2, 0.8])];
    this.hyperparamMutations = { ...(opts.hyperparamMutations ?? {}) };
    this.customExploreFn = opts.customExploreFn;
    this.populationSize = opts.populationSize;
    this.seed = opts.seed ?? randomSeed();
    this.synch = opts.synch ?? false;
  }

  /** The member's time at its latest report. */
  private timeOf(trial: FrozenTrial, step: number, inherited: PerturbationPoint | null): number {
    if (this.timeAttr === 'step') return step;
    const own = trial.systemAttrs['pbtTimeBase'];
    const base = typeof own === 'number' ? own : (inherited?.time ?? 0);
    return base + (Date.now() - (trial.datetimeStart?.getTime() ?? Date.now())) / 1000;
  }

  /** A retry carries on its member's clock: the last point of the trial it retries (through the chain). */
  private inheritedPoint(study: Study, trial: FrozenTrial): PerturbationPoint | null {
    let id = trial.systemAttrs['retryOf'];
    for (let i = 0; typeof id === 'string' && i < 64; i++) {
      let t: FrozenTrial;
      try {
        t = study.storage.getTrial(study.studyId, id);
      } catch {
        return null;
      }
      const p = lastPoint(t);
      if (p) return { time: p.time, step: p.step };
      id = t.systemAttrs['retryOf'];
    }
    return null;
  }

  /**
   * Called by `trial.shouldPrune()` after each report: true when this member was exploited (its
   * continuation is enqueued; the objective should throw TrialPruned).
   */
  prune(study: Study, trial: FrozenTrial): boolean {
    if (study.isMultiObjective) return false;
    if (trial.systemAttrs['pbtExploited'] !== undefined || trial.systemAttrs['pbtStopped'] !== undefined) return true;
    const step = lastStep(trial);
    if (step === null) return false;
    const last = lastPoint(trial);
    const inherited = last ? null : this.inheritedPoint(study, trial);
    const time = this.timeOf(trial, step, inherited);
    if (last && last.step === step && last.score !== undefined) return false; // decided at this step already
    const lastTime = last?.time ?? inherited?.time ?? 0;
    if (this.synch) return this.stopAtSync(study, trial, step, time, lastTime, last);
    if (time < this.burnInPeriod || time - lastTime < this.perturbationInterval) return false;

    const raw = trial.intermediateValues.get(step)!;
    const sign = study.direction === 'maximize' ? 1 : -1;
    const stored = Number.isNaN(raw) ? null : sign * raw;
    // `prev`: the point before, whose checkpoint stays pinned too (a peer whose view of this member lags
    // by up to one interval may still clone it).
    const point = { time, step, score: stored, ...(last ? { prev: last.step } : {}) };
    study.storage.setTrialSystemAttr(study.studyId, trial.trialId, 'pbtLast', point);
    // Other peers rank members by this point: send it now, not with the next batch of reports.
    void study.storage.flush().catch(() => {});
    return this.decide(study, trial.trialId, { time, step, score: stored ?? -Infinity });
  }

  /**
   * The continuation of `me` as a clone of a random member of `upper`, explored; null (logged) when that
   * member has no checkpoint at its last point or no copy of it on a peer online now.
   */
  private clonePlan(study: Study, me: FrozenTrial, upper: readonly FrozenTrial[], rng: Rng, point: PerturbationPoint): { child: TrialTemplate; top: FrozenTrial; startStep: number; params: Record<string, ParamValue> } | null {
    const storage = study.storage;
    const top = upper[rng.int(0, upper.length - 1)]!;
    const ck = offeredCheckpoint(top);
    if (!ck) {
      logger.info(`[pbt]: no checkpoint for trial ${top.number} at or before step ${lastPoint(top)!.step}. Skip exploit (trial ${me.number}).`);
      return null;
    }
    const online = new Set([storage.ownerId, ...study.peers.filter((p) => p.online).map((p) => p.peerId)]);
    if (!ck.holders.some((h) => online.has(h))) {
      logger.info(`[pbt]: checkpoint ${ck.id} of trial ${top.number} has no copy on a peer online now (holders: ${ck.holders.join(', ') || 'none'}). Skip exploit (trial ${me.number}).`);
      return null;
    }
    const { params, changes } = explore(top.params, this.hyperparamMutations, top.distributions as Record<string, Distribution>, {
      resampleProbability: this.resampleProbability,
      perturbationFactors: this.perturbationFactors,
      customExploreFn: this.customExploreFn,
    }, rng);
    return { child: this.continuation(study, me, top, ck, params, changes, point), top, startStep: ck.step!, params };
  }

  /**
   * A continuation of member `me` from checkpoint `ck` of trial `from` with `params`. It runs on the peer
   * of the member it replaces (created at that peer's next ask()), so exactly one peer runs it (an
   * enqueued trial could be claimed by two peers at once).
   */
  private continuation(study: Study, me: FrozenTrial, from: FrozenTrial, ck: CheckpointRef | null, params: Record<string, ParamValue>, changes: Record<string, ParamChange>, point: PerturbationPoint): TrialTemplate {
    const byId = new Map(study.trials.map((t) => [t.trialId, t] as const));
    const startStep = ck?.step ?? null;
    // synch: the member's clock restarts at the sync point (its next stop is one interval later).
    const timeBase = this.synch ? point.time : this.timeAttr === 'step' && startStep !== null ? startStep : lastPoint(from)!.time;
    return {
      systemAttrs: {
        fixedParams: params,
        pbtMember: memberOf(me, byId),
        pbtParent: from.trialId,
        ...(ck ? { pbtCheckpoint: { trialId: ck.trialId, seq: ck.seq, step: ck.step } } : {}),
        ...(startStep !== null ? { pbtStartStep: startStep } : {}),
        pbtReplaces: me.trialId,
        pbtChanges: changes,
        pbtTimeBase: timeBase,
        pbtLast: { time: timeBase, step: startStep ?? 0 },
      },
    };
  }

  private enqueue(study: Study, entry: Pending): void {
    const queue = this.pending.get(study.studyId) ?? [];
    queue.push(entry);
    this.pending.set(study.studyId, queue);
  }

  private decide(study: Study, trialId: string, point: Scored): boolean {
    const storage = study.storage;
    const scored = study
      .getTrials({ states: ['RUNNING'] })
      .map((t) => ({ t, p: lastPoint(t) }))
      .filter((x): x is { t: FrozenTrial; p: Scored } => x.p?.score !== undefined);
    if (scored.length <= 1) return false;
    scored.sort((a, b) => a.p.score - b.p.score || (a.t.trialId < b.t.trialId ? -1 : 1));
    const n = Math.min(Math.ceil(scored.length * this.quantileFraction), Math.floor(scored.length / 2));
    if (n === 0) return false;
    const lower = scored.slice(0, n);
    const upper = scored.slice(scored.length - n);
    const me = lower.find((x) => x.t.trialId === trialId);
    if (!me) return false;

    const rng = Rng.from(this.seed, trialId, point.step, 'pbt');
    const plan = this.clonePlan(study, me.t, upper.map((x) => x.t), rng, point);
    if (!plan) return false;
    const { child, top, startStep, params } = plan;
    this.enqueue(study, { replaced: trialId, template: child });
    const cut = upper[0]!.p.score;
    const fmt = (v: number) => (Number.isFinite(v) ? String(Number((v * (study.direction === 'maximize' ? 1 : -1)).toPrecision(6))) : 'NaN');
    const what = describeChanges({ trialId: '', params, systemAttrs: child.systemAttrs! }) || 'no change';
    const reason = `PBT: bottom ${this.quantileFraction} quantile at step ${point.step} (value ${fmt(point.score)}, top quantile from ${fmt(cut)}); continues as a clone of trial ${top.number} from its checkpoint at step ${startStep}: ${what}`;
    storage.setTrialSystemAttr(study.studyId, trialId, 'pbtExploited', { step: point.step, time: point.time, parent: top.trialId });
    storage.setTrialSystemAttr(study.studyId, trialId, 'pbtReason', reason);
    logger.info(`[pbt]: trial ${me.t.number} is in the bottom quantile at step ${point.step}; it clones trial ${top.number} (checkpoint at step ${startStep}) as a new trial with ${what}.`);
    return true;
  }

  /**
   * The first continuation decided here whose exploited (or stopped) trial has ended PRUNED and, in
   * synch mode, whose sync point every live member has reached. One whose trial ended otherwise (the
   * objective ignored the prune, say at its last step, or failed) is dropped: the member ended there.
   */
  private readyContinuation(study: Study, take: boolean): TrialTemplate | null {
    const queue = this.pending.get(study.studyId);
    if (!queue) return null;
    let found: TrialTemplate | null = null;
    for (let i = 0; i < queue.length && !found; i++) {
      const entry = queue[i]!;
      let replaced: FrozenTrial | null;
      try {
        replaced = study.storage.getTrial(study.studyId, entry.replaced);
      } catch {
        replaced = null;
      }
      if (replaced?.state === 'RUNNING') continue;
      if (replaced?.state !== 'PRUNED') {
        logger.debug(`[pbt]: trial ${entry.replaced} ended ${replaced?.state ?? 'unknown'} after PBT stopped it; its continuation is dropped.`);
        queue.splice(i--, 1);
        continue;
      }
      if (!entry.template && entry.sync !== undefined && this.barrierReached(study, entry.sync)) entry.template = this.syncPlan(study, replaced, entry.sync);
      const template = entry.template;
      if (!template) continue;
      found = template;
      if (take) queue.splice(i, 1);
    }
    if (queue.length === 0) this.pending.delete(study.studyId);
    return found;
  }

  /** The first sync point after `lastTime` (multiples of perturbationInterval, none before burnInPeriod). */
  private nextSync(lastTime: number): number {
    const k = Math.max(Math.floor(lastTime / this.perturbationInterval + 1e-9) + 1, Math.ceil(this.burnInPeriod / this.perturbationInterval - 1e-9));
    return k * this.perturbationInterval;
  }

  /** synch: at its next sync point a member's trial stops (PRUNED); the continuation waits for the barrier. */
  private stopAtSync(study: Study, trial: FrozenTrial, step: number, time: number, lastTime: number, last: PerturbationPoint | null): boolean {
    const sync = this.nextSync(lastTime);
    if (time < sync - 1e-9) return false;
    const raw = trial.intermediateValues.get(step)!;
    const stored = Number.isNaN(raw) ? null : (study.direction === 'maximize' ? 1 : -1) * raw;
    const storage = study.storage;
    storage.setTrialSystemAttr(study.studyId, trial.trialId, 'pbtLast', { time: sync, step, score: stored, ...(last ? { prev: last.step } : {}) });
    storage.setTrialSystemAttr(study.studyId, trial.trialId, 'pbtStopped', { sync, step });
    storage.setTrialSystemAttr(study.studyId, trial.trialId, 'pbtReason', `PBT (synch): stops at step ${step}, the sync point ${sync}; continues once every member has reached it`);
    void storage.flush().catch(() => {});
    this.enqueue(study, { replaced: trial.trialId, sync });
    return true;
  }

  /** Each member's latest trial (the member's population slot -> its newest trial in this replica). */
  private latestByMember(study: Study): Map<string, FrozenTrial> {
    const trials = study.trials;
    const byId = new Map(trials.map((t) => [t.trialId, t] as const));
    const out = new Map<string, FrozenTrial>();
    for (const t of trials) out.set(memberOf(t, byId), t); // ordered by number: the last one wins
    return out;
  }

  /** Whether every live member has stopped at `sync` or later (and the population is complete). */
  private barrierReached(study: Study, sync: number): boolean {
    const latest = this.latestByMember(study);
    if (this.populationSize !== undefined && latest.size < this.populationSize) return false;
    for (const t of latest.values()) {
      if (t.state === 'RUNNING' || t.state === 'WAITING') {
        // A continuation from this sync point (or a later one) has passed it; any other has not.
        const base = t.systemAttrs['pbtTimeBase'];
        if (!(typeof base === 'number' && base >= sync - 1e-9)) return false;
        continue;
      }
      const stopped = t.systemAttrs['pbtStopped'] as { sync?: number } | undefined;
      if (t.state === 'PRUNED' && typeof stopped?.sync === 'number' && stopped.sync < sync - 1e-9) return false;
    }
    return true;
  }

  /**
   * synch, at a complete barrier: the quantiles of the members stopped at `sync` (the same on every
   * peer); a bottom member clones a top one, every other continues from its own checkpoint.
   */
  private syncPlan(study: Study, me: FrozenTrial, sync: number): TrialTemplate {
    // Every member stopped at this point once (continuations created since do not change the set).
    const at = study.trials
      .filter((t) => t.state === 'PRUNED' && (t.systemAttrs['pbtStopped'] as { sync?: number } | undefined)?.sync === sync)
      .map((t) => ({ t, p: lastPoint(t) }))
      .filter((x): x is { t: FrozenTrial; p: Scored } => x.p?.score !== undefined)
      .sort((a, b) => a.p.score - b.p.score || (a.t.trialId < b.t.trialId ? -1 : 1));
    const n = Math.min(Math.ceil(at.length * this.quantileFraction), Math.floor(at.length / 2));
    const point = lastPoint(me)!;
    if (n > 0 && at.slice(0, n).some((x) => x.t.trialId === me.trialId)) {
      const rng = Rng.from(this.seed, me.trialId, sync, 'pbt');
      const plan = this.clonePlan(study, me, at.slice(at.length - n).map((x) => x.t), rng, point);
      if (plan) {
        logger.info(`[pbt]: trial ${me.number} is in the bottom quantile at sync point ${sync}; it clones trial ${plan.top.number} (checkpoint at step ${plan.startStep}) as a new trial with ${describeChanges({ trialId: '', params: plan.params, systemAttrs: plan.child.systemAttrs! }) || 'no change'}.`);
        return plan.child;
      }
    }
    const own = offeredCheckpoint(me);
    if (!own) logger.warn(`[pbt]: trial ${me.number} has no checkpoint at or before step ${point.step}; its continuation starts from scratch.`);
    return this.continuation(study, me, me, own, { ...((me.systemAttrs['fixedParams'] as Record<string, ParamValue> | undefined) ?? {}), ...me.params }, {}, point);
  }

  /** The next continuation this process decided on and may run now (Study.ask() creates it as a new trial). */
  nextTrial(study: Study): TrialTemplate | null {
    return this.readyContinuation(study, true);
  }

  /**
   * Whether optimize() may start a trial now: 'start' while a continuation decided here is ready or the
   * population (counted over the replica) is not full, 'wait' while this peer's members still run (one
   * of them may be exploited and continue), 'done' when none is left here.
   */
  admit(study: Study): 'start' | 'wait' | 'done' {
    if (this.readyContinuation(study, false)) return 'start';
    if (this.populationSize === undefined) return 'start';
    const trials = study.trials;
    if (trials.some((t) => t.state === 'WAITING')) return 'start';
    let members = 0;
    for (const t of trials) if (t.systemAttrs['pbtMember'] === undefined && t.systemAttrs['retryOf'] === undefined) members++;
    if (members < this.populationSize) return 'start';
    const self = study.storage.ownerId;
    return this.pending.has(study.studyId) || trials.some((t) => t.state === 'RUNNING' && t.owner === self) ? 'wait' : 'done';
  }
}

/**
 * A PopulationBasedTraining from JSON options (the CLI's `--pruner pbt --pruner-options`, a study's
 * stored pruner): each of `hyperparamMutations` is a distribution object as the line protocol writes
 * them (`{"type":"float","low":1e-4,"high":1,"log":true}`) or a list of choices. `customExploreFn`
 * cannot come as JSON.
 */
export function pbtFromJson(o: Record<string, unknown>): PopulationBasedTraining {
  const { hyperparamMutations, customExploreFn, ...rest } = o;
  if (customExploreFn !== undefined) throw new OptionError('PopulationBasedTraining: customExploreFn is a function; it cannot be given as JSON options', 'customExploreFn', customExploreFn);
  let mutations: Record<string, Mutation> | undefined;
  if (hyperparamMutations !== undefined) {
    if (!hyperparamMutations || typeof hyperparamMutations !== 'object' || Array.isArray(hyperparamMutations)) {
      throw new OptionError('PopulationBasedTraining: hyperparamMutations must be an object mapping parameter names to a distribution or a list of choices', 'hyperparamMutations', hyperparamMutations);
    }
    mutations = {};
    for (const [name, m] of Object.entries(hyperparamMutations)) {
      if (Array.isArray(m)) mutations[name] = m as ParamValue[];
      else {
        try {
          mutations[name] = parseDistribution(m);
        } catch (e) {
          throw new OptionError(`PopulationBasedTraining: hyperparamMutations.${name}: ${(e as Error).message}`, 'hyperparamMutations', m);
        }
      }
    }
  }
  return new PopulationBasedTraining({ ...(rest as PopulationBasedTrainingOptions), ...(mutations ? { hyperparamMutations: mutations } : {}) });
}
