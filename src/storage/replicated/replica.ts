/**
 * The state of one replicated study and the one way merged changes enter it: the study document
 * (meta and attrs), the trial shards (small Automerge documents, see schema.ts), the view
 * (view.ts), and the timers that belong to it (`cancelTimers` stops them all). `Ctx` is what the
 * replica's collaborators share (writer, inbox, sync adapter, anti-entropy, the facade).
 */
import * as A from '@automerge/automerge';
import type { PrivateKey } from '@libp2p/interface';
import { createHash } from 'node:crypto';
import { logger } from '../../logging.js';
import type { PeerNode } from '../../net/node.js';
import type { LivenessTable } from '../../net/liveness.js';
import type { StudyDirection, StudyInfo } from '../storage.js';
import type { ReplicaDb } from './persist.js';
import type { ResolvedOptions } from './options.js';
import { MAX_SHARDS } from './options.js';
import {
  LIMITS,
  RejectedChange,
  SHARD_TRIALS,
  decodeMeta,
  docParts,
  handleOf,
  hasChanges,
  inspectChanges,
  inspectShardChanges,
  noteChanges,
  parseShardKey,
  readAttrs,
  readShardTrial,
  type DecodedChange,
  type DocHandle,
  type ShardId,
  type ShardInspected,
  type StudyDoc,
  type StudyMeta,
  type TrialRecord,
} from './schema.js';
import { TrialView, type ViewPolicy } from './view.js';
import { isFinished } from '../storage.js';

/** For testing.ts only: the internals behind a PeerStorage (kept out of its public type). */
export const internalsOf = new WeakMap<object, { ctx: Ctx; writer: import('./writer.js').Writer; inbox: import('./inbox.js').Inbox }>();

/** What the replica's collaborators share. */
export interface Ctx {
  readonly peerId: string;
  readonly key: PrivateKey;
  readonly db: ReplicaDb;
  readonly opts: ResolvedOptions;
  readonly replicas: Map<string, Replica>;
  readonly liveness: LivenessTable;
  node: PeerNode | null;
  closed: boolean;
  count(reason: string): void;
  /** Queues a disk write after the ones before it. */
  enqueueWrite(what: string, fn: () => Promise<void>): Promise<void>;
  /** Trials of a study changed (listeners, waiters). */
  changed(studyId: string): void;
  /** Something arrived that `waitForStudy` may be waiting for. */
  notify(): void;
  /** What every replica of this storage applies to others' writes (issue 15: F7, F12, F14, F15). */
  readonly policy: ReplicaPolicy;
}

/** What a replica takes from others: who it reads (view), how much per owner, which studies it admits. */
export interface ReplicaPolicy {
  view: ViewPolicy;
  ownerQuota: { trials: number; bytes: number };
  count(reason: string): void;
  /** Whether a study whose genesis just arrived may stay (the per-creator cap); false drops it. */
  admit(meta: StudyMeta, studyId: string): boolean;
}

/** One trial shard: an Automerge document while open, its heads and change count always. */
export class Shard {
  /**
   * The Automerge document, or null when sealed and evicted (its records stay in the view). Read it
   * through `open()` or `handle`, which first apply the deferred changes; `doc` itself only says
   * whether the shard is open.
   */
  doc: A.Doc<unknown> | null = null;
  heads: string[] = [];
  changes = 0;
  sealed = false;
  /** Raw changes applied or committed since the last disk write. */
  unsaved: Uint8Array[] = [];
  /** The sealed state was persisted (`r/` blob) and must be rewritten if the shard reopens. */
  sealPersisted = false;
  /**
   * Others' changes merged but not yet applied to `doc`: inspected, their records in the view, queued
   * for disk in `unsaved`, and counted in `heads`, `has` and `changes`. Automerge 3.5's apply costs in
   * proportion to the document on each call (issue 8), so a run of changes that extends the shard in
   * one line is applied in a single call when the document is next read (`open`, `handle`: sealing,
   * serving a sync, a conflict), not one call per gossip message.
   */
  private deferred: Uint8Array[] = [];
  private deferredHashes = new Set<string>();
  /** The last record bytes the deferred changes set, per trial id (what the document will hold). */
  private deferredValues = new Map<string, Uint8Array>();

  constructor(readonly id: ShardId) {}

  get key(): string {
    return this.id.key;
  }

  get handle(): DocHandle | null {
    if (!this.doc) return null;
    this.applyDeferred();
    return handleOf(this.doc as A.Doc<StudyDoc>);
  }

  open(): DocHandle {
    if (!this.doc) this.doc = A.init();
    return this.handle!;
  }

