/**
 * Gossip in: a study topic carries `{ c?: [study-document changes], t?: [[shardKey, [changes], voucher?]] }`.
 * Every change is bounded before it is decoded (size, then operations counted from its columns),
 * the whole message is inspected against the merge rules before any of it is applied, and each
 * part is applied to its own small document, so the work is proportional to the message. Changes
 * whose dependencies have not arrived wait in a bounded buffer, keyed by what they wait for: they
 * are looked at again only when their shard moves, and decoded once.
 */
import { logger } from '../../logging.js';
import { asObject, unpackUntrusted, WireError } from '../../net/wire.js';
import { GOSSIP_LIMITS, MAX_PENDING, MAX_PENDING_BYTES, PENDING_SYNC_AFTER_MS } from './options.js';
import type { Ctx, Replica, Shard } from './replica.js';
import { LIMITS, RejectedChange, checkChangeBounds, decodeBoundedChanges, decodeChanges, hasChanges, openVoucher, type DecodedChange, type ShardInspected, type TrialRecord } from './schema.js';
import type { Writer } from './writer.js';

type Verdict = 'accept' | 'reject' | 'ignore';

interface Part {
  shard: Shard | null; // null: the study document
  raws: Uint8Array[];
  decoded: DecodedChange[];
  inspected?: ShardInspected;
  /** The shard owner's voucher sent with the changes (schema.ts openVoucher), if any. */
  voucher?: Uint8Array;
}

export class Inbox {
  constructor(
    private readonly ctx: Ctx,
    private readonly writer: Writer,
    private readonly syncWith: (peerId: string) => void,
  ) {}

  onGossip(r: Replica, from: string, data: Uint8Array, via: string): Verdict {
    const ctx = this.ctx;
    if (ctx.closed || ctx.replicas.get(r.studyId) !== r) return 'ignore';
    let parts: { key: string | null; raws: Uint8Array[]; voucher?: Uint8Array }[];
    try {
      parts = parseMessage(data);
    } catch (e) {
      ctx.count(`gossip:${(e as WireError).reason ?? 'schema'}`);
      return 'reject';
    }
    try {
      let ops = 0;
      for (const p of parts) for (const c of p.raws) ops += checkChangeBounds(c);
      if (ops > LIMITS.opsPerMessage) throw new RejectedChange('too-many-ops', `a gossip message holds ${ops} operations (limit ${LIMITS.opsPerMessage})`);
      const ready: Part[] = [];
      let waiting = 0;
      let sealedSkip = 0;
      for (const p of parts) {
        const shard = p.key === null ? null : r.shard(p.key);
        if (p.key !== null && !shard) throw new RejectedChange('bad-shard', `a gossip message names shard "${p.key.slice(0, 80)}", which is not <owner>.<bucket> (or the study has too many shards)`);
        if (shard && !shard.doc && shard.sealed) {
          // Sealed and evicted: honest owners do not write to it; anti-entropy settles anything real.
          sealedSkip++;
          continue;
        }
        const decoded = decodeBoundedChanges(p.raws).decoded; // bounded above, with the whole message
        if (!r.meta && shard) {
          // Trials before the study's genesis: keep them until it arrives.
          waiting += this.buffer(r, p.key!, p.raws, decoded);
          continue;
        }
        const known = new Set(decoded.map((d) => d.hash!));
        const inDoc = (hash: string): boolean => (shard ? shard.has(hash) : hasChanges(r.study, [hash]));
        if (!decoded.every((d) => d.deps.every((x) => known.has(x) || inDoc(x)))) {
          if (shard && r.refusedAsDependent(shard)) continue; // what they lack, the owner's quota refused here (replica.ts)
          waiting += this.buffer(r, p.key ?? '', p.raws, decoded);
          continue;
        }
        ready.push({ shard, raws: p.raws, decoded, ...(p.voucher ? { voucher: p.voucher } : {}) });
      }
      // Inspect everything first: a message is taken whole or not at all. The changes a shard's owner
      // vouched for (one signature over their hashes, as on the catch-up path: schema.ts openVoucher)
      // skip their records' one-by-one signature checks; a voucher that does not verify rejects the message.
      // A message whose author is the shard's owner needs neither: `from` is the author whose gossipsub
      // signature (StrictSign, net/node.ts refuses unsigned messages) was checked over these very
      // bytes before this runs, so the owner signed every change of its shard in it, as a voucher would.
      for (const p of ready) {
        if (!p.shard) continue;
        const byOwner = p.shard.id.owner === from;
        const vouched = !byOwner && p.voucher ? openVoucher(p.voucher, r.studyId, p.shard.id) : null;
        p.inspected = r.inspectShard(p.shard, p.decoded, byOwner ? () => true : vouched ? (h) => vouched.has(h) : undefined);
      }
      let fresh = false;
      const records: TrialRecord[] = [];
      try {
        for (const p of ready) {
          if (!p.shard) {
            if (r.applyStudy(p.raws, p.decoded)) fresh = true;
            continue;
          }
          const recs = r.applyShard(p.shard, p.raws, p.decoded, p.inspected);
          if (recs) {
            fresh = true;
            records.push(...recs);
          }
        }
      } catch (e) {
        // What was applied before a later part failed is in its documents: the view takes it all the same.
        if (records.length) this.merged(r, records);
        throw e;
      }
      if (waiting > 0) {
        ctx.count('gossip:buffered');
        // Usually the missing change is on its way by gossip; if something has waited longer, catch up with the forwarding peer.
        if (Date.now() - r.pendingSince! > PENDING_SYNC_AFTER_MS) this.syncWith(via);
      }
      if (sealedSkip > 0) ctx.count('gossip:sealed-shard');
      if (!fresh) {
        if (waiting === 0) ctx.count('gossip:duplicate'); // a replay: not forwarded, so it cannot be amplified
        return 'ignore';
      }
      ctx.count('gossip:accepted');
      // Only news counts as a sign of life: a replayed message is a duplicate and proves nothing (issue 15 F11).
      ctx.liveness.seen(from);
      this.merged(r, records);
      this.drain(r);
      return 'accept';
    } catch (e) {
      if (e instanceof RejectedChange) {
        r.pruneEmpty();
        ctx.count(`gossip:${e.reason}`);
        logger.warn(`Rejected a change from ${from} on study ${r.name || r.studyId}: ${e.message}`);
        return 'reject';
      }
      throw e;
    }
  }

