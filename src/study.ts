/**
 * Study: the Optuna-shaped entry point. It owns the optimization loop (optimize / ask / tell), keeps
 * the rules about which trials are best, and talks to the history only through the Storage interface.
 */
import type { Distribution, ParamValue } from './distributions.js';
import { StudyUsageError, checkOptions, rules } from './errors.js';
import { trialsToRows, type Row } from './export.js';
import { formatParams, logger, logsAt } from './logging.js';
import { paretoFront } from './multi-objective.js';
import type { Pruner } from './pruners/base.js';
import { defaultPruner } from './pruners/index.js';
import type { Sampler } from './samplers/base.js';
import { isFeasible } from './samplers/constraints.js';
import { defaultSampler } from './samplers/index.js';
import { InMemoryStorage } from './storage/memory.js';
import {
  DuplicatedStudyError,
  StudyNotFoundError,
  isFinished,
  type FrozenTrial,
  type PeerInfo,
  type Storage,
  type StudyDirection,
  type StudyInfo,
  type TrialState,
} from './storage/storage.js';
import { Trial, TrialPruned } from './trial.js';
import { checkCheckpointConfig, type CheckpointConfig } from './checkpoints/keep.js';
import type { Checkpoint, CheckpointManager } from './checkpoints/manager.js';

export type ObjectiveResult = number | readonly number[];
export type Objective = (trial: Trial) => ObjectiveResult | Promise<ObjectiveResult>;
export type Callback = (study: Study, trial: FrozenTrial) => void | Promise<void>;

export interface CreateStudyOptions {
  studyName?: string;
  direction?: StudyDirection;
  directions?: StudyDirection[];
  sampler?: Sampler;
  pruner?: Pruner;
  storage?: Storage;
  /** Load the study if one with this name exists instead of failing (Optuna's load_if_exists). */
  loadIfExists?: boolean;
  /**
   * With loadIfExists: the id of the study to load when the storage holds several of this name (a
   * replica can: anyone may create a study of any name); the study must exist and have this name.
   */
  studyId?: string;
  /**
   * Which checkpoints `trial.saveCheckpoint` keeps (Ray's CheckpointConfig: numToKeep, scoreAttribute,
   * scoreOrder; minReplicas for replicated storages). Checked here; default keeps all.
   */
  checkpointConfig?: CheckpointConfig;
  /**
   * How many times a failed trial is run again (Ray's FailureConfig.max_failures): 0 (default) never,
   * -1 without limit. A retry is a new trial owned by the peer that runs it, with the same params,
   * `systemAttrs.retryOf` and `retryHistory`, and it resumes from the latest checkpoint. Trials whose
   * owner went silent (stale) are retried; with `retryFailed`, trials whose objective failed are too.
   */
  maxRetries?: number;
  /** Also retry trials whose objective failed, not only those whose peer went silent. Default false. */
  retryFailed?: boolean;
  /**
   * Peer ids whose trials this study does not read (issue 15 F7: a member publishing lies): trials,
   * best trials, samplers, pruners, retries and `maxTrials` budgets ignore them; their records still
   * replicate. This peer's own trials are always read. Checked like the replica's `excludePeers`
   * (which applies to every study of a replica, and also leaves them out of the numbering).
   */
  excludePeers?: string[];
  /** Authorship allowlist: read only trials owned by these peers (and this one), whichever peer relayed them. */
  trustPeers?: string[];
}

/**
 * The storage a study reads through: `storage` itself, or, with excludePeers / trustPeers, a view of
 * it without those owners' trials (src/storage/authors.ts; loaded only then: peer ids are checked with
 * libp2p's parser).
 */
async function readThrough(storage: Storage, opts: Pick<CreateStudyOptions, 'excludePeers' | 'trustPeers'>): Promise<Storage> {
  if (opts.excludePeers === undefined && opts.trustPeers === undefined) return storage;
  const [{ parsePeerIds }, { AuthorFilteredStorage, filters }] = await Promise.all([import('./security/allowlist.js'), import('./storage/authors.js')]);
  const filter = {
    excludePeers: opts.excludePeers !== undefined ? parsePeerIds(opts.excludePeers, 'excludePeers') : undefined,
    trustPeers: opts.trustPeers !== undefined ? parsePeerIds(opts.trustPeers, 'trustPeers') : undefined,
  };
  return filters(filter) ? new AuthorFilteredStorage(storage, filter) : storage;
}

export interface OptimizeOptions {
  /** Trials this call runs (per call, as in Optuna). Omitted with no timeout: runs until `stop()`. */
  nTrials?: number;
  /** Seconds after which no new trial starts. */
  timeout?: number;
  /** Trials in flight at once within this process. */
  nJobs?: number;
  /** Error classes (or a predicate) that fail the trial without stopping optimize. */
  catch?: (new (...args: never[]) => Error)[] | ((err: unknown) => boolean);
  callbacks?: Callback[];
  showProgressBar?: boolean;
  /**
   * A budget over the whole study (every process and peer): no trial starts once the replica holds
   * this many COMPLETE or PRUNED trials plus this peer's own RUNNING ones (other peers' RUNNING trials
   * do not count: anyone can claim them for free, issue 15 F8). Optuna's MaxTrialsCallback, but checked
   * before a trial starts so this peer's trials in flight count.
   */
  maxTrials?: number;
}

