/**
 * PeerStorage: the Storage interface over a replica that other peers append to concurrently. Each
 * study is a small study document plus many trial shards (schema.ts), kept in level (persist.ts)
 * and replicated over libp2p (src/net): incremental changes on a gossip topic per study (inbox.ts),
 * catch-up by per-shard heads on every connection and when heartbeats show replicas differ
 * (sync-adapter.ts, anti-entropy.ts). Reads come from the view (view.ts); own writes go through
 * writer.ts. This file is the facade: lifecycle, the Storage methods, peers and stats.
 * Test hooks live in testing.ts (not part of the published types).
 */
import * as A from '@automerge/automerge';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { CHECKPOINTS_ATTR, type CheckpointRef } from '../../checkpoints/refs.js';
import type { CheckpointSwarm } from '../../checkpoints/swarm.js';
import type { Distribution, ParamValue } from '../../distributions.js';
import { logger } from '../../logging.js';
import type { Channel } from '../../net/node.js';
import { HEARTBEAT_TOPIC, LivenessTable } from '../../net/liveness.js';
import { runSyncSession } from '../../net/sync.js';
import { unpackUntrusted } from '../../net/wire.js';
import { checkAttr, checkDirections, checkFinish, checkIntermediate, checkParams, checkStates, checkStudyName, copyAttr } from '../contract.js';
import {
  AmbiguousStudyError,
  DuplicatedStudyError,
  StorageError,
  StudyNotFoundError,
  isFinished,
  type FrozenTrial,
  type PeerInfo,
  type Storage,
  type StudyDirection,
  type StudyInfo,
  type TrialState,
  type TrialTemplate,
} from '../storage.js';
import { AntiEntropy } from './anti-entropy.js';
import { checkpointDirOf, startCheckpointSwarm, studyOfTrial } from './checkpoints.js';
import { Inbox } from './inbox.js';
import { resolveOptions, topicOf, MAX_STUDIES, OUTBOX_GAP_MS, type PeerStorageOptions, type ResolvedOptions } from './options.js';
import { Pacer, gapFor, heartbeatEvery } from './pacing.js';
import { ReplicaDb, loadOrCreateKey, type StoredStudy } from './persist.js';
import { Replica, Shard, internalsOf, type Ctx } from './replica.js';
import { decodeTrial, genesisDoc, ivCount, ivHasStep, ivPairs, readShardTrial, studyIdFor, parseShardKey, type StudyDoc, type StudyMeta, type TrialRecord } from './schema.js';
import { SyncAdapter } from './sync-adapter.js';
import { Writer } from './writer.js';

export type { PeerStorageOptions } from './options.js';


export async function openPeerStorage(opts: PeerStorageOptions): Promise<PeerStorage> {
  const resolved = resolveOptions(opts);
  const key = await loadOrCreateKey(resolved.dataDir);
  const db = await ReplicaDb.open(resolved.dataDir);
  const storage = new PeerStorage(resolved, key, db, CONSTRUCT);
  try {
    await storage[START]();
  } catch (e) {
    await storage.close().catch(() => {});
    throw e;
  }
  return storage;
}

/** The latest claim of these trials (-Infinity for none held): their numbers are settled once it is. */
function latestClaim(r: Replica, trialIds: readonly string[]): number {
  let c = -Infinity;
  for (const id of trialIds) c = Math.max(c, r.view.records.get(id)?.c ?? -Infinity);
  return c;
}

/** A peer that announced a study this long without a trial in it counts as an observer (whenNumbersSettled). */
const OBSERVER_AFTER_MS = 5000;
const CONSTRUCT = Symbol('construct');
const START = Symbol('start');

export class PeerStorage implements Storage {
  readonly peerId: string;
  readonly #ctx: Ctx;
  readonly #writer: Writer;
  readonly #inbox: Inbox;
  readonly #sync: SyncAdapter;
  readonly #ae: AntiEntropy;
  readonly #counters = new Map<string, number>();
  /** Rejected messages per delivering peer (gossip, heartbeats, sync frames), for peers(); bounded. */
  readonly #rejectsFrom = new Map<string, number>();
  readonly #sessions = new Map<string, { again: boolean }>();
  readonly #waiters = new Set<() => void>();
  readonly #listeners = new Set<(studyId: string) => void>();
  readonly #openedAt = Date.now();
  #writeChain: Promise<void> = Promise.resolve();
  #timers: NodeJS.Timeout[] = [];
  #checkpoints: CheckpointSwarm | null = null;
  readonly #pacer = new Pacer();
  /** Per study: the gap kept between this peer's gossip messages, recomputed each heartbeat (pacing.ts). */
  readonly #gaps = new Map<string, number>();
  /** Every how many heartbeat intervals this peer heartbeats (pacing.ts heartbeatEvery), from the live peers it sees. */
  #heartbeatEvery = 1;
  #heartbeatsSent = 0;

