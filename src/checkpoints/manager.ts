/**
 * Trial checkpoints over any storage: the blob goes into this peer's blob store, and the trial's owner
 * records a small reference in the trial's system attr `checkpoints` (hash, size, kind, step, metrics,
 * seq, time, holders). The keep rules (keep.ts) run on every save, so the attr lists only the
 * checkpoints that stay, and blobs no kept reference needs are deleted from the store. Reading a
 * checkpoint walks the trial, then the trial it retries or resumes (`retryOf`, `pbtParent`), and
 * fetches the blobs from a holder when they are not here (through the `fetch` hook the replicated
 * storage provides; in memory every blob is local).
 */
import path from 'node:path';
import { mkdir, mkdtemp } from 'node:fs/promises';
import type { FrozenTrial, Storage } from '../storage/storage.js';
import { PeertuneError } from '../errors.js';
import { BlobError, type BlobRef, type BlobStore } from './blob-store.js';
import { CHECKPOINTS_ATTR, checkpointRefs, type CheckpointRef } from './refs.js';

export { CHECKPOINTS_ATTR, checkpointRefs, type CheckpointRef };
import { bestCheckpoint, checkCheckpointConfig, selectKept, type CheckpointConfig } from './keep.js';
import { clonedCheckpoint, offeredCheckpoint, pinnedCheckpointIds } from '../pbt/lineage.js';
import { logger } from '../logging.js';

/** What `trial.getCheckpoint()` returns. */
export interface Checkpoint {
  path: string;
  step: number | null;
  metrics: Record<string, number | string | boolean | null>;
  trialId: string;
}

export class CheckpointError extends PeertuneError {
  override name = 'CheckpointError';
}

/** Trials a checkpoint lookup may follow through `retryOf` / `pbtParent` (a cycle cannot loop forever). */
const MAX_CHAIN = 64;

function checkMetrics(m: unknown): CheckpointRef['metrics'] {
  if (m === undefined) return {};
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw new CheckpointError('saveCheckpoint: metrics must be a plain object of numbers, strings or booleans');
  const out: CheckpointRef['metrics'] = {};
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean' || v === null) out[k] = typeof v === 'number' && !Number.isFinite(v) ? null : v;
    else throw new CheckpointError(`saveCheckpoint: metric "${k}" must be a number, string or boolean, got ${typeof v}`);
  }
  return out;
}

export interface CheckpointManagerOptions {
  config?: CheckpointConfig;
  /** This peer's id (recorded as the first holder). */
  peerId: string;
  /**
   * Brings the blobs of `ref` into the store from one of its holders. Without it, only local blobs can
   * be read (an in-memory study).
   */
  fetch?: (ref: CheckpointRef, blobs: { hash: string; size: number }[]) => Promise<void>;
}

