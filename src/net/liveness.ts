/**
 * Liveness: every peer gossips a small heartbeat on one swarm-wide topic (never into a study's
 * document, so history only grows with real events). A heartbeat carries the sender's listen
 * addresses (so peers can dial each other directly and the swarm survives the loss of the peer
 * everyone joined through) and, per study it replicates, the study name and its document heads (or a
 * digest of them when there are many), so a replica that lacks something notices and runs a sync.
 */
import { createHash } from 'node:crypto';
import { asObject, pack, unpackUntrusted, WireError } from './wire.js';

export const HEARTBEAT_TOPIC = 'peertune/heartbeat/1';
const MAX_HEARTBEAT_BYTES = 64 * 1024;

export interface Heartbeat {
  ts: number;
  addrs: string[];
  /** [studyId, studyName, headsDigest] */
  studies: [string, string, string][];
  /**
   * Tags (`peerTag`) of the peers the sender is connected to, at most `MAX_NEIGHBOURS`: they get the
   * sender's messages straight from it, so others do not relay its messages to them (node.ts).
   */
  neighbours?: string[];
  /** The least gap, in ms, the sender asks peers to keep between their gossip messages of a study (storage/replicated/pacing.ts). */
  gap?: number;
}

/** Largest gap a heartbeat may ask for (receivers clamp it further: storage/replicated/pacing.ts). */
export const MAX_HEARTBEAT_GAP_MS = 60_000;

/** Neighbours listed in one heartbeat at most; a sender with more lists some of them (relaying to the rest stays as it is). */
export const MAX_NEIGHBOURS = 64;

export function encodeHeartbeat(hb: Heartbeat): Uint8Array {
  return pack({ ts: hb.ts, a: hb.addrs, s: hb.studies, ...(hb.neighbours ? { n: hb.neighbours.slice(0, MAX_NEIGHBOURS) } : {}), ...(hb.gap !== undefined ? { g: hb.gap } : {}) });
}

export function decodeHeartbeat(bytes: Uint8Array): Heartbeat {
  const o = asObject(unpackUntrusted(bytes, { maxBytes: MAX_HEARTBEAT_BYTES, maxDepth: 4, maxNodes: 4000 }), 'heartbeat');
  const ts = o['ts'];
  const a = o['a'];
  const s = o['s'];
  const n = o['n'];
  const g = o['g'];
  if (typeof ts !== 'number' || !Number.isFinite(ts)) throw new WireError('schema', 'heartbeat.ts is not a time');
  if (!Array.isArray(a) || a.length > 16 || !a.every((x) => typeof x === 'string' && x.length < 300)) throw new WireError('schema', 'heartbeat addresses are malformed');
  if (!Array.isArray(s) || s.length > 256) throw new WireError('schema', 'heartbeat studies are malformed');
  for (const e of s) {
    if (!Array.isArray(e) || e.length !== 3 || !e.every((x) => typeof x === 'string' && x.length <= 600)) throw new WireError('schema', 'a heartbeat study entry is malformed');
  }
  if (n !== undefined && (!Array.isArray(n) || n.length > MAX_NEIGHBOURS || !n.every((x) => typeof x === 'string' && x.length <= 24))) throw new WireError('schema', 'heartbeat neighbours are malformed');
  if (g !== undefined && (typeof g !== 'number' || !Number.isInteger(g) || g < 0 || g > MAX_HEARTBEAT_GAP_MS)) throw new WireError('schema', 'heartbeat gap is not a whole number of ms up to 60000');
  return { ts, addrs: a as string[], studies: s as [string, string, string][], ...(n ? { neighbours: n as string[] } : {}), ...(g !== undefined ? { gap: g } : {}) };
}

/** A short digest of a document's heads: equal digests mean equal replicas. */
export function headsDigest(heads: readonly string[]): string {
  return createHash('sha256').update([...heads].sort().join(',')).digest('hex').slice(0, 16);
}

/**
 * Limits on what heartbeats can make a node do (issue 15 F9, F10, F11). Heartbeats are signed by their
 * author (gossipsub StrictSign); beyond that an author is free to make up, so everything an author can
 * spend is bounded here, and what goes over is charged to the connection that delivered it.
 */