  /** After changes were applied: the view takes the records, renumbering is logged, disk and listeners follow. */
  merged(r: Replica, records: TrialRecord[]): void {
    if (!r.meta && r.refreshStudy()) {
      this.ctx.notify();
      this.drain(r);
    }
    if (records.length) {
      const changed = r.view.put(records);
      r.viewed(records);
      // While a replica is still catching up, trials arrive out of order: numbers settle, nobody has read them yet.
      if (r.caughtUp) this.writer.logRenumbered(r, changed);
    }
    else r.view.touch([]);
    this.writer.persistSoon(r);
    this.ctx.changed(r.studyId);
    this.ctx.notify();
  }

  private buffer(r: Replica, key: string, raws: Uint8Array[], decoded: DecodedChange[]): number {
    const bytes = raws.reduce((n, x) => n + x.byteLength, 0);
    if (r.pending.size + raws.length > MAX_PENDING || r.pendingBytes + bytes > MAX_PENDING_BYTES) {
      this.ctx.count('gossip:pending-full');
      return raws.length;
    }
    decoded.forEach((d, i) => {
      if (r.pending.has(d.hash!)) return;
      r.pending.set(d.hash!, { shard: key, raw: raws[i]!, deps: d.deps });
      r.pendingBytes += raws[i]!.byteLength;
    });
    r.pendingSince ??= Date.now();
    return raws.length;
  }

  /** Applies buffered changes whose dependencies are now present (checked without decoding). */
  drain(r: Replica): void {
    if (!r.meta) return;
    let progress = true;
    while (progress && r.pending.size > 0) {
      progress = false;
      for (const [hash, p] of r.pending) {
        const shard = p.shard === '' ? null : r.shard(p.shard);
        const has = (x: string): boolean => (shard ? shard.has(x) : hasChanges(r.study, [x]));
        if (shard && !shard.doc && shard.sealed) {
          r.pending.delete(hash);
          r.pendingBytes -= p.raw.byteLength;
          continue;
        }
        if (has(hash)) {
          r.pending.delete(hash);
          r.pendingBytes -= p.raw.byteLength;
          continue;
        }
        if (!p.deps.every(has)) continue;
        r.pending.delete(hash);
        r.pendingBytes -= p.raw.byteLength;
        progress = true;
        try {
          const decoded = decodeChanges([p.raw]);
          if (!shard) {
            if (r.applyStudy([p.raw], decoded)) this.merged(r, []);
          } else {
            const recs = r.applyShard(shard, [p.raw], decoded);
            if (recs) this.merged(r, recs);
          }
        } catch (e) {
          this.ctx.count(`gossip:${(e as RejectedChange).reason ?? 'error'}`);
        }
      }
    }
    if (r.pending.size === 0) {
      r.pendingBytes = 0;
      r.pendingSince = null;
    }
  }
}

function parseMessage(data: Uint8Array): { key: string | null; raws: Uint8Array[]; voucher?: Uint8Array }[] {
  const msg = asObject(unpackUntrusted(data, GOSSIP_LIMITS), 'gossip message');
  const out: { key: string | null; raws: Uint8Array[]; voucher?: Uint8Array }[] = [];
  let n = 0;
  const list = (v: unknown): Uint8Array[] => {
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => x instanceof Uint8Array)) throw new WireError('schema', 'gossip message has no list of changes');
    n += v.length;
    return v as Uint8Array[];
  };
  if (msg['c'] !== undefined) out.push({ key: null, raws: list(msg['c']) });
  if (msg['t'] !== undefined) {
    const t = msg['t'];
    if (!Array.isArray(t) || t.length > 64) throw new WireError('schema', 'gossip message shards are not a list');
    for (const e of t) {
      if (!Array.isArray(e) || (e.length !== 2 && e.length !== 3) || typeof e[0] !== 'string') throw new WireError('schema', 'a gossip shard entry is not [shard, changes, voucher?]');
      if (e.length === 3 && !(e[2] instanceof Uint8Array)) throw new WireError('schema', 'a gossip shard entry has a voucher that is not bytes');
      out.push({ key: e[0], raws: list(e[1]), ...(e.length === 3 ? { voucher: e[2] as Uint8Array } : {}) });
    }
  }
  if (out.length === 0 || n > 500) throw new WireError('schema', 'gossip message has no list of changes');
  return out;
}
