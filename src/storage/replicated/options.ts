/**
 * PeerStorage options: their types, defaults and validation (a mistake names the option and what is
 * valid, before anything is opened), and the module-wide limits of the replicated storage.
 */
import { multiaddr } from '@multiformats/multiaddr';
import { DEFAULT_QUARANTINE, parseJoinAddress, type QuarantineOptions } from '../../net/addresses.js';
import { parsePeerIds } from '../../security/allowlist.js';
import { parseSwarmKey } from '../../security/swarm-key.js';
import { StorageError } from '../storage.js';
import { DEFAULT_VIEW_POLICY, type ViewPolicy } from './view.js';

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
  /** Kept for compatibility; shards are compacted when sealed. */
  compactEvery?: number;
  /** Largest sync frame accepted, default 4 MiB (catch-up is sent in pieces of at most 256 KiB). */
  maxSyncFrameBytes?: number;
  /**
   * A sync session whose remote sends no complete frame for this long is closed and charged to the
   * remote (a stream that announces a big frame and trickles it holds a buffer no longer), default 15000.
   */
  syncIdleTimeoutMs?: number;
  /**
   * Catch-up one peer may draw from this one per minute, on top of twice what the replica holds
   * (so any honest catch-up goes through at once); a peer asking for more is served again after the
   * minute (issue 15 F13), default 64 MiB.
   */
  serveBudgetBytes?: number;
  /**
   * A connected peer that delivers this many rejected messages (gossip or sync) within the window is
   * disconnected and refused for `blockMs`; default 32 in 60 s, blocked 10 min. false = never (fuzzing).
   */
  quarantine?: Partial<QuarantineOptions> | false;
  /**
   * Peer ids whose trials this replica does not read (issue 15 F7): every study reads as if their
   * trials did not exist, so samplers, pruners, budgets and best trials ignore them. Their records
   * still replicate (others may trust them). This peer's own trials are always read.
   */
  excludePeers?: string[];
  /**
   * Authorship allowlist: read only trials owned by these peers (and this one). `allowPeers` gates
   * connections; this gates whose trials count, whichever peer relayed them.
   */
  trustPeers?: string[];
  /**
   * A RUNNING claim of an enqueued trial by another peer stops holding it after this long (ms, from when
   * this replica first saw the claim), so the trial can be claimed again; default 6 hours. Claims of
   * owners gone silent are released after the grace period (`staleAfterMs`), and only an owner's
   * oldest 64 RUNNING claims hold.
   */
  claimTimeoutMs?: number;
  /**
   * Per owner and study, what this replica takes from other peers (issue 15 F15): `trials` (default
   * 100,000) and `bytes` of changes (default 256 MiB). Past either, that owner's new changes to the
   * study are refused and counted (`quota:trials`, `quota:bytes`); this peer's own writes are not
   * limited. `checkpointBytes` (default 4 GiB): checkpoint copies this peer holds for that owner in
   * that study; a copy request past it is refused (`checkpoint:copy-quota`, src/checkpoints/swarm.ts).
   */
  ownerQuota?: { trials?: number; bytes?: number; checkpointBytes?: number };
  /**
   * Studies created by one peer that this replica takes from the network (issue 15 F12), default 64;
   * past it, further studies of that creator are refused (`offer:creator-full`). Studies created here
   * are not counted.
   */
  maxStudiesPerCreator?: number;
}

export interface ResolvedOptions {
  dataDir: string;
  listen: string[];
  join: string[];
  mdns: boolean;
  swarmKey: Uint8Array | undefined;
  allowPeers: string[] | undefined;
  heartbeatMs: number;
  staleMs: number;
  intermediateMs: number;
  maxFrame: number;
  syncIdleMs: number;
  serveBudget: number;
  quarantine: QuarantineOptions | null;
  viewPolicy: ViewPolicy;
  ownerQuota: { trials: number; bytes: number; checkpointBytes: number };
  maxStudiesPerCreator: number;
}

export const DEFAULT_OWNER_QUOTA = { trials: 100_000, bytes: 256 * 1024 * 1024, checkpointBytes: 4 * 1024 ** 3 };
export const DEFAULT_STUDIES_PER_CREATOR = 64;

export const topicOf = (studyId: string): string => `peertune/study/${studyId}`;
export const STUDY_ID = /^s[0-9a-f]{24}$/;
/**
 * Least time between two gossip messages of one study from this peer. A change goes out at once
 * (end of the tick) when the last message is older than this; otherwise it waits for the gap, with
 * every change made meanwhile. So an idle peer's change travels without delay and a busy peer sends
 * at most 1000 / OUTBOX_GAP_MS messages a second per study, however many trials it runs: every
 * receiver's per-message cost (transport, gossipsub's signature check, forwarding) is shared by all
 * the changes of the gap.
 */