  has(hash: string): boolean {
    if (this.deferredHashes.has(hash)) return true;
    return this.doc ? hasChanges(handleOf(this.doc as A.Doc<StudyDoc>), [hash]) : this.heads.includes(hash);
  }

  /** The heads of everything merged, deferred changes included, without applying them. */
  currentHeads(): string[] {
    if (this.deferred.length > 0 || !this.doc) return this.heads;
    return handleOf(this.doc as A.Doc<StudyDoc>).getHeads();
  }

  refreshHeads(): void {
    if (this.doc && this.deferred.length === 0) this.heads = handleOf(this.doc as A.Doc<StudyDoc>).getHeads();
  }

  /**
   * Takes merged changes of an open shard for a later apply: `raws` in causal order, each depending on
   * every head before it, so the last one is the shard's only head (`Replica.applyShard` checks that).
   */
  defer(raws: Uint8Array[], hashes: string[], values?: ReadonlyMap<string, Uint8Array>): void {
    this.deferred.push(...raws);
    for (const x of hashes) this.deferredHashes.add(x);
    if (values) for (const [id, v] of values) this.deferredValues.set(id, v);
    else this.deferredValues.clear(); // not known: a seal reads the document
    this.heads = [hashes.at(-1)!];
  }

  /**
   * A shard whose whole history is deferred (its document holds nothing yet: what a receiver of
   * an owner's gossip has until it seals), sealed without applying it: the final records are the
   * last bytes the changes set per trial, the history is the deferred changes in order. Null when the
   * document holds changes or a record of `ids` is not known; then the seal reads the document.
   */
  sealDeferred(ids: readonly string[]): { records: Uint8Array[]; history: Uint8Array[] } | null {
    if (!this.doc || this.deferred.length === 0 || this.deferred.length !== this.changes) return null;
    if (handleOf(this.doc as A.Doc<StudyDoc>).getHeads().length > 0) return null;
    const records: Uint8Array[] = [];
    for (const id of ids) {
      const v = this.deferredValues.get(id);
      if (!v) return null;
      records.push(v);
    }
    return { records, history: [...this.deferred] };
  }

  private applyDeferred(): void {
    if (this.deferred.length === 0) return;
    const h = handleOf(this.doc as A.Doc<StudyDoc>);
    const raws = this.deferred;
    const hashes = this.deferredHashes;
    this.deferred = [];
    this.deferredHashes = new Set();
    this.deferredValues = new Map();
    try {
      h.applyChanges(raws);
      noteChanges(h, hashes);
    } catch (e) {
      // They were decoded, bounded and inspected when they arrived, with their dependencies present,
      // so this is not expected; what applies is kept, and anti-entropy asks peers for the rest.
      logger.warn(`Shard ${this.key.slice(0, 80)}: ${raws.length} merged change(s) could not be applied to its document (${(e as Error).message}); peers will resend what is missing`);
      for (const c of raws) {
        try {
          h.applyChanges([c]);
        } catch {
          /* skipped */
        }
      }
    }
    this.heads = h.getHeads();
  }

  evict(): void {
    if (this.doc) A.free(this.doc);
    this.doc = null;
    // Deferred changes are in `unsaved` or already on disk, which is what a reopened shard reads.
    this.deferred = [];
    this.deferredHashes = new Set();
    this.deferredValues = new Map();
  }
}

