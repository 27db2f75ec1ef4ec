/**
 * Catch-up (the SyncTarget of net/sync.ts) by per-shard heads. Per study, each side first sends a
 * summary: the study document's heads and every shard's heads. Each side then sends what the other
 * lacks, in pieces of at most `SYNC_PIECE_BYTES`: for a shard whose heads the other side holds
 * (or some of them), the changes since them; for a shard it does not know, all of the shard's changes
 * (served from disk for sealed shards). Changes go in causal order, so every change a piece carries
 * depends only on what the receiver already has or what came before it: a change whose dependencies
 * are missing is a protocol violation, refused and charged to the sender. Only plain changes travel
 * (never a whole-document chunk), each bounded before decoding like gossip, so a piece costs work in
 * proportion to its size and no honest catch-up, after any length of absence, exceeds a limit.
 */
import { logger } from '../../logging.js';
import { pack, unpackUntrusted, WireError, asObject } from '../../net/wire.js';
import type { CatalogEntry, SyncTarget } from '../../net/sync.js';
import { LIMITS, RejectedChange, checkChangeBounds, decodeChanges, hasChanges, type TrialRecord } from './schema.js';
import { MAX_SHARDS, SERVE_BYTES_PER_CHANGE, SERVE_WINDOW_MS, SYNC_PIECE_BYTES } from './options.js';
import type { Ctx, Replica } from './replica.js';
import type { Inbox } from './inbox.js';
import type { Writer } from './writer.js';

export interface SyncState {
  sentSummary: boolean;
  /** The peer whose summary we answer: what we serve is charged to its budget. */
  asker: string | null;
  /** What the remote lacks, still to send: study document first (''), then shard keys. */
  queue: { key: string; have: string[] }[] | null;
  /** Changes of the shard being sent that did not fit in the last piece. */
  carry: { key: string; changes: Uint8Array[] } | null;
}

const HEX64 = /^[0-9a-f]{64}$/;

export class SyncAdapter {
  constructor(
    private readonly ctx: Ctx,
    private readonly writer: Writer,
    private readonly inbox: Inbox,
    private readonly offer: (entry: CatalogEntry, from: string) => boolean,
  ) {}

  target(): SyncTarget<SyncState> {
    const ctx = this.ctx;
    return {
      catalog: () => [...ctx.replicas.values()].filter((r) => r.meta).map((r) => [r.studyId, r.name] as CatalogEntry),
      offer: (entry, from) => this.offer(entry, from),
      has: (id) => ctx.replicas.has(id),
      newState: () => ({ sentSummary: false, asker: null, queue: null, carry: null }),
      generate: (id, st) => this.generate(id, st),
      receive: (id, st, message, from) => this.receive(id, st, message, from),
      synced: (id) => {
        const r = ctx.replicas.get(id);
        if (r && r.meta && !r.caughtUp) {
          r.caughtUp = true;
          ctx.notify();
        }
      },
      count: (reason) => ctx.count(reason),
    };
  }

  private async generate(id: string, st: SyncState): Promise<Uint8Array | null> {
    const r = this.ctx.replicas.get(id);
    if (!r) return null;
    if (!st.sentSummary) {
      st.sentSummary = true;
      const shards: [string, string[]][] = [];
      for (const s of r.shards.values()) if (s.changes > 0) shards.push([s.key, s.heads]);
      return pack({ m: r.study.getHeads(), h: shards });
    }
    if (!st.queue || (st.queue.length === 0 && !st.carry)) return null;
    if (st.asker) this.checkBudget(st.asker);
    const piece: [string, Uint8Array[]][] = [];
    let bytes = 0;
    let ops = 0;
    const add = (key: string, changes: Uint8Array[]): boolean => {
      let i = 0;
      const out: Uint8Array[] = [];
      for (; i < changes.length; i++) {
        const c = changes[i]!;
        const n = checkChangeBounds(c);
        if ((bytes + c.byteLength > SYNC_PIECE_BYTES || ops + n > LIMITS.opsPerMessage) && (bytes > 0 || out.length > 0)) break;
        out.push(c);
        bytes += c.byteLength;
        ops += n;
      }
      if (out.length) piece.push([key, out]);
      if (i < changes.length) {
        st.carry = { key, changes: changes.slice(i) };
        return false;
      }
      return true;
    };
    if (st.carry) {
      const c = st.carry;
      st.carry = null;
      if (!add(c.key, c.changes)) return pack({ p: piece });
    }
    while (st.queue.length > 0) {
      const { key, have } = st.queue.shift()!;
      const changes = await this.changesFor(r, key, have);
      if (changes.length && !add(key, changes)) break;
      if (bytes >= SYNC_PIECE_BYTES) break;
    }
    if (piece.length === 0) return null;
    this.ctx.count('sync:pieces-sent');
    const out = pack({ p: piece });
    if (st.asker) this.charge(st.asker, out.byteLength);
    return out;
  }

