/**
 * Checkpoints across peers: serving blobs that valid records reference, fetching a checkpoint from
 * whichever peer holds it, and copying each of this peer's checkpoints to `replicas` other peers
 * while it is alive (a copy counts only once the receiver has verified every blob).
 *
 * Copies are asked for by the owner over `/peertune/blob-copy/1.0.0`: it names a checkpoint of one of
 * its trials; the receiver looks the reference up in its own replica (so it fetches only what a valid
 * record it holds references, within its store's limits), pulls the blobs from the owner over the blob
 * protocol (hash-checked), and answers with the hash. The owner then adds the receiver to the
 * reference's `holders`. Receivers are chosen by rendezvous hashing of the checkpoint hash over the
 * connected peers of the study, so the same peers keep the copies of one checkpoint.
 *
 * Holders drop a copy when no kept reference needs it any more (the owner's keep rules removed it):
 * a periodic collection, which leaves blobs younger than a minute alone (a local save in progress),
 * and also deletes partial downloads no kept reference needs.
 *
 * What a member asking for copies can cost a receiver (issue 15): disk, at most the view's
 * `copyQuotaBytes` of blobs per owner and study (counted from the blobs on disk, whole or partial, that
 * the owner's references need, plus copies in flight; past it the request is refused, `checkpoint:copy-quota`,
 * not charged: an honest owner with many checkpoints meets it too); inbound copy slots, at most
 * COPIES_PER_PEER requests per peer and COPIES_AT_ONCE in all (more are answered busy at once,
 * `checkpoint:copy-busy`), each bounded by `copyDeadlineMs` of its size (a copy trickled slower is cut,
 * its partial file dropped, and charged to the owner: `blob-copy:deadline`).
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { logger } from '../logging.js';
import { frame, pack, readFrames, unpackUntrusted, asObject, WireError } from '../net/wire.js';
import { BlobError, isBlobHash, type BlobStore } from './blob-store.js';
import { CheckpointError, missingBlobsOf } from './manager.js';
import type { CheckpointRef } from './refs.js';
import { fetchBlob, serveBlobs, type BlobHost } from './transfer.js';

export const COPY_PROTOCOL = '/peertune/blob-copy/1.0.0';
const HEADER_LIMIT = 1024;
/** A receiver waits this long for the record the owner names to reach its replica. */
const RECORD_WAIT_MS = 10_000;
/** After a failed copy to a peer, that peer is not asked again for this long. */
const RETRY_AFTER_MS = 10_000;
/** Blobs younger than this survive a collection (a local save between its put and its record). */
const COLLECT_GRACE_MS = 10_000;
/** Collections run at most this often, and only after the references changed. */
const COLLECT_EVERY_MS = 5000;
/**
 * Copy requests served at once for one peer, and for all peers (the total is far above what honest
 * owners ask at once, so that a few identities trickling copies cannot take every slot).
 */
export const COPIES_PER_PEER = 2;
export const COPIES_AT_ONCE = 32;
/** Default bytes of checkpoint copies held for one owner in one study (PeerStorageOptions.ownerQuota.checkpointBytes). */
export const DEFAULT_COPY_QUOTA_BYTES = 4 * 1024 ** 3;

/**
 * How long a copy of `bytes` may take, on both sides: 30 s plus 1 s per 10 MiB (a slow link's pace).
 * The owner waits this long for the confirmation; the receiver cuts a copy that takes longer.
 */
export function copyDeadlineMs(bytes: number): number {
  return 30_000 + Math.ceil(bytes / (10 << 20)) * 1000;
}

/** A checkpoint reference with where it lives. */
export interface PlacedRef {
  studyId: string;
  owner: string;
  ref: CheckpointRef;
}

/** What the swarm needs from the replica. */
export interface SwarmView {
  readonly selfId: string;
  /** Every kept checkpoint reference of every study in the replica. */
  refs(): PlacedRef[];
  /** A trial's references and its owner, or null when the replica does not hold the trial. */
  trial(studyId: string, trialId: string): { owner: string; refs: CheckpointRef[] } | null;
  /** Connected peers that take part in the study, most useful first. */
  candidates(studyId: string): string[];
  connected(peer: string): boolean;
  /** Records `peer` as a holder of checkpoint `seq` of this peer's trial. */
  addHolder(studyId: string, trialId: string, seq: number, peer: string): void;
  count(reason: string): void;
  /** A refused or broken request, charged to the peer that sent it. */
  reject(peer: string, reason: string): void;
  /** Bytes of copies this peer holds for one owner in one study at most (default DEFAULT_COPY_QUOTA_BYTES). */
  readonly copyQuotaBytes?: number;
}