export class CheckpointManager {
  readonly config: ReturnType<typeof checkCheckpointConfig>;
  private unpackDir: string | null = null;
  private unpacked = 0;
  private readonly fetching = new Map<string, Promise<void>>();
  /** Saves and collections run one at a time: a collection between a save's put and its record would delete the new blob. */
  private lock: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly storage: Storage,
    readonly store: BlobStore,
    private readonly opts: CheckpointManagerOptions,
  ) {
    this.config = checkCheckpointConfig(opts.config);
  }

  /** Stores `src` (a file or a directory) as the trial's newest checkpoint and applies the keep rules. */
  save(studyId: string, trialId: string, src: string, info: { step?: number; metrics?: Record<string, unknown> } = {}): Promise<CheckpointRef> {
    return this.exclusive(() => this.saveNow(studyId, trialId, src, info));
  }

  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.lock.then(f, f);
    this.lock = run.catch(() => {});
    return run;
  }

  private async saveNow(studyId: string, trialId: string, src: string, info: { step?: number; metrics?: Record<string, unknown> }): Promise<CheckpointRef> {
    const trial = this.storage.getTrial(studyId, trialId);
    if (trial.state !== 'RUNNING') throw new CheckpointError(`saveCheckpoint: trial ${trial.number} is ${trial.state}; checkpoints are saved while it runs`);
    if (info.step !== undefined && !(Number.isSafeInteger(info.step) && info.step >= 0)) throw new CheckpointError(`saveCheckpoint: step must be an integer >= 0, got ${String(info.step)}`);
    const metrics = checkMetrics(info.metrics);
    let blob: BlobRef;
    try {
      blob = await this.store.put(src);
    } catch (e) {
      if (e instanceof BlobError) throw new CheckpointError(`saveCheckpoint: ${e.message}`);
      throw e;
    }
    const refs = checkpointRefs(trial);
    const seq = refs.reduce((m, r) => Math.max(m, r.seq), 0) + 1;
    const ref: CheckpointRef = { id: `${trialId}#${seq}`, trialId, ...blob, seq, step: info.step ?? null, metrics, createdAt: Date.now(), holders: [this.opts.peerId], replicas: this.config.minReplicas };
    const all = [...refs, ref];
    const kept = selectKept(all, this.config, pinnedCheckpointIds(this.storage.getAllTrials(studyId, ['RUNNING', 'WAITING'])));
    const stay = all.filter((r) => kept.has(r.id));
    this.storage.setTrialSystemAttr(studyId, trialId, CHECKPOINTS_ATTR, stay.map(toAttr));
    await this.collectNow();
    return ref;
  }

  /** The trial's checkpoint references (kept ones), newest last. */
  list(studyId: string, trialId: string): CheckpointRef[] {
    return checkpointRefs(this.storage.getTrial(studyId, trialId)).sort((a, b) => a.seq - b.seq);
  }

  /**
   * The latest checkpoint of the trial, else of the trial it retries or resumes (following `retryOf`
   * and `pbtParent`), unpacked under this peer's checkpoint dir; null when there is none.
   */
  async get(studyId: string, trialId: string): Promise<Checkpoint | null> {
    const seen = new Set<string>();
    let id: string | null = trialId;
    while (id && !seen.has(id) && seen.size < MAX_CHAIN) {
      seen.add(id);
      let t: FrozenTrial;
      try {
        t = this.storage.getTrial(studyId, id);
      } catch {
        return null;
      }
      const refs = checkpointRefs(t);
      if (refs.length) {
        const latest = refs.reduce((a, b) => (b.seq > a.seq ? b : a));
        return this.materialize(latest);
      }
      // A PBT continuation starts from the exact checkpoint it cloned, not its parent's latest.
      const cloned = clonedCheckpoint(t);
      if (cloned) {
        let parent: FrozenTrial | null = null;
        try {
          parent = this.storage.getTrial(studyId, cloned.trialId);
        } catch {
          parent = null;
        }
        if (!parent) throw new CheckpointError(`trial ${t.number} clones a checkpoint of trial ${cloned.trialId}, which this replica does not hold`);
        const refs = checkpointRefs(parent);
        const match = refs.find((r) => r.seq === cloned.seq);
        let instead: CheckpointRef | null;
        if (match) {
          try {
            return await this.materialize(match);
          } catch (e) {
            // Its owner dropped it before our replica heard (the holders refuse it): its newest then.
            if (!(e instanceof CheckpointError)) throw e;
            instead = refs.filter((r) => r.seq > match.seq).reduce<CheckpointRef | null>((a, b) => (!a || b.seq > a.seq ? b : a), null);
            if (!instead) throw e;
          }
        } else {
          // Its owner dropped it (a decision taken on a view that lagged more than two perturbation
          // intervals): the member's checkpoint at its last point now is the next best clone.
          instead = offeredCheckpoint(parent) ?? refs.reduce<CheckpointRef | null>((a, b) => (!a || b.seq > a.seq ? b : a), null);
        }
        if (!instead) throw new CheckpointError(`trial ${t.number} clones checkpoint ${cloned.trialId}#${cloned.seq}, and trial ${parent.number} lists no checkpoint now`);
        logger.warn(`Trial ${t.number} clones checkpoint ${cloned.trialId}#${cloned.seq} (step ${cloned.step}), which trial ${parent.number} no longer keeps; it starts from ${instead.id} (step ${instead.step}) instead.`);
        if (t.state === 'RUNNING' && t.owner === this.opts.peerId) {
          // The lineage records the checkpoint the trial really starts from (and the one it had chosen).
          this.storage.setTrialSystemAttr(studyId, t.trialId, 'pbtCheckpoint', { trialId: instead.trialId, seq: instead.seq, step: instead.step });
          this.storage.setTrialSystemAttr(studyId, t.trialId, 'pbtStartStep', instead.step);
          this.storage.setTrialSystemAttr(studyId, t.trialId, 'pbtChosenCheckpoint', cloned);
        }
        return this.materialize(instead);
      }
      const next = t.systemAttrs['retryOf'] ?? t.systemAttrs['pbtParent'];
      id = typeof next === 'string' ? next : null;
    }
    return null;
  }

  /** The best checkpoint of the study by a metric (every trial's kept references). */
  bestRef(studyId: string, metric: string, order: 'max' | 'min' = 'max'): CheckpointRef | null {
    const all = this.storage.getAllTrials(studyId).flatMap(checkpointRefs);
    return bestCheckpoint(all, metric, order);
  }

  async materialize(ref: CheckpointRef): Promise<Checkpoint> {
    // A directory takes two rounds: its manifest, then the files the manifest lists.
    for (let round = 0; ; round++) {
      const blobs = await this.missingBlobs(ref);
      if (blobs.length === 0) break;
      if (!this.opts.fetch) throw new CheckpointError(`checkpoint ${ref.id} is not on this peer and no other peer can be asked`);
      if (round === 2) throw new CheckpointError(`checkpoint ${ref.id}: ${blobs.length} blob(s) could not be fetched from ${ref.holders.join(', ') || 'any holder'}`);
      // Two PBT continuations may clone the same checkpoint at once (and a replica copy may be arriving):
      // one fetch per reference in this process, and a fetch that lost a race to another writer of the
      // same blob counts as done when the blob is here now.
      let fetching = this.fetching.get(ref.id);
      if (!fetching) {
        fetching = this.opts.fetch(ref, blobs).finally(() => this.fetching.delete(ref.id));
        this.fetching.set(ref.id, fetching);
      }
      try {
        await fetching;
      } catch (e) {
        const still = await this.missingBlobs(ref);
        if (still.some((b) => blobs.some((x) => x.hash === b.hash))) throw e;
      }
    }
    const root = await this.unpackRoot();
    // One directory per call: a reader of an earlier copy never sees this one being written.
    const dest = path.join(root, `${ref.trialId.replace(/[^A-Za-z0-9_-]/g, '_')}-${ref.seq}-${this.unpacked++}`);
    const out = await this.store.materialize(ref, ref.kind === 'file' ? path.join(dest, 'checkpoint') : dest);
    return { path: out, step: ref.step, metrics: ref.metrics, trialId: ref.trialId };
  }

  /** Blobs this reference needs that the store lacks (for a directory, after its manifest is here). */
  missingBlobs(ref: CheckpointRef): Promise<{ hash: string; size: number }[]> {
    return missingBlobsOf(this.store, ref);
  }

  /**
   * Deletes blobs that no kept reference of any study in this storage needs (the store is shared by
   * the data dir's studies). Directory checkpoints share file blobs, so a blob goes only when no
   * manifest still lists it.
   */
  collect(): Promise<string[]> {
    return this.exclusive(() => this.collectNow());
  }

  private async collectNow(): Promise<string[]> {
    const needed = new Set<string>();
    const trials = this.storage.listStudies().flatMap((s) => this.storage.getAllTrials(s.studyId));
    for (const t of trials) {
      for (const r of checkpointRefs(t)) {
        needed.add(r.hash);
        if (r.kind === 'dir' && (await this.store.has(r.hash))) for (const b of await this.store.blobsOf(r)) needed.add(b.hash);
      }
    }
    const dropped: string[] = [];
    for (const h of await this.store.list()) {
      if (!needed.has(h)) {
        await this.store.delete(h);
        dropped.push(h);
      }
    }
    return dropped;
  }

  private async unpackRoot(): Promise<string> {
    if (!this.unpackDir) {
      const base = path.join(this.store.root, 'unpacked');
      await mkdir(base, { recursive: true, mode: 0o700 });
      this.unpackDir = await mkdtemp(path.join(base, 'u-'));
    }
    return this.unpackDir;
  }
}