export class Replica {
  meta: StudyMeta | null = null;
  info: StudyInfo | null = null;
  /** meta + attrs; written and read through its backend (`handleOf`). */
  studyDoc: A.Doc<StudyDoc>;
  studyDirty = false;
  /** The last disk write of this study was a sync one (a finished trial is durable once its write is). */
  synced = true;
  /** Writes of this study queued or on their way to level, and the one later calls join (writer.ts persist). */
  writesInFlight = 0;
  queuedWrite: { sync: boolean; done: Promise<void> } | null = null;
  readonly shards = new Map<string, Shard>();
  readonly view: TrialView;
  /** Own trials written since the last flush. */
  readonly dirty = new Set<string>();
  seq = 0;
  caughtUp = false;
  offeredBy: string | null = null;
  /** Its genesis was refused (per-creator cap): the replica is being dropped; pieces for it are skipped, not charged. */
  refused = false;
  readonly createdAt = Date.now();
  /** Per peer: what it last announced of its own trials here, their count and the least claim of any it creates next (view.ts settledFor). */
  readonly frontiers = new Map<string, { n: number; clock: number; since: number }>();
  /** Per peer: anti-entropy bookkeeping (anti-entropy.ts). */
  readonly remote = new Map<string, { since: number; count: number; digest: string }>();
  /** Gossiped changes waiting for dependencies, by hash (inbox.ts). */
  readonly pending = new Map<string, { shard: string; raw: Uint8Array; deps: string[] }>();
  pendingBytes = 0;
  pendingSince: number | null = null;
  /** Gossip outbox: study-document changes and changes per shard (writer.ts). */
  outbox: { c: Uint8Array[]; t: Map<string, Uint8Array[]>; bytes: number; n: number } = { c: [], t: new Map(), bytes: 0, n: 0 };
  /** When the last gossip message of this study left (writer.ts spaces them by OUTBOX_GAP_MS). */
  lastPublish = 0;
  private digestCache: { digest: string; count: number } | null = null;
  /** Timers; cancelTimers() stops every one of them. */
  flushImmediate: NodeJS.Immediate | null = null;
  flushTimer: NodeJS.Timeout | null = null;
  persistTimer: NodeJS.Timeout | null = null;
  outboxTimer: NodeJS.Timeout | null = null;
  /** Dirty trials to commit right before the outbox's next message leaves (writer.ts scheduleFlush). */
  flushOnPublish = false;

  /** Records applied to shard documents that the view has not taken yet (the inbox and catch-up put them there once a message or piece is merged). */
  readonly applied = new Map<string, TrialRecord>();

  /** Per other owner: changes' bytes and trials held in this study's shards (ownerQuota, issue 15 F15). */
  readonly ownerBytes = new Map<string, number>();
  readonly ownerTrials = new Map<string, number>();
  /** Owners whose changes the quota refused here since start, with the counter that refused them (see `refusedAsDependent`). */
  readonly quotaRefused = new Map<string, string>();

  constructor(
    readonly studyId: string,
    public name: string,
    doc: A.Doc<StudyDoc>,
    readonly self: string,
    readonly policy?: ReplicaPolicy,
  ) {
    this.studyDoc = doc;
    this.view = new TrialView(self, policy?.view);
  }

  /** Counts stored changes and trials of a shard towards its owner's quota (load, and after each apply). */
  chargeOwner(owner: string, bytes: number, trials: number): void {
    if (owner === this.self) return;
    this.ownerBytes.set(owner, (this.ownerBytes.get(owner) ?? 0) + bytes);
    this.ownerTrials.set(owner, (this.ownerTrials.get(owner) ?? 0) + trials);
  }

