/**
 * The storage seam. A study, its samplers and its pruners see the trial history only through this
 * interface, so they never know whether it lives in memory or in a replica that other peers append to
 * concurrently.
 *
 * Reads are synchronous: every peer reads its own local replica, and samplers call them on every
 * `ask()`. Writes to a trial this peer owns are applied to the local replica synchronously and
 * persisted/replicated in the background; `finishTrial` and `flush` are the durable points (a trial's
 * terminal state is on disk before `finishTrial` resolves).
 *
 * Trials are identified by `trialId` (`owner:seq`, unique without coordination) and shown by `number`
 * (assigned by the storage; see each storage for how it keeps numbers stable).
 */
import type { Distribution, ParamValue } from '../distributions.js';
import { PeertuneError } from '../errors.js';
import { checkpointRefs, type CheckpointRef } from '../checkpoints/refs.js';

export type TrialState = 'WAITING' | 'RUNNING' | 'COMPLETE' | 'PRUNED' | 'FAIL';
export const TRIAL_STATES: readonly TrialState[] = ['WAITING', 'RUNNING', 'COMPLETE', 'PRUNED', 'FAIL'];

export function isFinished(state: TrialState): boolean {
  return state === 'COMPLETE' || state === 'PRUNED' || state === 'FAIL';
}

export type StudyDirection = 'minimize' | 'maximize';

/** An immutable snapshot of one trial, as samplers, pruners and users see it. */
export interface FrozenTrial {
  /** `owner:seq`; unique across the swarm. */
  readonly trialId: string;
  /**
   * Display number: 0, 1, 2, ... unique within the study (the replicated storage: the same on every
   * replica that holds the same trials; a trial created elsewhere just before can move it, see view.ts).
   */
  readonly number: number;
  /** Peer id (or `local` for in-memory studies) of the trial's owner, the only writer of its fields. */
  readonly owner: string;
  readonly state: TrialState;
  /** One value per objective direction when COMPLETE (PRUNED: the last intermediate value); otherwise null. */
  readonly values: readonly number[] | null;
  /** `values[0]` for single-objective studies, null otherwise (as Optuna's `FrozenTrial.value`). */
  readonly value: number | null;
  readonly params: Readonly<Record<string, ParamValue>>;
  readonly distributions: Readonly<Record<string, Distribution>>;
  /** step -> value. */
  readonly intermediateValues: ReadonlyMap<number, number>;
  readonly userAttrs: Readonly<Record<string, unknown>>;
  readonly systemAttrs: Readonly<Record<string, unknown>>;
  readonly datetimeStart: Date | null;
  readonly datetimeComplete: Date | null;
  /** The trial's kept checkpoint references, oldest first (read from the system attr `checkpoints`). */
  readonly checkpoints: readonly CheckpointRef[];
}

/** The fields a storage knows of a trial; `frozenTrial` derives the rest. */
export type TrialFields = Omit<FrozenTrial, 'value' | 'checkpoints'>;

/**
 * The one way to build a FrozenTrial (every storage and the JSON import use it): copies and freezes the
 * containers, and derives `value` from `values` (Optuna's rule: set for one objective only).
 */
const NO_CHECKPOINTS: readonly CheckpointRef[] = Object.freeze([]);

export function frozenTrial(f: TrialFields): FrozenTrial {
  const values = f.values ? (Object.isFrozen(f.values) ? f.values : Object.freeze([...f.values])) : null;
  return Object.freeze({
    trialId: f.trialId,
    number: f.number,
    owner: f.owner,
    state: f.state,
    values,
    value: values && values.length === 1 ? values[0]! : null,
    params: frozenCopy(f.params),
    distributions: frozenCopy(f.distributions),
    intermediateValues: f.intermediateValues instanceof OwnedMap ? f.intermediateValues : new Map(f.intermediateValues),
    userAttrs: frozenCopy(f.userAttrs),
    systemAttrs: frozenCopy(f.systemAttrs),
    datetimeStart: f.datetimeStart,
    datetimeComplete: f.datetimeComplete,
    checkpoints: f.systemAttrs['checkpoints'] === undefined ? NO_CHECKPOINTS : Object.freeze(checkpointRefs(f).sort((a, b) => a.seq - b.seq)),
  });
}

/** An object that is frozen already is shared (a storage's own immutable record parts); others are copied. */
function frozenCopy<T extends object>(o: T): Readonly<T> {
  return Object.isFrozen(o) ? o : Object.freeze({ ...o });
}

/**
 * A step -> value map made for one FrozenTrial (`frozenTrial` takes it as it is instead of copying it
 * again). In a replica of 100,000 trials, every copy made and dropped on the way is memory and time.
 */
export class OwnedMap extends Map<number, number> {}