export { StudyUsageError };

const VALID_DIRECTIONS: readonly string[] = ['minimize', 'maximize'];

/**
 * How many finished trials of one optimize job may still be on their way to disk when its next trial
 * starts. Their states are applied in memory (samplers and callbacks see them); a storage that
 * commits in groups (the replicated one) then syncs trials that finished meanwhile in one write.
 */
export const OVERLAPPED_WRITES = 8;

/** Longest run of trials (ms) optimize goes without handing the event loop a turn. */
export const LOOP_TURN_MS = 20;

function checkDirections(opts: CreateStudyOptions): StudyDirection[] {
  if (opts.direction !== undefined && opts.directions !== undefined) {
    throw new StudyUsageError('give either direction or directions, not both');
  }
  const dirs = opts.directions ?? [opts.direction ?? 'minimize'];
  if (!Array.isArray(dirs) || dirs.length === 0) throw new StudyUsageError('directions must be a non-empty array');
  for (const d of dirs) {
    if (!VALID_DIRECTIONS.includes(d as string)) {
      throw new StudyUsageError(`unknown direction ${JSON.stringify(d)}; use "minimize" or "maximize"`);
    }
  }
  return dirs;
}

const nonNegative = { valid: 'a non-negative integer', test: rules.integer(0).test };
const OPTIMIZE_RULES = {
  nTrials: nonNegative,
  timeout: { valid: 'a positive number of seconds', test: (v: unknown) => typeof v === 'number' && v > 0 },
  nJobs: { valid: 'a positive integer', test: rules.integer(1).test },
  maxTrials: nonNegative,
  showProgressBar: rules.boolean(),
};

let anonymousStudies = 0;

export async function createStudy(opts: CreateStudyOptions = {}): Promise<Study> {
  const directions = checkDirections(opts);
  const storage = opts.storage ?? new InMemoryStorage();
  const studyName = opts.studyName ?? `no-name-${process.pid}-${Date.now().toString(36)}-${anonymousStudies++}`;
  if (typeof studyName !== 'string' || studyName.length === 0) throw new StudyUsageError('studyName must be a non-empty string');
  let info: StudyInfo;
  if (opts.studyId !== undefined && !opts.loadIfExists) throw new StudyUsageError('studyId chooses a study to load: pass it with loadIfExists: true, or use loadStudy()');
  const existing = opts.studyId !== undefined ? await studyById(storage, opts.studyId, studyName) : storage.getStudy(studyName);
  if (existing) {
    if (!opts.loadIfExists) {
      throw new DuplicatedStudyError(`a study named "${studyName}" already exists; pass loadIfExists: true or use loadStudy()`);
    }
    info = existing;
    if (existing.directions.join() !== directions.join() && (opts.direction || opts.directions)) {
      throw new StudyUsageError(
        `study "${studyName}" exists with directions [${existing.directions.join(', ')}], not [${directions.join(', ')}]`,
      );
    }
  } else {
    info = await storage.createStudy({ studyName, directions });
    logger.info(`A new study created in ${storage instanceof InMemoryStorage ? 'memory' : 'storage'} with name: ${studyName}`);
  }
  return new Study(info, await readThrough(storage, opts), opts.sampler ?? defaultSampler(), opts.pruner ?? defaultPruner(), { checkpointConfig: opts.checkpointConfig, maxRetries: opts.maxRetries, retryFailed: opts.retryFailed });
}

/** The study with this id (waiting for it like loadStudy when the storage replicates), checked against `name`. */
async function studyById(storage: Storage, studyId: string, name?: string): Promise<StudyInfo> {
  if (typeof studyId !== 'string' || studyId.length === 0) throw new StudyUsageError(`studyId must be a non-empty string, got ${JSON.stringify(studyId)}`);
  // A replicating storage is asked even when it lists the study: one that just arrived is listed as soon
  // as its genesis is in, before its first sync has brought the trials (waitForStudyId waits for that).
  const info = (await storage.waitForStudyId?.(studyId)) ?? storage.listStudies().find((s) => s.studyId === studyId) ?? null;
  if (!info) {
    const ids = storage.listStudies().map((s) => `${s.studyName} (${s.studyId})`);
    throw new StudyNotFoundError(`no study with id "${studyId}" in this storage${ids.length ? `; studies here: ${ids.join(', ')}` : ' (it has no studies)'}`);
  }
  if (name !== undefined && info.studyName !== name) throw new StudyUsageError(`study ${studyId} is named "${info.studyName}", not "${name}"`);
  return info;
}

