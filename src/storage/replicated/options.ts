/**
 * PeerStorage options: their types, defaults and validation (a mistake names the option and what is
 * valid, before anything is opened), and the module-wide limits of the replicated storage.
 */
import { multiaddr } from '@multiformats/multiaddr';
import { DEFAULT_QUARANTINE, parseJoinAddress, type QuarantineOptions } from '../../net/node.js';
import { parsePeerIds } from '../../security/allowlist.js';
import { parseSwarmKey } from '../../security/swarm-key.js';
import { StorageError } from '../storage.js';

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
   * A connected peer that delivers this many rejected messages (gossip or sync) within the window is
   * disconnected and refused for `blockMs`; default 32 in 60 s, blocked 10 min. false = never (fuzzing).
   */
  quarantine?: Partial<QuarantineOptions> | false;
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
  quarantine: QuarantineOptions | null;
}

export const topicOf = (studyId: string): string => `peertune/study/${studyId}`;
export const STUDY_ID = /^s[0-9a-f]{24}$/;
/** How long a local change may wait to share a gossip message with the next ones. */
export const OUTBOX_DELAY_MS = 5;
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
export const MAX_STUDIES = 256;
/** Peers whose heartbeats we remember (addresses, studies, last seen). */
export const MAX_KNOWN_PEERS = 1024;
/** Shards per study a replica takes (100,000 trials per owner for 64 owners at 64 trials a shard). */
export const MAX_SHARDS = 100_000;
/** Largest piece of catch-up sent in one sync frame (well under any receiver's frame limit). */
export const SYNC_PIECE_BYTES = 256 * 1024;
/** Gossip messages are decoded with these limits. */
export const GOSSIP_LIMITS = { maxBytes: 1024 * 1024, maxDepth: 4, maxNodes: 2000 };
/** Sync sessions: no frame for this long ends the session and is charged to the remote. */
export const SYNC_IDLE_MS = 15_000;

export function resolveOptions(opts: PeerStorageOptions): ResolvedOptions {
  if (!opts || typeof opts.dataDir !== 'string' || opts.dataDir.length === 0) throw new StorageError('openPeerStorage needs dataDir, a directory path for the replica');
  for (const k of ['heartbeatIntervalMs', 'staleAfterMs', 'intermediateFlushMs', 'compactEvery', 'maxSyncFrameBytes', 'syncIdleTimeoutMs'] as const) {
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
  const swarmKey = opts.swarmKey !== undefined ? parseSwarmKey(opts.swarmKey, 'swarmKey') : undefined;
  const allowPeers = opts.allowPeers !== undefined ? parsePeerIds(opts.allowPeers, 'allowPeers') : undefined;
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
    quarantine: q === false ? null : { ...DEFAULT_QUARANTINE, ...(q ?? {}) },
  };
}