/**
 * A step -> value map read straight from packed step, value, step, value... numbers (how the replica
 * keeps a decoded trial's intermediate values, replicated/schema.ts): no hash table and no boxed
 * numbers per entry. In a replica of 100,000 trials with 20 values each, the hash tables and boxed
 * values of ordinary maps were about 120 MB (issue 8, RSS). Steps in increasing order (what a trial
 * reports) are looked up by binary search; any other order, or the first write to the map, turns it
 * into an ordinary map holding the same entries (a later value of a repeated step wins, as in `set`).
 */
export class PackedStepMap extends OwnedMap {
  #packed: readonly number[] | null;

  constructor(packed: readonly number[]) {
    super();
    let increasing = true;
    for (let i = 2; i < packed.length && increasing; i += 2) increasing = packed[i]! > packed[i - 2]!;
    this.#packed = packed;
    if (!increasing) this.#unpack();
  }

  #unpack(): void {
    const p = this.#packed;
    if (!p) return;
    this.#packed = null;
    for (let i = 0; i < p.length; i += 2) super.set(p[i]!, p[i + 1]!);
  }

  /** The index of `step`'s value in the packed numbers, or -1. */
  #find(step: number): number {
    const p = this.#packed!;
    let lo = 0;
    let hi = p.length / 2;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const s = p[2 * mid]!;
      if (s === step) return 2 * mid + 1;
      if (s < step) lo = mid + 1;
      else hi = mid;
    }
    return -1;
  }

  override get size(): number {
    return this.#packed ? this.#packed.length / 2 : super.size;
  }

  override get(step: number): number | undefined {
    if (!this.#packed) return super.get(step);
    const i = this.#find(step);
    return i < 0 ? undefined : this.#packed[i];
  }

  override has(step: number): boolean {
    return this.#packed ? this.#find(step) >= 0 : super.has(step);
  }

  override *entries(): MapIterator<[number, number]> {
    if (!this.#packed) return yield* super.entries();
    const p = this.#packed;
    for (let i = 0; i < p.length; i += 2) yield [p[i]!, p[i + 1]!];
  }

  override *keys(): MapIterator<number> {
    if (!this.#packed) return yield* super.keys();
    const p = this.#packed;
    for (let i = 0; i < p.length; i += 2) yield p[i]!;
  }

  override *values(): MapIterator<number> {
    if (!this.#packed) return yield* super.values();
    const p = this.#packed;
    for (let i = 1; i < p.length; i += 2) yield p[i]!;
  }

  override [Symbol.iterator](): MapIterator<[number, number]> {
    return this.entries();
  }

  override forEach(fn: (value: number, key: number, map: Map<number, number>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }

  override set(step: number, value: number): this {
    this.#unpack();
    return super.set(step, value);
  }

  override delete(step: number): boolean {
    this.#unpack();
    return super.delete(step);
  }

  override clear(): void {
    this.#packed = null;
    super.clear();
  }
}

export interface PeerInfo {
  readonly peerId: string;
  readonly addresses: readonly string[];
  /** Last heartbeat or message seen from the peer (null for this peer itself). */
  readonly lastSeen: Date | null;
  /** Trials in this study owned by the peer. */
  readonly trialsRun: number;
  readonly self: boolean;
  /** Heard from within the storage's liveness window (its staleAfterMs); always true for this peer. */
  readonly online: boolean;
  /**
   * Replicated storages: the digest of this study's replica the peer last advertised (its heartbeat;
   * for this peer, our own), and its change count. Equal digests mean equal replicas.
   */
  readonly digest?: string;
  readonly changes?: number;
  /**
   * Replicated storages: the peer's advertised replica against ours: `agree` (same digest), `behind`
   * (fewer changes: it lacks some of ours), `ahead` (more: we lack some of its), `differs` (as many,
   * different ones), `unknown` (it advertised none for this study).
   */
  readonly replica?: 'self' | 'agree' | 'behind' | 'ahead' | 'differs' | 'unknown';
  /** Replicated storages: messages from this peer (gossip, heartbeats, sync frames) that this replica rejected since it opened. */
  readonly rejects?: number;
}

export interface StudyInfo {
  readonly studyId: string;
  readonly studyName: string;
  readonly directions: readonly StudyDirection[];
  readonly userAttrs: Readonly<Record<string, unknown>>;
  readonly systemAttrs: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
  /** Replicated storages: the peer that created the study (signed in its genesis; the only writer of its system attrs). */
  readonly creator?: string;
}

/** What a new trial starts with (enqueued trials carry fixed params; retries carry `retryOf`). */
export interface TrialTemplate {
  state?: 'RUNNING' | 'WAITING';
  params?: Record<string, ParamValue>;
  distributions?: Record<string, Distribution>;
  userAttrs?: Record<string, unknown>;
  systemAttrs?: Record<string, unknown>;
}

/** A write or read the storage refuses (bad value, unknown trial, finished trial...). */
export class StorageError extends PeertuneError {
  override name = 'StorageError';
}

export class DuplicatedStudyError extends StorageError {
  override name = 'DuplicatedStudyError';
}

export class StudyNotFoundError extends StorageError {
  override name = 'StudyNotFoundError';
}

/**
 * Several studies of one name, none of which this replica created or ran trials in (issue 15 F3:
 * anyone can create a study of any name, with any creation date): choose one by id.
 */
export class AmbiguousStudyError extends StorageError {
  override name = 'AmbiguousStudyError';
  readonly studyIds: string[];
  constructor(studyName: string, studies: readonly StudyInfo[]) {
    const list = studies.map((s) => `${s.studyId} (created ${Number.isFinite(+s.createdAt) ? s.createdAt.toISOString() : 'at an invalid time'}${s.creator ? ` by ${s.creator}` : ''})`).join(', ');
    super(`study name "${studyName}" is ambiguous: this replica holds ${studies.length} studies of that name: ${list}; choose one with --study-id <id> (API: studyId)`);
    this.studyIds = studies.map((s) => s.studyId);
  }
}

export interface Storage {
  /** Creates a study; throws DuplicatedStudyError if the name is taken. */
  createStudy(opts: { studyName: string; directions: StudyDirection[]; userAttrs?: Record<string, unknown> }): Promise<StudyInfo>;
  /**
   * The study with this name, or null. A replicated storage may hold several studies of one name
   * (created apart); it throws AmbiguousStudyError when it cannot tell which one is meant.
   */
  getStudy(studyName: string): StudyInfo | null;
  listStudies(): StudyInfo[];
  deleteStudy(studyId: string): Promise<void>;
  setStudyUserAttr(studyId: string, key: string, value: unknown): void;
  setStudySystemAttr(studyId: string, key: string, value: unknown): void;

  /** Creates a trial owned by this process/peer, RUNNING (default) or WAITING. */
  createTrial(studyId: string, template?: TrialTemplate): FrozenTrial;
  /**
   * Takes the oldest WAITING trial (from `enqueueTrial`) not yet claimed by anyone and returns it as a
   * RUNNING trial owned by this peer with the fixed params, or null if there is none.
   */
  claimWaitingTrial(studyId: string): FrozenTrial | null;

  /** Sets several params of a RUNNING trial at once (one write; used for params sampled together). */
  setTrialParams(studyId: string, trialId: string, params: Record<string, ParamValue>, distributions: Record<string, Distribution>): void;
  setTrialIntermediateValue(studyId: string, trialId: string, step: number, value: number): void;
  setTrialUserAttr(studyId: string, trialId: string, key: string, value: unknown): void;
  setTrialSystemAttr(studyId: string, trialId: string, key: string, value: unknown): void;
  /** Moves a trial to a finished state; resolves once that is durable. A finished state is final. */
  finishTrial(studyId: string, trialId: string, state: 'COMPLETE' | 'PRUNED' | 'FAIL', values?: number[] | null): Promise<void>;

  getTrial(studyId: string, trialId: string): FrozenTrial;
  /**
   * All trials ordered by `number`, optionally filtered by state. The returned array and its trials are
   * immutable snapshots; storages should return cached objects so this is cheap on every `ask()`.
   */
  getAllTrials(studyId: string, states?: readonly TrialState[]): readonly FrozenTrial[];
  /** Bumps whenever the study's trials change (locally or by a merge): lets samplers cache work. */
  getVersion(studyId: string): number;

  /**
   * Optional, for storages whose studies arrive from elsewhere (a replica catching up from peers):
   * resolves with the study once it is known locally and caught up, or null after the timeout. `loadStudy`
   * calls it even for a study the storage already lists.
   */
  waitForStudy?(studyName: string, timeoutMs?: number): Promise<StudyInfo | null>;
  /** Optional: `waitForStudy` by study id (loadStudy's `studyId`). */
  waitForStudyId?(studyId: string, timeoutMs?: number): Promise<StudyInfo | null>;
  /**
   * Optional, for replicated storages: resolves once these trials' numbers can no longer move while
   * peers stay connected (false after a timeout). The log line of a finished trial, the trial `tell`
   * returns and the one `optimize`'s callbacks get wait for it.
   */
  whenNumbersSettled?(studyId: string, trialIds: readonly string[], timeoutMs?: number): Promise<boolean>;
  /** Optional, with `whenNumbersSettled`: whether these trials' numbers are settled now. */
  numbersSettled?(studyId: string, trialIds: readonly string[]): boolean;
  /** Optional: the peers this replica knows for a study (replicated storages only). */
  peers?(studyId: string): PeerInfo[];
  /**
   * Optional: where this storage keeps checkpoint blobs (a replica: `<dataDir>/checkpoints`). Without
   * it, a study keeps them in a temporary directory for the life of the process.
   */
  readonly checkpointDir?: string;
  /**
   * Optional: brings the blobs of a checkpoint held by other peers into the blob store at
   * `checkpointDir` (replicated storages). Without it, only local checkpoints can be read.
   */
  fetchCheckpointBlobs?(ref: CheckpointRef, blobs: { hash: string; size: number }[]): Promise<void>;

  /** Identity of this process in trial ids (`owner` of trials it creates). */
  readonly ownerId: string;
  /** Makes every accepted write durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
