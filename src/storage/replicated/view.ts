/**
 * The view rules of a replicated study, next to schema.ts (pure: no I/O, no Automerge): which record
 * of a trial is current, how trials are numbered, which enqueued trials are hidden by a claim, and
 * which RUNNING trials read as stale. The replica feeds it decoded records; reads come from here.
 *
 * ## Numbering: one trial, one number
 * A trial records at creation its claim `c`: a hybrid logical clock in milliseconds, max(now, highest
 * claim this replica has seen + 1). The number a replica shows is the trial's rank in the order
 * (c, tie, trialId) among the trials shown, where tie is the claimed WAITING trial's id for a claim
 * of an enqueued trial and the trial's own id otherwise (a WAITING trial with a known claim is hidden;
 * its claim copies its c, and so sits where it sat). So numbers are 0, 1, 2, ... in creation order,
 * and equal sets of trials give equal numbers on every replica. (c is what the owner signed: a lying
 * owner can put its trials early or late in the order, not take another trial's identity.)
 *
 * Stability: a trial created after another was seen sorts after it (the clock's rule), so while peers
 * are connected new trials append. The one race: a trial created elsewhere shortly before one of ours,
 * and not yet arrived when ours was created, sorts before ours; when it arrives (within one gossip
 * latency of its creation, so shortly after ours was created) our trial and those shown after it move
 * up by one. A trial that runs longer than the gossip latency is told under its final number.
 * After a partition heals, both sides' trials interleave by creation time: numbers change on both
 * sides, and the replica logs which (`NumberChange`s from `put`, counter `numbers:changed`).
 */
import { frozenTrial, type FrozenTrial, type TrialState } from '../storage.js';
import type { TrialRecord } from './schema.js';

export interface NumberChange {
  trialId: string;
  from: number;
  to: number;
}

