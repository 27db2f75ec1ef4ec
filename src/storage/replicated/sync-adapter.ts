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
 *
 * A shard's changes travel with a voucher when the sender has one (schema.ts `openVoucher`): its
 * owner's one signature over the shard's change hashes, made by the owner when it serves its own
 * shard and passed on by every replica that took the shard under it. The receiver checks the voucher
 * once and skips the per-record signature checks of the changes it lists (every other merge rule and
 * counter still applies). A shard that fits in a piece is not split across pieces, and a whole sealed
 * shard (64 finished trials) new to the receiver is stored sealed without an Automerge document
 * (`takeSealed`), as its owner stores it.
 */
import { logger } from '../../logging.js';
import { pack, unpackUntrusted, WireError, asObject } from '../../net/wire.js';
import type { CatalogEntry, SyncTarget } from '../../net/sync.js';
import {
  LIMITS,
  MAX_VOUCHER_HASHES,
  SHARD_TRIALS,
  RejectedChange,
  changeHash,
  checkChangeBounds,
  decodeBoundedChanges,
  hasChanges,
  makeVoucher,
  openVoucher,
  type DecodedChange,
  type ShardId,
  type ShardInspected,
  type TrialRecord,
} from './schema.js';
import { isFinished } from '../storage.js';
import * as A from '@automerge/automerge';
import { MAX_SHARDS, SERVE_BYTES_PER_CHANGE, SERVE_WINDOW_MS, SYNC_PIECE_BYTES } from './options.js';
import type { Ctx, Replica, Shard } from './replica.js';
import type { Inbox } from './inbox.js';
import type { Writer } from './writer.js';