export const OUTBOX_GAP_MS = 20;
/** Gossiped changes waiting for dependencies, per study (count, bytes, age); sync catches up whatever is dropped. */
export const MAX_PENDING = 5000;
export const MAX_PENDING_BYTES = 16 * 1024 * 1024;
export const PENDING_MAX_AGE_MS = 60_000;
/** How long gossiped changes may wait for their dependencies by gossip before we sync for them. */
export const PENDING_SYNC_AFTER_MS = 1000;
/** Replicas offered by peers that have not received their genesis yet (and how long they may wait). */
export const MAX_EMPTY_REPLICAS = 64;
export const MAX_EMPTY_PER_PEER = 16;
export const EMPTY_REPLICA_MAX_AGE_MS = 60_000;
/** Studies announced in one heartbeat or catalog. */
export const MAX_STUDIES = 256;
/** Replicas held in memory at most (a backstop; the real cap is per creator, `maxStudiesPerCreator`). */
export const MAX_REPLICAS = 4096;
/** Peers whose heartbeats we remember (addresses, studies, last seen). */
export const MAX_KNOWN_PEERS = 1024;
/** Shards per study a replica takes (100,000 trials per owner for 64 owners at 64 trials a shard). */
export const MAX_SHARDS = 100_000;
/** Largest piece of catch-up sent in one sync frame (well under any receiver's frame limit). */
export const SYNC_PIECE_BYTES = 256 * 1024;
/** Catch-up one peer may draw per window: base + 2 x (changes held x bytes per change) (sync-adapter.ts, issue 15 F13). */
export const SERVE_WINDOW_MS = 60_000;
export const SERVE_BUDGET_BASE = 64 * 1024 * 1024;
export const SERVE_BYTES_PER_CHANGE = 4096;
/** Gossip messages are decoded with these limits. */
export const GOSSIP_LIMITS = { maxBytes: 1024 * 1024, maxDepth: 4, maxNodes: 2000 };
/** Sync sessions: no frame for this long ends the session and is charged to the remote. */
export const SYNC_IDLE_MS = 15_000;

export function resolveOptions(opts: PeerStorageOptions): ResolvedOptions {
  if (!opts || typeof opts.dataDir !== 'string' || opts.dataDir.length === 0) throw new StorageError('openPeerStorage needs dataDir, a directory path for the replica');
  for (const k of ['heartbeatIntervalMs', 'staleAfterMs', 'intermediateFlushMs', 'compactEvery', 'maxSyncFrameBytes', 'syncIdleTimeoutMs', 'claimTimeoutMs', 'maxStudiesPerCreator', 'serveBudgetBytes'] as const) {
    const v = opts[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new StorageError(`${k} must be a positive number, got ${String(v)}`);
  }
  for (const k of ['listen', 'join', 'allowPeers', 'excludePeers', 'trustPeers'] as const) {
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
  const swarmKey = opts.swarmKey !== undefined ? parseSwarmKey(opts.swarmKey, 'swarmKey') : undefined;
  const allowPeers = opts.allowPeers !== undefined ? parsePeerIds(opts.allowPeers, 'allowPeers') : undefined;
  const exclude = opts.excludePeers?.length ? new Set(parsePeerIds(opts.excludePeers, 'excludePeers')) : null;
  const trust = opts.trustPeers !== undefined ? new Set(parsePeerIds(opts.trustPeers, 'trustPeers')) : null;
  const hide = exclude || trust ? (owner: string) => Boolean(exclude?.has(owner) || (trust && !trust.has(owner))) : undefined;
  const oq = opts.ownerQuota;
  if (oq !== undefined && (typeof oq !== 'object' || oq === null)) throw new StorageError(`ownerQuota must be { trials, bytes }, got ${JSON.stringify(oq)}`);
  for (const k of ['trials', 'bytes', 'checkpointBytes'] as const) {
    const v = oq?.[k];
    if (v !== undefined && !(Number.isSafeInteger(v) && v > 0)) throw new StorageError(`ownerQuota.${k} must be a positive integer, got ${String(v)}`);
  }
  const listen = opts.listen ?? ['/ip4/127.0.0.1/tcp/0'];
  listen.forEach((a, i) => {
    try {
      multiaddr(a);
    } catch (e) {
      throw new StorageError(`listen[${i}]: "${a}" is not a valid multiaddr (${(e as Error).message}); expected something like /ip4/0.0.0.0/tcp/4001`);
    }
  });
  const join = opts.join ?? [];
  join.forEach((a) => parseJoinAddress(a));
  const maxFrame = opts.maxSyncFrameBytes ?? 4 * 1024 * 1024;
  if (maxFrame < 2 * SYNC_PIECE_BYTES) throw new StorageError(`maxSyncFrameBytes must be at least ${2 * SYNC_PIECE_BYTES} (catch-up pieces are up to ${SYNC_PIECE_BYTES} bytes), got ${maxFrame}`);
  return {
    dataDir: opts.dataDir,
    listen,
    join,
    mdns: opts.mdns ?? false,
    swarmKey,
    allowPeers,
    heartbeatMs: opts.heartbeatIntervalMs ?? 1000,
    staleMs: opts.staleAfterMs ?? 10_000,
    intermediateMs: opts.intermediateFlushMs ?? 500,
    maxFrame,
    syncIdleMs: opts.syncIdleTimeoutMs ?? SYNC_IDLE_MS,
    serveBudget: opts.serveBudgetBytes ?? SERVE_BUDGET_BASE,
    quarantine: q === false ? null : { ...DEFAULT_QUARANTINE, ...(q ?? {}) },
    viewPolicy: { ...DEFAULT_VIEW_POLICY, hide, claimTimeoutMs: opts.claimTimeoutMs ?? DEFAULT_VIEW_POLICY.claimTimeoutMs },
    ownerQuota: { ...DEFAULT_OWNER_QUOTA, ...(oq ?? {}) },
    maxStudiesPerCreator: opts.maxStudiesPerCreator !== undefined ? Math.floor(opts.maxStudiesPerCreator) : DEFAULT_STUDIES_PER_CREATOR,
  };
}