function sortKey(a: TrialRecord, b: TrialRecord): number {
  if (a.c !== b.c) return a.c - b.c;
  const ta = a.claim ?? a.id;
  const tb = b.claim ?? b.id;
  if (ta !== tb) return ta < tb ? -1 : 1;
  // A claim sorts right after the trial it claims (same tie), then by own id.
  const ca = a.claim === null ? 0 : 1;
  const cb = b.claim === null ? 0 : 1;
  if (ca !== cb) return ca - cb;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class TrialView {
  readonly records = new Map<string, TrialRecord>();
  /** Shown trials in number order (their index is their number). */
  private order: TrialRecord[] = [];
  private readonly index = new Map<string, number>();
  /** WAITING trial id -> the claim that hides it (the smallest claim id known). */
  readonly claimedBy = new Map<string, string>();
  /** RUNNING trials of other owners (candidates for the stale verdict) and when this replica first saw each. */
  readonly runningRemote = new Set<string>();
  readonly firstSeen = new Map<string, number>();
  /** Sticky stale verdicts: trial id -> fail reason. */
  readonly stale = new Map<string, string>();
  private readonly frozenCache = new Map<string, FrozenTrial>();
  private all: readonly FrozenTrial[] | null = null;
  version = 0;

  constructor(private readonly self: string) {}

  get size(): number {
    return this.records.size;
  }

  /**
   * The claim for a trial created now: a hybrid logical clock in milliseconds, the current time or
   * one more than any claim seen if that is later, so a trial created after another was seen always
   * sorts after it (whatever else this replica still lacks, and whatever the clocks say).
   */
  nextClaim(now = Date.now()): number {
    return Math.max(now, this.maxClaim + 1);
  }
  private maxClaim = -1;

  numberOf(id: string): number {
    return this.index.get(id) ?? -1;
  }

  /**
   * Takes records (new or newer versions) into the view; returns the numbers of shown trials that
   * changed (the partition-heal / race case; empty when trials only appended).
   */
  put(recs: Iterable<TrialRecord>, now = Date.now()): NumberChange[] {
    let lowest = Infinity;
    const before = new Map<string, number>();
    const touched: string[] = [];
    const fresh = new Set<string>();
    for (const rec of recs) {
      const prev = this.records.get(rec.id);
      if (prev && prev.o === this.self && rec.o === this.self && prev.v > rec.v) continue;
      if (prev && prev.v > rec.v) continue;
      this.records.set(rec.id, rec);
      touched.push(rec.id);
      if (rec.c > this.maxClaim) this.maxClaim = rec.c;
      if (!this.firstSeen.has(rec.id)) this.firstSeen.set(rec.id, now);
      if (rec.s === 'RUNNING' && rec.o !== this.self) this.runningRemote.add(rec.id);
      else this.runningRemote.delete(rec.id);
      if (prev) {
        // The sort key (c, claim, id) never changes between versions of a trial; the state might hide it.
        this.frozenCache.delete(rec.id);
        const at = this.index.get(rec.id);
        if (at !== undefined && this.order[at]?.id === rec.id) this.order[at] = rec;
        else if (at !== undefined) this.order[this.order.findIndex((r) => r.id === rec.id)] = rec;
        continue;
      }
      fresh.add(rec.id);
      if (rec.claim) {
        const cur = this.claimedBy.get(rec.claim);
        if (cur === undefined || rec.id < cur) {
          this.claimedBy.set(rec.claim, rec.id);
          const waiting = this.records.get(rec.claim);
          if (waiting && waiting.s === 'WAITING' && this.index.has(waiting.id)) lowest = Math.min(lowest, this.removeAt(waiting.id, before));
        }
      }
      if (rec.s === 'WAITING' && this.claimedBy.has(rec.id)) continue;
      lowest = Math.min(lowest, this.insertAt(rec, before));
    }
    if (touched.length) this.touch(touched);
    if (lowest === Infinity) return [];
    const changes: NumberChange[] = [];
    for (let i = lowest; i < this.order.length; i++) {
      const id = this.order[i]!.id;
      if (this.index.get(id) !== i) {
        this.index.set(id, i);
        this.frozenCache.delete(id);
      }
      const from = before.get(id);
      if (from !== undefined && from !== i && !fresh.has(id)) changes.push({ trialId: id, from, to: i });
    }
    return changes;
  }

  /** Inserts a shown trial at its place; returns the first index whose number may have changed. */
  private insertAt(rec: TrialRecord, before: Map<string, number>): number {
    const o = this.order;
    let lo = 0;
    let hi = o.length;
    // Appends are the common case: check the end first.
    if (hi === 0 || sortKey(o[hi - 1]!, rec) < 0) lo = hi;
    else {
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (sortKey(o[mid]!, rec) < 0) lo = mid + 1;
        else hi = mid;
      }
    }
    if (lo === o.length) {
      o.push(rec);
      this.index.set(rec.id, lo);
      return Infinity;
    }
    for (let i = lo; i < o.length; i++) if (!before.has(o[i]!.id)) before.set(o[i]!.id, i);
    o.splice(lo, 0, rec);
    return lo;
  }

  private removeAt(id: string, before: Map<string, number>): number {
    const at = this.index.get(id)!;
    for (let i = at + 1; i < this.order.length; i++) if (!before.has(this.order[i]!.id)) before.set(this.order[i]!.id, i);
    // Refresh stale indexes first (a previous splice in this batch may have moved it).
    let pos = at;
    if (this.order[pos]?.id !== id) pos = this.order.findIndex((r) => r.id === id);
    this.order.splice(pos, 1);
    this.index.delete(id);
    this.frozenCache.delete(id);
    return pos;
  }

  /** Marks trials changed (frozen copies rebuilt on the next read). */
  touch(ids: Iterable<string>): void {
    for (const id of ids) this.frozenCache.delete(id);
    this.all = null;
    this.version++;
  }

  /** The stale verdicts due now: RUNNING trials of owners silent past the grace period. */
  checkStale(isSilent: (owner: string, since: number) => string | null): string[] {
    const changed: string[] = [];
    for (const id of this.runningRemote) {
      if (this.stale.has(id)) continue;
      const rec = this.records.get(id)!;
      const why = isSilent(rec.o, this.firstSeen.get(id) ?? 0);
      if (why) {
        this.stale.set(id, why);
        changed.push(id);
      }
    }
    if (changed.length) this.touch(changed);
    return changed;
  }

  frozen(rec: TrialRecord): FrozenTrial {
    let f = this.frozenCache.get(rec.id);
    if (f) return f;
    const staleReason = rec.s === 'RUNNING' ? this.stale.get(rec.id) : undefined;
    f = frozenTrial({
      trialId: rec.id,
      number: this.numberOf(rec.id),
      owner: rec.o,
      state: staleReason ? 'FAIL' : rec.s,
      values: rec.vals,
      params: rec.p,
      distributions: rec.d,
      intermediateValues: new Map(rec.iv),
      userAttrs: rec.ua,
      systemAttrs: staleReason ? { ...rec.sa, failReason: staleReason, stale: true } : rec.sa,
      datetimeStart: rec.t0 !== null ? new Date(rec.t0) : null,
      datetimeComplete: rec.t1 !== null ? new Date(rec.t1) : null,
    });
    this.frozenCache.set(rec.id, f);
    return f;
  }

  /** Shown trials in number order (hidden: WAITING trials that a claim took over). */
  list(states?: readonly TrialState[]): readonly FrozenTrial[] {
    if (!this.all) this.all = Object.freeze(this.order.map((r) => this.frozen(r)));
    return states ? this.all.filter((t) => states.includes(t.state)) : this.all;
  }

  /** The oldest shown WAITING trial nobody claimed yet. */
  oldestUnclaimed(): TrialRecord | null {
    for (const r of this.order) if (r.s === 'WAITING' && !this.claimedBy.has(r.id)) return r;
    return null;
  }
}