export interface SyncState {
  sentSummary: boolean;
  /** The peer whose summary we answer: what we serve is charged to its budget. */
  asker: string | null;
  /** What the remote lacks, still to send: study document first (''), then shard keys. */
  queue: { key: string; have: string[] }[] | null;
  /** Changes of the shard being sent that did not fit in the last piece (and the voucher sent with them). */
  carry: { key: string; changes: Uint8Array[]; voucher: Uint8Array | null } | null;
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
    const piece: ([string, Uint8Array[]] | [string, Uint8Array[], Uint8Array])[] = [];
    let bytes = 0;
    let ops = 0;
    const add = (key: string, changes: Uint8Array[], voucher: Uint8Array | null): boolean => {
      let i = 0;
      const out: Uint8Array[] = [];
      const extra = voucher?.byteLength ?? 0;
      // A shard that fits in a piece is not split: it goes whole in the next one (a whole sealed shard is stored without a document, see takeSealed).
      if (bytes > 0 && changes.length <= 2 * SHARD_TRIALS) {
        let total = extra;
        for (const c of changes) total += c.byteLength;
        if (total <= SYNC_PIECE_BYTES && bytes + total > SYNC_PIECE_BYTES) {
          st.carry = { key, changes, voucher };
          return false;
        }
      }
      for (; i < changes.length; i++) {
        const c = changes[i]!;
        const n = checkChangeBounds(c);
        if ((bytes + extra + c.byteLength > SYNC_PIECE_BYTES || ops + n > LIMITS.opsPerMessage) && (bytes > 0 || out.length > 0)) break;
        out.push(c);
        bytes += c.byteLength;
        ops += n;
      }
      if (out.length) {
        piece.push(voucher ? [key, out, voucher] : [key, out]);
        bytes += extra;
      }
      if (i < changes.length) {
        st.carry = { key, changes: changes.slice(i), voucher };
        return false;
      }
      return true;
    };
    if (st.carry) {
      const c = st.carry;
      st.carry = null;
      if (!add(c.key, c.changes, c.voucher)) return pack({ p: piece });
    }
    while (st.queue.length > 0) {
      const { key, have } = st.queue.shift()!;
      const changes = await this.changesFor(r, key, have);
      if (changes.length && !add(key, changes, key === '' ? null : await this.voucherFor(r, key, have.length === 0 ? changes : null))) break;
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

  /** Vouchers this peer signed for its own sealed shards, by `${studyId}/${shard}` (a sealed shard no longer changes). */
  private readonly ownVouchers = new Map<string, { changes: number; voucher: Uint8Array }>();

  /**
   * The voucher sent with a shard's changes (schema.ts `openVoucher`): for this peer's own shards, one
   * it signs over every change of the shard (kept while the shard does not change); for others', the
   * one this replica took the shard under, if any (persist.ts). `all`: the shard's changes, when at hand.
   */
  private async voucherFor(r: Replica, key: string, all: Uint8Array[] | null): Promise<Uint8Array | null> {
    const s = r.shards.get(key);
    if (!s || s.changes === 0) return null;
    if (s.id.owner !== this.ctx.peerId) return (this.storing.get(`${r.studyId}/${key}`) ?? (await this.storedVoucher(r, key))) ?? null;
    const id = `${r.studyId}/${key}`;
    const known = this.ownVouchers.get(id);
    if (known && known.changes === s.changes) return known.voucher;
    if (s.changes > MAX_VOUCHER_HASHES) return null;
    const changes = all ?? (await this.changesFor(r, key, []));
    const voucher = makeVoucher(this.ctx.key, r.studyId, key, changes.map(changeHash));
    if (voucher && s.sealed) {
      if (this.ownVouchers.size >= 100_000) this.ownVouchers.clear();
      this.ownVouchers.set(id, { changes: s.changes, voucher });
    }
    return voucher;
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
    await this.landed(r, key);
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
      if (!Array.isArray(e) || (e.length !== 2 && e.length !== 3) || typeof e[0] !== 'string' || !Array.isArray(e[1])) throw new RejectedChange('schema', 'a sync piece entry is not [shard, changes, voucher?]');
      if (e.length === 3 && (!(e[2] instanceof Uint8Array) || e[2].byteLength > LIMITS.recordBytes || e[0] === '')) throw new RejectedChange('schema', 'a sync piece entry has a malformed voucher');
      for (const c of e[1]) ops += checkChangeBounds(c);
    }
    if (ops > LIMITS.opsPerMessage) throw new RejectedChange('too-many-ops', `a sync piece holds ${ops} operations (limit ${LIMITS.opsPerMessage})`);
    try {
      await this.applyInTurn(r, p as [string, Uint8Array[], Uint8Array?][]);
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

  /** The last voucher checked per shard (`${studyId}/${shard}`): the same one comes with every piece of a shard. */
  private readonly vouchers = new Map<string, Vouched>();
  /** Vouchers queued for disk and not written yet (what `db.voucher` does not return yet). */
  private readonly storing = new Map<string, Uint8Array>();

  /**
   * Checks a voucher that came with a shard's changes (a forged one is refused, and charged: honest
   * peers pass on only vouchers they checked). It is used only if it lists every change the voucher
   * stored for this shard lists, so what was taken under the stored one stays vouched for; and only
   * for others' shards (this peer's own need none).
   */
  private async takeVoucher(r: Replica, key: string, bytes: Uint8Array, id: ShardId): Promise<Vouched | null> {
    const k = `${r.studyId}/${key}`;
    const seen = this.vouchers.get(k);
    if (seen && equalBytes(seen.bytes, bytes)) return seen;
    const hashes = openVoucher(bytes, r.studyId, id);
    if (id.owner === this.ctx.peerId) return null;
    const stored = this.storing.get(k) ?? (seen && !seen.store ? seen.bytes : await this.storedVoucher(r, key));
    if (stored && !equalBytes(stored, bytes)) {
      let old: Set<string>;
      try {
        old = openVoucher(stored, r.studyId, id);
      } catch {
        old = new Set();
      }
      for (const x of old) if (!hashes.has(x)) return null;
    }
    const vouched = { bytes, hashes, store: !stored || !equalBytes(stored, bytes) };
    if (this.vouchers.size >= 4096) this.vouchers.clear();
    this.vouchers.set(k, vouched);
    return vouched;
  }

  /** Queues a voucher for disk, ahead of the changes taken under it (the write queue keeps the order). */
  private storeVoucher(r: Replica, key: string, v: Vouched): void {
    const k = `${r.studyId}/${key}`;
    v.store = false;
    this.storing.set(k, v.bytes);
    void this.vouchedShards.get(r.studyId)?.then((set) => set.add(key));
    void this.ctx
      .enqueueWrite(`a voucher of study ${r.name}`, () => this.ctx.db.putVoucher(r.studyId, key, v.bytes))
      .finally(() => {
        if (this.storing.get(k) === v.bytes) this.storing.delete(k);
      })
      .catch(() => {});
  }

  /**
   * A whole sealed shard arriving at a replica that holds none of it (a joiner, a peer back from a
   * partition) is stored sealed, as the writer stores a shard it seals (its changes and final records,
   * persist.ts), without keeping an Automerge document of it: the changes are applied only to a
   * throwaway document, which checks them as any apply does and gives the heads, and then freed. The
   * merge rules and the owner's quota apply exactly as in `Replica.applyShard`. The caller checked the
   * shard was empty here before the inspection. Null when the piece does not hold a whole sealed shard
   * (every trial of its bucket, all finished): then the changes take the usual path.
   */
  private takeSealed(r: Replica, s: Shard, raws: Uint8Array[], decoded: DecodedChange[], own: boolean, inspected: ShardInspected): TrialRecord[] | null {
    const owner = s.id.owner;
    if (owner === this.ctx.peerId || !r.policy) return null;
    const fresh = inspected.fresh;
    if (fresh.length !== raws.length || new Set(fresh.map((d) => d.hash!)).size !== raws.length) return null;
    const base = s.id.bucket * SHARD_TRIALS;
    if (inspected.trials.size !== SHARD_TRIALS) return null;
    const finals: Uint8Array[] = [];
    for (let q = base; q < base + SHARD_TRIALS; q++) {
      const id = `${owner}:${q}`;
      const rec = inspected.records.get(id);
      const bytes = inspected.values?.get(id);
      if (!rec || !bytes || !isFinished(rec.s)) return null;
      finals.push(bytes);
    }
    let bytes = 0;
    for (const c of raws) bytes += c.byteLength;
    const q = r.policy.ownerQuota;
    // Per-owner quota (issue 15 F15), as applyShard: refused and counted, not charged.
    if ((r.ownerTrials.get(owner) ?? 0) + SHARD_TRIALS > q.trials) {
      r.policy.count('quota:trials');
      return [];
    }
    if ((r.ownerBytes.get(owner) ?? 0) + bytes > q.bytes) {
      r.policy.count('quota:bytes');
      return [];
    }
    // A chain (what an honest owner writes) needs no document to be checked: see chainHeads.
    let heads = own ? chainHeads(raws, decoded) : null;
    if (heads) this.ctx.count('sync:accepted-sealed-chains');
    else {
      const tmp = A.init<unknown>();
      try {
        const h = A.getBackend(tmp);
        h.applyChanges(raws);
        if (h.getMissingDeps([]).length > 0) throw new Error('dependencies are missing');
        heads = h.getHeads();
      } catch (e) {
        throw new RejectedChange('apply-failed', `a change could not be applied: ${(e as Error).message}`);
      } finally {
        A.free(tmp);
      }
    }
    r.chargeOwner(owner, bytes, SHARD_TRIALS);
    s.evict(); // the empty document the inspection opened
    s.heads = heads;
    s.changes = raws.length;
    s.sealed = true;
    s.sealPersisted = true;
    r.invalidateDigest();
    const sealed = new Map([[s.key, { heads, changes: raws.length, records: finals, history: raws }]]);
    // Until the write lands, what reads the shard from disk waits for it (`landed`).
    const k = `${r.studyId}/${s.key}`;
    const p = this.ctx.enqueueWrite(`study ${r.name}`, () => this.ctx.db.write(r.studyId, r.name, { changes: new Map([[s.key, raws]]), sealed }, false));
    const done = p.catch(() => {}).finally(() => {
      if (this.writing.get(k) === done) this.writing.delete(k);
    });
    this.writing.set(k, done);
    this.ctx.count('sync:accepted-sealed-shards');
    const records = [...inspected.records.values()];
    for (const rec of records) r.applied.set(rec.id, rec);
    return records;
  }

  /** Sealed shards taken whole (takeSealed) whose write to disk has not landed yet, by `${studyId}/${shard}`. */
  private readonly writing = new Map<string, Promise<void>>();

  /** Per study, the shards with a voucher on disk (read once, then kept up to date): most have none, and asking level costs. */
  private readonly vouchedShards = new Map<string, Promise<Set<string>>>();

  private async storedVoucher(r: Replica, key: string): Promise<Uint8Array | undefined> {
    let p = this.vouchedShards.get(r.studyId);
    if (!p) this.vouchedShards.set(r.studyId, (p = this.ctx.db.vouchedShards(r.studyId)));
    if (!(await p).has(key)) return undefined;
    return this.ctx.db.voucher(r.studyId, key);
  }

  /** Waits until a shard taken whole is on disk (before reading it back from there). */
  private async landed(r: Replica, key: string): Promise<void> {
    const w = this.writing.get(`${r.studyId}/${key}`);
    if (w) await w;
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
    // Oldest buckets first (bucket, then owner): trials then arrive about in creation order, so the
    // receiver's numbering mostly appends instead of renumbering its tail at every piece (the shard map's
    // own order is the disk's, where "owner.10" sorts before "owner.2").
    const shards = [...r.shards.values()].sort((a, b) => a.id.bucket - b.id.bucket || (a.id.owner < b.id.owner ? -1 : a.id.owner > b.id.owner ? 1 : 0));
    for (const s of shards) {
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

  /** Per study, the piece being applied: pieces of one study apply one at a time, whichever session brought them. */
  private readonly applying = new Map<string, Promise<void>>();

  /**
   * `apply`, after any piece of the same study still applying. Two sessions (one each way after a
   * partition heals) bring the same shards at once, and `apply` awaits the disk between looking at a
   * shard and applying to it: interleaved, one could take a shard whole while the other, or a refusal's
   * `pruneEmpty`, left it as it was before, and every later piece of that shard was refused for good
   * (the bench's partition heal, session 13).
   */
  private async applyInTurn(r: Replica, piece: [string, Uint8Array[], Uint8Array?][]): Promise<void> {
    const before = this.applying.get(r.studyId);
    const turn = (async () => {
      if (before) await before.catch(() => {});
      await this.apply(r, piece);
    })();
    const mine = turn.catch(() => {});
    this.applying.set(r.studyId, mine);
    try {
      await turn;
    } finally {
      if (this.applying.get(r.studyId) === mine) this.applying.delete(r.studyId);
    }
  }

  /** Applies a piece: per shard in order, inspected before each apply; missing dependencies are refused. */
  private async apply(r: Replica, piece: [string, Uint8Array[], Uint8Array?][]): Promise<void> {
    const records: TrialRecord[] = [];
    let fresh = false;
    // Shards applied before a later one of the piece is refused are in their documents: the view takes them all the same.
    try {
      for (const [key, raws, voucher] of piece) {
        if (raws.length === 0) continue;
        const { decoded, own } = decodeBoundedChanges(raws);
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
        const first = r.shard(key);
        if (!first) throw new RejectedChange('bad-shard', `a sync piece names shard "${key.slice(0, 80)}", which is not <owner>.<bucket> (or the study has too many shards)`);
        const vouched = voucher ? await this.takeVoucher(r, key, voucher, first.id) : null;
        // Every wait comes before the shard is looked at for good: from the loop's last check to the
        // apply nothing else runs, so what the checks saw (open, held sealed, or empty; still the
        // replica's shard of that key: a gossip refusal's pruneEmpty may have dropped an empty one) holds.
        let s: Shard | null = first;
        for (;;) {
          s = r.shard(key);
          if (!s) throw new RejectedChange('bad-shard', `a sync piece names shard "${key.slice(0, 80)}", and the study has too many shards`);
          if (s.doc || s.changes === 0) break;
          // The whole history of a shard held sealed here, again (two sessions sending it at once): nothing is new.
          if (s.changes === decoded.length && sameSet(headsOf(decoded), s.heads)) {
            s = null;
            break;
          }
          await this.landed(r, key);
          if (!s.doc) await this.writer.reopen(r, s);
        }
        if (!s) continue;
        const known = new Set(decoded.map((d) => d.hash!));
        if (!decoded.every((d) => d.deps.every((x) => known.has(x) || s.has(x)))) {
          if (r.refusedAsDependent(s)) continue; // what they lack, the owner's quota refused here (replica.ts)
          throw new RejectedChange('missing-deps', `a sync piece carries changes of shard ${key.slice(0, 80)} whose dependencies are missing`);
        }
        if (vouched) this.ctx.count('sync:vouched-shards');
        const empty = !s.doc && s.changes === 0 && s.unsaved.length === 0;
        // The voucher's changes are not checked one record signature each (schema.ts on vouchers).
        const inspected = r.inspectShard(s, decoded, vouched ? (x) => vouched.hashes.has(x) : undefined);
        // Stored before the changes it vouches for: see schema.ts on vouchers.
        if (vouched?.store && inspected.fresh.some((d) => vouched.hashes.has(d.hash!))) this.storeVoucher(r, key, vouched);
        const whole = empty ? this.takeSealed(r, s, raws, decoded, own, inspected) : null;
        if (whole) {
          if (whole.length > 0) {
            fresh = true;
            records.push(...whole);
          }
          continue;
        }
        const recs = r.applyShard(s, raws, decoded, inspected);
        if (recs) {
          fresh = true;
          records.push(...recs);
        }
      }
    } finally {
      if (fresh) {
        this.ctx.count('sync:accepted-changes');
        this.inbox.merged(r, records);
        this.inbox.drain(r);
      }
    }
  }
}

/**
 * The heads of a whole shard history that needs no Automerge document to be checked, or null (then
 * `takeSealed` applies it to a throwaway document, as before). Only for changes our own decoder
 * decoded (schema.ts `decodeBoundedChanges` `own`). Null unless the changes are exactly what an honest owner writes:
 * - one chain: a single change without dependencies, every other change depending on exactly one
 *   change of the batch, no change depended on twice, every change on the chain;
 * - along the chain, each actor's changes numbered 1, 2, 3, ... (seq), the operations counted on
 *   without a gap or an overlap from 1 (startOp = the operations before it + 1), and every other
 *   actor a change names (for its predecessors) the author of an earlier change of the chain;
 * - every operation's predecessor the previous set of the same key on the chain (none for the first).
 *
 * Why that is as safe as the throwaway document: applied to an empty document, Automerge refuses a
 * batch only for a change that does not decode (our decoder accepts only what Automerge decodes the
 * same way, test/security/change-decode.test.ts), a repeated (actor, seq) (each actor's seqs are
 * 1..k, once each), or an actor it does not know (every actor is the author of a seq 1 change of the
 * batch, which registers it); it leaves a change out only for a dependency that is missing (every
 * dependency is in the batch). So it would apply every change, its heads would be the chain's last
 * change, and each key's value the last set of it on the chain, every earlier one being its
 * predecessor: the record `inspectShardChanges` accepted last, since the topological order of a chain
 * is the chain. The changes stored are the same bytes, and a reopen applies them to a document. What
 * is checked of the records is unchanged: every record went through `inspectShardChanges` (its
 * signature, or its owner's voucher, owner, bucket, study, values, the forward rules), and the owner's
 * quota applies as before; only Automerge's second parse of the same bytes is left out.
 */
export function chainHeads(raws: readonly Uint8Array[], decoded: readonly DecodedChange[]): string[] | null {
  const n = decoded.length;
  if (n === 0 || raws.length !== n) return null;
  const index = new Map<string, number>();
  for (let i = 0; i < n; i++) index.set(decoded[i]!.hash!, i);
  if (index.size !== n) return null;
  const next = new Int32Array(n).fill(-1);
  let root = -1;
  for (let i = 0; i < n; i++) {
    const deps = decoded[i]!.deps;
    if (deps.length === 0) {
      if (root >= 0) return null;
      root = i;
      continue;
    }
    if (deps.length !== 1) return null;
    const p = index.get(deps[0]!);
    if (p === undefined || p === i || next[p] !== -1) return null;
    next[p] = i;
  }
  if (root < 0) return null;
  const seqs = new Map<string, number>();
  const lastSet = new Map<string, string>();
  let op = 1;
  let seen = 0;
  let last = root;
  for (let i = root; i !== -1; i = next[i]!) {
    if (++seen > n) return null;
    const d = decoded[i]!;
    const others = otherActors(raws[i]!);
    if (others === null) return null;
    for (const a of others) if (!seqs.has(a)) return null;
    if (d.seq !== (seqs.get(d.actor) ?? 0) + 1 || d.startOp !== op) return null;
    seqs.set(d.actor, d.seq);
    const ops = d.ops;
    for (let j = 0; j < ops.length; j++) {
      const o = ops[j]!;
      if (o.action !== 'set' || o.obj !== '_root' || typeof o.key !== 'string') return null;
      const prev = lastSet.get(o.key);
      const pred = o.pred;
      if (prev === undefined ? pred.length !== 0 : pred.length !== 1 || pred[0] !== prev) return null;
      lastSet.set(o.key, `${op + j}@${d.actor}`);
    }
    op += ops.length;
    last = i;
  }
  // Fewer than n on the chain: the rest depend on each other in a ring (no root), never a whole history.
  if (seen !== n) return null;
  return [decoded[last]!.hash!];
}

/** uleb128 at `at` of `b`: [value, offset after it] (the change was decoded strictly already). */
function uleb(b: Uint8Array, at: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 8 && at < b.byteLength; i++) {
    const x = b[at++]!;
    v += (x & 0x7f) * mul;
    if ((x & 0x80) === 0) return [v, at];
    mul *= 128;
  }
  return [-1, at];
}

/**
 * The other actors a change chunk names (hex), from its header: magic, checksum, type, length, then
 * deps, actor, seq, startOp, time, message, other actors (Automerge binary format). Null if the header
 * does not read (never for a change `decodeRootBytesChange` decoded).
 */
function otherActors(c: Uint8Array): string[] | null {
  let [x, o] = uleb(c, 9); // body length
  [x, o] = uleb(c, o); // deps
  if (x < 0) return null;
  o += 32 * x;
  [x, o] = uleb(c, o); // actor
  if (x < 0) return null;
  o += x;
  [x, o] = uleb(c, o); // seq
  [x, o] = uleb(c, o); // startOp
  [x, o] = uleb(c, o); // time (signed: only its length matters here)
  [x, o] = uleb(c, o); // message
  if (x < 0) return null;
  o += x;
  let n: number;
  [n, o] = uleb(c, o);
  if (n < 0 || n > 64) return null;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    [x, o] = uleb(c, o);
    if (x < 0 || o + x > c.byteLength) return null;
    out.push(Buffer.from(c.buffer, c.byteOffset + o, x).toString('hex'));
    o += x;
  }
  return out;
}

interface Vouched {
  bytes: Uint8Array;
  hashes: Set<string>;
  /** Whether the voucher is new here and must be stored if changes are taken under it. */
  store: boolean;
}

/** Ends a session whose asker used up its serving budget: not a protocol violation, so not counted toward quarantine. */
class ServeBudgetError extends Error {
  readonly reason = 'serve-budget';
  readonly noCharge = true;
  constructor(asker: string) {
    super(`peer ${asker} used up its catch-up budget for now`);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/**
 * The changes of a batch that no other change of the batch depends on. With distinct hashes and as
 * many changes as a shard holds, equal heads mean the batch is the shard's whole history (hashes chain).
 */
function headsOf(decoded: readonly { hash?: string | null; deps: string[] }[]): string[] {
  const hashes = new Set(decoded.map((d) => d.hash!));
  if (hashes.size !== decoded.length) return [];
  for (const d of decoded) for (const x of d.deps) hashes.delete(x);
  return [...hashes];
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