  /** @internal use openPeerStorage */
  constructor(opts: ResolvedOptions, key: PrivateKey, db: ReplicaDb, token: symbol) {
    if (token !== CONSTRUCT) throw new StorageError('use openPeerStorage(opts) to open a PeerStorage');
    this.peerId = peerIdFromPrivateKey(key as never).toString();
    const self = this;
    this.#ctx = {
      peerId: this.peerId,
      key,
      db,
      opts,
      replicas: new Map(),
      liveness: new LivenessTable(),
      node: null,
      closed: false,
      count: (reason) => this.#counters.set(reason, (this.#counters.get(reason) ?? 0) + 1),
      enqueueWrite(what, fn) {
        const p = self.#writeChain.then(fn);
        self.#writeChain = p.catch((e: Error) => {
          self.#ctx.count('persist:error');
          logger.error(`Writing ${what} to disk failed: ${e.message}`);
        });
        return p;
      },
      changed: (studyId) => {
        this.#checkpoints?.invalidate();
        for (const l of this.#listeners) {
          try {
            l(studyId);
          } catch (e) {
            logger.warn(`A trials listener failed: ${(e as Error).message}`);
          }
        }
      },
      notify: () => {
        for (const w of [...this.#waiters]) {
          this.#waiters.delete(w);
          w();
        }
      },
      policy: {
        view: {
          ...opts.viewPolicy,
          live: (owner) => {
            const last = this.#ctx.liveness.get(owner);
            return last !== undefined && Date.now() - last <= opts.staleMs;
          },
        },
        ownerQuota: opts.ownerQuota,
        count: (reason) => this.#ctx.count(reason),
        admit: (meta, studyId) => this.#admit(meta, studyId),
      },
    };
    this.#writer = new Writer(this.#ctx, (r) => this.#gaps.get(r.studyId) ?? OUTBOX_GAP_MS);
    this.#inbox = new Inbox(this.#ctx, this.#writer, (p) => void this.#syncWith(p));
    this.#ae = new AntiEntropy(this.#ctx, (r) => this.#subscribe(r), (p) => void this.#syncWith(p));
    this.#sync = new SyncAdapter(this.#ctx, this.#writer, this.#inbox, (e, from) => this.#ae.offer(e, from));
    internalsOf.set(this, { ctx: this.#ctx, writer: this.#writer, inbox: this.#inbox });
  }

  /** Checkpoint blobs live in the data dir, beside the replica (issue 9). */
  get checkpointDir(): string {
    return checkpointDirOf(this.#ctx.opts.dataDir);
  }

  /** Brings blobs of a checkpoint from the peers that hold it into `checkpointDir`. */
  async fetchCheckpointBlobs(ref: CheckpointRef, blobs: { hash: string; size: number }[]): Promise<void> {
    if (!this.#checkpoints) throw new StorageError(`checkpoint ${ref.id} is not on this peer, and this peer has no network to fetch it (it was opened without listen addresses)`);
    await this.#checkpoints.fetch(studyOfTrial(this.#ctx, ref.trialId), ref, blobs);
  }

  get ownerId(): string {
    return this.peerId;
  }

  // ================================================================ lifecycle

  async [START](): Promise<void> {
    const ctx = this.#ctx;
    // A sealed shard's records decode as they are read (all or none: otherwise it loads from its changes).
    const { studies, deleted } = await ctx.db.loadAll((bytes) => {
      try {
        return bytes.map((b) => decodeTrial(b, false));
      } catch {
        return null;
      }
    });
    this.#ae.deleted = deleted;
    for (const s of studies) {
      const r = this.#load(s);
      ctx.replicas.set(r.studyId, r);
    }
    // This peer's RUNNING trials from before a crash or stop did not finish: fail them for real.
    for (const r of ctx.replicas.values()) {
      for (const rec of [...r.view.records.values()]) {
        // A trial handed out by `peertune ask` stays RUNNING for a later `tell` (systemAttrs.askedByCli).
        if (rec.o === this.peerId && rec.s === 'RUNNING' && rec.sa['askedByCli'] !== true) {
          this.#writer.mutate(r, rec.id, (x) => {
            x.s = 'FAIL';
            x.t1 = Date.now();
            x.sa = { ...x.sa, failReason: 'the peer stopped or crashed while the trial was running' };
          });
        }
      }
      if (r.dirty.size) await this.#writer.flush(r, true);
    }
    if (ctx.opts.listen.length > 0) await this.#startNetwork();
    const o = ctx.opts;
    this.#timers.push(setInterval(() => this.#checkStale(), Math.max(50, Math.min(o.heartbeatMs, o.staleMs / 4))));
    this.#timers.push(setInterval(() => this.#ae.housekeeping(), 2000));
    for (const t of this.#timers) t.unref();
  }

  /** A stored study into memory: sealed shards from their final records (no Automerge), open ones from their changes. */
  #load(s: StoredStudy<TrialRecord[]>): Replica {
    const ctx = this.#ctx;
    let doc: A.Doc<StudyDoc> = A.init<StudyDoc>();
    if (s.meta) {
      try {
        doc = A.load<StudyDoc>(s.meta);
      } catch (e) {
        ctx.count('load:corrupt-snapshot');
        logger.error(`A saved snapshot of study ${s.name || s.studyId} is corrupted (${(e as Error).message}); recovering what can be read (peers can resend the rest).`);
      }
    }
    const r = new Replica(s.studyId, s.name, doc, this.peerId, ctx.policy);
    r.refreshStudy();
    const records: TrialRecord[] = [];
    let missing = 0;
    for (const st of s.shards.values()) {
      const id = parseShardKey(st.key);
      if (!id) continue;
      const sh = new Shard(id);
      r.shards.set(st.key, sh);
      if (st.sealed) {
        sh.heads = st.sealed.heads;
        sh.changes = st.sealed.changes;
        sh.sealed = true;
        sh.sealPersisted = true;
        for (const rec of st.sealed.records) records.push(rec);
        r.chargeOwner(id.owner, st.sealed.bytes, st.sealed.records.length);
        continue;
      }
      const changes: Uint8Array[] = [];
      for (const b of st.batches) {
        try {
          const list = unpackUntrusted(b, { maxBytes: 1 << 30, maxDepth: 2, maxNodes: 10_000_000 });
          if (!Array.isArray(list)) throw new Error('not a list of changes');
          for (const c of list) if (c instanceof Uint8Array) changes.push(c);
        } catch (e) {
          ctx.count('load:corrupt-chunk');
          logger.error(`A saved chunk of study ${s.name || s.studyId} is corrupted (${(e as Error).message}); recovering what can be read (peers can resend the rest).`);
        }
      }
      const h = sh.open();
      for (const c of changes) {
        try {
          h.applyChanges([c]);
          sh.changes++;
        } catch (e) {
          ctx.count('load:corrupt-chunk');
          logger.error(`A saved chunk of study ${s.name || s.studyId} is corrupted (${(e as Error).message}); recovering what can be read (peers can resend the rest).`);
        }
      }
      sh.changes = Math.min(sh.changes, h.getChanges([]).length);
      missing += h.getMissingDeps([]).length;
      sh.refreshHeads();
      let held = 0;
      for (const key of h.keys('_root')) {
        const rec = readShardTrial(h, key);
        if (rec) records.push(rec);
        held++;
      }
      r.chargeOwner(id.owner, changes.reduce((n, c) => n + c.byteLength, 0), held);
    }
    if (missing > 0) {
      ctx.count('load:missing-deps');
      logger.error(`Study ${s.name || s.studyId} is missing part of its saved history (${missing} change(s) absent); what depends on it waits until a peer resends it.`);
    }
    if (!r.meta && s.meta) logger.error(`Study ${s.name || s.studyId} has no readable meta record; it fills in when a peer resends it.`);
    r.view.put(records);
    for (const rec of records) if (rec.o === this.peerId) r.seq = Math.max(r.seq, rec.q + 1);
    r.caughtUp = false;
    return r;
  }

  async #startNetwork(): Promise<void> {
    const ctx = this.#ctx;
    const o = ctx.opts;
    // libp2p and its transports load only here: a replica without a network never imports them.
    const { PeerNode } = await import('../../net/node.js');
    const node = await PeerNode.start(
      {
        privateKey: ctx.key,
        listen: o.listen,
        join: o.join,
        mdns: o.mdns,
        swarmKey: o.swarmKey,
        allowPeers: o.allowPeers,
        quarantine: o.quarantine,
        count: (reason) => ctx.count(reason),
      },
      (peerId, outbound) => {
        if (outbound) void this.#syncWith(peerId);
      },
      () => {},
    );
    ctx.node = node;
    await node.handleSync((ch) => void this.#serveSync(ch));
    node.subscribe(HEARTBEAT_TOPIC, (from, data, via) => this.#charge(via, this.#ae.onHeartbeat(from, data, via)));
    for (const r of ctx.replicas.values()) this.#subscribe(r);
    this.#ae.askGap = () => this.#pacer.askMs;
    this.#ae.heartbeatEvery = () => this.#heartbeatEvery;
    // Intervals since this peer's last heartbeat (the first interval sends one).
    let since = Number.MAX_SAFE_INTEGER;
    const hb = setInterval(() => {
      this.#pace();
      // What a heartbeat announces (replica digests and counts) has left by gossip before it: a peer
      // never sees a count ahead of the gossip on its way and starts a catch-up for it (pacing holds
      // messages up to the gap; a relay that took changes by catch-up would not pass their gossip on).
      // In a big swarm, every k-th interval only (pacing.ts heartbeatEvery).
      // Counted from the last one sent, so a change of k never leaves more than k intervals between two.
      if (++since < this.#heartbeatEvery) return;
      since = 0;
      for (const r of this.#ctx.replicas.values()) if (r.outbox.n > 0 || r.flushOnPublish) this.#writer.publishOutbox(r);
      this.#heartbeatsSent++;
      void this.#ae.sendHeartbeat();
    }, o.heartbeatMs);
    hb.unref();
    this.#timers.push(hb);
    this.#checkpoints = await startCheckpointSwarm(ctx, node, {
      studyPeers: (studyId) => [...this.#ae.peerStudies].filter(([, s]) => s.has(studyId)).map(([p]) => p),
      setSystemAttr: (studyId, trialId, key, value) => this.#setTrialAttr(studyId, trialId, 'sa', key, value),
      rejected: (peer) => this.#rejected(peer),
    });
    logger.info(`Peer ${this.peerId} listening on ${node.multiaddrs().join(' ')}`);
  }

  #subscribe(r: Replica): void {
    this.#ctx.node?.subscribe(topicOf(r.studyId), (from, data, via) => {
      const t0 = performance.now();
      const verdict = this.#inbox.onGossip(r, from, data, via);
      this.#pacer.noteGossipMs(performance.now() - t0);
      return this.#charge(via, verdict);
    });
  }

  /** Counts a rejected message against the peer that delivered it (as the node's quarantine does). */
  #charge<V extends string>(via: string, verdict: V): V {
    if (verdict === 'reject') this.#rejected(via);
    return verdict;
  }

  #rejected(peerId: string): void {
    if (!this.#rejectsFrom.has(peerId) && this.#rejectsFrom.size >= 4096) this.#rejectsFrom.delete(this.#rejectsFrom.keys().next().value!);
    this.#rejectsFrom.set(peerId, (this.#rejectsFrom.get(peerId) ?? 0) + 1);
  }

  /** The channel, with what its remote sent invalid also counted for peers(). */
  #counted(ch: Channel): Channel {
    return { ...ch, reportInvalid: (reason) => (this.#rejected(ch.remotePeer), ch.reportInvalid(reason)) };
  }

  async close(): Promise<void> {
    const ctx = this.#ctx;
    if (ctx.closed) return;
    await this.#handOver();
    ctx.closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    for (const r of ctx.replicas.values()) {
      r.cancelTimers();
      try {
        await this.#writer.flush(r, true, true);
      } catch (e) {
        logger.error(`Could not save the last writes of study ${r.name}: ${(e as Error).message}`);
      }
    }
    ctx.notify();
    await this.#checkpoints?.stop();
    this.#checkpoints = null;
    if (ctx.node) await ctx.node.stop().catch((e: Error) => logger.warn(`Stopping the network failed: ${e.message}`));
    ctx.node = null;
    await this.#writeChain.catch(() => {});
    await ctx.db.close();
  }

  /**
   * Before leaving, hands the last writes to the peers still connected: flush, gossip at once, and one
   * catch-up round with each (bounded), so a worker that exits right after its last trial does not leave
   * that trial only on its own disk until it comes back.
   */
  async #handOver(timeoutMs = 2000): Promise<void> {
    const node = this.#ctx.node;
    if (!node) return;
    for (const r of this.#ctx.replicas.values()) {
      if (r.dirty.size) await this.#writer.flush(r, true).catch(() => {});
      this.#writer.publishOutbox(r);
    }
    const peers = node.connectedPeers();
    if (peers.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((res) => (timer = setTimeout(res, timeoutMs)));
    await Promise.race([Promise.allSettled(peers.map((p) => this.#syncWith(p))), deadline]);
    clearTimeout(timer);
  }

  async flush(): Promise<void> {
    await Promise.all([...this.#ctx.replicas.values()].map((r) => this.#writer.flush(r, true)));
  }

  // ================================================================ studies

  async createStudy(opts: { studyName: string; directions: StudyDirection[]; userAttrs?: Record<string, unknown> }): Promise<StudyInfo> {
    this.#checkOpen();
    checkStudyName(opts?.studyName);
    checkDirections(opts.directions);
    for (const [k, v] of Object.entries(opts.userAttrs ?? {})) checkAttr(k, v);
    // Taken only by a study created (or run in) here: a study of the name that merely arrived from the
    // network must not stop this peer from creating its own (issue 15 F3: names are not owned).
    const others = [...this.#ctx.replicas.values()].filter((r) => r.info?.studyName === opts.studyName);
    if (others.some((r) => r.meta!.creator === this.peerId || r.seq > 0)) throw new DuplicatedStudyError(`a study named "${opts.studyName}" already exists`);
    if (others.length) logger.warn(`Creating study "${opts.studyName.slice(0, 80)}" although this replica holds ${others.length} other(s) of that name from peers (${others.map((r) => r.studyId).join(', ')}); here the name means the new one, elsewhere choose by id`);
    const createdAt = Date.now();
    const meta: StudyMeta = { k: 'meta', id: studyIdFor(this.peerId, opts.studyName, createdAt), name: opts.studyName, directions: [...opts.directions], creator: this.peerId, createdAt };
    const r = new Replica(meta.id, meta.name, genesisDoc(this.#ctx.key, meta), this.peerId, this.#ctx.policy);
    r.caughtUp = true;
    r.studyDirty = true; // the genesis itself must reach level
    r.refreshStudy();
    this.#ctx.replicas.set(r.studyId, r);
    for (const [k, v] of Object.entries(opts.userAttrs ?? {})) this.#writer.writeAttr(r, 'u', k, v);
    await this.#writer.persist(r, true);
    this.#subscribe(r);
    void this.#ae.sendHeartbeat();
    this.#ctx.notify();
    return r.info!;
  }

  /**
   * The study of this name in this replica (issue 15 F3: names resolve to one study id per replica).
   * Anyone can create a study of any name with any creation date, so the oldest does not win: with
   * several studies of the name, the one this replica created wins, else the one it ran trials in;
   * otherwise the name is ambiguous and this throws AmbiguousStudyError listing the ids (choose one by
   * id: `getStudyById`, loadStudy's `studyId`, the CLI's --study-id).
   */
  getStudy(studyName: string): StudyInfo | null {
    const named: Replica[] = [];
    for (const r of this.#ctx.replicas.values()) if (r.info && r.info.studyName === studyName) named.push(r);
    if (named.length <= 1) return named[0]?.info ?? null;
    const created = named.filter((r) => r.meta!.creator === this.peerId);
    if (created.length === 1) return created[0]!.info;
    const ranHere = named.filter((r) => r.seq > 0);
    if (created.length === 0 && ranHere.length === 1) return ranHere[0]!.info;
    throw new AmbiguousStudyError(studyName, named.map((r) => r.info!));
  }

  /** The study with this id in this replica (once its genesis has arrived), or null. */
  getStudyById(studyId: string): StudyInfo | null {
    return this.#ctx.replicas.get(studyId)?.info ?? null;
  }

  /** The per-creator cap on studies taken from the network (issue 15 F12); refused ones are dropped and not offered again. */
  #admit(meta: StudyMeta, studyId: string): boolean {
    const ctx = this.#ctx;
    if (meta.creator === this.peerId) return true;
    let held = 0;
    for (const x of ctx.replicas.values()) if (x.meta && x.meta.creator === meta.creator && x.studyId !== studyId) held++;
    if (held < ctx.opts.maxStudiesPerCreator) return true;
    ctx.count('offer:creator-full');
    logger.warn(`Refused study ${meta.name.slice(0, 80)} (${studyId}): this replica holds ${held} studies of its creator ${meta.creator} (maxStudiesPerCreator ${ctx.opts.maxStudiesPerCreator})`);
    if (this.#ae.deleted.size < 100_000) this.#ae.deleted.add(studyId);
    const r = ctx.replicas.get(studyId);
    if (r) r.refused = true;
    queueMicrotask(() => {
      const cur = ctx.replicas.get(studyId);
      if (!cur || cur.meta) return;
      cur.cancelTimers();
      ctx.replicas.delete(studyId);
      ctx.node?.unsubscribe(topicOf(studyId));
    });
    return false;
  }

  listStudies(): StudyInfo[] {
    return [...this.#ctx.replicas.values()].filter((r) => r.info).map((r) => r.info!);
  }

  /** Deletes this replica of a study (peers keep theirs); this peer refuses the study from then on. */
  async deleteStudy(studyId: string): Promise<void> {
    const r = this.#replica(studyId);
    r.cancelTimers();
    this.#ctx.replicas.delete(studyId);
    this.#ae.deleted.add(studyId);
    this.#ctx.node?.unsubscribe(topicOf(studyId));
    await this.#writeChain;
    await this.#ctx.db.markDeleted(studyId);
  }

  setStudyUserAttr(studyId: string, key: string, value: unknown): void {
    checkAttr(key, value);
    this.#writer.writeAttr(this.#replica(studyId), 'u', key, value);
  }

  setStudySystemAttr(studyId: string, key: string, value: unknown): void {
    checkAttr(key, value);
    const r = this.#replica(studyId);
    // Settings are the creator's alone; every other replica would refuse the write (issue 15 F4).
    if (r.meta && r.meta.creator !== this.peerId) throw new StorageError(`only the creator of study "${r.name}" (peer ${r.meta.creator}) can set its system attrs; this peer is ${this.peerId}`);
    this.#writer.writeAttr(r, 's', key, value);
  }

  /**
   * Resolves with the study once it is here and caught up (or nobody is there to catch up with), null
   * after the timeout; at once for a study this replica held before it heard of it on the network.
   * While another study offered under the same name is still arriving, it waits for that one too (up
   * to 5 s more), so two studies of one name make an AmbiguousStudyError here instead of the first to
   * arrive winning.
   */
  async waitForStudy(name: string, timeoutMs = 30_000): Promise<StudyInfo | null> {
    return this.#waitFor(() => this.getStudy(name), (r) => !r.meta && r.name === name, timeoutMs);
  }

  /** waitForStudy by study id (the CLI's --study-id). */
  async waitForStudyId(studyId: string, timeoutMs = 30_000): Promise<StudyInfo | null> {
    return this.#waitFor(() => this.getStudyById(studyId), () => false, timeoutMs);
  }

  async #waitFor(find: () => StudyInfo | null, arriving: (r: Replica) => boolean, timeoutMs: number): Promise<StudyInfo | null> {
    this.#checkOpen();
    const ctx = this.#ctx;
    const deadline = Date.now() + timeoutMs;
    let foundAt: number | null = null;
    for (;;) {
      const info = find();
      if (info) {
        const r = ctx.replicas.get(info.studyId)!;
        foundAt ??= Date.now();
        const alone = !ctx.node || (ctx.node.connectedPeers().length === 0 && ctx.opts.join.length === 0);
        // A study can come by the first sync session before any peer's heartbeat has listed the others of
        // its name (issue 15 F3: a name that two studies share must read as ambiguous): wait for one
        // peer's list of studies too, for as long as for an announced one.
        const settling = Date.now() - foundAt < 5000;
        const heard = alone || this.#ae.peerStudies.size > 0 || !settling;
        const another = settling && [...ctx.replicas.values()].some(arriving);
        // Caught up with at least one peer, or nobody to catch up with. A replica this peer already held
        // (created here, or read from its data dir) is usable as it is, offline too; one that arrived from
        // the network in this process waits for its first sync, or loadStudy would show a study without
        // the trials on their way.
        if (r.offeredBy === null || (heard && !another && (r.caughtUp || alone))) return info;
      }
      const left = deadline - Date.now();
      if (left <= 0 || ctx.closed) return find();
      await this.#nextNotify(left);
    }
  }

  /** Resolves at the next `notify` (something merged, a study arrived, a heartbeat's frontier), or after `ms` (at most 250). */
  #nextNotify(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, Math.min(ms, 250));
      const waiters = this.#waiters;
      function done(): void {
        clearTimeout(t);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }

  /**
   * Resolves true once the numbers of these trials can no longer move while the peers stay connected:
   * every live peer of the study has shown that none of its trials still on the way sorts before them
   * (view.ts settledFor: its later trials, or the frontier its heartbeat announces). False after
   * `timeoutMs` (counted, `numbers:settle-timeout`): a peer silent since, or gossip slower than that.
   * A finished trial's log line, the trial `tell` returns and the one callbacks get wait for it, so
   * the number they show is the final one.
   */
  async whenNumbersSettled(studyId: string, trialIds: readonly string[], timeoutMs?: number): Promise<boolean> {
    const ctx = this.#ctx;
    const r = ctx.replicas.get(studyId);
    if (!r || !ctx.node) return true;
    const c = latestClaim(r, trialIds);
    if (c === -Infinity) return true;
    // Two heartbeats of this swarm's pace: an idle peer's frontier comes with each.
    const deadline = Date.now() + (timeoutMs ?? Math.max(2000, 2 * ctx.opts.heartbeatMs * this.#heartbeatEvery + 1000));
    for (;;) {
      if (ctx.closed || this.#settled(r, c)) return true;
      const left = deadline - Date.now();
      if (left <= 0) {
        ctx.count('numbers:settle-timeout');
        return false;
      }
      await this.#nextNotify(left);
    }
  }

  /** Whether these trials' numbers are settled now (whenNumbersSettled without the wait). */
  numbersSettled(studyId: string, trialIds: readonly string[]): boolean {
    const r = this.#ctx.replicas.get(studyId);
    if (!r || !this.#ctx.node || this.#ctx.closed) return true;
    const c = latestClaim(r, trialIds);
    return c === -Infinity || this.#settled(r, c);
  }

  #settled(r: Replica, c: number): boolean {
    const now = Date.now();
    for (const [peer, studies] of this.#ae.peerStudies) {
      if (peer === this.peerId || !studies.has(r.studyId) || r.view.policy.hide?.(peer)) continue;
      // A peer that has announced the study for a while without a trial in it (a dashboard, a CLI query
      // joined to the swarm) is not waited for: its heartbeat would hold every line up to a heartbeat.
      // A peer new to the study is (workers all start at once). Left: such an idle peer's first trial
      // racing ours.
      const f = r.frontiers.get(peer);
      if (r.view.trialsOf(peer) === 0 && (!f || now - f.since > OBSERVER_AFTER_MS)) continue;
      if (!r.view.policy.live?.(peer)) continue; // silent past the liveness window
      if (!r.view.settledFor(peer, c, f)) return false;
    }
    return true;
  }

  // ================================================================ trials: writes

  createTrial(studyId: string, template: TrialTemplate = {}): FrozenTrial {
    const r = this.#replica(studyId);
    if (!r.meta) throw new StorageError(`study ${studyId} has not arrived from peers yet`);
    if (template.params || template.distributions) checkParams(template.params, template.distributions);
    return r.view.frozen(this.#writer.newOwnTrial(r, template, null));
  }

  claimWaitingTrial(studyId: string): FrozenTrial | null {
    const r = this.#replica(studyId);
    if (!r.meta) return null;
    const oldest = r.view.oldestUnclaimed();
    if (!oldest) return null;
    const rec = this.#writer.newOwnTrial(r, { state: 'RUNNING', userAttrs: oldest.ua, systemAttrs: oldest.sa }, { id: oldest.id, c: oldest.c, ca: oldest.ca });
    return r.view.frozen(r.view.records.get(rec.id)!);
  }

  setTrialParams(studyId: string, trialId: string, params: Record<string, ParamValue>, distributions: Record<string, Distribution>): void {
    const r = this.#replica(studyId);
    const cur = r.view.records.get(trialId);
    checkParams(params, distributions, cur?.p ?? {});
    this.#writer.mutate(r, trialId, (x) => {
      if (x.s !== 'RUNNING') throw new StorageError(`trial ${r.view.numberOf(trialId)} is ${x.s}; only a RUNNING trial can take params`);
      x.p = { ...x.p, ...params };
      x.d = { ...x.d, ...distributions };
    });
    this.#writer.scheduleFlush(r, true);
  }

  setTrialIntermediateValue(studyId: string, trialId: string, step: number, value: number): void {
    const r = this.#replica(studyId);
    const cur = r.view.records.get(trialId);
    checkIntermediate(step, value, cur ? ivCount(cur.iv) - (ivHasStep(cur.iv, step) ? 1 : 0) : 0);
    this.#writer.mutate(r, trialId, (x) => {
      if (x.s !== 'RUNNING') throw new StorageError(`trial ${r.view.numberOf(trialId)} is ${x.s}; only a RUNNING trial can report`);
      x.iv = [...ivPairs(x.iv).filter((e) => e[0] !== step), [step, value]];
    });
    this.#writer.scheduleFlush(r, false);
  }

  setTrialUserAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    this.#setTrialAttr(studyId, trialId, 'ua', key, value);
  }

  setTrialSystemAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    this.#setTrialAttr(studyId, trialId, 'sa', key, value);
  }

  #setTrialAttr(studyId: string, trialId: string, field: 'ua' | 'sa', key: string, value: unknown): void {
    checkAttr(key, value);
    const r = this.#replica(studyId);
    const v = copyAttr(value);
    this.#writer.mutate(r, trialId, (x) => {
      x[field] = { ...x[field], [key]: v };
    });
    this.#writer.scheduleFlush(r, false);
    if (field === 'sa' && key === CHECKPOINTS_ATTR) this.#checkpoints?.kick();
  }

  async finishTrial(studyId: string, trialId: string, state: 'COMPLETE' | 'PRUNED' | 'FAIL', values: number[] | null = null): Promise<void> {
    const r = this.#replica(studyId);
    checkFinish(state, values, r.meta?.directions.length ?? 1);
    this.#writer.mutate(r, trialId, (x) => {
      if (isFinished(x.s)) throw new StorageError(`trial ${r.view.numberOf(trialId)} is already finished (${x.s}); a finished state is final`);
      x.s = state;
      x.vals = values ? [...values] : null;
      x.t1 = Date.now();
      x.t0 ??= x.t1;
    });
    await this.#writer.flush(r, true);
  }

  // ================================================================ trials: reads

  getTrial(studyId: string, trialId: string): FrozenTrial {
    const r = this.#replica(studyId);
    const rec = r.view.records.get(trialId);
    if (!rec) throw new StorageError(`no trial "${trialId}" in study "${r.name}"`);
    return r.view.frozen(rec);
  }

  getAllTrials(studyId: string, states?: readonly TrialState[]): readonly FrozenTrial[] {
    checkStates(states);
    return this.#replica(studyId).view.list(states);
  }

  getVersion(studyId: string): number {
    return this.#replica(studyId).view.version;
  }

  // ================================================================ peers and stats

  multiaddrs(): string[] {
    return this.#ctx.node?.multiaddrs() ?? [];
  }

  peers(studyId: string): PeerInfo[] {
    const r = this.#replica(studyId);
    const owners = new Map<string, number>();
    for (const rec of r.view.records.values()) if (rec.s !== 'WAITING') owners.set(rec.o, (owners.get(rec.o) ?? 0) + 1);
    const ids = new Set<string>([this.peerId, ...owners.keys()]);
    for (const [peer, studies] of this.#ae.peerStudies) if (studies.has(studyId)) ids.add(peer);
    for (const peer of this.#rejectsFrom.keys()) ids.add(peer);
    const now = Date.now();
    const mine = r.digest();
    return [...ids].map((id) => {
      const last = this.#ctx.liveness.get(id);
      const [digest, countText] = id === this.peerId ? [mine.digest, String(mine.count)] : (this.#ae.peerStudies.get(id)?.get(studyId)?.split(':') ?? []);
      const changes = countText !== undefined && Number.isSafeInteger(Number(countText)) ? Number(countText) : undefined;
      const replica: PeerInfo['replica'] =
        id === this.peerId ? 'self' : !digest || changes === undefined ? 'unknown' : digest === mine.digest ? 'agree' : changes < mine.count ? 'behind' : changes > mine.count ? 'ahead' : 'differs';
      return {
        ...(digest ? { digest } : {}),
        ...(changes !== undefined ? { changes } : {}),
        replica,
        rejects: this.#rejectsFrom.get(id) ?? 0,
        online: id === this.peerId || (last !== undefined && now - last <= this.#ctx.opts.staleMs),
        peerId: id,
        addresses: id === this.peerId ? this.multiaddrs() : (this.#ae.peerAddrs.get(id) ?? []),
        lastSeen: id === this.peerId ? null : last !== undefined ? new Date(last) : null,
        trialsRun: owners.get(id) ?? 0,
        self: id === this.peerId,
      };
    });
  }

  /** Counters: rejected messages by reason (`gossip:<reason>`, `sync:<reason>`), accepted merges, etc. (docs/errors.md). */
  /** Each heartbeat: the gap this peer asks for, and per study the median of what it and the study's live peers ask. */
  #pace(): void {
    const own = this.#pacer.tick(this.#heartbeatEvery);
    const ctx = this.#ctx;
    const now = Date.now();
    const fresh = 3 * ctx.opts.heartbeatMs * this.#heartbeatEvery + 1000;
    const asked = new Map<string, number[]>();
    let live = 0;
    for (const [peer, studies] of this.#ae.peerStudies) {
      const last = ctx.liveness.get(peer);
      if (last === undefined || now - last > fresh) continue;
      live++;
      const g = this.#ae.peerGaps.get(peer) ?? OUTBOX_GAP_MS;
      for (const id of studies.keys()) {
        let l = asked.get(id);
        if (!l) asked.set(id, (l = []));
        l.push(g);
      }
    }
    this.#gaps.clear();
    for (const id of ctx.replicas.keys()) this.#gaps.set(id, gapFor(own, asked.get(id) ?? [], this.#heartbeatEvery));
    this.#heartbeatEvery = heartbeatEvery(live, ctx.opts.heartbeatMs, ctx.opts.staleMs);
  }

  stats(): {
    counters: Record<string, number>;
    connectedPeers: string[];
    /** Copies of gossip messages received, duplicates included (a relay skips peers the author reaches itself: in a connected swarm about one per message). */
    gossipCopies: { study: number; heartbeat: number };
    knownPeers: number;
    /** The gap between gossip messages this peer asks for, its event-loop utilisation and the share of its loop's busy time spent taking in study gossip, over the last heartbeat period (pacing.ts). */
    pacing: { askMs: number; elu: number; gossipShare: number; hostBusy: number; heartbeatEvery: number; heartbeatsSent: number };
    /** Per study, `gapMs`: the least time this peer keeps between two of its gossip messages of the study. */
    studies: { studyId: string; name: string; trials: number; complete: number; pendingChanges: number; pendingBytes: number; heads: string; shards: number; sealedShards: number; gapMs: number }[];
  } {
    return {
      counters: Object.fromEntries([...this.#counters.entries()].sort()),
      connectedPeers: this.#ctx.node?.connectedPeers() ?? [],
      gossipCopies: { ...(this.#ctx.node?.copies ?? { study: 0, heartbeat: 0 }) },
      knownPeers: this.#ae.peerAddrs.size,
      pacing: { askMs: this.#pacer.askMs, elu: this.#pacer.lastElu, gossipShare: this.#pacer.lastGossipShare, hostBusy: this.#pacer.lastHostBusy, heartbeatEvery: this.#heartbeatEvery, heartbeatsSent: this.#heartbeatsSent },
      studies: [...this.#ctx.replicas.values()].map((r) => ({
        studyId: r.studyId,
        name: r.name,
        trials: r.view.size,
        complete: r.view.complete,
        pendingChanges: r.pending.size,
        pendingBytes: r.pendingBytes,
        heads: r.digest().digest,
        shards: r.shards.size,
        sealedShards: [...r.shards.values()].filter((s) => s.sealed).length,
        gapMs: this.#gaps.get(r.studyId) ?? OUTBOX_GAP_MS,
      })),
    };
  }

  /** Calls `listener(studyId)` whenever a study's trials change (local writes, merges, stale verdicts); returns an unsubscribe function. */
  onTrialsChanged(listener: (studyId: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Bytes this replica's database holds (keys + values). */
  async sizeOnDisk(): Promise<number> {
    await this.#writeChain;
    return this.#ctx.db.sizeOnDisk();
  }

  /** Refuses and drops connections to these peers until unblocked (quarantine; partition tests). */
  async blockPeers(peerIds: string[]): Promise<void> {
    await this.#ctx.node?.block(peerIds);
  }

  unblockPeers(peerIds: string[]): void {
    this.#ctx.node?.unblock(peerIds);
  }

  /** Forces a catch-up session with a connected peer; resolves when it ends. */
  async syncNow(peerId: string): Promise<void> {
    await this.#syncWith(peerId);
  }

  // ================================================================ sync sessions and stale verdicts

  #limits() {
    return { maxFrameBytes: this.#ctx.opts.maxFrame, maxStudies: MAX_STUDIES, sessionTimeoutMs: 10 * 60_000, idleTimeoutMs: this.#ctx.opts.syncIdleMs };
  }

  async #serveSync(ch: Channel): Promise<void> {
    this.#ctx.count('sync:sessions-served');
    await runSyncSession(this.#counted(ch), this.#sync.target(), false, this.#limits());
  }

  /** One outbound session at a time per peer; a request during one runs another after it. */
  async #syncWith(peerId: string): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx.node || ctx.closed) return;
    const cur = this.#sessions.get(peerId);
    if (cur) {
      cur.again = true;
      return;
    }
    const s = { again: true };
    this.#sessions.set(peerId, s);
    try {
      while (s.again && !ctx.closed && ctx.node) {
        s.again = false;
        let ch: Channel;
        try {
          ch = await ctx.node.openSync(peerId);
        } catch (e) {
          logger.debug(`cannot open a sync stream to ${peerId}: ${(e as Error).message}`);
          break;
        }
        ctx.count('sync:sessions-started');
        await runSyncSession(this.#counted(ch), this.#sync.target(), true, this.#limits());
      }
    } finally {
      this.#sessions.delete(peerId);
    }
  }

  /** Derives the stale verdict for RUNNING trials whose owner has been silent past the grace period. */
  #checkStale(): void {
    const ctx = this.#ctx;
    const now = Date.now();
    const grace = ctx.opts.staleMs;
    for (const r of ctx.replicas.values()) {
      const changed = r.view.checkStale((owner, firstSeen) => {
        const since = Math.max(this.#openedAt, firstSeen || this.#openedAt);
        if (!ctx.liveness.isSilent(owner, grace, since, now)) return null;
        const silentFor = Math.round((now - Math.max(ctx.liveness.get(owner) ?? 0, since)) / 1000);
        return `owner peer ${owner} has been silent for ${silentFor}s (grace period ${grace / 1000}s); the trial counts as failed unless its owner finishes it`;
      });
      if (changed.length) ctx.changed(r.studyId);
    }
  }

  #replica(studyId: string): Replica {
    this.#checkOpen();
    const r = this.#ctx.replicas.get(studyId);
    if (!r) throw new StudyNotFoundError(`no study with id "${studyId}" in this replica`);
    return r;
  }

  #checkOpen(): void {
    if (this.#ctx.closed) throw new StorageError('this PeerStorage is closed');
  }
}