export async function loadStudy(opts: {
  /** The study's name; optional with studyId (then checked against it when given). */
  studyName?: string;
  /** Chooses the study by id: a replica can hold several studies of one name (AmbiguousStudyError). */
  studyId?: string;
  storage: Storage;
  sampler?: Sampler;
  pruner?: Pruner;
  checkpointConfig?: CheckpointConfig;
  maxRetries?: number;
  retryFailed?: boolean;
  /** As in createStudy: the study reads as if these peers' trials did not exist. */
  excludePeers?: string[];
  /** As in createStudy: read only trials owned by these peers (and this one). */
  trustPeers?: string[];
}): Promise<Study> {
  if (opts.studyId !== undefined) {
    const byId = await studyById(opts.storage, opts.studyId, opts.studyName);
    return new Study(byId, await readThrough(opts.storage, opts), opts.sampler ?? defaultSampler(), opts.pruner ?? defaultPruner(), { checkpointConfig: opts.checkpointConfig, maxRetries: opts.maxRetries, retryFailed: opts.retryFailed });
  }
  if (typeof opts.studyName !== 'string') throw new StudyUsageError('loadStudy() needs studyName or studyId');
  const info = (await opts.storage.waitForStudy?.(opts.studyName)) ?? opts.storage.getStudy(opts.studyName) ?? null;
  if (!info) {
    const names = opts.storage.listStudies().map((s) => s.studyName);
    throw new StudyNotFoundError(
      `no study named "${opts.studyName}" in this storage${names.length ? `; studies here: ${names.join(', ')}` : ' (it has no studies)'}`,
    );
  }
  return new Study(info, await readThrough(opts.storage, opts), opts.sampler ?? defaultSampler(), opts.pruner ?? defaultPruner(), { checkpointConfig: opts.checkpointConfig, maxRetries: opts.maxRetries, retryFailed: opts.retryFailed });
}