export class CheckpointSwarm {
  private host: BlobHost | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Set<string>();
  private readonly failedAt = new Map<string, number>();
  /** Hashes of the files each manifest lists (manifests are immutable, so this never goes stale). */
  private readonly manifestFiles = new Map<string, Set<string>>();
  private referenced: Set<string> | null = null;
  private lastCollect = 0;
  private changedSinceCollect = true;
  private stopped = false;
  /** Copy requests being answered, per asking peer, and in all. */
  private readonly answering = new Map<string, number>();
  private answeringTotal = 0;
  /** Bytes of copies in flight per `<study> <owner>` (counted against the quota until they land). */
  private readonly reserved = new Map<string, number>();

  constructor(
    readonly store: BlobStore,
    private readonly view: SwarmView,
  ) {}

  /** Serves blobs and copy requests on `host`, and starts copying this peer's checkpoints. */
  async start(host: BlobHost, sweepMs = 2000): Promise<void> {
    this.host = host;
    await serveBlobs(host, this.store, {
      mayServe: (hash) => this.isReferenced(hash),
      onReject: (peer, reason) => this.view.reject(peer, `blob:${reason}`),
    });
    await host.handle(
      COPY_PROTOCOL,
      ({ stream, connection }) => {
        const remote = connection.remotePeer.toString();
        // Slots: a peer past its share (or everyone past the total) is answered busy at once.
        if ((this.answering.get(remote) ?? 0) >= COPIES_PER_PEER || this.answeringTotal >= COPIES_AT_ONCE) {
          this.view.count('checkpoint:copy-busy');
          void stream.sink(one(frame(pack({ ok: false, e: 'busy: too many copies in progress; ask again later' })))).catch(() => stream.abort(new Error('busy')));
          return;
        }
        this.answering.set(remote, (this.answering.get(remote) ?? 0) + 1);
        this.answeringTotal++;
        void this.answerCopy(stream, remote)
          .catch((e) => {
            this.view.reject(remote, `blob-copy:${e instanceof WireError || e instanceof BlobError ? e.reason : 'stream'}`);
            stream.abort(e instanceof Error ? e : new Error(String(e)));
          })
          .finally(() => {
            const n = (this.answering.get(remote) ?? 1) - 1;
            if (n > 0) this.answering.set(remote, n);
            else this.answering.delete(remote);
            this.answeringTotal--;
          });
      },
      { maxInboundStreams: 4 },
    );
    this.timer = setInterval(() => void this.sweep(), sweepMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.kickTimer) clearTimeout(this.kickTimer);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const host = this.host;
    this.host = null;
    if (host) await Promise.all([host.unhandle(COPY_PROTOCOL).catch(() => {}), host.unhandle('/peertune/blob/1.0.0').catch(() => {})]);
  }

  private kickTimer: NodeJS.Timeout | null = null;

