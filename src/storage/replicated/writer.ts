/**
 * This peer's own writes: trials change in the view at once and are coalesced (everything written to
 * a trial in one tick becomes one signed record in one change of its shard), published within a few
 * milliseconds so other peers' samplers see RUNNING trials (constant liar), and persisted in order.
 * Intermediate values and attrs wait up to `intermediateFlushMs` to be folded into fewer changes.
 * Also the disk side of merges: unsaved changes, the study document, and sealing full finished shards.
 */
import { logger, logsAt } from '../../logging.js';
import { pack } from '../../net/wire.js';
import { StorageError, isFinished, type TrialTemplate } from '../storage.js';
import { checkAttrs, checkNewTrialState, copyAttr } from '../contract.js';
import { OUTBOX_GAP_MS, topicOf } from './options.js';
import type { Ctx, Replica, Shard } from './replica.js';
import type { SealedWrite } from './persist.js';
import { LIMITS, SHARD_TRIALS, changeHash, currentAttr, docParts, makeVoucher, seal, shardKeyOf, wireRecord, writeRecords, writeShardRecords, type TrialRecord } from './schema.js';

export class Writer {
  /** `gapOf`: the least time between two gossip messages of a study (pacing.ts; `OUTBOX_GAP_MS` without a network). */
  constructor(
    private readonly ctx: Ctx,
    private readonly gapOf: (r: Replica) => number = () => OUTBOX_GAP_MS,
  ) {}

  newOwnTrial(r: Replica, template: TrialTemplate, claim: { id: string; c: number; ca: number } | null): TrialRecord {
    const state = template.state ?? 'RUNNING';
    checkNewTrialState(state);
    checkAttrs(template.userAttrs);
    checkAttrs(template.systemAttrs);
    const seq = r.seq++;
    const rec: TrialRecord = {
      k: 'trial',
      st: r.studyId,
      id: `${this.ctx.peerId}:${seq}`,
      o: this.ctx.peerId,
      q: seq,
      v: 0,
      s: state,
      p: { ...(template.params ?? {}) },
      d: { ...(template.distributions ?? {}) },
      vals: null,
      iv: [],
      ua: copyAll(template.userAttrs),
      sa: copyAll(template.systemAttrs),
      t0: state === 'RUNNING' ? Date.now() : null,
      t1: null,
      claim: claim?.id ?? null,
      c: claim?.c ?? r.view.nextClaim(),
      ca: claim?.ca ?? Date.now(),
    };
    r.dirty.add(rec.id);
    this.logRenumbered(r, r.view.put([rec]));
    this.ctx.changed(r.studyId);
    this.scheduleFlush(r, true);
    return rec;
  }

  /** Applies a write to one of this peer's own trials in memory; the next flush signs and sends it. */
  mutate(r: Replica, trialId: string, fn: (x: TrialRecord) => void): void {
    const cur = r.view.records.get(trialId);
    if (!cur) throw new StorageError(`no trial "${trialId}" in study "${r.name}"`);
    if (cur.o !== this.ctx.peerId) throw new StorageError(`trial ${r.view.numberOf(trialId)} belongs to peer ${cur.o}; only its owner can change it`);
    const next: TrialRecord = { ...cur };
    fn(next);
    const size = pack(wireRecord(next)).byteLength;
    if (size > LIMITS.recordBytes - 256) {
      throw new StorageError(`trial ${r.view.numberOf(trialId)} would take ${size} bytes with this write; a trial record is limited to ${LIMITS.recordBytes - 256} bytes (keep attrs and intermediate values small)`);
    }
    if (!r.dirty.has(trialId)) next.v = cur.v + 1;
    else next.v = cur.v;
    r.view.put([next]);
    r.dirty.add(trialId);
    this.ctx.changed(r.studyId);
  }

  /**
   * Urgent writes (a new trial, its params) are committed at the end of the tick, unless a gossip
   * message of this study left less than the gap ago (`gapOf`): then nothing could carry them sooner
   * than the next message, so they are committed right before it leaves. A trial that finishes by
   * then (a fast objective under load) is sent as one record instead of two (RUNNING, then final):
   * half the signatures to make and check, half the changes for every peer to apply.
   */
  scheduleFlush(r: Replica, urgent: boolean): void {
    if (this.ctx.closed) return;
    if (urgent) {
      if (r.outboxTimer && !r.flushImmediate) {
        r.flushOnPublish = true;
        return;
      }
      r.flushImmediate ??= setImmediate(() => {
        r.flushImmediate = null;
        void this.flush(r, false).catch(() => {});
      });
    } else if (!r.flushTimer && !r.flushImmediate) {
      r.flushTimer = setTimeout(() => {
        r.flushTimer = null;
        void this.flush(r, false).catch(() => {});
      }, this.ctx.opts.intermediateMs);
      r.flushTimer.unref();
    }
  }