  /** Catch-up bytes served per asking peer in the current window (issue 15 F13). */
  private readonly served = new Map<string, { since: number; bytes: number; warned: boolean }>();

  /**
   * What one peer may draw by catch-up within SERVE_WINDOW_MS: `serveBudgetBytes` plus twice what this replica
   * holds (estimated from its change count at SERVE_BYTES_PER_CHANGE, above what honest records take),
   * so a joiner or a peer back from any absence gets everything at once, while a peer that asks for
   * the same history over and over (a 110-byte summary with no heads returns the whole replica) gets
   * it at most about twice a minute instead of as fast as we can send.
   */
  private budget(): number {
    let changes = 0;
    for (const r of this.ctx.replicas.values()) for (const sh of r.shards.values()) changes += sh.changes;
    return this.ctx.opts.serveBudget + 2 * SERVE_BYTES_PER_CHANGE * changes;
  }

  private checkBudget(asker: string): void {
    const now = Date.now();
    let e = this.served.get(asker);
    if (e && now - e.since > SERVE_WINDOW_MS) {
      this.served.delete(asker);
      e = undefined;
    }
    if (!e || e.bytes < this.ctx.opts.serveBudget || e.bytes < this.budget()) return;
    if (!e.warned) {
      e.warned = true;
      logger.warn(`Peer ${asker} asked for ${(e.bytes / 2 ** 20).toFixed(1)} MiB of catch-up within ${SERVE_WINDOW_MS / 1000} s (more than twice this replica); serving it again after the window`);
    }
    throw new ServeBudgetError(asker);
  }

  private charge(asker: string, bytes: number): void {
    let e = this.served.get(asker);
    if (!e) {
      // Bounded: peers that asked long ago are forgotten first.
      if (this.served.size >= 4096) this.served.delete(this.served.keys().next().value!);
      this.served.set(asker, (e = { since: Date.now(), bytes: 0, warned: false }));
    }
    e.bytes += bytes;
  }

  /** The changes of a shard (or of the study document, key '') that a peer holding `have` lacks, in causal order. */
  private async changesFor(r: Replica, key: string, have: string[]): Promise<Uint8Array[]> {
    if (key === '') return r.study.getChanges(have.filter((x) => hasChanges(r.study, [x])));
    const s = r.shards.get(key);
    if (!s || s.changes === 0) return [];
    if (s.doc) {
      const h = s.handle!;
      return h.getChanges(have.filter((x) => hasChanges(h, [x])));
    }
    // Sealed and evicted: straight from disk (all of it; what the peer holds already is a no-op there).
    return this.ctx.db.shardChanges(r.studyId, key);
  }