/** Rendezvous hashing: the worker whose hash with the trial id is highest takes the retry. */
function assignee(trialId: string, workers: readonly string[]): string | null {
  let best: string | null = null;
  let bestScore = -1;
  for (const w of workers) {
    const score = fnv1a(`${trialId}|${w}`);
    if (score > bestScore || (score === bestScore && best !== null && w < best)) {
      best = w;
      bestScore = score;
    }
  }
  return best;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export class Study {
  private stopRequested = false;
  private readonly inFlight = new Map<string, Trial>();

  private checkpointManager: Promise<CheckpointManager> | null = null;
  /** Failed trials this process has already started a retry of (its record may not be visible yet). */
  private readonly retrying = new Set<string>();
  readonly checkpointConfig: CheckpointConfig;

  constructor(
    private info: StudyInfo,
    readonly storage: Storage,
    readonly sampler: Sampler,
    readonly pruner: Pruner,
    options: { checkpointConfig?: CheckpointConfig | undefined; maxRetries?: number | undefined; retryFailed?: boolean | undefined } = {},
  ) {
    this.checkpointConfig = checkCheckpointConfig(options.checkpointConfig);
    checkOptions('createStudy', options, {
      maxRetries: { valid: 'an integer >= -1 (-1: no limit)', test: rules.integer(-1).test },
      retryFailed: rules.boolean(),
    });
    this.maxRetries = options.maxRetries ?? 0;
    this.retryFailed = options.retryFailed ?? false;
  }

  /** Retries per failed trial (0: none, -1: no limit); see CreateStudyOptions.maxRetries. */
  readonly maxRetries: number;
  readonly retryFailed: boolean;

  /**
   * The FAIL trial this peer should run again now, if any: not retried yet, under the retry limit,
   * stale (or any failure with retryFailed), and assigned to this peer. In a connected swarm every peer
   * computes the same assignment (rendezvous hashing of the trial id over the peers that run trials and
   * are online by the storage's liveness window), so one failure gets one retry. Across a partition each side
   * may retry it; both results stand.
   */
  private retryCandidate(): FrozenTrial | null {
    if (this.maxRetries === 0) return null;
    const failed = this.storage.getAllTrials(this.studyId, ['FAIL']);
    if (failed.length === 0) return null;
    const retried = new Set<string>();
    for (const t of this.storage.getAllTrials(this.studyId)) {
      const of = t.systemAttrs['retryOf'];
      if (typeof of === 'string') retried.add(of);
    }
    let workers: string[] | null = null;
    for (const t of failed) {
      if (retried.has(t.trialId) || this.retrying.has(t.trialId)) continue;
      if (t.systemAttrs['stale'] !== true && !this.retryFailed) continue;
      const history = Array.isArray(t.systemAttrs['retryHistory']) ? (t.systemAttrs['retryHistory'] as unknown[]) : [];
      if (this.maxRetries >= 0 && history.length >= this.maxRetries) continue;
      workers ??= this.liveWorkers();
      if (assignee(t.trialId, workers.filter((w) => w !== t.owner || workers!.length === 1)) !== this.storage.ownerId) continue;
      return t;
    }
    return null;
  }

  /** This peer and the peers seen lately that run trials (a replica-only node never retries). */
  private liveWorkers(): string[] {
    const self = this.storage.ownerId;
    const out = new Set<string>([self]);
    for (const p of this.storage.peers?.(this.studyId) ?? []) if (!p.self && p.online && p.trialsRun > 0) out.add(p.peerId);
    return [...out].sort();
  }

  /**
   * The study's checkpoints (blob store and keep rules), created on first use: the blob store is the
   * storage's `checkpointDir`, else a temporary directory for this process. Loaded lazily so studies
   * that never checkpoint pay nothing.
   */
  checkpoints(): Promise<CheckpointManager> {
    this.checkpointManager ??= (async () => {
      const [{ CheckpointManager }, { BlobStore }, os, path, fs] = await Promise.all([
        import('./checkpoints/manager.js'),
        import('./checkpoints/blob-store.js'),
        import('node:os'),
        import('node:path'),
        import('node:fs/promises'),
      ]);
      const dir = this.storage.checkpointDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'peertune-checkpoints-')));
      const store = await BlobStore.open(dir);
      const fetch = this.storage.fetchCheckpointBlobs?.bind(this.storage);
      return new CheckpointManager(this.storage, store, { peerId: this.storage.ownerId, config: this.checkpointConfig, ...(fetch ? { fetch } : {}) });
    })();
    return this.checkpointManager;
  }

  /**
   * The best checkpoint of the study by a metric its checkpoints recorded (Ray's
   * get_best_checkpoint), unpacked to a local path; null when no checkpoint has that metric.
   */
  async bestCheckpoint(opts: { metric: string; order?: 'max' | 'min' }): Promise<Checkpoint | null> {
    const m = await this.checkpoints();
    const ref = m.bestRef(this.studyId, opts.metric, opts.order ?? 'max');
    return ref ? m.materialize(ref) : null;
  }

  get studyName(): string {
    return this.info.studyName;
  }

  get studyId(): string {
    return this.info.studyId;
  }

  get directions(): readonly StudyDirection[] {
    return this.info.directions;
  }

  get direction(): StudyDirection {
    if (this.directions.length > 1) throw new StudyUsageError('this study has several directions; use study.directions');
    return this.directions[0]!;
  }

  get isMultiObjective(): boolean {
    return this.directions.length > 1;
  }

  /** The study's user attrs as stored now (looked up by id: two peers may create the same name apart). */
  get userAttrs(): Readonly<Record<string, unknown>> {
    return this.storage.listStudies().find((s) => s.studyId === this.studyId)?.userAttrs ?? this.info.userAttrs;
  }

  setUserAttr(key: string, value: unknown): void {
    this.storage.setStudyUserAttr(this.studyId, key, value);
  }

  /** Peers sharing this study (empty for storages that are not replicated). */
  get peers(): PeerInfo[] {
    return this.storage.peers?.(this.studyId) ?? [];
  }

  /** All trials, ordered by number. */
  get trials(): readonly FrozenTrial[] {
    return this.storage.getAllTrials(this.studyId);
  }

  getTrials(opts: { states?: readonly TrialState[] } = {}): readonly FrozenTrial[] {
    return this.storage.getAllTrials(this.studyId, opts.states);
  }

  get bestTrial(): FrozenTrial {
    if (this.isMultiObjective) {
      throw new StudyUsageError('bestTrial is for single-objective studies; use bestTrials for the Pareto front');
    }
    const maximize = this.direction === 'maximize';
    let best: FrozenTrial | null = null;
    let complete = 0;
    // Trials that break a constraint (system attr `constraints` > 0) never count as best, as in Optuna.
    for (const t of this.getTrials({ states: ['COMPLETE'] })) {
      complete++;
      if (!isFeasible(t)) continue;
      const v = t.values![0]!;
      if (best === null || (maximize ? v > best.values![0]! : v < best.values![0]!)) best = t;
    }
    if (!best) throw new StudyUsageError(complete ? `none of the ${complete} completed trials is feasible, so there is no best trial` : 'no trials are completed yet, so there is no best trial');
    return best;
  }

  /** bestTrial, or null when no feasible trial is complete. */
  private bestOrNull(): FrozenTrial | null {
    try {
      return this.bestTrial;
    } catch (e) {
      if (e instanceof StudyUsageError) return null;
      throw e;
    }
  }

  get bestValue(): number {
    return this.bestTrial.values![0]!;
  }

  get bestParams(): Readonly<Record<string, ParamValue>> {
    return this.bestTrial.params;
  }

  /** The Pareto front of feasible COMPLETE trials (for one direction: the best trial(s)). */
  get bestTrials(): FrozenTrial[] {
    return paretoFront(this.getTrials({ states: ['COMPLETE'] }).filter(isFeasible), this.directions);
  }

  /** Optuna's trials_dataframe(): one row per trial, Optuna's column names. */
  trialsDataframe(): { columns: string[]; rows: Row[] } {
    return trialsToRows(this);
  }

  /** Asks the sampler for a new trial (or takes an enqueued one). */
  ask(fixedDistributions: Record<string, Distribution> = {}): Trial {
    const { storage, studyId, sampler } = this;
    const next = this.pruner.nextTrial?.(this); // a continuation the pruner decided on (PBT)
    const frozen = this.startRetry() ?? (next ? storage.createTrial(studyId, next) : null) ?? storage.claimWaitingTrial(studyId) ?? storage.createTrial(studyId);
    sampler.beforeTrial?.(this, frozen);
    const fixed = (frozen.systemAttrs['fixedParams'] as Record<string, ParamValue> | undefined) ?? {};
    const space = { ...sampler.inferRelativeSearchSpace(this, frozen) };
    for (const name of Object.keys(fixed)) delete space[name];
    let relative: Record<string, ParamValue> = {};
    if (Object.keys(space).length > 0) {
      relative = sampler.sampleRelative(this, frozen, space);
      const dists: Record<string, Distribution> = {};
      for (const k of Object.keys(relative)) dists[k] = space[k]!;
      if (Object.keys(relative).length > 0) storage.setTrialParams(studyId, frozen.trialId, relative, dists);
    }
    const trial = new Trial(this, frozen.trialId, relative, space);
    for (const [name, d] of Object.entries(fixedDistributions)) trial.suggest(name, d);
    this.inFlight.set(frozen.trialId, trial);
    return trial;
  }

  /** Whether a failed trial is still under the retry limit (so a later ask() runs it again). */
  private willRetry(t: FrozenTrial): boolean {
    if (this.maxRetries === 0 || !this.retryFailed || t.state !== 'FAIL') return false;
    const history = Array.isArray(t.systemAttrs['retryHistory']) ? t.systemAttrs['retryHistory'].length : 0;
    return this.maxRetries < 0 || history < this.maxRetries;
  }

  /** Creates the retry of `retryCandidate()`, if there is one: same params, linked both ways by id. */
  private startRetry(): FrozenTrial | null {
    const t = this.retryCandidate();
    if (!t) return null;
    this.retrying.add(t.trialId);
    const history = Array.isArray(t.systemAttrs['retryHistory']) ? (t.systemAttrs['retryHistory'] as string[]) : [];
    const retry = this.storage.createTrial(this.studyId, {
      params: { ...t.params },
      distributions: { ...t.distributions },
      systemAttrs: { fixedParams: { ...t.params }, retryOf: t.trialId, retryHistory: [...history, t.trialId] },
    });
    const limit = this.maxRetries < 0 ? 'no limit' : `at most ${this.maxRetries}`;
    logger.info(`Trial ${t.number} ${t.systemAttrs['stale'] === true ? 'lost its peer' : 'failed'}; retrying it as trial ${retry.number} (retry ${history.length + 1}, ${limit}).`);
    return retry;
  }

  /**
   * Finishes a trial asked with `ask()`. Give values (a number or one per direction), or a state.
   * Bad values (NaN, Infinity, wrong count) fail the trial with the reason logged, as Optuna does.
   * In a replicated study the trial it returns carries its settled number (settledTrial).
   */
  async tell(
    trial: Trial | number,
    values?: ObjectiveResult | null,
    opts: { state?: 'COMPLETE' | 'PRUNED' | 'FAIL'; failReason?: string } = {},
  ): Promise<FrozenTrial> {
    return this.settledTrial(await this.tellNow(trial, values, opts));
  }

  /**
   * The trial as stored once its number is settled (PeerStorage.whenNumbersSettled: every live peer of
   * the study has shown that none of its trials still on the way sorts before it): a few ms while peers
   * work, at most a couple of heartbeats when they are idle; on a timeout, the number it has then.
   * Without replication, the trial as given.
   */
  private async settledTrial(t: FrozenTrial): Promise<FrozenTrial> {
    const settle = this.storage.whenNumbersSettled;
    if (!settle) return t;
    await settle.call(this.storage, this.studyId, [t.trialId]).catch(() => false);
    return this.reread(t);
  }

  /** The trial as stored now (its number read again), or as given once the storage has closed. */
  private reread(t: FrozenTrial): FrozenTrial {
    try {
      return this.storage.getTrial(this.studyId, t.trialId);
    } catch {
      return t; // the storage closed meanwhile: the number as it was
    }
  }

  /** tell() without the wait for the settled number: optimize's own trials (their lines and callbacks wait on their own). */
  private async tellNow(
    trial: Trial | number,
    values?: ObjectiveResult | null,
    opts: { state?: 'COMPLETE' | 'PRUNED' | 'FAIL'; failReason?: string } = {},
  ): Promise<FrozenTrial> {
    const t = this.resolveTrial(trial);
    const snap = this.storage.getTrial(this.studyId, t.trialId);
    if (isFinished(snap.state)) {
      throw new StudyUsageError(`trial ${snap.number} is already finished (${snap.state}); tell() can be called once per trial`);
    }
    let state = opts.state;
    let vals: number[] | null = null;
    let reason = opts.failReason;
    if (state === undefined && (values === undefined || values === null)) {
      throw new StudyUsageError('tell() needs values or a state (COMPLETE needs values; use state: "FAIL" or "PRUNED" otherwise)');
    }
    if (state === undefined || state === 'COMPLETE') {
      if (values === undefined || values === null) {
        state = 'FAIL';
        reason = 'no values were given for a COMPLETE trial';
      } else {
        const checked = this.checkValues(values);
        if (typeof checked === 'string') {
          state = 'FAIL';
          reason = checked;
        } else {
          state = 'COMPLETE';
          vals = checked;
        }
      }
    } else if (state === 'PRUNED') {
      // Optuna's rule: the last intermediate value becomes the value, unless it is not one (NaN; here
      // also ±Infinity, since stored values are finite).
      let last: number | null = null;
      for (const step of snap.intermediateValues.keys()) if (last === null || step > last) last = step;
      const v = last === null ? undefined : snap.intermediateValues.get(last);
      if (v !== undefined && Number.isFinite(v) && !this.isMultiObjective) vals = [v];
    }
    if (reason) this.storage.setTrialSystemAttr(this.studyId, t.trialId, 'failReason', reason);
    this.sampler.afterTrial?.(this, this.storage.getTrial(this.studyId, t.trialId), state, vals);
    await this.storage.finishTrial(this.studyId, t.trialId, state, vals);
    this.inFlight.delete(t.trialId);
    const done = this.storage.getTrial(this.studyId, t.trialId);
    this.logFinished(done, reason);
    return done;
  }

  /** Adds a trial with fixed parameters, run before any sampled trial (Optuna's enqueue_trial). */
  async enqueueTrial(params: Record<string, ParamValue>, opts: { userAttrs?: Record<string, unknown>; skipIfExists?: boolean } = {}): Promise<void> {
    if (!params || typeof params !== 'object' || Array.isArray(params)) throw new StudyUsageError('enqueueTrial() needs an object of parameter values');
    for (const [k, v] of Object.entries(params)) {
      const ok = v === null || ['string', 'boolean'].includes(typeof v) || (typeof v === 'number' && Number.isFinite(v));
      if (!ok) throw new StudyUsageError(`enqueueTrial(): parameter "${k}" has value ${String(v)}; use a finite number, string, boolean or null`);
    }
    if (opts.skipIfExists) {
      const key = JSON.stringify(Object.entries(params).sort());
      const same = this.trials.some((t) => {
        const fixed = (t.systemAttrs['fixedParams'] as Record<string, ParamValue> | undefined) ?? t.params;
        return JSON.stringify(Object.entries(fixed).sort()) === key;
      });
      if (same) return;
    }
    this.storage.createTrial(this.studyId, { state: 'WAITING', systemAttrs: { fixedParams: { ...params } }, userAttrs: opts.userAttrs });
    await this.storage.flush();
  }

  /** Stops `optimize` after the trials in flight finish. */
  stop(): void {
    this.stopRequested = true;
  }

  async optimize(objective: Objective, opts: OptimizeOptions = {}): Promise<void> {
    const { nTrials, timeout, nJobs = 1, callbacks = [], maxTrials } = opts;
    if (typeof objective !== 'function') throw new StudyUsageError('optimize() needs an objective function');
    checkOptions('optimize', opts, OPTIMIZE_RULES);
    const isCaught = this.catcher(opts.catch);
    const deadline = timeout !== undefined ? Date.now() + timeout * 1000 : Infinity;
    this.stopRequested = false;
    let started = 0;
    let fatal: { err: unknown } | null = null;

    const bar = opts.showProgressBar ? (await import('./progress-bar.js')).progressBar(nTrials, timeout) : null;
    // When the event loop last had a turn, as seen by an immediate queued after a trial (one at a time,
    // so nothing wakes the process while an objective runs): the trial loop hands it one when it is late.
    let lastTurn = Date.now();
    let marking = false;
    const mark = (): void => {
      marking = false;
      lastTurn = Date.now();
    };
    try {
      // A trial that completed or was pruned does not hold the next ask for its disk write (finishTrial
      // resolves once it is synced): the next trials start meanwhile, up to OVERLAPPED_WRITES writes
      // behind, and optimize resolves once every write has. Not with a scheduling pruner (PBT), whose
      // turns follow the trials' tells; nor after a failure (it may end optimize, as in Optuna).
      const overlap = !this.pruner.admit;
      const worker = async (): Promise<void> => {
        // Writes of this worker's finished trials still on their way to disk, oldest first.
        const writing: Promise<FrozenTrial>[] = [];
        // Callbacks of this worker's trials that wait for their trial's settled number, in finish order.
        const behind: Promise<void>[] = [];
        try {
          while (!this.stopRequested && !fatal && (nTrials === undefined || started < nTrials) && Date.now() < deadline) {
            if (maxTrials !== undefined && this.countTowardsBudget() >= maxTrials) break;
            // A scheduling pruner (PBT) may hold the loop until a continuation waits, or end it. No await
            // between its last 'start' and ask(), so two jobs cannot both take the last place.
            let turn = this.pruner.admit?.(this) ?? 'start';
            while (turn === 'wait' && !this.stopRequested && !fatal && Date.now() < deadline) {
              await this.historyChange(Math.min(1000, deadline - Date.now()));
              turn = this.pruner.admit!(this);
            }
            if (turn !== 'start') break;
            started++;
            const { trialId, told, error } = await this.runOne(objective);
            const written = told.then((t) => {
              bar?.update(this.bestText());
              return t;
            });
            written.catch(() => {});
            writing.push(written);
            while (writing.length > OVERLAPPED_WRITES) await writing.shift();
            // A synchronous objective never hands the event loop a turn by itself (and a write may already
            // be done): give it one (timers, sockets, gossip, heartbeats) once none came for LOOP_TURN_MS.
            if (Date.now() - lastTurn > LOOP_TURN_MS) await new Promise((r) => setTimeout(r, 0));
            if (!marking) {
              marking = true;
              setImmediate(mark);
            }
            let frozen: FrozenTrial;
            if (overlap && error === undefined) {
              // The trial is finished in memory (the next trial's sampler and these callbacks see it); its
              // disk write goes on while the next trials run.
              frozen = this.storage.getTrial(this.studyId, trialId);
            } else {
              frozen = (await Promise.all(writing.splice(0))).at(-1)!;
              // A failure that will be retried does not stop optimize (Ray's max_failures); others follow Optuna.
              if (error !== undefined && !isCaught(error) && !this.willRetry(frozen)) {
                fatal ??= { err: error };
              }
            }
            if (callbacks.length === 0) continue;
            // Callbacks see the trial's settled number, as its log line does: the number it keeps on every
            // replica while peers stay connected. Settled already (a trial that ran longer than a gossip
            // round, or no replication): they run now, before the next trial starts, as in Optuna.
            // Otherwise (a trial shorter than the round the settling takes: tens of ms in a busy swarm)
            // the next trials start meanwhile, up to OVERLAPPED_WRITES callbacks behind, and these run
            // in finish order once settled; a stop() in them ends optimize after the trials started by
            // then. optimize resolves after every callback.
            const id = frozen.trialId;
            const settledNow = this.storage.numbersSettled ? this.storage.numbersSettled(this.studyId, [id]) : !this.storage.whenNumbersSettled;
            if (behind.length === 0 && settledNow) {
              frozen = this.storage.getTrial(this.studyId, id);
              for (const cb of callbacks) await cb(this, frozen);
              continue;
            }
            const prev = behind.at(-1) ?? Promise.resolve();
            const ran = Promise.all([prev, this.settledTrial(frozen)]).then(async ([, f]) => {
              for (const cb of callbacks) await cb(this, f);
            });
            ran.catch((err) => {
              fatal ??= { err };
            });
            behind.push(ran);
            const done = (): void => void behind.splice(behind.indexOf(ran), 1);
            ran.then(done, done);
            while (behind.length > OVERLAPPED_WRITES) await behind[0]!.catch(() => {});
          }
        } catch (e) {
          // A callback or the objective's tell threw: the trials' writes (and the callbacks behind) still end before optimize does.
          await Promise.allSettled([...writing, ...behind]);
          throw e;
        }
        await Promise.allSettled(behind);
        await Promise.all(writing);
      };
      await Promise.all(Array.from({ length: nJobs }, () => worker()));
    } finally {
      await this.flushLog();
      bar?.stop();
    }
    if (fatal) throw (fatal as { err: unknown }).err;
  }

  /** Resolves when the study's trials change (here or by a merge), or after `ms`. */
  private async historyChange(ms: number): Promise<void> {
    const v = this.storage.getVersion(this.studyId);
    const until = Date.now() + Math.max(0, ms);
    while (Date.now() < until && this.storage.getVersion(this.studyId) === v && !this.stopRequested) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Trials counted against `maxTrials`: COMPLETE and PRUNED ones from every peer, plus this peer's own
   * RUNNING ones. Other peers' RUNNING trials do not count: a RUNNING record costs nothing to write and
   * its owner only has to stay alive to keep it, so counting them let one member hold the whole budget
   * while running nothing (issue 15 F8). Optuna's MaxTrialsCallback also counts finished trials only;
   * the price is the same overshoot: up to the trials other peers have in flight when the budget fills.
   */
  countTowardsBudget(): number {
    const self = this.storage.ownerId;
    return this.getTrials({ states: ['COMPLETE', 'PRUNED', 'RUNNING'] }).filter((t) => t.state !== 'RUNNING' || t.owner === self).length;
  }

  /**
   * Runs one trial and tells it: `told` settles once the trial's finished state is durable; by the time
   * this resolves the state is already applied in memory (tell's synchronous part).
   */
  private async runOne(objective: Objective): Promise<{ trialId: string; told: Promise<FrozenTrial>; error?: unknown }> {
    const trial = this.ask();
    let result: unknown;
    try {
      result = await objective(trial);
    } catch (err) {
      if (err instanceof TrialPruned) return { trialId: trial.trialId, told: this.tellNow(trial, null, { state: 'PRUNED' }) };
      const msg = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      return { trialId: trial.trialId, told: this.tellNow(trial, null, { state: 'FAIL', failReason: `the objective raised ${msg}` }), error: err };
    }
    return { trialId: trial.trialId, told: this.tellNow(trial, result as ObjectiveResult) };
  }

  /** Validates an objective's result; returns the values, or a reason to fail the trial. */
  private checkValues(values: unknown): number[] | string {
    const arr = Array.isArray(values) ? values : [values];
    if (arr.length !== this.directions.length) {
      return `the objective returned ${arr.length} value(s) but the study has ${this.directions.length} direction(s)`;
    }
    for (const v of arr) {
      if (typeof v !== 'number') return `the objective returned ${JSON.stringify(v) ?? String(v)}, which is not a number`;
      if (!Number.isFinite(v)) return `the objective returned ${v}, which is not a finite number`;
    }
    return arr as number[];
  }

  private catcher(c: OptimizeOptions['catch']): (err: unknown) => boolean {
    if (!c) return () => false;
    if (typeof c === 'function' && !Array.isArray(c)) return c as (err: unknown) => boolean;
    return (err) => (c as (new (...args: never[]) => Error)[]).some((cls) => err instanceof cls);
  }

  private resolveTrial(trial: Trial | number): Trial | { trialId: string } {
    if (trial instanceof Trial) return trial;
    if (typeof trial === 'number') {
      const t = this.trials.find((x) => x.number === trial);
      if (!t) throw new StudyUsageError(`no trial number ${trial} in study "${this.studyName}"`);
      if (t.owner !== this.storage.ownerId) throw new StudyUsageError(`trial ${trial} belongs to peer ${t.owner}; only its owner can tell it`);
      return this.inFlight.get(t.trialId) ?? { trialId: t.trialId };
    }
    throw new StudyUsageError('tell() takes a Trial from ask() or a trial number');
  }

  private logFinished(t: FrozenTrial, reason?: string): void {
    // The best trial is a pass over every trial: not worth it for a line nobody sees.
    if (t.state !== 'FAIL' && !logsAt('info')) return;
    const best = t.state === 'COMPLETE' && !this.isMultiObjective ? this.bestOrNull() : null;
    const settle = this.storage.whenNumbersSettled;
    if (settle) {
      // A replicated study: the line waits until its numbers (this trial's, the best's) can no longer
      // move while peers stay connected, and then reads them (a trial of another peer created just
      // before this one may still be on its way: view.ts, the numbering's race).
      // Lines go out in the order the trials finished, each after the one before (a newer trial's number
      // settles later), and "Best is" names the best as of this trial's finish.
      const settled = settle.call(this.storage, this.studyId, best ? [t.trialId, best.trialId] : [t.trialId]).catch(() => false);
      this.lastLine = Promise.all([this.lastLine, settled])
        .then(() => this.writeFinished(this.reread(t), reason, best ? this.reread(best) : null))
        .catch(() => {});
      return;
    }
    this.writeFinished(t, reason, best);
  }

  /** The last log line queued (logFinished): the next one goes out after it, so it is written once all before it are. */
  private lastLine: Promise<void> = Promise.resolve();

  /**
   * Resolves once the log lines of the trials told so far are written: in a replicated study a line
   * waits until the trial's number can no longer move (a few ms while peers work, at most a couple of
   * heartbeats). `optimize` waits for them itself; call it after `tell` before a process exits.
   */
  async flushLog(): Promise<void> {
    await this.lastLine;
  }

  private writeFinished(t: FrozenTrial, reason: string | undefined, best: FrozenTrial | null): void {
    const params = formatParams(t.params);
    if (t.state === 'COMPLETE') {
      if (this.isMultiObjective) {
        logger.info(`Trial ${t.number} finished with values: [${t.values!.join(', ')}] and parameters: ${params}.`);
      } else {
        // `best`: none while every trial breaks a constraint.
        const tail = best ? ` Best is trial ${best.number} with value: ${best.values![0]}.` : '';
        logger.info(`Trial ${t.number} finished with value: ${t.values![0]} and parameters: ${params}.${tail}`);
      }
    } else if (t.state === 'PRUNED') {
      logger.info(`Trial ${t.number} pruned.`);
    } else {
      logger.warn(`Trial ${t.number} failed with parameters: ${params} because of the following error: ${reason ?? 'unknown'}.`);
    }
  }

  /** "best trial: N, best value: V" for the progress bar (empty until a trial completes, and for several directions). */
  private bestText(): string {
    if (this.isMultiObjective) return '';
    try {
      return `best trial: ${this.bestTrial.number}, best value: ${this.bestValue}`;
    } catch {
      return '';
    }
  }
}