  cancelTimers(): void {
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.persistTimer) clearTimeout(this.persistTimer);
    if (this.outboxTimer) clearTimeout(this.outboxTimer);
    this.flushImmediate = this.flushTimer = this.persistTimer = this.outboxTimer = null;
    this.flushOnPublish = false;
  }

  get study(): DocHandle {
    return handleOf(this.studyDoc);
  }

  /** Equal digests mean equal replicas (study document heads and every shard's heads). */
  digest(): { digest: string; count: number } {
    if (this.digestCache) return this.digestCache;
    const h = createHash('sha256');
    let count = this.study.getHeads().length > 0 ? 1 : 0;
    h.update(this.study.getHeads().sort().join(','));
    for (const key of [...this.shards.keys()].sort()) {
      const s = this.shards.get(key)!;
      if (s.changes === 0) continue;
      count += s.changes;
      h.update(`|${key}:${[...s.heads].sort().join(',')}`);
    }
    this.digestCache = { digest: h.digest('hex').slice(0, 16), count };
    return this.digestCache;
  }

  invalidateDigest(): void {
    this.digestCache = null;
  }

  shard(key: string): Shard | null {
    let s = this.shards.get(key);
    if (s) return s;
    const id = parseShardKey(key);
    if (!id || this.shards.size >= MAX_SHARDS) return null;
    s = new Shard(id);
    this.shards.set(key, s);
    return s;
  }

  /** Forgets shards that hold nothing (created for a message that was then refused). */
  pruneEmpty(): void {
    for (const [k, s] of this.shards) if (s.changes === 0 && s.unsaved.length === 0) {
      s.evict();
      this.shards.delete(k);
    }
  }

  /** Whether a shard may be sealed: its bucket full and every trial in it finished. */
  sealable(s: Shard): boolean {
    if (s.sealed) return false;
    const base = s.id.bucket * SHARD_TRIALS;
    for (let q = base; q < base + SHARD_TRIALS; q++) {
      const r = this.view.records.get(`${s.id.owner}:${q}`);
      if (!r || !isFinished(r.s)) return false;
    }
    return true;
  }

  /** Reads meta and attrs from the study document (load, genesis arrival, attr changes). */
  refreshStudy(): boolean {
    const parts = docParts(this.study);
    if (parts.meta === undefined) return false;
    if (!this.meta) {
      try {
        this.meta = decodeMeta(parts.meta, false);
      } catch (e) {
        logger.error(`Study ${this.studyId} has an unreadable meta record: ${(e as Error).message}`);
        return false;
      }
      this.name = this.meta.name;
    }
    const { user, system } = readAttrs(this.study);
    this.info = Object.freeze({
      studyId: this.studyId,
      studyName: this.meta.name,
      directions: Object.freeze([...this.meta.directions]) as StudyDirection[],
      userAttrs: Object.freeze(user),
      systemAttrs: Object.freeze(system),
      createdAt: new Date(this.meta.createdAt),
      creator: this.meta.creator,
    });
    return true;
  }

  /**
   * Inspects and applies changes to the study document (genesis, attrs). Returns false if nothing
   * was new; throws RejectedChange.
   */
  applyStudy(raws: Uint8Array[], decoded: DecodedChange[]): boolean {
    const result = inspectChanges({ studyId: this.studyId, doc: this.study, current: () => undefined }, decoded);
    if (result.fresh === 0) return false;
    // Past the per-creator cap the study is dropped, not charged: an honest relay may hold it (issue 15 F12).
    if (result.genesis && this.policy && !this.policy.admit(result.genesis, this.studyId)) return false;
    try {
      this.study.applyChanges(raws);
      noteChanges(this.study, decoded.map((d) => d.hash!));
    } catch (e) {
      throw new RejectedChange('apply-failed', `a change could not be applied: ${(e as Error).message}`);
    }
    this.studyDirty = true;
    this.invalidateDigest();
    this.refreshStudy();
    return true;
  }

  /**
   * The newest record of trial `id` of shard `s` merged so far, read without a call into the shard's
   * document: the view holds every record its shards hold (those applied since the view last took
   * records wait in `applied`), except an owner's the view hides (excludePeers, trustPeers): those are
   * read from the document.
   */
  held(s: Shard, id: string): TrialRecord | undefined {
    const rec = this.applied.get(id) ?? this.view.records.get(id);
    if (rec || s.changes === 0 || !this.view.policy.hide?.(s.id.owner)) return rec;
    return readShardTrial(s.open(), id);
  }

  /** The view took these records (inbox.ts `merged`): they no longer wait in `applied`. */
  viewed(records: readonly TrialRecord[]): void {
    if (this.applied.size === 0) return;
    for (const rec of records) if (this.applied.get(rec.id) === rec) this.applied.delete(rec.id);
  }

  /** Checks changes to one shard against the merge rules and the owner's quota, applying nothing; throws RejectedChange. */
  inspectShard(s: Shard, decoded: DecodedChange[], vouched?: (hash: string) => boolean): ShardInspected {
    // Past the owner's quota nothing is decoded or verified further (issue 15 F15): refused, counted, not charged.
    if (this.pastQuota(s, decoded)) return { fresh: [], trials: new Set(), records: new Map() };
    return inspectShardChanges(
      { studyId: this.studyId, shard: s.id, directions: this.meta?.directions.length, has: (x) => s.has(x), current: (id) => this.held(s, id), vouched },
      decoded,
    );
  }

  /**
   * Whether the owner's quota refuses these changes whatever their records say, told from the keys and
   * value sizes of root `set`s of bytes before any record is decoded or its signature checked: the
   * trials rule exactly as `applyShard` applies it, the bytes rule by a lower bound (a change's values
   * are part of its bytes). Changes of any other shape go to the merge rules (which refuse them).
   */
  private pastQuota(s: Shard, decoded: DecodedChange[]): boolean {
    const owner = s.id.owner;
    if (owner === this.self || !this.policy) return false;
    const q = this.policy.ownerQuota;
    const trials = this.ownerTrials.get(owner) ?? 0;
    let bytes = this.ownerBytes.get(owner) ?? 0;
    const ops = decoded.reduce((n, c) => n + c.ops.length, 0);
    if (trials + ops <= q.trials && bytes + LIMITS.changeBytes * decoded.length <= q.bytes) return false; // far from it: no need to look
    const h = s.open();
    const fresh = new Set<string>();
    for (const c of decoded) {
      if (hasChanges(h, [c.hash!])) continue;
      for (const op of c.ops) {
        const v = (op as { value?: unknown }).value;
        if (op.obj !== '_root' || op.action !== 'set' || typeof op.key !== 'string' || !(v instanceof Uint8Array)) return false;
        bytes += v.byteLength;
        if (h.get('_root', op.key) === undefined) fresh.add(op.key);
      }
    }
    if (trials + fresh.size > q.trials) {
      this.refuse(owner, 'quota:trials');
      return true;
    }
    if (bytes > q.bytes) {
      this.refuse(owner, 'quota:bytes');
      return true;
    }
    return false;
  }

  private refuse(owner: string, reason: string): void {
    this.policy?.count(reason);
    this.quotaRefused.set(owner, reason);
  }

  /**
   * For changes of shard `s` whose dependencies are missing: whether the quota refused changes of its
   * owner here, so what they lack is most likely what we refused. Then they are refused the same way
   * (counted under the same reason), neither buffered to wait for dependencies that will not come nor
   * charged as missing dependencies to the peer that sent them: an honest relay holds what we refuse,
   * and its catch-up pieces and gossip carry the owner's later changes (issue 15 F15: a member's flood
   * past the quota had the victim charge its honest relay once a second, 32 charges a minute quarantine).
   */
  refusedAsDependent(s: Shard): boolean {
    const reason = this.quotaRefused.get(s.id.owner);
    if (reason === undefined) return false;
    this.policy?.count(reason);
    return true;
  }

  /**
   * Inspects and applies changes to one shard (their dependencies must be in the shard or the batch).
   * Returns the records that changed, or null if nothing was new; throws RejectedChange.
   */
  applyShard(s: Shard, raws: Uint8Array[], decoded: DecodedChange[], inspected?: ShardInspected): TrialRecord[] | null {
    const result = inspected ?? this.inspectShard(s, decoded);
    if (result.fresh.length === 0) return null;
    const freshRaw: Uint8Array[] = [];
    const freshSet = new Set(result.fresh.map((d) => d.hash!));
    decoded.forEach((d, i) => {
      if (freshSet.has(d.hash!)) freshRaw.push(raws[i]!);
    });
    const owner = s.id.owner;
    let newTrials = 0;
    let bytes = 0;
    if (owner !== this.self && this.policy) {
      // Per-owner quota (issue 15 F15): refused and counted, not charged (a relay may hold what we refuse).
      for (const id of result.trials) if (this.held(s, id) === undefined) newTrials++;
      for (const c of freshRaw) bytes += c.byteLength;
      const q = this.policy.ownerQuota;
      if ((this.ownerTrials.get(owner) ?? 0) + newTrials > q.trials) {
        this.refuse(owner, 'quota:trials');
        return null;
      }
      if ((this.ownerBytes.get(owner) ?? 0) + bytes > q.bytes) {
        this.refuse(owner, 'quota:bytes');
        return null;
      }
    }
    // A change whose dependencies include every head of the shard follows all of its history, so each
    // key it sets has one value afterwards. An honest owner writes its shard in one line: then the
    // conflict check below (a read per trial) is not needed.
    let heads: string[] = s.currentHeads();
    let linear = true;
    for (const c of result.fresh) {
      if (!heads.every((x) => c.deps.includes(x))) {
        linear = false;
        break;
      }
      heads = [c.hash!];
    }
    // In one line, the inspected records are the shard's: the document can take the changes later
    // (Shard.defer), in one apply with the ones after them. Otherwise they are applied now and the
    // keys they touch are read back for conflicts.
    let h: DocHandle | null = null;
    if (linear) {
      if (!s.doc) s.open(); // a new shard: an empty document, nothing to apply yet
      s.defer(freshRaw, result.fresh.map((d) => d.hash!), result.values);
    } else {
      h = s.open();
      try {
        h.applyChanges(freshRaw);
      } catch (e) {
        throw new RejectedChange('apply-failed', `a change could not be applied: ${(e as Error).message}`);
      }
      noteChanges(h, freshSet);
      s.refreshHeads();
    }
    this.chargeOwner(owner, bytes, newTrials);
    s.changes += freshRaw.length;
    s.unsaved.push(...freshRaw);
    this.invalidateDigest();
    const out: TrialRecord[] = [];
    for (const id of result.trials) {
      // Concurrent values under one key only come from replays of the owner's own records: pick the highest version.
      const rec = h !== null && h.getAll('_root', id).length > 1 ? readShardTrial(h, id) : result.records.get(id);
      if (rec) {
        out.push(rec);
        this.applied.set(rec.id, rec);
      }
      if (rec && rec.o === this.self) this.seq = Math.max(this.seq, rec.q + 1);
    }
    return out;
  }
}