  private async receive(id: string, st: SyncState, message: Uint8Array, from: string): Promise<void> {
    const r = this.ctx.replicas.get(id);
    if (!r) return;
    this.ctx.liveness.seen(from);
    let msg: Record<string, unknown>;
    try {
      msg = asObject(unpackUntrusted(message, { maxBytes: this.ctx.opts.maxFrame, maxDepth: 4, maxNodes: 4 * MAX_SHARDS + 64, maxStringLength: SYNC_PIECE_BYTES }), 'sync message');
    } catch (e) {
      throw new RejectedChange((e as WireError).reason ?? 'undecodable', `a sync message does not decode: ${(e as Error).message}`);
    }
    if (msg['h'] !== undefined || msg['m'] !== undefined) {
      st.asker = from;
      st.queue = this.plan(r, msg);
      return;
    }
    const p = msg['p'];
    if (!Array.isArray(p) || p.length > MAX_SHARDS) throw new RejectedChange('schema', 'a sync piece is not a list of [shard, changes]');
    let ops = 0;
    for (const e of p) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !Array.isArray(e[1])) throw new RejectedChange('schema', 'a sync piece entry is not [shard, changes]');
      for (const c of e[1]) ops += checkChangeBounds(c);
    }
    if (ops > LIMITS.opsPerMessage) throw new RejectedChange('too-many-ops', `a sync piece holds ${ops} operations (limit ${LIMITS.opsPerMessage})`);
    try {
      await this.apply(r, p as [string, Uint8Array[]][]);
    } catch (e) {
      if (e instanceof RejectedChange) {
        r.pruneEmpty();
        this.ctx.count(`sync:${e.reason}`);
        logger.warn(`Refused catch-up from ${from} on study ${r.name || r.studyId}: ${e.message}`);
        throw Object.assign(e, { reason: `rejected-${e.reason}` });
      }
      throw e;
    }
  }

  /** What the remote lacks, from its summary. */
  private plan(r: Replica, msg: Record<string, unknown>): { key: string; have: string[] }[] {
    const heads = (v: unknown): string[] => {
      if (!Array.isArray(v) || v.length > 64 || !v.every((x) => typeof x === 'string' && HEX64.test(x))) throw new RejectedChange('schema', 'a sync summary has malformed heads');
      return v as string[];
    };
    const studyHeads = heads(msg['m'] ?? []);
    const list = msg['h'] ?? [];
    if (!Array.isArray(list) || list.length > MAX_SHARDS) throw new RejectedChange('schema', 'a sync summary is not a list of shards');
    const theirs = new Map<string, string[]>();
    for (const e of list) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || e[0].length > 160) throw new RejectedChange('schema', 'a sync summary entry is not [shard, heads]');
      theirs.set(e[0], heads(e[1]));
    }
    const queue: { key: string; have: string[] }[] = [];
    const mine = r.study.getHeads();
    // Unless they hold every head of ours (level or ahead), send what they lack of the study document.
    if (r.meta && !mine.every((x) => studyHeads.includes(x))) queue.push({ key: '', have: studyHeads });
    for (const s of r.shards.values()) {
      if (s.changes === 0) continue;
      const have = theirs.get(s.key) ?? [];
      if (sameSet(have, s.heads)) continue;
      // If they hold every head of ours they are level or ahead on this shard: nothing to send.
      if (s.heads.every((x) => have.includes(x))) continue;
      if (!s.doc && have.length > 0 && have.every((x) => !s.heads.includes(x)) && s.sealed) {
        // They hold part of a shard we hold sealed: send it whole (duplicates are no-ops).
        queue.push({ key: s.key, have: [] });
        continue;
      }
      queue.push({ key: s.key, have });
    }
    return queue;
  }

  /** Applies a piece: per shard in order, inspected before each apply; missing dependencies are refused. */
  private async apply(r: Replica, piece: [string, Uint8Array[]][]): Promise<void> {
    const records: TrialRecord[] = [];
    let fresh = false;
    for (const [key, raws] of piece) {
      if (raws.length === 0) continue;
      const decoded = decodeChanges(raws);
      if (key === '') {
        const known = new Set(decoded.map((d) => d.hash!));
        if (!decoded.every((d) => d.deps.every((x) => known.has(x) || hasChanges(r.study, [x])))) {
          throw new RejectedChange('missing-deps', 'a sync piece carries study changes whose dependencies are missing');
        }
        if (r.applyStudy(raws, decoded)) {
          fresh = true;
          if (r.refreshStudy()) this.ctx.notify();
        }
        continue;
      }
      if (!r.meta) {
        if (r.refused) return; // dropped by the per-creator cap: not the sender's fault
        throw new RejectedChange('no-genesis', 'a sync piece carries trials before the study document');
      }
      const s = r.shard(key);
      if (!s) throw new RejectedChange('bad-shard', `a sync piece names shard "${key.slice(0, 80)}", which is not <owner>.<bucket> (or the study has too many shards)`);
      if (!s.doc && s.changes > 0) await this.writer.reopen(r, s);
      const known = new Set(decoded.map((d) => d.hash!));
      if (!decoded.every((d) => d.deps.every((x) => known.has(x) || s.has(x)))) {
        if (r.refusedAsDependent(s)) continue; // what they lack, the owner's quota refused here (replica.ts)
        throw new RejectedChange('missing-deps', `a sync piece carries changes of shard ${key.slice(0, 80)} whose dependencies are missing`);
      }
      const recs = r.applyShard(s, raws, decoded);
      if (recs) {
        fresh = true;
        records.push(...recs);
      }
    }
    if (fresh) {
      this.ctx.count('sync:accepted-changes');
      this.inbox.merged(r, records);
      this.inbox.drain(r);
    }
  }
}

/** Ends a session whose asker used up its serving budget: not a protocol violation, so not counted toward quarantine. */
class ServeBudgetError extends Error {
  readonly reason = 'serve-budget';
  readonly noCharge = true;
  constructor(asker: string) {
    super(`peer ${asker} used up its catch-up budget for now`);
  }
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