export interface LivenessLimits {
  /** Peers remembered at most (the least recently seen unconnected one makes room for a new one). */
  maxPeers: number;
  /** A heartbeat whose timestamp is further than this from local time, either way, is ignored. */
  maxAgeMs: number;
  /**
   * A heartbeat counts as heard at its own timestamp plus this much, never later than now: a heartbeat
   * held back and delivered late (or replayed after a restart) cannot keep a dead peer alive.
   */
  maxSkewMs: number;
  /** Heartbeats per second accepted from one author (token bucket of `authorBurst`); more are ignored. */
  authorRate: number;
  authorBurst: number;
  /** Past this rate (bucket of twice the burst), an author's heartbeats are rejected: charged to the deliverer. */
  authorHardRate: number;
  /**
   * New authors per second one connection may introduce (bucket of `newPeerBurst`); more are ignored
   * (never rejected: an honest relay forwards what it took from all its connections, so it may
   * legitimately go over; what is ignored is not forwarded, and the author comes again next beat).
   */
  newPeerRate: number;
  newPeerBurst: number;
  /**
   * Heartbeats per second one connection may deliver, all authors together (bucket of twice the rate);
   * more are ignored. This bounds what made-up authors that got into the table can send through one
   * connection, each staying under its own rate.
   */
  relayRate: number;
}

export const DEFAULT_LIVENESS_LIMITS: Readonly<LivenessLimits> = {
  maxPeers: 1024,
  maxAgeMs: 30_000,
  maxSkewMs: 5_000,
  authorRate: 10,
  authorBurst: 20,
  authorHardRate: 20,
  newPeerRate: 8,
  newPeerBurst: 32,
  relayRate: 1000,
};

