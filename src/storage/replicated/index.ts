/**
 * PeerStorage: the Storage interface over a replica that other peers append to concurrently. Each
 * study is one Automerge document (schema and merge rules: schema.ts) kept in level (persist.ts) and
 * replicated over libp2p (src/net): incremental changes on a gossip topic per study, catch-up with
 * Automerge's sync protocol on every connection and when heartbeats show replicas differ.
 *
 * Reads come from an in-memory view of decoded trial records, rebuilt only for the trials a merge
 * touches. Writes to this peer's own trials change the view at once and are coalesced: everything
 * written to a trial in the same tick (create + sampled params) becomes one signed record in one
 * change, published right away so other peers' samplers see the RUNNING trial (constant liar);
 * intermediate values and attrs wait up to `intermediateFlushMs` to be folded into fewer changes.
 * `finishTrial` resolves once the terminal record is in level with a sync write.
 */
import * as A from '@automerge/automerge';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { Distribution, ParamValue } from '../../distributions.js';
import { logger } from '../../logging.js';
import { multiaddr } from '@multiformats/multiaddr';
import { DEFAULT_QUARANTINE, PeerNode, parseJoinAddress, type Channel, type QuarantineOptions } from '../../net/node.js';
import { parsePeerIds } from '../../security/allowlist.js';
import { parseSwarmKey } from '../../security/swarm-key.js';
import { HEARTBEAT_TOPIC, LivenessTable, decodeHeartbeat, encodeHeartbeat, headsDigest } from '../../net/liveness.js';
import { runSyncSession, type CatalogEntry, type SyncTarget } from '../../net/sync.js';
import { asObject, pack, unpackUntrusted, WireError } from '../../net/wire.js';
import {
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
import { ReplicaDb, loadOrCreateKey } from './persist.js';
import {
  LIMITS,
  RejectedChange,
  decodeChanges,
  decodeMeta,
  docParts,
  genesisDoc,
  handleOf,
  hasChanges,
  noteChanges,
  inspectChanges,
  currentAttr,
  readAttrs,
  readTrial,
  seal,
  studyIdFor,
  writeRecords,
  type StudyDoc,
  type StudyMeta,
  type TrialRecord,
} from './schema.js';

export interface PeerStorageOptions {
  /** level db and peer key (stable libp2p identity); created 0700. */
  dataDir: string;
  /** Default ['/ip4/127.0.0.1/tcp/0']; [] = no network at all (offline tools). */
  listen?: string[];
  /** Multiaddrs to dial (and keep dialing on failure). */
  join?: string[];
  /** LAN discovery, default false. */
  mdns?: boolean;
  /** Private swarm (pnet); absent = open. */
  swarmKey?: Uint8Array;
  /** Peer-id allowlist (connection gater). */
  allowPeers?: string[];
  /** Default 1000. */
  heartbeatIntervalMs?: number;
  /** Grace period before a silent owner's RUNNING trials count as FAIL, default 10000. */
  staleAfterMs?: number;
  /** How long intermediate values and attrs may wait to be folded into one change, default 500. */
  intermediateFlushMs?: number;
  /** Incremental chunks kept at least before the document is saved whole (also once their bytes reach half the snapshot's, and on close), default 200. */
  compactEvery?: number;
  /** Largest sync frame accepted, default 16 MiB (a whole 10,000-trial study is about 5 MiB). */
  maxSyncFrameBytes?: number;
  /**
   * A connected peer that delivers this many rejected messages (gossip or sync) within the window is
   * disconnected and refused for `blockMs`; default 32 in 60 s, blocked 10 min. false = never (fuzzing).
   */
  quarantine?: Partial<QuarantineOptions> | false;
}

const SELF_START = Date.now();

interface SyncBox {
  s: A.SyncState;
}

interface Replica {
  studyId: string;
  name: string;
  meta: StudyMeta | null;
  info: StudyInfo | null;
  /**
   * The study's Automerge document. Written and read through its backend (`handleOf`), so its JS
   * view is not kept current; `doc` (a getter) gives outside readers a fresh copy.
   */
  am: A.Doc<StudyDoc>;
  readonly doc: A.Doc<StudyDoc>;
  records: Map<string, TrialRecord>;
  numbers: Map<string, number>;
  nextNumber: number;
  newNumbers: [string, number][];
  firstSeen: Map<string, number>;
  /** RUNNING trials of other owners (candidates for the stale verdict). */
  runningRemote: Set<string>;
  /** Trial keys that hold concurrent values (persisted, so a restart reads them with the max-version rule). */
  conflicted: Set<string>;
  newConflicts: string[];
  /** Sticky verdicts: trial id -> fail reason. */
  stale: Map<string, string>;
  /** WAITING trial id -> the claim that took it over. */
  claimedBy: Map<string, string>;
  dirty: Set<string>;
  flushImmediate: NodeJS.Immediate | null;
  flushTimer: NodeJS.Timeout | null;
  persistTimer: NodeJS.Timeout | null;
  version: number;
  frozen: Map<string, FrozenTrial>;
  all: readonly FrozenTrial[] | null;
  savedHeads: A.Heads;
  digest: string;
  /** Gossiped changes waiting for their dependencies, by hash. */
  pending: Map<string, Uint8Array>;
  pendingBytes: number;
  outbox: Uint8Array[];
  outboxBytes: number;
  outboxTimer: NodeJS.Timeout | null;
  pendingSince: number | null;
  createdAt: number;
  offeredBy: string | null;
  caughtUp: boolean;
  seq: number;
  /**
   * Per peer: since when its advertised state has differed from ours and, when it advertised its heads,
   * which of them we lacked then. A sync is due only if those very heads are still missing after gossip
   * had time to bring them; heads that arrive restart the clock for whatever the peer lacks next.
   */
  remoteDigest: Map<string, { digest: string; since: number; missing?: string[] }>;
}

const topicOf = (studyId: string): string => `peertune/study/${studyId}`;
const STUDY_ID = /^s[0-9a-f]{24}$/;
const MAX_PENDING = 5000;
/** How long a local change may wait to share a gossip message with the next ones. */
const OUTBOX_DELAY_MS = 5;
/** Gossiped changes waiting for dependencies, per study; sync catches up whatever is dropped. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
const PENDING_MAX_AGE_MS = 60_000;
/** How long gossiped changes may wait for their dependencies by gossip before we sync for them. */
const PENDING_SYNC_AFTER_MS = 1000;
/** Replicas offered by peers that have not received their genesis yet (and how long they may wait). */
const MAX_EMPTY_REPLICAS = 64;
const MAX_EMPTY_PER_PEER = 16;
const EMPTY_REPLICA_MAX_AGE_MS = 60_000;
/** Peers whose heartbeats we remember (addresses, studies, last seen). */
const MAX_KNOWN_PEERS = 1024;
const MAX_ATTR_BYTES = 64 * 1024;

export async function openPeerStorage(opts: PeerStorageOptions): Promise<PeerStorage> {
  if (!opts || typeof opts.dataDir !== 'string' || opts.dataDir.length === 0) throw new StorageError('openPeerStorage needs dataDir, a directory path for the replica');
  for (const k of ['heartbeatIntervalMs', 'staleAfterMs', 'intermediateFlushMs', 'compactEvery', 'maxSyncFrameBytes'] as const) {
    const v = opts[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new StorageError(`${k} must be a positive number, got ${String(v)}`);
  }
  for (const k of ['listen', 'join', 'allowPeers'] as const) {
    const v = opts[k];
    if (v !== undefined && (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))) throw new StorageError(`${k} must be an array of strings, got ${JSON.stringify(v)}`);
  }
  const q = opts.quarantine;
  if (q !== undefined && q !== false) {
    if (typeof q !== 'object' || q === null) throw new StorageError(`quarantine must be false or { maxRejects, windowMs, blockMs }, got ${JSON.stringify(q)}`);
    for (const k of ['maxRejects', 'windowMs', 'blockMs'] as const) {
      if (q[k] !== undefined && !(typeof q[k] === 'number' && Number.isFinite(q[k]) && q[k] > 0)) throw new StorageError(`quarantine.${k} must be a positive number, got ${String(q[k])}`);
    }
  }
  // Checked here so a mistake names the option and what is valid, before anything is opened.
  const swarmKey = opts.swarmKey !== undefined ? parseSwarmKey(opts.swarmKey, 'swarmKey') : undefined;
  const allowPeers = opts.allowPeers !== undefined ? parsePeerIds(opts.allowPeers, 'allowPeers') : undefined;
  (opts.listen ?? []).forEach((a, i) => {
    try {
      multiaddr(a);
    } catch (e) {
      throw new StorageError(`listen[${i}]: "${a}" is not a valid multiaddr (${(e as Error).message}); expected something like /ip4/0.0.0.0/tcp/4001`);
    }
  });
  (opts.join ?? []).forEach((a) => parseJoinAddress(a));
  opts = { ...opts, swarmKey, allowPeers };
  const key = await loadOrCreateKey(opts.dataDir);
  const db = await ReplicaDb.open(opts.dataDir);
  const storage = new PeerStorage(opts, key, db);
  try {
    await storage.start();
  } catch (e) {
    await storage.close().catch(() => {});
    throw e;
  }
  return storage;
}

export class PeerStorage implements Storage {
  readonly peerId: string;
  private readonly replicas = new Map<string, Replica>();
  private deleted = new Set<string>();
  private node: PeerNode | null = null;
  private readonly liveness = new LivenessTable();
  private readonly peerAddrs = new Map<string, string[]>();
  private readonly peerStudies = new Map<string, Set<string>>();
  private readonly counters = new Map<string, number>();
  private writeChain: Promise<void> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  private readonly sessions = new Map<string, { again: boolean; last: number }>();
  private readonly waiters = new Set<() => void>();
  private readonly listeners = new Set<(studyId: string) => void>();
  private readonly heartbeatMs: number;
  private readonly staleMs: number;
  private readonly intermediateMs: number;
  private readonly compactEvery: number;
  private readonly maxFrame: number;
  private readonly openedAt = Date.now();

  /** @internal use openPeerStorage */
  constructor(
    private readonly opts: PeerStorageOptions,
    private readonly key: PrivateKey,
    private readonly db: ReplicaDb,
  ) {
    this.peerId = peerIdOfKey(key);
    this.heartbeatMs = opts.heartbeatIntervalMs ?? 1000;
    this.staleMs = opts.staleAfterMs ?? 10_000;
    this.intermediateMs = opts.intermediateFlushMs ?? 500;
    this.compactEvery = opts.compactEvery ?? 200;
    this.maxFrame = opts.maxSyncFrameBytes ?? 16 * 1024 * 1024;
  }

  get ownerId(): string {
    return this.peerId;
  }

  // ================================================================ lifecycle

  /** @internal */
  async start(): Promise<void> {
    const { studies, deleted } = await this.db.loadAll();
    this.deleted = deleted;
    for (const s of studies) {
      const doc = loadDocument(s.snapshot, s.chunks, (what, e) => {
        this.count(`load:${what}`);
        logger.error(`A saved ${what === 'corrupt-snapshot' ? 'snapshot' : 'chunk'} of study ${s.name || s.studyId} is corrupted (${e.message}); recovering what can be read (peers can resend the rest).`);
      });
      const missing = A.getMissingDeps(doc, []);
      if (missing.length > 0) {
        this.count('load:missing-deps');
        logger.error(`Study ${s.name || s.studyId} is missing part of its saved history (${missing.length} change(s) absent); what depends on it waits until a peer resends it.`);
      }
      const r = this.newReplica(s.studyId, s.name, doc);
      r.numbers = s.numbers;
      r.conflicted = s.conflicted;
      for (const n of s.numbers.values()) if (n >= r.nextNumber) r.nextNumber = n + 1;
      this.loadView(r, true);
      this.replicas.set(r.studyId, r);
    }
    // This peer's RUNNING trials from before a crash or stop did not finish: fail them for real.
    for (const r of this.replicas.values()) {
      for (const rec of r.records.values()) {
        // A trial handed out by `peertune ask` stays RUNNING for a later `tell` (systemAttrs.askedByCli).
        if (rec.o === this.peerId && rec.s === 'RUNNING' && rec.sa['askedByCli'] !== true) {
          this.mutate(r, rec.id, (x) => {
            x.s = 'FAIL';
            x.t1 = Date.now();
            x.sa = { ...x.sa, failReason: 'the peer stopped or crashed while the trial was running' };
          });
        }
      }
      if (r.dirty.size) await this.flush(r, true);
    }
    const listen = this.opts.listen ?? ['/ip4/127.0.0.1/tcp/0'];
    if (listen.length > 0) await this.startNetwork(listen);
    this.timers.push(setInterval(() => this.checkStale(), Math.max(50, Math.min(this.heartbeatMs, this.staleMs / 4))));
    this.timers.push(setInterval(() => this.maybeCompact(), 2000));
    for (const t of this.timers) t.unref();
  }

  private async startNetwork(listen: string[]): Promise<void> {
    const node = await PeerNode.start(
      {
        privateKey: this.key,
        listen,
        join: this.opts.join ?? [],
        mdns: this.opts.mdns ?? false,
        swarmKey: this.opts.swarmKey,
        allowPeers: this.opts.allowPeers,
        quarantine: this.opts.quarantine === false ? null : { ...DEFAULT_QUARANTINE, ...this.opts.quarantine },
        count: (reason) => this.count(reason),
      },
      (peerId, outbound) => {
        if (outbound) this.syncWith(peerId);
      },
      () => {},
    );
    this.node = node;
    await node.handleSync((ch) => void this.serveSync(ch));
    node.subscribe(HEARTBEAT_TOPIC, (from, data, via) => this.onHeartbeat(from, data, via));
    for (const r of this.replicas.values()) node.subscribe(topicOf(r.studyId), (from, data, via) => this.onGossip(r, from, data, via));
    const hb = setInterval(() => void this.sendHeartbeat(), this.heartbeatMs);
    hb.unref();
    this.timers.push(hb);
    logger.info(`Peer ${this.peerId} listening on ${node.multiaddrs().join(' ')}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.handOver();
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const r of this.replicas.values()) {
      if (r.flushImmediate) clearImmediate(r.flushImmediate);
      if (r.flushTimer) clearTimeout(r.flushTimer);
      if (r.persistTimer) clearTimeout(r.persistTimer);
      r.flushImmediate = r.flushTimer = r.persistTimer = null;
      if (r.dirty.size || r.meta) {
        try {
          await this.flush(r, true, true);
        } catch (e) {
          logger.error(`Could not save the last writes of study ${r.name}: ${(e as Error).message}`);
        }
      }
    }
    for (const r of this.replicas.values()) {
      if (r.outboxTimer) clearTimeout(r.outboxTimer);
      r.outboxTimer = null;
      if (r.meta && this.db.chunksSinceSnapshot(r.studyId) > 20) this.compact(r);
    }
    for (const w of this.waiters) w();
    this.waiters.clear();
    if (this.node) await this.node.stop().catch((e: Error) => logger.warn(`Stopping the network failed: ${e.message}`));
    this.node = null;
    await this.writeChain.catch(() => {});
    await this.db.close();
  }

  /**
   * Before leaving, hands the last writes to the peers still connected: flush, gossip at once, and one
   * sync round with each (bounded), so a worker that exits right after its last trial does not leave
   * that trial only on its own disk until it comes back.
   */
  private async handOver(timeoutMs = 2000): Promise<void> {
    if (!this.node) return;
    for (const r of this.replicas.values()) {
      if (r.dirty.size) await this.flush(r, true).catch(() => {});
      this.publishOutbox(r);
    }
    const peers = this.node.connectedPeers();
    if (peers.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((res) => (timer = setTimeout(res, timeoutMs)));
    await Promise.race([Promise.allSettled(peers.map((p) => this.syncWith(p))), deadline]);
    clearTimeout(timer);
  }

  async flush(): Promise<void>;
  /** @internal */
  async flush(r: Replica, sync: boolean, closing?: boolean): Promise<void>;
  async flush(r?: Replica, sync = true, closing = false): Promise<void> {
    if (!r) {
      await Promise.all([...this.replicas.values()].map((x) => this.flush(x, true)));
      return;
    }
    if (r.flushImmediate) clearImmediate(r.flushImmediate);
    if (r.flushTimer) clearTimeout(r.flushTimer);
    r.flushImmediate = r.flushTimer = null;
    if (this.closed && !closing) return;
    const changes: Uint8Array[] = [];
    if (r.dirty.size > 0) {
      // One change for everything written this tick, split so no change exceeds what peers accept.
      let batch = new Map<string, Uint8Array>();
      let bytes = 0;
      const commit = () => {
        const c = writeRecords(handleOf(r.am), batch);
        if (c) changes.push(c);
        batch = new Map();
        bytes = 0;
      };
      for (const id of r.dirty) {
        const sealed = seal(this.key, r.records.get(id)!);
        if (bytes + sealed.byteLength > LIMITS.recordBytes && batch.size > 0) commit();
        batch.set(id, sealed);
        bytes += sealed.byteLength;
      }
      commit();
      r.dirty.clear();
      r.digest = headsDigest(A.getHeads(r.am));
    }
    const done = this.persist(r, sync);
    for (const c of changes) this.send(r, c);
    await done;
  }

  /**
   * Gossips a local change. Changes made within a few milliseconds travel in one message: every
   * gossip message costs each receiver a signature check, so under load this is most of the work.
   */
  private send(r: Replica, change: Uint8Array): void {
    if (!this.node || this.closed) return;
    r.outbox.push(change);
    r.outboxBytes += change.byteLength;
    if (r.outboxBytes > 512 * 1024) this.publishOutbox(r);
    else r.outboxTimer ??= setTimeout(() => this.publishOutbox(r), OUTBOX_DELAY_MS);
  }

  private publishOutbox(r: Replica): void {
    if (r.outboxTimer) clearTimeout(r.outboxTimer);
    r.outboxTimer = null;
    const batch = r.outbox;
    r.outbox = [];
    r.outboxBytes = 0;
    if (batch.length && this.node && !this.closed) void this.node.publish(topicOf(r.studyId), pack({ c: batch }));
  }

  /** Queues the document's unsaved part (and new numbers) for level, in order. */
  private persist(r: Replica, sync: boolean): Promise<void> {
    const heads = A.getHeads(r.am);
    const chunk = sameHeads(heads, r.savedHeads) ? null : handleOf(r.am).saveSince(r.savedHeads);
    r.savedHeads = heads;
    const numbers = r.newNumbers;
    r.newNumbers = [];
    const conflicts = r.newConflicts;
    r.newConflicts = [];
    if (!chunk && numbers.length === 0 && conflicts.length === 0 && !sync) return this.writeChain;
    const name = r.name;
    const p = this.writeChain.then(() => this.db.append(r.studyId, name, chunk, numbers, sync, conflicts));
    this.writeChain = p.catch((e: Error) => {
      this.count('persist:error');
      logger.error(`Writing study ${name} to disk failed: ${e.message}`);
    });
    return p;
  }

  /** Merged changes are not urgent (peers still hold them): batch their writes. */
  private persistSoon(r: Replica): void {
    if (r.persistTimer || this.closed) return;
    r.persistTimer = setTimeout(() => {
      r.persistTimer = null;
      if (!this.closed && this.replicas.get(r.studyId) === r) void this.persist(r, false).catch(() => {});
    }, 50);
  }

  /** Drops what strangers can make us hold: empty replicas that never got a genesis, stale pending changes, forgotten peers. */
  private housekeeping(): void {
    const now = Date.now();
    for (const r of [...this.replicas.values()]) {
      if (!r.meta && now - r.createdAt > EMPTY_REPLICA_MAX_AGE_MS) {
        this.replicas.delete(r.studyId);
        this.node?.unsubscribe(topicOf(r.studyId));
        this.count('offer:expired-empty');
      } else if (r.pendingSince !== null && now - r.pendingSince > PENDING_MAX_AGE_MS) {
        this.count('gossip:pending-expired');
        r.pending.clear();
        r.pendingBytes = 0;
        r.pendingSince = null;
      }
    }
    if (this.peerAddrs.size > MAX_KNOWN_PEERS) {
      const byAge = [...this.peerAddrs.keys()].sort((a, b) => (this.liveness.get(a) ?? 0) - (this.liveness.get(b) ?? 0));
      for (const id of byAge.slice(0, this.peerAddrs.size - MAX_KNOWN_PEERS)) {
        this.peerAddrs.delete(id);
        this.peerStudies.delete(id);
        this.liveness.forget(id);
      }
    }
  }

  private maybeCompact(): void {
    this.housekeeping();
    for (const r of this.replicas.values()) {
      if (r.meta && this.db.wantsCompaction(r.studyId, this.compactEvery)) this.compact(r);
    }
  }

  /** Saves the whole document in place of the snapshot and chunks so far (loads stay fast). */
  private compact(r: Replica): void {
    {
      const snapshot = handleOf(r.am).save();
      r.savedHeads = A.getHeads(r.am);
      const numbers = r.newNumbers;
      r.newNumbers = [];
      this.writeChain = this.writeChain
        .then(async () => {
          await this.db.compact(r.studyId, snapshot);
          if (numbers.length) await this.db.append(r.studyId, r.name, null, numbers, false);
        })
        .catch((e: Error) => logger.error(`Compacting study ${r.name} failed: ${e.message}`));
    }
  }

  // ================================================================ studies

  async createStudy(opts: { studyName: string; directions: StudyDirection[]; userAttrs?: Record<string, unknown> }): Promise<StudyInfo> {
    this.checkOpen();
    if (typeof opts.studyName !== 'string' || opts.studyName.length === 0 || opts.studyName.length > 256) {
      throw new StorageError(`studyName must be a non-empty string of at most 256 characters, got ${JSON.stringify(opts.studyName)}`);
    }
    if (this.getStudy(opts.studyName)) throw new DuplicatedStudyError(`a study named "${opts.studyName}" already exists`);
    const createdAt = Date.now();
    const meta: StudyMeta = { k: 'meta', id: studyIdFor(this.peerId, opts.studyName, createdAt), name: opts.studyName, directions: [...opts.directions], creator: this.peerId, createdAt };
    const r = this.newReplica(meta.id, meta.name, genesisDoc(this.key, meta));
    r.caughtUp = true;
    r.savedHeads = []; // the genesis itself must reach level
    this.replicas.set(r.studyId, r);
    this.loadView(r);
    for (const [k, v] of Object.entries(opts.userAttrs ?? {})) this.writeAttr(r, 'u', k, v);
    await this.persist(r, true);
    this.node?.subscribe(topicOf(r.studyId), (from, data, via) => this.onGossip(r, from, data, via));
    void this.sendHeartbeat();
    this.notify();
    return r.info!;
  }

  getStudy(studyName: string): StudyInfo | null {
    let best: StudyInfo | null = null;
    for (const r of this.replicas.values()) {
      if (!r.info || r.info.studyName !== studyName) continue;
      // Two peers may create the same name apart; everyone picks the same one (oldest, then id).
      if (!best || r.info.createdAt < best.createdAt || (+r.info.createdAt === +best.createdAt && r.studyId < best.studyId)) best = r.info;
    }
    return best;
  }

  listStudies(): StudyInfo[] {
    return [...this.replicas.values()].filter((r) => r.info).map((r) => r.info!);
  }

  /** Deletes this replica of a study (peers keep theirs); this peer refuses the study from then on. */
  async deleteStudy(studyId: string): Promise<void> {
    const r = this.replica(studyId);
    if (r.flushImmediate) clearImmediate(r.flushImmediate);
    if (r.flushTimer) clearTimeout(r.flushTimer);
    if (r.persistTimer) clearTimeout(r.persistTimer);
    this.replicas.delete(studyId);
    this.deleted.add(studyId);
    this.node?.unsubscribe(topicOf(studyId));
    await this.writeChain;
    await this.db.markDeleted(studyId);
  }

  setStudyUserAttr(studyId: string, key: string, value: unknown): void {
    this.writeAttr(this.replica(studyId), 'u', key, value);
  }

  setStudySystemAttr(studyId: string, key: string, value: unknown): void {
    this.writeAttr(this.replica(studyId), 's', key, value);
  }

  private writeAttr(r: Replica, kind: 'u' | 's', key: string, value: unknown): void {
    if (typeof key !== 'string' || key.length === 0 || key.length > 256) throw new StorageError(`attr key must be a non-empty string, got ${JSON.stringify(key)}`);
    checkAttrValue(key, value);
    if (!r.meta) throw new StorageError(`study ${r.studyId} has not arrived from peers yet`);
    const k = `${kind}:${key}`;
    const h = handleOf(r.am);
    const prev = currentAttr(h, docParts(h).attrs!, k);
    // Newer than what it replaces, even within one millisecond: peers reject older attr records.
    const ts = Math.max(Date.now(), (prev?.ts ?? 0) + (prev && prev.by >= this.peerId ? 1 : 0));
    const sealed = seal(this.key, { k: 'attr', st: r.studyId, key: k, val: value ?? null, by: this.peerId, ts });
    const change = writeRecords(handleOf(r.am), new Map(), new Map([[k, sealed]]));
    r.digest = headsDigest(A.getHeads(r.am));
    this.refreshInfo(r);
    void this.persist(r, false);
    if (change) this.send(r, change);
  }

  async waitForStudy(name: string, timeoutMs = 30_000): Promise<StudyInfo | null> {
    this.checkOpen();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = this.getStudy(name);
      if (info) {
        const r = this.replicas.get(info.studyId)!;
        // Caught up with at least one peer, or nobody to catch up with.
        if (r.caughtUp || !this.node || (this.node.connectedPeers().length === 0 && (this.opts.join ?? []).length === 0)) return info;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return this.getStudy(name);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 250));
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  // ================================================================ trials: writes

  createTrial(studyId: string, template: TrialTemplate = {}): FrozenTrial {
    const r = this.replica(studyId);
    if (!r.meta) throw new StorageError(`study ${studyId} has not arrived from peers yet`);
    return this.frozen(r, this.newOwnTrial(r, template, null));
  }

  private newOwnTrial(r: Replica, template: TrialTemplate, claim: string | null): TrialRecord {
    const state = template.state ?? 'RUNNING';
    if (state !== 'RUNNING' && state !== 'WAITING') throw new StorageError(`a new trial is RUNNING or WAITING, not ${String(state)}`);
    for (const [k, v] of Object.entries(template.userAttrs ?? {})) checkAttrValue(k, v);
    for (const [k, v] of Object.entries(template.systemAttrs ?? {})) checkAttrValue(k, v);
    const seq = r.seq++;
    const rec: TrialRecord = {
      k: 'trial',
      st: r.studyId,
      id: `${this.peerId}:${seq}`,
      o: this.peerId,
      q: seq,
      v: 0,
      s: state,
      p: { ...(template.params ?? {}) },
      d: { ...(template.distributions ?? {}) },
      vals: null,
      iv: [],
      ua: { ...(template.userAttrs ?? {}) },
      sa: { ...(template.systemAttrs ?? {}) },
      t0: state === 'RUNNING' ? Date.now() : null,
      t1: null,
      claim,
    };
    r.records.set(rec.id, rec);
    r.dirty.add(rec.id);
    this.assignNumbers(r, [rec]);
    this.touch(r, [rec.id]);
    this.scheduleFlush(r, true);
    return rec;
  }

  claimWaitingTrial(studyId: string): FrozenTrial | null {
    const r = this.replica(studyId);
    if (!r.meta) return null;
    let oldest: TrialRecord | null = null;
    for (const rec of r.records.values()) {
      if (rec.s !== 'WAITING' || r.claimedBy.has(rec.id)) continue;
      if (!oldest || r.numbers.get(rec.id)! < r.numbers.get(oldest.id)!) oldest = rec;
    }
    if (!oldest) return null;
    const rec = this.newOwnTrial(r, { state: 'RUNNING', userAttrs: oldest.ua, systemAttrs: oldest.sa }, oldest.id);
    return this.frozen(r, rec);
  }

  setTrialParams(studyId: string, trialId: string, params: Record<string, ParamValue>, distributions: Record<string, Distribution>): void {
    const r = this.replica(studyId);
    this.mutate(r, trialId, (x) => {
      if (x.s !== 'RUNNING') throw new StorageError(`trial ${r.numbers.get(trialId)} is ${x.s}; only a RUNNING trial can take params`);
      x.p = { ...x.p, ...params };
      x.d = { ...x.d, ...distributions };
    });
    this.scheduleFlush(r, true);
  }

  setTrialIntermediateValue(studyId: string, trialId: string, step: number, value: number): void {
    const r = this.replica(studyId);
    if (!Number.isSafeInteger(step) || step < 0) throw new StorageError(`step must be a non-negative integer, got ${String(step)}`);
    if (typeof value !== 'number' || Number.isNaN(value)) throw new StorageError(`intermediate value must be a number, got ${String(value)}`);
    this.mutate(r, trialId, (x) => {
      if (x.s !== 'RUNNING') throw new StorageError(`trial ${r.numbers.get(trialId)} is ${x.s}; only a RUNNING trial can report`);
      x.iv = [...x.iv.filter((e) => e[0] !== step), [step, value]];
    });
    this.scheduleFlush(r, false);
  }

  setTrialUserAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    checkAttrValue(key, value);
    const r = this.replica(studyId);
    this.mutate(r, trialId, (x) => {
      x.ua = { ...x.ua, [key]: value ?? null };
    });
    this.scheduleFlush(r, false);
  }

  setTrialSystemAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    checkAttrValue(key, value);
    const r = this.replica(studyId);
    this.mutate(r, trialId, (x) => {
      x.sa = { ...x.sa, [key]: value ?? null };
    });
    this.scheduleFlush(r, false);
  }

  async finishTrial(studyId: string, trialId: string, state: 'COMPLETE' | 'PRUNED' | 'FAIL', values: number[] | null = null): Promise<void> {
    const r = this.replica(studyId);
    if (state !== 'COMPLETE' && state !== 'PRUNED' && state !== 'FAIL') throw new StorageError(`finishTrial state must be COMPLETE, PRUNED or FAIL, got ${String(state)}`);
    if (values !== null && (!Array.isArray(values) || !values.every((v) => typeof v === 'number' && Number.isFinite(v)))) {
      throw new StorageError(`trial values must be finite numbers, got ${JSON.stringify(values)}`);
    }
    if (state === 'COMPLETE' && !values) throw new StorageError('a COMPLETE trial needs values');
    this.mutate(r, trialId, (x) => {
      if (isFinished(x.s)) throw new StorageError(`trial ${r.numbers.get(trialId)} is already finished (${x.s}); a finished state is final`);
      x.s = state;
      x.vals = values ? [...values] : null;
      x.t1 = Date.now();
      x.t0 ??= x.t1;
    });
    await this.flush(r, true);
  }

  /** Applies a write to one of this peer's own trials in memory; the next flush signs and sends it. */
  private mutate(r: Replica, trialId: string, fn: (x: TrialRecord) => void): void {
    const cur = r.records.get(trialId);
    if (!cur) throw new StorageError(`no trial "${trialId}" in study "${r.name}"`);
    if (cur.o !== this.peerId) throw new StorageError(`trial ${r.numbers.get(trialId)} belongs to peer ${cur.o}; only its owner can change it`);
    const next: TrialRecord = { ...cur };
    fn(next);
    const size = pack(next).byteLength;
    if (size > LIMITS.recordBytes - 256) {
      throw new StorageError(`trial ${r.numbers.get(trialId)} would take ${size} bytes with this write; a trial record is limited to ${LIMITS.recordBytes - 256} bytes (keep attrs and intermediate values small)`);
    }
    if (!r.dirty.has(trialId)) next.v = cur.v + 1;
    r.records.set(trialId, next);
    r.dirty.add(trialId);
    this.trackRunning(r, next);
    this.touch(r, [trialId]);
  }

  private scheduleFlush(r: Replica, urgent: boolean): void {
    if (this.closed) return;
    if (urgent) {
      r.flushImmediate ??= setImmediate(() => {
        r.flushImmediate = null;
        void this.flush(r, false).catch(() => {});
      });
    } else if (!r.flushTimer && !r.flushImmediate) {
      r.flushTimer = setTimeout(() => {
        r.flushTimer = null;
        void this.flush(r, false).catch(() => {});
      }, this.intermediateMs);
      r.flushTimer.unref();
    }
  }

  // ================================================================ trials: reads

  getTrial(studyId: string, trialId: string): FrozenTrial {
    const r = this.replica(studyId);
    const rec = r.records.get(trialId);
    if (!rec) throw new StorageError(`no trial "${trialId}" in study "${r.name}"`);
    return this.frozen(r, rec);
  }

  getAllTrials(studyId: string, states?: readonly TrialState[]): readonly FrozenTrial[] {
    const r = this.replica(studyId);
    if (!r.all) {
      const list: FrozenTrial[] = [];
      for (const rec of r.records.values()) {
        if (rec.s === 'WAITING' && r.claimedBy.has(rec.id)) continue;
        list.push(this.frozen(r, rec));
      }
      list.sort((a, b) => a.number - b.number);
      r.all = Object.freeze(list);
    }
    return states ? r.all.filter((t) => states.includes(t.state)) : r.all;
  }

  getVersion(studyId: string): number {
    return this.replica(studyId).version;
  }

  private frozen(r: Replica, rec: TrialRecord): FrozenTrial {
    let f = r.frozen.get(rec.id);
    if (f) return f;
    const staleReason = rec.s === 'RUNNING' ? r.stale.get(rec.id) : undefined;
    const vals = rec.vals ? Object.freeze([...rec.vals]) : null;
    f = Object.freeze({
      trialId: rec.id,
      number: r.numbers.get(rec.id) ?? -1,
      owner: rec.o,
      state: staleReason ? 'FAIL' : rec.s,
      values: vals,
      value: vals && vals.length === 1 ? vals[0]! : null,
      params: Object.freeze({ ...rec.p }),
      distributions: Object.freeze({ ...rec.d }),
      intermediateValues: new Map(rec.iv),
      userAttrs: Object.freeze({ ...rec.ua }),
      systemAttrs: Object.freeze(staleReason ? { ...rec.sa, failReason: staleReason, stale: true } : { ...rec.sa }),
      datetimeStart: rec.t0 !== null ? new Date(rec.t0) : null,
      datetimeComplete: rec.t1 !== null ? new Date(rec.t1) : null,
    } satisfies FrozenTrial);
    r.frozen.set(rec.id, f);
    return f;
  }

  // ================================================================ peers and stats

  multiaddrs(): string[] {
    return this.node?.multiaddrs() ?? [];
  }

  peers(studyId: string): PeerInfo[] {
    const r = this.replica(studyId);
    const owners = new Map<string, number>();
    for (const rec of r.records.values()) if (rec.s !== 'WAITING') owners.set(rec.o, (owners.get(rec.o) ?? 0) + 1);
    const ids = new Set<string>([this.peerId, ...owners.keys()]);
    for (const [peer, studies] of this.peerStudies) if (studies.has(studyId)) ids.add(peer);
    return [...ids].map((id) => {
      const last = this.liveness.get(id);
      return {
        peerId: id,
        addresses: id === this.peerId ? this.multiaddrs() : (this.peerAddrs.get(id) ?? []),
        lastSeen: id === this.peerId ? null : last !== undefined ? new Date(last) : null,
        trialsRun: owners.get(id) ?? 0,
        self: id === this.peerId,
      };
    });
  }

  /** Counters: rejected messages by reason (`gossip:<reason>`, `sync:<reason>`), accepted merges, etc. */
  stats(): { counters: Record<string, number>; connectedPeers: string[]; studies: { studyId: string; name: string; trials: number; pendingChanges: number; heads: string }[] } {
    return {
      counters: Object.fromEntries([...this.counters.entries()].sort()),
      connectedPeers: this.node?.connectedPeers() ?? [],
      studies: [...this.replicas.values()].map((r) => ({ studyId: r.studyId, name: r.name, trials: r.records.size, pendingChanges: r.pending.size, heads: r.digest })),
    };
  }

  /** Bytes this replica's database holds (keys + values). */
  async sizeOnDisk(): Promise<number> {
    await this.writeChain;
    return this.db.sizeOnDisk();
  }

  /** Refuses and drops connections to these peers until unblocked (quarantine; partition tests). */
  async blockPeers(peerIds: string[]): Promise<void> {
    await this.node?.block(peerIds);
  }

  unblockPeers(peerIds: string[]): void {
    this.node?.unblock(peerIds);
  }

  /** Forces a catch-up sync with a connected peer; resolves when the session ends. */
  async syncNow(peerId: string): Promise<void> {
    await this.syncWith(peerId);
  }

  // ================================================================ test hooks (hostile-peer simulation)

  /**
   * @internal For tests and fuzzers that play a hostile or buggy peer: a fresh copy of this
   * replica's document (the live one is written through its backend, so its JS view is not kept
   * current), the signing key, and the stored bytes of a trial record.
   */
  __unsafeInternals(studyId: string): { doc: A.Doc<StudyDoc>; key: PrivateKey; trialBytes(trialId: string): Uint8Array | undefined } {
    const r = this.replica(studyId);
    return {
      doc: A.load<StudyDoc>(handleOf(r.am).save()),
      key: this.key,
      trialBytes: (trialId) => {
        const h = handleOf(r.am);
        const v = h.get(docParts(h).trials!, trialId);
        return v instanceof Uint8Array ? v : undefined;
      },
    };
  }

  /**
   * @internal Puts a raw change into this replica WITHOUT inspection and optionally gossips it, so
   * tests can check that other peers reject it on the gossip and the sync path.
   */
  async __unsafeInject(studyId: string, change: Uint8Array, opts: { publish: boolean }): Promise<void> {
    const r = this.replica(studyId);
    handleOf(r.am).applyChanges([change]);
    r.digest = headsDigest(A.getHeads(r.am));
    if (opts.publish && this.node) await this.node.publish(topicOf(studyId), pack({ c: [change] }));
  }

  /** @internal Publishes arbitrary bytes on a study's gossip topic (fuzzing the receive path). */
  async __unsafePublish(studyId: string, data: Uint8Array): Promise<void> {
    this.replica(studyId);
    await this.node?.publish(topicOf(studyId), data);
  }

  // ================================================================ replication: incoming

  private onGossip(r: Replica, from: string, data: Uint8Array, via: string): 'accept' | 'reject' | 'ignore' {
    if (this.closed || this.replicas.get(r.studyId) !== r) return 'ignore';
    this.liveness.seen(from);
    let raws: Uint8Array[];
    try {
      const msg = asObject(unpackUntrusted(data, { maxBytes: 4 * 1024 * 1024, maxDepth: 3, maxNodes: 1000 }), 'gossip message');
      const c = msg['c'];
      if (!Array.isArray(c) || c.length === 0 || c.length > 500 || !c.every((x) => x instanceof Uint8Array)) throw new WireError('schema', 'gossip message has no list of changes');
      raws = c as Uint8Array[];
    } catch (e) {
      this.count(`gossip:${(e as WireError).reason ?? 'schema'}`);
      return 'reject';
    }
    try {
      const decoded = decodeChanges(raws);
      const known = new Set(decoded.map((d) => d.hash!));
      const ready = decoded.every((d) => d.deps.every((h) => known.has(h)) || hasChanges(handleOf(r.am), d.deps.filter((h) => !known.has(h))));
      if (!ready) {
        // Out of order: keep until the dependencies arrive (by gossip or sync), then inspect.
        const bytes = raws.reduce((n, x) => n + x.byteLength, 0);
        if (r.pending.size + raws.length <= MAX_PENDING && r.pendingBytes + bytes <= MAX_PENDING_BYTES) {
          for (let i = 0; i < raws.length; i++) r.pending.set(decoded[i]!.hash!, raws[i]!);
          r.pendingBytes += bytes;
          r.pendingSince ??= Date.now();
        } else this.count('gossip:pending-full');
        this.count('gossip:buffered');
        // Usually the missing change is on its way by gossip from its own author (gossip does not keep
        // causal order across authors); if something has waited longer than that, catch up directly
        // with the forwarding peer. (A sync message carrying a document chunk costs a clone of the document.)
        if (Date.now() - r.pendingSince! > PENDING_SYNC_AFTER_MS) void this.syncWith(via);
        return 'ignore';
      }
      if (!this.applyInspected(r, raws, decoded)) {
        // Everything already known: a replay. Not forwarded, so it cannot be amplified.
        this.count('gossip:duplicate');
        return 'ignore';
      }
      this.count('gossip:accepted');
      this.drainPending(r);
      return 'accept';
    } catch (e) {
      if (e instanceof RejectedChange) {
        this.count(`gossip:${e.reason}`);
        logger.warn(`Rejected a change from ${from} on study ${r.name || r.studyId}: ${e.message}`);
        return 'reject';
      }
      throw e;
    }
  }

  /** Inspects and applies; false if nothing in it was new. */
  private applyInspected(r: Replica, raws: Uint8Array[], decoded = decodeChanges(raws)): boolean {
    const result = inspectChanges({ studyId: r.studyId, doc: handleOf(r.am), current: (id) => r.records.get(id) }, decoded);
    try {
      handleOf(r.am).applyChanges(raws);
      noteChanges(handleOf(r.am), decoded.map((d) => d.hash!));
    } catch (e) {
      // Automerge refused what passed inspection (e.g. a reused actor+seq): still a rejected change.
      throw new RejectedChange('apply-failed', `a change could not be applied: ${(e as Error).message}`);
    }
    if (result.fresh === 0) return false;
    this.afterMerge(r, result.trials, result.genesis !== null, result.attrs, result.records);
    return true;
  }

  private drainPending(r: Replica): void {
    if (r.pending.size === 0) {
      r.pendingBytes = 0;
      r.pendingSince = null;
    }
    let progress = true;
    while (progress && r.pending.size > 0) {
      progress = false;
      for (const [hash, raw] of r.pending) {
        if (hasChanges(handleOf(r.am), [hash])) {
          r.pending.delete(hash);
          r.pendingBytes -= raw.byteLength;
          continue;
        }
        const [d] = decodeChanges([raw]);
        if (!hasChanges(handleOf(r.am), d!.deps)) continue;
        r.pending.delete(hash);
        r.pendingBytes -= raw.byteLength;
        progress = true;
        try {
          this.applyInspected(r, [raw], [d!]);
        } catch (e) {
          this.count(`gossip:${(e as RejectedChange).reason ?? 'error'}`);
        }
      }
    }
    if (r.pending.size === 0) {
      r.pendingBytes = 0;
      r.pendingSince = null;
    }
  }

  /** Rebuilds the view for the trials a merge touched, numbers newcomers and persists. */
  private afterMerge(r: Replica, touched: Set<string>, genesis: boolean, attrs: boolean, inspected?: Map<string, TrialRecord>): void {
    if (genesis || (!r.meta && docParts(handleOf(r.am)).meta)) {
      this.loadView(r);
      this.notify();
      this.persistSoon(r);
      return;
    }
    const fresh: TrialRecord[] = [];
    const h = handleOf(r.am);
    const trialsObj = docParts(h).trials!;
    for (const id of touched) {
      const values = h.getAll(trialsObj, id);
      const single = values.length === 1 ? inspected?.get(id) : undefined;
      const { rec, conflicted } = single ? { rec: single, conflicted: false } : readTrial(h, trialsObj, id);
      if (conflicted && !r.conflicted.has(id)) {
        r.conflicted.add(id);
        r.newConflicts.push(id);
      }
      if (!rec) continue;
      const mine = r.records.get(id);
      if (mine && mine.o === this.peerId && mine.v >= rec.v) continue;
      if (!r.numbers.has(id)) fresh.push(rec);
      if (!r.firstSeen.has(id)) r.firstSeen.set(id, Date.now());
      r.records.set(id, rec);
      if (rec.o === this.peerId) r.seq = Math.max(r.seq, rec.q + 1);
      this.trackRunning(r, rec);
    }
    this.assignNumbers(r, fresh);
    if (attrs) this.refreshInfo(r);
    r.digest = headsDigest(A.getHeads(r.am));
    this.touch(r, touched);
    this.persistSoon(r);
    this.notify();
  }

  /** Full view from the document (load, genesis arrival). */
  private loadView(r: Replica, fromDisk = false): void {
    const h = handleOf(r.am);
    const parts = docParts(h);
    if (parts.meta === undefined || !parts.trials) return;
    try {
      r.meta = decodeMeta(parts.meta, false);
    } catch (e) {
      logger.error(`Study ${r.studyId} has an unreadable meta record: ${(e as Error).message}`);
      return;
    }
    r.name = r.meta.name;
    const fresh: TrialRecord[] = [];
    const now = Date.now();
    for (const id of h.keys(parts.trials)) {
      // Concurrent values under one key are rare (replays); keys known to have them are checked fully.
      const rec = readTrial(h, parts.trials, id, !fromDisk || r.conflicted.has(id)).rec;
      if (!rec) continue;
      const mine = r.records.get(id);
      if (mine && mine.o === this.peerId && mine.v >= rec.v) continue;
      r.records.set(id, rec);
      if (!r.numbers.has(id)) fresh.push(rec);
      if (!r.firstSeen.has(id)) r.firstSeen.set(id, now);
      if (rec.o === this.peerId) r.seq = Math.max(r.seq, rec.q + 1);
      this.trackRunning(r, rec);
    }
    // Claims of WAITING trials numbered before this start.
    for (const rec of r.records.values()) if (rec.claim && r.numbers.has(rec.id) && !r.claimedBy.has(rec.claim)) r.claimedBy.set(rec.claim, rec.id);
    this.assignNumbers(r, fresh);
    this.refreshInfo(r);
    r.digest = headsDigest(A.getHeads(r.am));
    r.version++;
    r.frozen.clear();
    r.all = null;
  }

  private refreshInfo(r: Replica): void {
    if (!r.meta) return;
    const { user, system } = readAttrs(handleOf(r.am));
    r.info = Object.freeze({
      studyId: r.studyId,
      studyName: r.meta.name,
      directions: Object.freeze([...r.meta.directions]) as StudyDirection[],
      userAttrs: Object.freeze(user),
      systemAttrs: Object.freeze(system),
      createdAt: new Date(r.meta.createdAt),
    });
  }

  /** Numbers trials this replica has not shown yet (rules in schema.ts). */
  private assignNumbers(r: Replica, fresh: TrialRecord[]): void {
    if (fresh.length === 0) return;
    fresh.sort((a, b) => Number(a.claim !== null) - Number(b.claim !== null) || (a.t0 ?? 0) - (b.t0 ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const rec of fresh) {
      if (r.numbers.has(rec.id)) continue;
      let n: number | undefined;
      if (rec.claim && !r.claimedBy.has(rec.claim)) {
        r.claimedBy.set(rec.claim, rec.id);
        n = r.numbers.get(rec.claim);
        if (n !== undefined) r.frozen.delete(rec.claim);
      }
      if (n === undefined) n = r.nextNumber++;
      r.numbers.set(rec.id, n);
      r.newNumbers.push([rec.id, n]);
    }
  }

  private trackRunning(r: Replica, rec: TrialRecord): void {
    if (rec.s === 'RUNNING' && rec.o !== this.peerId) r.runningRemote.add(rec.id);
    else r.runningRemote.delete(rec.id);
  }

  /** Derives the stale verdict for RUNNING trials whose owner has been silent past the grace period. */
  private checkStale(): void {
    const now = Date.now();
    for (const r of this.replicas.values()) {
      const changed: string[] = [];
      for (const id of r.runningRemote) {
        if (r.stale.has(id)) continue;
        const rec = r.records.get(id)!;
        const since = Math.max(this.openedAt, r.firstSeen.get(id) ?? this.openedAt);
        if (this.liveness.isSilent(rec.o, this.staleMs, since, now)) {
          const last = this.liveness.get(rec.o);
          const silentFor = Math.round((now - Math.max(last ?? 0, since)) / 1000);
          r.stale.set(id, `owner peer ${rec.o} has been silent for ${silentFor}s (grace period ${this.staleMs / 1000}s); the trial counts as failed unless its owner finishes it`);
          changed.push(id);
        }
      }
      if (changed.length) this.touch(r, changed);
    }
  }

  // ================================================================ replication: outgoing + sync

  private async sendHeartbeat(): Promise<void> {
    if (!this.node || this.closed) return;
    const studies: [string, string, string][] = [];
    for (const r of this.replicas.values()) {
      if (!r.meta) continue;
      // Our heads themselves when few (peers can tell whether they lack anything), else a digest.
      const heads = A.getHeads(r.am);
      studies.push([r.studyId, r.name, heads.length <= 8 ? heads.join(',') : r.digest]);
    }
    await this.node.publish(HEARTBEAT_TOPIC, encodeHeartbeat({ ts: Date.now(), addrs: this.node.multiaddrs().slice(0, 16), studies: studies.slice(0, 256) }));
  }

  private onHeartbeat(from: string, data: Uint8Array, via: string): 'accept' | 'reject' | 'ignore' {
    if (this.closed) return 'ignore';
    let hb;
    try {
      hb = decodeHeartbeat(data);
    } catch (e) {
      this.count(`heartbeat:${(e as WireError).reason ?? 'schema'}`);
      return 'reject';
    }
    if (!this.peerAddrs.has(from) && this.peerAddrs.size >= MAX_KNOWN_PEERS) {
      this.count('heartbeat:too-many-peers');
      return 'ignore';
    }
    this.liveness.seen(from);
    this.peerAddrs.set(from, hb.addrs);
    this.node?.want(from, hb.addrs, false);
    const studies = new Set<string>();
    const now = Date.now();
    let needSync = false;
    for (const [id, name, digest] of hb.studies) {
      studies.add(id);
      const r = this.replicas.get(id);
      if (!r) {
        // Charged to the connection it came through: identities are free, connections are not.
        if (this.offer([id, name], via)) needSync = true;
        continue;
      }
      if (digest === r.digest) {
        r.remoteDigest.delete(from);
        continue;
      }
      const seen = r.remoteDigest.get(from);
      const heads = digest.split(',');
      if (heads.every((x) => /^[0-9a-f]{64}$/.test(x))) {
        // The peer's heads: if we have them all we are level or ahead (they catch up from us).
        // Under steady writes the peer's heads change every heartbeat and gossip brings each one within
        // milliseconds, so what counts is whether the heads we lacked earlier have arrived since.
        const h = handleOf(r.am);
        const missing = heads.filter((x) => !hasChanges(h, [x]));
        if (missing.length === 0) {
          r.remoteDigest.delete(from);
          continue;
        }
        const still = seen?.missing?.filter((x) => !hasChanges(h, [x])) ?? [];
        if (still.length === 0) r.remoteDigest.set(from, { digest, since: now, missing });
        else if (now - seen!.since > Math.max(1500, 2 * this.heartbeatMs)) {
          needSync = true;
          r.remoteDigest.delete(from);
        } else seen!.missing = still;
        continue;
      }
      if (!seen || seen.digest !== digest) r.remoteDigest.set(from, { digest, since: now });
      // Replicas differ for longer than gossip needs to deliver: catch up directly.
      else if (now - seen.since > Math.max(1500, 2 * this.heartbeatMs)) {
        needSync = true;
        r.remoteDigest.delete(from);
      }
    }
    this.peerStudies.set(from, studies);
    if (needSync && this.node?.isConnected(from)) void this.syncWith(from);
    return 'accept';
  }

  /** Creates an empty replica for a study a peer has (it fills in through sync); false if refused. */
  private offer(entry: CatalogEntry, from: string): boolean {
    const [id, name] = entry;
    if (this.replicas.has(id)) return true;
    if (this.deleted.has(id) || !STUDY_ID.test(id) || this.closed) return false;
    let empty = 0;
    let fromThisPeer = 0;
    for (const x of this.replicas.values()) {
      if (x.meta) continue;
      empty++;
      if (x.offeredBy === from) fromThisPeer++;
    }
    // Empty replicas are capped per offering peer too, so one peer's made-up catalog cannot crowd out real studies.
    if (empty >= MAX_EMPTY_REPLICAS || fromThisPeer >= MAX_EMPTY_PER_PEER || this.replicas.size - empty >= 256) {
      this.count('offer:refused-full');
      return false;
    }
    const r = this.newReplica(id, name, A.init<StudyDoc>());
    r.offeredBy = from;
    this.replicas.set(id, r);
    this.node?.subscribe(topicOf(id), (f, data, via) => this.onGossip(r, f, data, via));
    logger.debug(`Learned of study ${name} (${id}) from ${from}`);
    return true;
  }

  private syncTarget(): SyncTarget<SyncBox> {
    return {
      catalog: () => [...this.replicas.values()].filter((r) => r.meta).map((r) => [r.studyId, r.name] as CatalogEntry),
      offer: (entry, from) => this.offer(entry, from),
      has: (id) => this.replicas.has(id),
      newState: () => ({ s: A.initSyncState() }),
      generate: (id, box) => {
        const r = this.replicas.get(id);
        if (!r) return null;
        const [s, msg] = A.generateSyncMessage(r.am, box.s);
        box.s = s;
        return msg;
      },
      receive: (id, box, message, from) => this.receiveSync(id, box, message, from),
      synced: (id) => {
        const r = this.replicas.get(id);
        if (r && r.meta && !r.caughtUp) {
          r.caughtUp = true;
          this.notify();
        }
      },
      count: (reason) => this.count(reason),
    };
  }

  private receiveSync(id: string, box: SyncBox, message: Uint8Array, from: string): void {
    const r = this.replicas.get(id);
    if (!r) return;
    this.liveness.seen(from);
    let decoded;
    try {
      decoded = A.decodeSyncMessage(message);
    } catch (e) {
      throw new RejectedChange('undecodable', `a sync message does not decode: ${(e as Error).message}`);
    }
    checkSyncChunks(decoded.changes);
    if (decoded.changes.length === 0) {
      try {
        // The JS view is never read (see Replica.am): skip replaying our direct writes into it.
        handleOf(r.am).updateDiffCursor();
        [r.am, box.s] = A.receiveSyncMessage(r.am, box.s, message);
      } catch (e) {
        throw new RejectedChange('undecodable', `a sync message could not be applied: ${(e as Error).message}`);
      }
      return;
    }
    const single = decoded.changes.every((c) => c[8] === 1) ? decodeEach(decoded.changes) : null;
    if (single) {
      this.count('sync:in-place');
      this.receiveSyncChanges(r, box, message, single, from);
      return;
    }
    // A document chunk (or several changes packed in one chunk) cannot be inspected in place: apply the
    // message to a fork, list what it added, inspect that, and adopt the fork only if everything passes.
    let fork: A.Doc<StudyDoc>;
    let nextState: A.SyncState;
    try {
      handleOf(r.am).updateDiffCursor();
      [fork, nextState] = A.receiveSyncMessage(A.clone(r.am), box.s, message);
    } catch (e) {
      throw new RejectedChange('undecodable', `a sync message could not be applied: ${(e as Error).message}`);
    }
    if (A.getMissingDeps(fork, []).length > 0) {
      // Changes whose dependencies are absent would sit uninspected in Automerge's queue.
      this.count('sync:missing-deps');
      throw new RejectedChange('missing-deps', 'a sync message carries changes whose dependencies are missing');
    }
    const added = A.getChangesSince(fork, A.getHeads(r.am));
    let result;
    try {
      result = inspectChanges({ studyId: r.studyId, doc: handleOf(r.am), current: (tid) => r.records.get(tid) }, decodeChanges(added));
    } catch (e) {
      if (e instanceof RejectedChange) {
        this.count(`sync:${e.reason}`);
        logger.warn(`Rejected a sync message from ${from} on study ${r.name || r.studyId}: ${e.message}`);
        throw Object.assign(e, { reason: `rejected-${e.reason}` });
      }
      throw e;
    }
    r.am = fork;
    box.s = nextState;
    if (added.length > 0) {
      this.count('sync:accepted-changes');
      this.afterMerge(r, result.trials, result.genesis !== null, result.attrs);
      this.drainPending(r);
    }
  }

  /**
   * A sync message made of plain changes is checked like gossip, without forking the document: every
   * change is decoded and inspected against the current document first, and the message is received
   * (which applies exactly those changes) only if all pass. Automerge must apply them itself, so the
   * sync state learns that they are now shared.
   */
  private receiveSyncChanges(r: Replica, box: SyncBox, message: Uint8Array, decoded: A.DecodedChange[], from: string): void {
    const known = new Set(decoded.map((d) => d.hash!));
    const h = handleOf(r.am);
    if (!decoded.every((d) => hasChanges(h, d.deps.filter((x) => !known.has(x))))) {
      // Changes whose dependencies are absent would sit uninspected in Automerge's queue.
      this.count('sync:missing-deps');
      throw new RejectedChange('missing-deps', 'a sync message carries changes whose dependencies are missing');
    }
    let result;
    try {
      result = inspectChanges({ studyId: r.studyId, doc: h, current: (tid) => r.records.get(tid) }, decoded);
    } catch (e) {
      if (e instanceof RejectedChange) {
        this.count(`sync:${e.reason}`);
        logger.warn(`Rejected a sync message from ${from} on study ${r.name || r.studyId}: ${e.message}`);
        throw Object.assign(e, { reason: `rejected-${e.reason}` });
      }
      throw e;
    }
    try {
      h.updateDiffCursor();
      [r.am, box.s] = A.receiveSyncMessage(r.am, box.s, message);
    } catch (e) {
      throw new RejectedChange('undecodable', `a sync message could not be applied: ${(e as Error).message}`);
    }
    noteChanges(handleOf(r.am), known);
    if (result.fresh > 0) {
      this.count('sync:accepted-changes');
      this.afterMerge(r, result.trials, result.genesis !== null, result.attrs, result.records);
      this.drainPending(r);
    }
  }

  private async serveSync(ch: Channel): Promise<void> {
    this.count('sync:sessions-served');
    await runSyncSession(ch, this.syncTarget(), false, { maxFrameBytes: this.maxFrame, maxStudies: 256, sessionTimeoutMs: 60_000 });
  }

  /** One outbound sync session at a time per peer; a request during one runs another after it. */
  private async syncWith(peerId: string): Promise<void> {
    if (!this.node || this.closed) return;
    const cur = this.sessions.get(peerId);
    if (cur) {
      cur.again = true;
      return;
    }
    const s = { again: true, last: 0 };
    this.sessions.set(peerId, s);
    try {
      while (s.again && !this.closed && this.node) {
        s.again = false;
        let ch: Channel;
        try {
          ch = await this.node.openSync(peerId);
        } catch (e) {
          logger.debug(`cannot open a sync stream to ${peerId}: ${(e as Error).message}`);
          break;
        }
        this.count('sync:sessions-started');
        await runSyncSession(ch, this.syncTarget(), true, { maxFrameBytes: this.maxFrame, maxStudies: 256, sessionTimeoutMs: 60_000 });
      }
    } finally {
      this.sessions.delete(peerId);
    }
  }

  // ================================================================ helpers

  private newReplica(studyId: string, name: string, doc: A.Doc<StudyDoc>): Replica {
    const r: Omit<Replica, 'doc'> = {
      studyId,
      name,
      meta: null,
      info: null,
      am: doc,
      records: new Map(),
      numbers: new Map(),
      nextNumber: 0,
      newNumbers: [],
      firstSeen: new Map(),
      runningRemote: new Set(),
      conflicted: new Set(),
      newConflicts: [],
      stale: new Map(),
      claimedBy: new Map(),
      dirty: new Set(),
      flushImmediate: null,
      flushTimer: null,
      persistTimer: null,
      version: 0,
      frozen: new Map(),
      all: null,
      savedHeads: A.getHeads(doc),
      digest: headsDigest(A.getHeads(doc)),
      pending: new Map(),
      pendingBytes: 0,
      outbox: [],
      outboxBytes: 0,
      outboxTimer: null,
      pendingSince: null,
      createdAt: Date.now(),
      offeredBy: null,
      caughtUp: false,
      seq: 0,
      remoteDigest: new Map(),
    };
    // For tests and tools that read the document: a fresh, fully materialized copy.
    Object.defineProperty(r, 'doc', { get: () => A.load<StudyDoc>(handleOf(r.am).save()), enumerable: false });
    return r as Replica;
  }

  private touch(r: Replica, ids: Iterable<string>): void {
    for (const id of ids) r.frozen.delete(id);
    r.all = null;
    r.version++;
    for (const l of this.listeners) {
      try {
        l(r.studyId);
      } catch (e) {
        logger.warn(`A trials listener failed: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Calls `listener(studyId)` whenever a study's trials change (local writes, merges, stale verdicts);
   * for dashboards and benchmarks. Returns a function that removes the listener.
   */
  onTrialsChanged(listener: (studyId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      w();
    }
  }

  private count(reason: string): void {
    this.counters.set(reason, (this.counters.get(reason) ?? 0) + 1);
  }

  private replica(studyId: string): Replica {
    this.checkOpen();
    const r = this.replicas.get(studyId);
    if (!r) throw new StudyNotFoundError(`no study with id "${studyId}" in this replica`);
    return r;
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageError('this PeerStorage is closed');
  }
}

/**
 * Loads snapshot + incremental chunks in one `A.load` of their concatenation (one call is far
 * faster than a loadIncremental per chunk); if that fails, piece by piece, skipping what is corrupt.
 */
function loadDocument(snapshot: Uint8Array | null, chunks: Uint8Array[], onCorrupt: (what: string, e: Error) => void): A.Doc<StudyDoc> {
  const parts = snapshot ? [snapshot, ...chunks] : chunks;
  if (parts.length === 0) return A.init<StudyDoc>();
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.byteLength;
  }
  try {
    return A.load<StudyDoc>(all);
  } catch {
    /* find the bad piece below */
  }
  let doc = A.init<StudyDoc>();
  if (snapshot) {
    try {
      doc = A.load<StudyDoc>(snapshot);
    } catch (e) {
      onCorrupt('corrupt-snapshot', e as Error);
    }
  }
  for (const c of chunks) {
    const before = A.getHeads(doc).join();
    try {
      doc = A.loadIncremental(doc, c);
      // A damaged chunk can load as nothing without throwing.
      if (c.byteLength > 0 && A.getHeads(doc).join() === before) onCorrupt('corrupt-chunk', new Error('the chunk added nothing'));
    } catch (e) {
      onCorrupt('corrupt-chunk', e as Error);
    }
  }
  return doc;
}

const CHUNK_MAGIC = [0x85, 0x6f, 0x4a, 0x83];

/**
 * What a sync message may carry, judged by chunk headers before Automerge expands anything: changes
 * uncompressed and no larger than gossip allows (a compressed change or an oversized one can hold
 * millions of operations). Whole-document chunks must pass: Automerge sends them to peers it thinks
 * are far behind, not only to empty replicas (HOLE-13 stays open for them).
 */
function checkSyncChunks(chunks: readonly Uint8Array[]): void {
  for (const c of chunks) {
    // Header: magic (4 bytes), checksum (4), chunk type (1): 0 document, 1 change, 2 compressed change.
    if (!(c instanceof Uint8Array) || c.byteLength < 9 || CHUNK_MAGIC.some((b, i) => c[i] !== b)) {
      throw new RejectedChange('undecodable', 'a sync message carries something that is not an Automerge chunk');
    }
    const type = c[8];
    if (type === 1) {
      if (c.byteLength > LIMITS.changeBytes) throw new RejectedChange('too-large', `a change of ${c.byteLength} bytes in a sync message exceeds ${LIMITS.changeBytes}`);
    } else if (type !== 0) {
      throw new RejectedChange('unexpected-chunk', `a sync message carries an Automerge chunk of type ${type}; only uncompressed changes and documents are taken`);
    }
  }
}

/** Each chunk decoded as exactly one change, or null if any is not (the caller then takes the forking path). */
function decodeEach(chunks: readonly Uint8Array[]): A.DecodedChange[] | null {
  try {
    return chunks.map((c) => A.decodeChange(c));
  } catch {
    return null;
  }
}

function sameHeads(a: A.Heads, b: A.Heads): boolean {
  return a.length === b.length && a.every((h, i) => h === b[i]);
}

function checkAttrValue(key: string, value: unknown): void {
  let bytes: Uint8Array;
  try {
    bytes = pack(value ?? null);
    unpackUntrusted(bytes, { maxBytes: MAX_ATTR_BYTES, maxDepth: 10 });
  } catch (e) {
    throw new StorageError(`attr "${key}" must be plain data (numbers, strings, booleans, null, arrays, plain objects, bytes) under ${MAX_ATTR_BYTES} bytes: ${(e as Error).message}`);
  }
}

function peerIdOfKey(key: PrivateKey): string {
  return peerIdFromPrivateKey(key as never).toString();
}
