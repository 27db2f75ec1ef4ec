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
 * up by one. The log line of a finished trial, the trial `tell` returns and the one callbacks get
 * wait until no such trial can still come (`settledFor`, PeerStorage.whenNumbersSettled), so the
 * number they show is final while peers stay connected (`trial.number` inside a running objective
 * is not: it is final once the trial has run longer than the gossip latency); but
 * for the first trial of a peer that announced the study for a while without running one (such a
 * peer is not waited for, so a dashboard or a CLI query joined to the swarm does not hold lines up).
 * After a partition heals, both sides' trials interleave by creation time: numbers change on both
 * sides, and the replica logs which (`NumberChange`s from `put`, counter `numbers:changed`).
 */
import { frozenTrial, OwnedMap, PackedStepMap, type FrozenTrial, type TrialState } from '../storage.js';
import { ivPacked, type IntermediateList, type TrialRecord } from './schema.js';

/**
 * What a replica reads of others' trials (issue 15 F7, F14): `hide` drops every record of an owner
 * from the view (excludePeers / trustPeers: the study reads as if those trials did not exist; they
 * stay in the shards and replicate); a claim of an enqueued trial holds it only while it is honoured
 * (see `claimHolds`).
 */
export interface ViewPolicy {
  hide?: ((owner: string) => boolean) | undefined;
  /** A RUNNING claim seen longer than this (ms, from when this replica first saw it) no longer holds its enqueued trial. */
  claimTimeoutMs: number;
  /** Of one owner's RUNNING claims, only the oldest this many hold their enqueued trials. */
  maxClaimsPerOwner: number;
  /** Whether an owner was heard from within the liveness window (a retry claim does not fail a live owner's trial). */
  live?: ((owner: string) => boolean) | undefined;
}

/** How far ahead of the local clock another trial's claim may move this replica's clock (clock skew is far smaller). */
export const MAX_CLAIM_AHEAD_MS = 24 * 3600_000;

