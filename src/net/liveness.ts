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
}

export function encodeHeartbeat(hb: Heartbeat): Uint8Array {
  return pack({ ts: hb.ts, a: hb.addrs, s: hb.studies });
}

export function decodeHeartbeat(bytes: Uint8Array): Heartbeat {
  const o = asObject(unpackUntrusted(bytes, { maxBytes: MAX_HEARTBEAT_BYTES, maxDepth: 4, maxNodes: 4000 }), 'heartbeat');
  const ts = o['ts'];
  const a = o['a'];
  const s = o['s'];
  if (typeof ts !== 'number' || !Number.isFinite(ts)) throw new WireError('schema', 'heartbeat.ts is not a time');
  if (!Array.isArray(a) || a.length > 16 || !a.every((x) => typeof x === 'string' && x.length < 300)) throw new WireError('schema', 'heartbeat addresses are malformed');
  if (!Array.isArray(s) || s.length > 256) throw new WireError('schema', 'heartbeat studies are malformed');
  for (const e of s) {
    if (!Array.isArray(e) || e.length !== 3 || !e.every((x) => typeof x === 'string' && x.length <= 600)) throw new WireError('schema', 'a heartbeat study entry is malformed');
  }
  return { ts, addrs: a as string[], studies: s as [string, string, string][] };
}

/** A short digest of a document's heads: equal digests mean equal replicas. */
export function headsDigest(heads: readonly string[]): string {
  return createHash('sha256').update([...heads].sort().join(',')).digest('hex').slice(0, 16);
}

/** When each peer was last heard from (any heartbeat or accepted message). */
export class LivenessTable {
  private readonly lastSeen = new Map<string, number>();

  seen(peerId: string, at = Date.now()): void {
    const prev = this.lastSeen.get(peerId) ?? 0;
    if (at > prev) this.lastSeen.set(peerId, at);
  }

  get(peerId: string): number | undefined {
    return this.lastSeen.get(peerId);
  }

  /** Silent longer than `graceMs`, counting from `since` for a peer never heard from. */
  isSilent(peerId: string, graceMs: number, since: number, now = Date.now()): boolean {
    const last = Math.max(this.lastSeen.get(peerId) ?? 0, since);
    return now - last > graceMs;
  }

  forget(peerId: string): void {
    this.lastSeen.delete(peerId);
  }

  entries(): [string, number][] {
    return [...this.lastSeen.entries()];
  }
}