/** A token bucket: `take()` is false when empty. */
class Bucket {
  private tokens: number;
  private at: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.at = now;
  }
  take(now: number): boolean {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
      this.at = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

interface PeerEntry {
  /** When we last heard from the peer (local clock). */
  lastSeen: number;
  /** Highest heartbeat timestamp accepted from it (its clock); replays and reorders are at or below. */
  lastTs: number;
  soft: Bucket | null;
  hard: Bucket | null;
}

interface ViaEntry {
  newPeers: Bucket;
  all: Bucket;
}

export type HeartbeatVerdict = 'accept' | 'reject' | 'ignore';

/**
 * When each peer was last heard from (any accepted heartbeat or message), bounded: at most `maxPeers`
 * entries, least recently seen first out, except peers we hold a connection to (their id is
 * authenticated; made-up authors never are). Also the admission of heartbeats: signed by their author,
 * fresh (timestamp within `maxAgeMs` of local time), newer than the last one from that author, within
 * the author's rate, and from a connection that does not introduce new authors faster than
 * `newPeerRate` nor deliver more than `relayRate`. A heartbeat that fails is not forwarded (ignore),
 * and one that no honest relay would have forwarded (an author far over its rate: relays apply the
 * same limit) is rejected, which charges the connection.
 */
export class LivenessTable {
  /** Map order is recency order: the first entry is the least recently seen. */
  private readonly peers = new Map<string, PeerEntry>();
  private readonly vias = new Map<string, ViaEntry>();
  readonly limits: LivenessLimits;

  constructor(limits: Partial<LivenessLimits> = {}) {
    this.limits = { ...DEFAULT_LIVENESS_LIMITS, ...limits };
  }

  get size(): number {
    return this.peers.size;
  }

  /**
   * Heard from `peerId` (an accepted message, a sync stream). Returns false if the table is full of
   * peers that cannot be evicted (connected ones) and the peer is not in it.
   */
  seen(peerId: string, at = Date.now(), isConnected: (id: string) => boolean = () => false): boolean {
    const e = this.peers.get(peerId) ?? this.insert(peerId, isConnected);
    if (!e) return false;
    this.touch(peerId, e, at);
    return true;
  }

  private touch(peerId: string, e: PeerEntry, at: number): void {
    if (at > e.lastSeen) e.lastSeen = at;
    // Move to the back: most recently seen.
    this.peers.delete(peerId);
    this.peers.set(peerId, e);
  }

  private insert(peerId: string, isConnected: (id: string) => boolean): PeerEntry | null {
    if (this.peers.size >= this.limits.maxPeers && !this.evictOne(isConnected)) return null;
    const e: PeerEntry = { lastSeen: 0, lastTs: -Infinity, soft: null, hard: null };
    this.peers.set(peerId, e);
    return e;
  }

  /** Evicts the least recently seen peer we are not connected to; false if none (within a bounded scan). */
  private evictOne(isConnected: (id: string) => boolean): boolean {
    let scanned = 0;
    for (const id of this.peers.keys()) {
      if (++scanned > 1024) break;
      if (isConnected(id)) continue;
      this.peers.delete(id);
      this.evicted++;
      return true;
    }
    return false;
  }

  /** Peers evicted to make room since the table was made (for stats and tests). */
  evicted = 0;

  /**
   * Decides on a signed heartbeat from `from` (its author) delivered by `via` (the connection) with the
   * author's timestamp `ts`; on 'accept' the author counts as heard. `count` gets the reason of every
   * refusal (`heartbeat:<reason>`, docs/errors.md).
   */
  admitHeartbeat(from: string, via: string, ts: number, opts: { now?: number; isConnected?: (id: string) => boolean; count?: (reason: string) => void } = {}): HeartbeatVerdict {
    const now = opts.now ?? Date.now();
    const count = opts.count ?? (() => {});
    const isConnected = opts.isConnected ?? (() => false);
    const L = this.limits;
    if (ts > now + L.maxAgeMs) {
      count('heartbeat:future');
      return 'ignore';
    }
    if (ts < now - L.maxAgeMs) {
      count('heartbeat:stale');
      return 'ignore';
    }
    let v = this.vias.get(via);
    if (!v) {
      if (this.vias.size >= L.maxPeers) this.vias.delete(this.vias.keys().next().value!);
      v = { newPeers: new Bucket(L.newPeerRate, L.newPeerBurst, now), all: new Bucket(L.relayRate, 2 * L.relayRate, now) };
      this.vias.set(via, v);
    }
    if (!v.all.take(now)) {
      count('heartbeat:relay-rate');
      return 'ignore';
    }
    let e = this.peers.get(from);
    if (!e) {
      if (!v.newPeers.take(now)) {
        count('heartbeat:new-peer-rate');
        return 'ignore';
      }
      const evictedBefore = this.evicted;
      e = this.insert(from, isConnected) ?? undefined;
      if (!e) {
        count('heartbeat:table-full');
        return 'ignore';
      }
      if (this.evicted > evictedBefore) count('heartbeat:evicted');
    }
    e.soft ??= new Bucket(L.authorRate, L.authorBurst, now);
    e.hard ??= new Bucket(L.authorHardRate, 2 * L.authorBurst, now);
    const hard = e.hard.take(now);
    if (!e.soft.take(now)) {
      count(hard ? 'heartbeat:rate' : 'heartbeat:flood');
      return hard ? 'ignore' : 'reject';
    }
    if (ts <= e.lastTs) {
      count('heartbeat:replayed');
      return 'ignore';
    }
    e.lastTs = ts;
    const heardAt = Math.min(now, ts + L.maxSkewMs);
    if (heardAt < now) count('heartbeat:late');
    this.touch(from, e, heardAt);
    return 'accept';
  }

  get(peerId: string): number | undefined {
    const t = this.peers.get(peerId)?.lastSeen;
    return t ? t : undefined;
  }

  /** Silent longer than `graceMs`, counting from `since` for a peer never heard from. */
  isSilent(peerId: string, graceMs: number, since: number, now = Date.now()): boolean {
    const last = Math.max(this.get(peerId) ?? 0, since);
    return now - last > graceMs;
  }

  forget(peerId: string): void {
    this.peers.delete(peerId);
  }

  entries(): [string, number][] {
    return [...this.peers.entries()].filter(([, e]) => e.lastSeen > 0).map(([id, e]) => [id, e.lastSeen]);
  }
}
