/**
 * A study's authorship filter (issue 15 F7): `createStudy` / `loadStudy` with `excludePeers` or
 * `trustPeers` read the study through this wrapper, so the study reads as if the trials of those
 * owners did not exist: `trials`, `bestTrial`, samplers, pruners, retries and the `maxTrials` budget all
 * read `getAllTrials`, which leaves them out. This peer's own trials are always read. Writes and
 * everything else go to the storage unchanged (the records still replicate: other peers may trust them).
 *
 * The storage-level options of a replica (`openPeerStorage({ excludePeers, trustPeers })`, the CLI's
 * `--ignore-peer` / `--trust-peer`) do the same for every study of the replica, and also number the
 * trials as if those owners never wrote. Here the numbers are the storage's: a hidden trial leaves a
 * gap. An enqueued trial of a hidden owner is never claimed: while one is the next in line, `ask()`
 * samples a fresh trial instead of taking any enqueued one.
 */
import type { Distribution, ParamValue } from '../distributions.js';
import type { CheckpointRef } from '../checkpoints/refs.js';
import type { FrozenTrial, PeerInfo, Storage, StudyDirection, StudyInfo, TrialState, TrialTemplate } from './storage.js';

export interface AuthorFilter {
  /** Peer ids whose trials the study does not read. */
  excludePeers?: readonly string[] | undefined;
  /** Read only trials owned by these peers (and this one). */
  trustPeers?: readonly string[] | undefined;
}

/** Whether the filter hides anything (an empty excludePeers does not; an empty trustPeers trusts only this peer). */
export function filters(f: AuthorFilter): boolean {
  return (f.excludePeers?.length ?? 0) > 0 || f.trustPeers !== undefined;
}

export class AuthorFilteredStorage implements Storage {
  private readonly exclude: ReadonlySet<string>;
  private readonly trust: ReadonlySet<string> | null;
  private readonly cache = new Map<string, { version: number; trials: readonly FrozenTrial[] }>();

  /** `excludePeers` / `trustPeers` are canonical peer ids (checked by the caller). */
  constructor(
    readonly inner: Storage,
    filter: AuthorFilter,
  ) {
    this.exclude = new Set(filter.excludePeers ?? []);
    this.trust = filter.trustPeers !== undefined ? new Set(filter.trustPeers) : null;
    // The optional parts exactly when the storage has them (a study checks for them).
    if (inner.waitForStudy) this.waitForStudy = inner.waitForStudy.bind(inner);
    if (inner.waitForStudyId) this.waitForStudyId = inner.waitForStudyId.bind(inner);
    if (inner.peers) this.peers = inner.peers.bind(inner);
    if (inner.whenNumbersSettled) this.whenNumbersSettled = inner.whenNumbersSettled.bind(inner);
    if (inner.numbersSettled) this.numbersSettled = inner.numbersSettled.bind(inner);
    if (inner.fetchCheckpointBlobs) this.fetchCheckpointBlobs = inner.fetchCheckpointBlobs.bind(inner);
  }

  readonly waitForStudy?: (studyName: string, timeoutMs?: number) => Promise<StudyInfo | null>;
  readonly waitForStudyId?: (studyId: string, timeoutMs?: number) => Promise<StudyInfo | null>;
  readonly peers?: (studyId: string) => PeerInfo[];
  readonly whenNumbersSettled?: (studyId: string, trialIds: readonly string[], timeoutMs?: number) => Promise<boolean>;
  readonly numbersSettled?: (studyId: string, trialIds: readonly string[]) => boolean;
  readonly fetchCheckpointBlobs?: (ref: CheckpointRef, blobs: { hash: string; size: number }[]) => Promise<void>;

  /** Whether trials owned by `owner` are left out. */
  hides(owner: string): boolean {
    if (owner === this.inner.ownerId) return false;
    return this.exclude.has(owner) || (this.trust !== null && !this.trust.has(owner));
  }

  getAllTrials(studyId: string, states?: readonly TrialState[]): readonly FrozenTrial[] {
    // Samplers call this on every ask(): the filtered list is kept per state set until the study changes.
    const key = `${studyId}\0${states ? states.join(',') : '*'}`;
    const version = this.inner.getVersion(studyId);
    const hit = this.cache.get(key);
    if (hit && hit.version === version) return hit.trials;
    const all = this.inner.getAllTrials(studyId, states);
    const trials = all.some((t) => this.hides(t.owner)) ? Object.freeze(all.filter((t) => !this.hides(t.owner))) : all;
    if (this.cache.size > 64) this.cache.clear();
    this.cache.set(key, { version, trials });
    return trials;
  }

  claimWaitingTrial(studyId: string): FrozenTrial | null {
    // The storage claims its oldest unclaimed enqueued trial; if that one is a hidden owner's, claim none.
    const next = this.inner.getAllTrials(studyId, ['WAITING'])[0];
    if (!next || this.hides(next.owner)) return null;
    return this.inner.claimWaitingTrial(studyId);
  }

  // ------------------------------------------------------------------ unchanged

  get ownerId(): string {
    return this.inner.ownerId;
  }
  get checkpointDir(): string | undefined {
    return this.inner.checkpointDir;
  }
  createStudy(opts: { studyName: string; directions: StudyDirection[]; userAttrs?: Record<string, unknown> }): Promise<StudyInfo> {
    return this.inner.createStudy(opts);
  }
  getStudy(studyName: string): StudyInfo | null {
    return this.inner.getStudy(studyName);
  }
  listStudies(): StudyInfo[] {
    return this.inner.listStudies();
  }
  deleteStudy(studyId: string): Promise<void> {
    return this.inner.deleteStudy(studyId);
  }
  setStudyUserAttr(studyId: string, key: string, value: unknown): void {
    this.inner.setStudyUserAttr(studyId, key, value);
  }
  setStudySystemAttr(studyId: string, key: string, value: unknown): void {
    this.inner.setStudySystemAttr(studyId, key, value);
  }
  createTrial(studyId: string, template?: TrialTemplate): FrozenTrial {
    return this.inner.createTrial(studyId, template);
  }
  setTrialParams(studyId: string, trialId: string, params: Record<string, ParamValue>, distributions: Record<string, Distribution>): void {
    this.inner.setTrialParams(studyId, trialId, params, distributions);
  }
  setTrialIntermediateValue(studyId: string, trialId: string, step: number, value: number): void {
    this.inner.setTrialIntermediateValue(studyId, trialId, step, value);
  }
  setTrialUserAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    this.inner.setTrialUserAttr(studyId, trialId, key, value);
  }
  setTrialSystemAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    this.inner.setTrialSystemAttr(studyId, trialId, key, value);
  }
  finishTrial(studyId: string, trialId: string, state: 'COMPLETE' | 'PRUNED' | 'FAIL', values?: number[] | null): Promise<void> {
    return this.inner.finishTrial(studyId, trialId, state, values);
  }
  getTrial(studyId: string, trialId: string): FrozenTrial {
    return this.inner.getTrial(studyId, trialId);
  }
  getVersion(studyId: string): number {
    return this.inner.getVersion(studyId);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