  /** This peer saved a checkpoint: look for copies to ask for now rather than at the next round. */
  kick(): void {
    if (this.kickTimer || this.stopped) return;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = null;
      void this.sweep();
    }, 20);
    this.kickTimer.unref();
  }

  /** The replica changed: the set of referenced blobs is recomputed when next needed. */
  invalidate(): void {
    this.referenced = null;
    this.changedSinceCollect = true;
  }

  private referencedHashes(): Set<string> {
    if (!this.referenced) {
      const s = new Set<string>();
      for (const { ref } of this.view.refs()) {
        s.add(ref.hash);
        for (const f of this.manifestFiles.get(ref.hash) ?? []) s.add(f);
      }
      this.referenced = s;
    }
    return this.referenced;
  }

  /** Whether a valid record references `hash` (directly, or as a file of a referenced directory held here). */
  private async isReferenced(hash: string): Promise<boolean> {
    if (this.referencedHashes().has(hash)) return true;
    // A directory's files: learn the manifests of referenced directories this peer holds.
    let learned = false;
    for (const { ref } of this.view.refs()) {
      if (ref.kind !== 'dir' || this.manifestFiles.has(ref.hash) || !(await this.store.has(ref.hash))) continue;
      try {
        this.manifestFiles.set(ref.hash, new Set((await this.store.blobsOf(ref)).map((b) => b.hash)));
        learned = true;
      } catch {
        // A manifest that does not parse is never served from.
      }
    }
    if (learned) this.referenced = null;
    return this.referencedHashes().has(hash);
  }

  /**
   * Brings `blobs` of `ref` into the store: from its holders first, then from any connected peer of
   * the study (a holder may have dropped out of the list but still have it).
   */
  async fetch(studyId: string | null, ref: CheckpointRef, blobs: { hash: string; size: number }[]): Promise<void> {
    const host = this.host;
    if (!host) throw new CheckpointError(`checkpoint ${ref.id} is not on this peer, and this peer is not connected to a swarm`);
    const self = this.view.selfId;
    const order = [...ref.holders.filter((h) => h !== self)];
    for (const p of studyId ? this.view.candidates(studyId) : []) if (!order.includes(p)) order.push(p);
    if (order.length === 0) throw new CheckpointError(`checkpoint ${ref.id} is held only by ${ref.holders.join(', ') || 'no peer'}, and no other peer is connected`);
    const errors: string[] = [];
    for (const b of blobs) {
      let done = false;
      for (const peer of order) {
        try {
          await fetchBlob(host, peer, b, this.store);
          done = true;
          break;
        } catch (e) {
          errors.push(`${peer.slice(-8)}: ${(e as Error).message}`);
          if (e instanceof BlobError && (e.reason === 'hash-mismatch' || e.reason === 'size-mismatch' || e.reason === 'too-large')) this.view.reject(peer, `blob:${e.reason}`);
        }
      }
      if (!done) throw new CheckpointError(`checkpoint ${ref.id}: blob ${b.hash.slice(0, 12)} could not be fetched (${errors.slice(-4).join('; ')})`);
    }
  }

  /** One round: ask for the copies this peer's checkpoints still lack, and collect dropped copies. */
  async sweep(): Promise<void> {
    if (this.stopped || !this.host) return;
    const self = this.view.selfId;
    const now = Date.now();
    for (const { studyId, owner, ref } of this.view.refs()) {
      if (owner !== self) continue;
      const want = ref.replicas ?? 1;
      const have = ref.holders.filter((h) => h !== self).length;
      if (have >= want || this.inFlight.has(ref.id)) continue;
      const peers = rendezvous(ref.hash, this.view.candidates(studyId).filter((p) => !ref.holders.includes(p)));
      const next = peers.find((p) => now - (this.failedAt.get(`${ref.id} ${p}`) ?? 0) > RETRY_AFTER_MS);
      if (!next) continue;
      this.inFlight.add(ref.id);
      void this.askCopy(next, studyId, ref)
        .then(() => {
          this.view.addHolder(studyId, ref.trialId, ref.seq, next);
          this.view.count('checkpoint:copied');
          logger.debug(`Checkpoint ${ref.id} (step ${ref.step ?? '-'}) is confirmed on peer ${next}.`);
        })
        .catch((e: Error) => {
          this.failedAt.set(`${ref.id} ${next}`, Date.now());
          this.view.count('checkpoint:copy-failed');
          logger.debug(`Copying checkpoint ${ref.id} to ${next} failed: ${e.message}`);
        })
        .finally(() => this.inFlight.delete(ref.id));
    }
    if (this.changedSinceCollect && now - this.lastCollect > COLLECT_EVERY_MS) {
      this.lastCollect = now;
      this.changedSinceCollect = false;
      await this.collect().catch((e: Error) => logger.warn(`Collecting unreferenced checkpoint blobs failed: ${e.message}`));
    }
  }

  /** Deletes blobs no kept reference needs (older than the grace period). */
  async collect(): Promise<string[]> {
    const needed = new Set<string>();
    for (const { ref } of this.view.refs()) {
      needed.add(ref.hash);
      if (ref.kind === 'dir' && (await this.store.has(ref.hash))) {
        try {
          for (const b of await this.store.blobsOf(ref)) needed.add(b.hash);
        } catch {
          // An unreadable manifest keeps nothing alive.
        }
      }
    }
    const dropped: string[] = [];
    const now = Date.now();
    for (const h of await this.store.list()) {
      if (needed.has(h)) continue;
      const st = await stat(this.store.pathOf(h)).catch(() => null);
      if (!st) continue;
      if (now - st.mtimeMs < COLLECT_GRACE_MS) {
        this.changedSinceCollect = true;
        continue;
      }
      await this.store.delete(h);
      dropped.push(h);
    }
    // Partial downloads no kept reference needs (a copy cut midway whose reference was dropped since)
    // would otherwise stay for good.
    for (const p of await this.store.partials()) {
      if (needed.has(p.hash)) continue;
      if (now - p.mtimeMs < COLLECT_GRACE_MS) {
        this.changedSinceCollect = true;
        continue;
      }
      await this.store.dropPartial(p.hash);
      dropped.push(p.hash);
    }
    return dropped;
  }

  /** Owner side: asks `peer` to copy `ref` and waits for its confirmation. */
  private async askCopy(peer: string, studyId: string, ref: CheckpointRef): Promise<void> {
    const host = this.host;
    if (!host) throw new CheckpointError('stopped');
    // Long enough for the receiver to pull the blob at a slow link's pace (about 10 MiB/s) and more.
    const timeoutMs = copyDeadlineMs(ref.size + (ref.manifestSize ?? 0));
    const stream = await host.dialProtocol(peerIdFromString(peer), COPY_PROTOCOL, { signal: AbortSignal.timeout(10_000) });
    try {
      const frames = readFrames(stream.source, HEADER_LIMIT);
      await stream.sink(
        (async function* () {
          yield frame(pack({ s: studyId, t: ref.trialId, q: ref.seq, h: ref.hash }));
        })(),
      );
      const answer = await withTimeout(frames.next(), timeoutMs, `${peer} did not confirm checkpoint ${ref.id} within ${timeoutMs} ms`);
      if (answer.done) throw new CheckpointError(`${peer} closed the copy stream without answering`);
      const a = asObject(unpackUntrusted(answer.value, { maxBytes: HEADER_LIMIT, maxNodes: 8 }), 'copy answer');
      if (a['ok'] !== true) throw new CheckpointError(`${peer} did not copy checkpoint ${ref.id}: ${typeof a['e'] === 'string' ? a['e'].slice(0, 200) : 'no reason'}`);
      if (a['h'] !== ref.hash) throw new CheckpointError(`${peer} confirmed another hash for checkpoint ${ref.id}`);
    } finally {
      await stream.close().catch(() => {});
    }
  }

  /** Receiver side: copies the named checkpoint from its owner, then confirms its hash. */
  private async answerCopy(stream: Stream, remote: string): Promise<void> {
    const frames = readFrames(stream.source, HEADER_LIMIT);
    const first = await withTimeout(frames.next(), 10_000, 'no copy request within 10 s');
    if (first.done) throw new WireError('empty', 'copy stream closed before its request');
    const req = asObject(unpackUntrusted(first.value, { maxBytes: HEADER_LIMIT, maxNodes: 8 }), 'copy request');
    const { s: studyId, t: trialId, q: seq, h: hash } = req;
    const reply = async (x: Record<string, unknown>): Promise<void> => {
      await stream.sink(
        (async function* () {
          yield frame(pack(x));
        })(),
      );
    };
    if (typeof studyId !== 'string' || typeof trialId !== 'string' || !Number.isSafeInteger(seq) || !isBlobHash(hash) || studyId.length > 200 || trialId.length > 300) {
      this.view.reject(remote, 'blob-copy:schema');
      return reply({ ok: false, e: 'bad request' });
    }
    // The record may still be on its way: wait for it (bounded), then check it names this blob.
    let ref: CheckpointRef | undefined;
    for (const end = Date.now() + RECORD_WAIT_MS; !this.stopped; ) {
      const t = this.view.trial(studyId, trialId);
      if (t && t.owner !== remote) {
        this.view.reject(remote, 'blob-copy:not-owner');
        return reply({ ok: false, e: 'only the owner of a trial asks for copies of its checkpoints' });
      }
      ref = t?.refs.find((r) => r.seq === seq && r.hash === hash);
      if (ref || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!ref) return reply({ ok: false, e: 'no valid record here references that checkpoint' });
    const host = this.host;
    if (!host) return reply({ ok: false, e: 'stopping' });
    const quota = this.view.copyQuotaBytes ?? DEFAULT_COPY_QUOTA_BYTES;
    const key = `${studyId} ${remote}`;
    const { bytes: held, partial } = await this.heldFor(studyId, remote);
    const deadlineMs = copyDeadlineMs(ref.size + (ref.manifestSize ?? 0));
    const deadline = AbortSignal.timeout(deadlineMs);
    let taken = 0;
    let current: string | null = null;
    try {
      for (let round = 0; round < 3; round++) {
        const need = await missingBlobsOf(this.store, ref);
        if (need.length === 0) {
          this.invalidate();
          this.view.count('checkpoint:copy-received');
          return reply({ ok: true, h: ref.hash });
        }
        for (const b of need) {
          // Sizes are checked as each blob is fetched (a directory's files are known from its manifest only).
          // A blob resumed from its partial file counts once: its partial bytes are part of its size.
          if (held - (partial.get(b.hash) ?? 0) + (this.reserved.get(key) ?? 0) + b.size > quota) {
            this.view.count('checkpoint:copy-quota');
            logger.debug(`Refused to copy checkpoint ${ref.id} of ${remote}: its copies here would pass ${quota} bytes in study ${studyId}.`);
            return reply({ ok: false, e: `quota: this peer holds at most ${quota} bytes of checkpoint copies per owner and study` });
          }
          this.reserved.set(key, (this.reserved.get(key) ?? 0) + b.size);
          taken += b.size;
          current = b.hash;
          await fetchBlob(host, remote, b, this.store, { signal: deadline });
          current = null;
        }
      }
    } catch (e) {
      if (!deadline.aborted) throw e;
      // Trickled past its deadline: the slot is freed, the partial bytes dropped, the owner charged.
      if (current) await this.store.dropPartial(current).catch(() => {});
      this.view.reject(remote, 'blob-copy:deadline');
      return reply({ ok: false, e: `the copy took longer than ${deadlineMs} ms` }).catch(() => {});
    } finally {
      const left = (this.reserved.get(key) ?? 0) - taken;
      if (left > 0) this.reserved.set(key, left);
      else this.reserved.delete(key);
    }
    return reply({ ok: false, e: 'the checkpoint is still incomplete after three rounds' });
  }

  /**
   * Bytes of blobs on disk here that `owner`'s kept references in `studyId` need, whole or partly
   * downloaded: the copies this peer holds for it (each blob once, whoever else also references it).
   */
  private async heldFor(studyId: string, owner: string): Promise<{ bytes: number; partial: Map<string, number> }> {
    const seen = new Set<string>();
    let bytes = 0;
    // Partial downloads count too: a copy interrupted midway keeps its bytes for a resume.
    const partial = new Map((await this.store.partials()).map((p) => [p.hash, p.size]));
    const add = async (hash: string): Promise<void> => {
      if (seen.has(hash)) return;
      seen.add(hash);
      bytes += (await this.store.sizeOf(hash)) ?? partial.get(hash) ?? 0;
    };
    for (const { studyId: s, owner: o, ref } of this.view.refs()) {
      if (s !== studyId || o !== owner) continue;
      await add(ref.hash);
      if (ref.kind !== 'dir' || !(await this.store.has(ref.hash))) continue;
      try {
        for (const b of await this.store.blobsOf(ref)) await add(b.hash);
      } catch {
        // An unreadable manifest holds nothing here.
      }
    }
    return { bytes, partial };
  }
}

async function* one(x: Uint8Array): AsyncGenerator<Uint8Array> {
  yield x;
}

/** Peers ordered by rendezvous (highest random weight) hashing on `key`. */
export function rendezvous(key: string, peers: readonly string[]): string[] {
  const w = (p: string) => createHash('sha256').update(`${key}\0${p}`).digest('hex');
  return [...peers].map((p) => [w(p), p] as const).sort((a, b) => (a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0)).map((x) => x[1]);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new CheckpointError(what)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}