export const DEFAULT_VIEW_POLICY: ViewPolicy = { claimTimeoutMs: 6 * 3600_000, maxClaimsPerOwner: 64 };

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
  /**
   * Trial id -> the trial that retries it (`systemAttrs.retryOf`). A RUNNING trial that another peer
   * retried reads as FAIL on a replica that does not hear its owner (one opened later cannot judge the
   * silence itself); if the owner comes back and finishes it, its record says so. A replica that hears
   * the owner keeps the trial RUNNING: anyone can write a trial naming another's in `retryOf`.
   */
  private readonly retriedBy = new Map<string, string>();
  private readonly frozenCache = new Map<string, FrozenTrial>();
  private all: readonly FrozenTrial[] | null = null;
  version = 0;
  /** Records of hidden owners (`policy.hide`) left out of the view. */
  hiddenRecords = 0;
  /** WAITING trial id -> every claim of it known. */
  private readonly claimsOf = new Map<string, Set<string>>();
  /** Trials whose record is WAITING (enqueued, not run yet): few, and what every ask looks through. */
  private readonly waiting = new Set<string>();

  constructor(
    private readonly self: string,
    readonly policy: ViewPolicy = DEFAULT_VIEW_POLICY,
  ) {}

  get size(): number {
    return this.records.size;
  }

  /** Records whose state is COMPLETE (a final state, so no stale verdict changes it), kept as they come. */
  get complete(): number {
    return this.completeRecords;
  }

  private completeRecords = 0;

  /**
   * The claim for a trial created now: a hybrid logical clock in milliseconds, the current time or
   * one more than any claim seen if that is later, so a trial created after another was seen always
   * sorts after it (whatever else this replica still lacks, and whatever the clocks say).
   */
  nextClaim(now = Date.now()): number {
    return Math.max(now, this.maxClaim + 1);
  }
  private maxClaim = -1;

  /**
   * The least claim any trial this replica creates from now on will have (heartbeats announce it,
   * `settledFor`): the clock moves to it, so the promise holds whatever the wall clock does next.
   */
  promiseClaim(now = Date.now()): number {
    const c = this.nextClaim(now);
    if (c - 1 > this.maxClaim) this.maxClaim = c - 1;
    return c;
  }

  /** Per owner: trials held, the highest sequence number q held, and that trial's claim. */
  private readonly owners = new Map<string, { count: number; maxQ: number; claimAtMax: number }>();

  private noteOwner(rec: TrialRecord): void {
    const o = this.owners.get(rec.o);
    if (!o) this.owners.set(rec.o, { count: 1, maxQ: rec.q, claimAtMax: rec.c });
    else {
      o.count++;
      if (rec.q > o.maxQ) {
        o.maxQ = rec.q;
        o.claimAtMax = rec.c;
      }
    }
  }

  /** How many trials of `owner` this view holds. */
  trialsOf(owner: string): number {
    return this.owners.get(owner)?.count ?? 0;
  }

  /**
   * Whether every trial of `owner` that could sort before claim `c` is here, so none still on its way
   * can move the numbers up to `c` (the numbering's one race, above). An owner's fresh claims grow
   * with its sequence number q (its clock counts its own claims), so it holds once this view has all
   * of the owner's trials 0..q and the claim of q is past `c`; or once the owner announced (`frontier`,
   * in its heartbeat) that each trial it creates from then on claims at least `clock` > `c`, and this
   * view holds as many of its trials as it had then (`n`; a crash can leave gaps in q, not in n).
   */
  settledFor(owner: string, c: number, frontier?: { n: number; clock: number }): boolean {
    const o = this.owners.get(owner);
    if (o && o.count === o.maxQ + 1 && o.claimAtMax > c) return true;
    return frontier !== undefined && frontier.clock > c && (o?.count ?? 0) >= frontier.n;
  }

  numberOf(id: string): number {
    return this.index.get(id) ?? -1;
  }

  /**
   * Takes records (new or newer versions) into the view; returns the numbers of shown trials that
   * changed (the partition-heal / race case; empty when trials only appended). New trials are sorted
   * and merged in one pass, so a batch costs O(batch log batch) when it appends and O(shown) when it
   * lands in the middle (a catch-up piece), never O(shown) per trial.
   */
  put(recs: Iterable<TrialRecord>, now = Date.now()): NumberChange[] {
    const touched: string[] = [];
    let fresh: TrialRecord[] = [];
    const removed = new Set<string>();
    for (const rec of recs) {
      if (rec.o !== this.self && this.policy.hide?.(rec.o)) {
        this.hiddenRecords++;
        continue;
      }
      const prev = this.records.get(rec.id);
      if (prev && prev.v > rec.v) continue;
      this.completeRecords += Number(rec.s === 'COMPLETE') - Number(prev?.s === 'COMPLETE');
      this.records.set(rec.id, rec);
      if (!prev) this.noteOwner(rec);
      if (rec.s === 'WAITING') this.waiting.add(rec.id);
      else this.waiting.delete(rec.id);
      touched.push(rec.id);
      // A claim far ahead of this clock (a member can sign any c) does not move ours: following it to
      // 2^53 would make every trial this peer creates unsafe-integer, refused by every other replica.
      if (rec.c > this.maxClaim && rec.c <= now + MAX_CLAIM_AHEAD_MS) this.maxClaim = rec.c;
      if (!this.firstSeen.has(rec.id)) this.firstSeen.set(rec.id, now);
      if (rec.s === 'RUNNING' && rec.o !== this.self) this.runningRemote.add(rec.id);
      else this.runningRemote.delete(rec.id);
      const of = rec.sa['retryOf'];
      if (typeof of === 'string' && !this.retriedBy.has(of)) {
        this.retriedBy.set(of, rec.id);
        this.frozenCache.delete(of);
        touched.push(of);
      }
      if (prev) {
        // The sort key (c, claim, id) never changes between versions of a trial.
        const at = this.index.get(rec.id);
        if (at !== undefined) this.order[this.order[at]?.id === rec.id ? at : this.order.findIndex((r) => r.id === rec.id)] = rec;
        continue;
      }
      if (rec.claim) {
        let all = this.claimsOf.get(rec.claim);
        if (!all) this.claimsOf.set(rec.claim, (all = new Set()));
        all.add(rec.id);
        const cur = this.claimedBy.get(rec.claim);
        if (cur === undefined || rec.id < cur) {
          this.claimedBy.set(rec.claim, rec.id);
          if (this.index.has(rec.claim)) removed.add(rec.claim);
        }
      }
      fresh.push(rec);
    }
    if (touched.length) this.touch(touched);
    // A WAITING trial with a known claim is hidden (the claim may have come later in the batch).
    fresh = fresh.filter((r) => !(r.s === 'WAITING' && this.claimedBy.has(r.id)));
    if (fresh.length === 0 && removed.size === 0) return [];
    fresh.sort(sortKey);
    const old = this.order;
    if (removed.size === 0 && (old.length === 0 || sortKey(old[old.length - 1]!, fresh[0]!) < 0)) {
      for (const r of fresh) {
        this.index.set(r.id, old.length);
        old.push(r);
      }
      return [];
    }
    // Only the tail from the first position that moves is rebuilt (concurrent trials arrive near the
    // end): a remote trial costs O(trials after it), not O(study), and only their numbers are looked at.
    let from = lowerBound(old, fresh[0]!);
    for (const id of removed) {
      const at = this.index.get(id);
      if (at !== undefined && at < from) from = at;
    }
    const tail = old.splice(from);
    const merged = old;
    let i = 0;
    let j = 0;
    while (i < tail.length || j < fresh.length) {
      if (i < tail.length && removed.has(tail[i]!.id)) {
        this.index.delete(tail[i]!.id);
        this.frozenCache.delete(tail[i]!.id);
        i++;
        continue;
      }
      if (j >= fresh.length || (i < tail.length && sortKey(tail[i]!, fresh[j]!) < 0)) merged.push(tail[i++]!);
      else merged.push(fresh[j++]!);
    }
    const freshIds = new Set(fresh.map((r) => r.id));
    const changes: NumberChange[] = [];
    for (let k = from; k < merged.length; k++) {
      const id = merged[k]!.id;
      const was = this.index.get(id);
      if (was === k) continue;
      if (was !== undefined && !freshIds.has(id)) changes.push({ trialId: id, from: was, to: k });
      this.index.set(id, k);
      this.frozenCache.delete(id);
    }
    this.order = merged;
    return changes;
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
    const retry = rec.s === 'RUNNING' && rec.o !== this.self && !this.policy.live?.(rec.o) ? this.retriedBy.get(rec.id) : undefined;
    const staleReason = rec.s === 'RUNNING' ? (this.stale.get(rec.id) ?? (retry ? `retried as trial ${this.numberOf(retry)} after its owner peer ${rec.o} went silent` : undefined)) : undefined;
    f = frozenTrial({
      trialId: rec.id,
      number: this.numberOf(rec.id),
      owner: rec.o,
      state: staleReason ? 'FAIL' : rec.s,
      // A record's parts are never changed in place (writes make new ones), so the frozen trial shares them.
      values: rec.vals && Object.freeze(rec.vals),
      params: Object.freeze(rec.p),
      distributions: Object.freeze(rec.d),
      intermediateValues: stepMap(rec.iv),
      userAttrs: Object.freeze(rec.ua),
      systemAttrs: staleReason ? { ...rec.sa, failReason: staleReason, stale: true } : Object.freeze(rec.sa),
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

  /**
   * The oldest WAITING trial that nobody claimed yet, or whose every claim was released (issue 15
   * F14: a member that claims every enqueued trial and never runs them holds them no longer): a claim
   * holds while its trial is finished or RUNNING, unless its owner went silent (stale verdict), it has
   * been RUNNING longer than `claimTimeoutMs`, or it is beyond its owner's oldest `maxClaimsPerOwner`
   * RUNNING claims. A released trial stays hidden behind its first claim; the new claim is shown too.
   */
  oldestUnclaimed(now = Date.now()): TrialRecord | null {
    // The first unclaimed WAITING trial in number order, found among the WAITING ones (an ask costs
    // O(enqueued trials), not O(study)).
    let first: TrialRecord | null = null;
    for (const id of this.waiting) {
      const r = this.records.get(id)!;
      if (!this.claimedBy.has(id) && (!first || sortKey(r, first) < 0)) first = r;
    }
    if (first) return first;
    if (this.claimsOf.size === 0) return null;
    const overCap = this.claimsOverCap();
    let best: TrialRecord | null = null;
    for (const [wid, claims] of this.claimsOf) {
      const w = this.records.get(wid);
      if (!w || w.s !== 'WAITING' || (best && sortKey(best, w) < 0)) continue;
      let holds = false;
      for (const cid of claims) {
        const c = this.records.get(cid);
        if (c && this.claimHolds(c, now, overCap)) {
          holds = true;
          break;
        }
      }
      if (!holds) best = w;
    }
    return best;
  }

  private claimHolds(c: TrialRecord, now: number, overCap: Set<string>): boolean {
    if (c.o === this.self) return true;
    if (c.s !== 'RUNNING') return true;
    if (this.stale.has(c.id)) return false;
    if (now - (this.firstSeen.get(c.id) ?? now) > this.policy.claimTimeoutMs) return false;
    return !overCap.has(c.id);
  }

  /** RUNNING claims of other owners beyond each owner's oldest `maxClaimsPerOwner`. */
  private claimsOverCap(): Set<string> {
    const byOwner = new Map<string, TrialRecord[]>();
    for (const claims of this.claimsOf.values()) {
      for (const cid of claims) {
        const c = this.records.get(cid);
        if (!c || c.s !== 'RUNNING' || c.o === this.self) continue;
        let l = byOwner.get(c.o);
        if (!l) byOwner.set(c.o, (l = []));
        l.push(c);
      }
    }
    const out = new Set<string>();
    for (const l of byOwner.values()) {
      if (l.length <= this.policy.maxClaimsPerOwner) continue;
      l.sort(sortKey);
      for (const c of l.slice(this.policy.maxClaimsPerOwner)) out.add(c.id);
    }
    return out;
  }
}

/** The first position in `order` (sorted by sortKey) whose record does not sort before `r`. */
function lowerBound(order: readonly TrialRecord[], r: TrialRecord): number {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sortKey(order[mid]!, r) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A frozen trial's step -> value map, from the record's pairs or packed values (schema.ts IntermediateList). */
function stepMap(iv: IntermediateList): OwnedMap {
  if (ivPacked(iv)) return new PackedStepMap(iv);
  const m = new OwnedMap();
  for (const [step, value] of iv as [number, number][]) m.set(step, value);
  return m;
}