  /** Signs and commits the dirty trials (one change per shard, split under the record limit), sends and persists. */
  async flush(r: Replica, sync: boolean, closing = false): Promise<void> {
    if (r.flushImmediate) clearImmediate(r.flushImmediate);
    if (r.flushTimer) clearTimeout(r.flushTimer);
    r.flushImmediate = r.flushTimer = null;
    r.flushOnPublish = false;
    if (this.ctx.closed && !closing) return;
    if (r.dirty.size > 0) {
      const byShard = new Map<string, string[]>();
      for (const id of r.dirty) {
        const rec = r.view.records.get(id)!;
        const k = shardKeyOf(rec.o, rec.q);
        let l = byShard.get(k);
        if (!l) byShard.set(k, (l = []));
        l.push(id);
      }
      r.dirty.clear();
      for (const [k, ids] of byShard) {
        const s = r.shard(k)!;
        if (!s.doc && s.changes > 0) await this.reopen(r, s);
        let batch = new Map<string, Uint8Array>();
        let bytes = 0;
        const commit = (): void => {
          const c = writeShardRecords(s.open(), batch);
          if (c) {
            s.changes++;
            s.unsaved.push(c);
            this.send(r, k, c);
          }
          batch = new Map();
          bytes = 0;
        };
        for (const id of ids) {
          const sealed = seal(this.ctx.key, r.view.records.get(id)!);
          if (bytes + sealed.byteLength > LIMITS.recordBytes && batch.size > 0) commit();
          batch.set(id, sealed);
          bytes += sealed.byteLength;
        }
        commit();
        s.refreshHeads();
        r.invalidateDigest();
      }
    }
    await this.persist(r, sync);
  }

  /** A sealed shard written to again (an attr on a finished trial): its document comes back from disk. */
  async reopen(r: Replica, s: Shard): Promise<void> {
    const changes = await this.ctx.db.shardChanges(r.studyId, s.key);
    if (s.doc) return;
    const h = s.open();
    h.applyChanges(changes);
    s.sealed = false;
    s.refreshHeads();
  }

  /** Study attrs: last writer (by time, then writer id) wins; newer than what it replaces even within one ms. */
  writeAttr(r: Replica, kind: 'u' | 's', key: string, value: unknown): void {
    if (!r.meta) throw new StorageError(`study ${r.studyId} has not arrived from peers yet`);
    const k = `${kind}:${key}`;
    const h = r.study;
    const prev = currentAttr(h, docParts(h).attrs!, k);
    const ts = Math.max(Date.now(), (prev?.ts ?? 0) + (prev && prev.by >= this.ctx.peerId ? 1 : 0));
    const sealed = seal(this.ctx.key, { k: 'attr', st: r.studyId, key: k, val: copyAttr(value), by: this.ctx.peerId, ts });
    const change = writeRecords(h, new Map(), new Map([[k, sealed]]));
    r.studyDirty = true;
    r.invalidateDigest();
    r.refreshStudy();
    void this.persist(r, false).catch(() => {});
    if (change) this.send(r, null, change);
  }

  /** Gossips a local change: at the end of the tick, or with the next ones once the gap (`gapOf`, at least `OUTBOX_GAP_MS`) has passed since the last message. */
  send(r: Replica, shard: string | null, change: Uint8Array): void {
    if (!this.ctx.node || this.ctx.closed) return;
    if (shard === null) r.outbox.c.push(change);
    else {
      let l = r.outbox.t.get(shard);
      if (!l) r.outbox.t.set(shard, (l = []));
      l.push(change);
    }
    r.outbox.bytes += change.byteLength;
    r.outbox.n++;
    // Well inside what receivers take in one message (inbox.ts: 64 shards, 500 changes, 1 MiB).
    if (r.outbox.bytes > 512 * 1024 || r.outbox.n >= 400 || r.outbox.t.size >= 64) this.publishOutbox(r);
    else r.outboxTimer ??= setTimeout(() => this.publishOutbox(r), Math.max(0, r.lastPublish + this.gapOf(r) - Date.now()));
  }

  publishOutbox(r: Replica): void {
    if (r.flushOnPublish) {
      r.flushOnPublish = false;
      // Commits and queues the dirty trials before this message leaves (synchronously, unless a sealed
      // shard has to come back from disk first: then they follow in the next message).
      void this.flush(r, false).catch(() => {});
    }
    if (r.outboxTimer) clearTimeout(r.outboxTimer);
    r.outboxTimer = null;
    const { c, t } = r.outbox;
    r.outbox = { c: [], t: new Map(), bytes: 0, n: 0 };
    if ((c.length === 0 && t.size === 0) || !this.ctx.node || this.ctx.closed) return;
    r.lastPublish = Date.now();
    const msg: { c?: Uint8Array[]; t?: ([string, Uint8Array[]] | [string, Uint8Array[], Uint8Array])[] } = {};
    if (c.length) msg.c = c;
    // Each shard's changes go with this peer's voucher over their hashes (schema.ts makeVoucher): one
    // signature to make here and one to check per receiver, in place of one per record in them.
    if (t.size) {
      msg.t = [...t.entries()].map(([key, changes]) => {
        const v = makeVoucher(this.ctx.key, r.studyId, key, changes.map(changeHash));
        return v ? [key, changes, v] : [key, changes];
      });
    }
    void this.ctx.node.publish(topicOf(r.studyId), pack(msg));
  }