/**
 * Blobs `ref` needs that `store` lacks: the blob itself (for a directory, its manifest), then, once
 * the manifest is here, the files it lists that are missing.
 */
export async function missingBlobsOf(store: BlobStore, ref: CheckpointRef): Promise<{ hash: string; size: number }[]> {
  if (!(await store.has(ref.hash))) {
    const size = ref.kind === 'file' ? ref.size : ref.manifestSize;
    if (size === undefined) throw new CheckpointError(`checkpoint ${ref.id} is a directory whose reference lacks its manifest size`);
    return [{ hash: ref.hash, size }];
  }
  if (ref.kind === 'file') return [];
  const out: { hash: string; size: number }[] = [];
  for (const b of await store.blobsOf(ref)) if (!(await store.has(b.hash))) out.push(b);
  return out;
}

/** A reference as the `checkpoints` system attr stores it. */
export function toAttr(r: CheckpointRef): Record<string, unknown> {
  return { hash: r.hash, size: r.size, kind: r.kind, ...(r.manifestSize === undefined ? {} : { manifestSize: r.manifestSize }), seq: r.seq, step: r.step, metrics: r.metrics, createdAt: r.createdAt, holders: r.holders, ...(r.replicas === undefined ? {} : { replicas: r.replicas }) };
}