  /** Merged changes are not urgent (peers still hold them): batch their writes. */
  persistSoon(r: Replica): void {
    if (r.persistTimer || this.ctx.closed) return;
    r.persistTimer = setTimeout(() => {
      r.persistTimer = null;
      if (!this.ctx.closed && this.ctx.replicas.get(r.studyId) === r) void this.persist(r, false).catch(() => {});
    }, 50);
  }

  /**
   * Queues what is unsaved (study document, shard changes, shards sealed now) for level, in order.
   * Group commit: while a write of this study is on its way, later calls share one queued write that
   * takes everything unsaved when its turn comes (synced if any of them asked), so trials finished
   * during one fsync share the next instead of each waiting for its own.
   */
  persist(r: Replica, sync: boolean): Promise<void> {
    const queued = r.queuedWrite;
    if (queued) {
      this.ctx.count('persist:grouped');
      queued.sync ||= sync;
      return queued.done;
    }
    if (r.writesInFlight === 0) {
      const write = this.snapshot(r, sync);
      return write ? this.track(r, this.ctx.enqueueWrite(`study ${r.name}`, write)) : Promise.resolve();
    }
    const job: { sync: boolean; done: Promise<void> } = { sync, done: Promise.resolve() };
    r.queuedWrite = job;
    job.done = this.track(
      r,
      this.ctx.enqueueWrite(`study ${r.name}`, () => {
        r.queuedWrite = null;
        return this.snapshot(r, job.sync)?.() ?? Promise.resolve();
      }),
    );
    return job.done;
  }

  private track(r: Replica, p: Promise<void>): Promise<void> {
    r.writesInFlight++;
    const done = (): void => void r.writesInFlight--;
    p.then(done, done);
    return p;
  }

  /** Takes what is unsaved now (sealing full finished shards); returns the write that stores it (null: none needed). */
  private snapshot(r: Replica, sync: boolean): (() => Promise<void>) | null {
    const meta = r.studyDirty && r.meta ? r.study.save() : null;
    r.studyDirty = false;
    const changes = new Map<string, Uint8Array[]>();
    const sealed = new Map<string, SealedWrite>();
    const evict: Shard[] = [];
    const dirtyShards = new Set([...r.dirty].map((id) => shardKeyOf(r.view.records.get(id)!.o, r.view.records.get(id)!.q)));
    for (const s of r.shards.values()) {
      if (s.unsaved.length === 0) continue;
      changes.set(s.key, s.unsaved);
      s.unsaved = [];
      // Only shards that just changed can have become sealable.
      if (s.doc && !dirtyShards.has(s.key) && r.sealable(s)) {
        const ids: string[] = [];
        for (let q = s.id.bucket * SHARD_TRIALS; q < (s.id.bucket + 1) * SHARD_TRIALS; q++) ids.push(`${s.id.owner}:${q}`);
        // Another owner's shard taken by gossip is sealed from its deferred changes, never applied.
        let done = s.sealDeferred(ids);
        if (done) this.ctx.count('seal:from-deferred');
        else {
          const h = s.handle!;
          const records: Uint8Array[] = [];
          for (const id of ids) {
            const v = h.get('_root', id);
            if (v instanceof Uint8Array) records.push(v);
          }
          done = { records, history: h.getChanges([]) };
        }
        s.sealed = true;
        sealed.set(s.key, { heads: s.heads, changes: s.changes, ...done });
        evict.push(s);
      }
    }
    const nothing = !meta && changes.size === 0 && sealed.size === 0;
    // Nothing new: a sync write is needed only if an earlier write went without one.
    if (nothing && !sync) return null;
    if (nothing && r.synced) return async () => {};
    r.synced = sync;
    return async () => {
      await this.ctx.db.write(r.studyId, r.name, { meta, changes, sealed }, sync);
      // Sealed shards leave memory once on disk (their records stay in the view).
      for (const s of evict) if (s.sealed && s.unsaved.length === 0) s.evict();
    };
  }

  /** Logs display numbers that a merge changed (the documented race, or a healed partition). */
  logRenumbered(r: Replica, changes: { trialId: string; from: number; to: number }[]): void {
    if (changes.length === 0) return;
    this.ctx.count('numbers:changed');
    // Finished trials whose number moved: numbers a user may already have read in a log (issue 8).
    for (const c of changes) {
      const state = r.view.records.get(c.trialId)?.s;
      if (state && isFinished(state)) this.ctx.count('numbers:moved-finished');
    }
    // The line only when it is printed: in a busy swarm nearly every merged message renumbers a tail.
    if (!logsAt('info')) return;
    const shown = changes.slice(0, 10).map((c) => `#${c.from} -> #${c.to} (${c.trialId.slice(-12)})`).join(', ');
    logger.info(`Study ${r.name}: ${changes.length} trial number(s) changed after merging trials created concurrently elsewhere (rule: rank by claimed number, then trial id): ${shown}${changes.length > 10 ? ', ...' : ''}`);
  }
}

function copyAll(attrs: Readonly<Record<string, unknown>> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(attrs ?? {})) out[k] = copyAttr(v);
  return out;
}

