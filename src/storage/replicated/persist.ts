/**
 * The replica on disk (format 3): one level database per data directory (level allows one process
 * per directory, which is also what keeps two processes from sharing a peer identity). Per study it
 * keeps the study document (meta and attrs, saved whole: it is small and rarely written) and, per
 * trial shard, the raw Automerge changes in the order they were applied (append-only batches), so
 * a peer catching up is served straight from disk without loading any document. A sealed shard
 * keeps its final records (`r/`), so loading it builds no Automerge document at all, and its whole
 * history as one batch outside the study's key range (`z/`), so loading never reads it.
 * The stable libp2p identity lives next to it in `peer.key` (0600).
 *
 * Keys: `format` = "3"; `s/<study>/name`; `s/<study>/meta`; `s/<study>/c/<shard>/<seq>` = msgpack
 * list of changes; `s/<study>/r/<shard>` = msgpack { h: heads, n: changes, r: [record bytes], b }
 * where b is how many `c/` batches the seal covers; `z/<study>/<shard>` = msgpack list of every change
 * of a shard sealed here (written with its `r/`, its `c/` batches deleted in the same write);
 * `s/<study>/v/<shard>` = the owner's voucher this replica took the shard's changes under (schema.ts
 * `openVoucher`; read only to serve the shard); `del/<study>`.
 *
 * Format 2 (sealed shards kept their history as `c/` batches, so loading read all of it) is upgraded
 * in place when opened: per sealed shard, one atomic write moves its batches to `z/`. A database of
 * format 1 (one Automerge document per study, peertune before the sharded layout), or of a format newer
 * than this peertune's, is refused with a message naming both versions.
 */
import { readFile, writeFile, chmod, stat } from 'node:fs/promises';
import path from 'node:path';
import { Level } from 'level';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { StorageError } from '../storage.js';
import { ensurePrivateDir } from '../../security/local-files.js';
import { pack, unpackUntrusted } from '../../net/wire.js';
// Signing (our records, gossipsub messages) and gossipsub's signature checks through cached key objects.
import '../../net/ed25519.js';

export const REPLICA_FORMAT = 3;
/** An older layout this peertune upgrades when it opens it. */
const UPGRADABLE_FORMAT = 2;

export interface StoredShard<R> {
  key: string;
  /** Batches of raw changes, in the order they were appended (the history first, when it is read). */
  batches: Uint8Array[];
  /** A sealed shard: its final records as the caller decoded them, and their size in bytes. */
  sealed: { heads: string[]; changes: number; records: R; bytes: number } | null;
}

export interface StoredStudy<R> {
  studyId: string;
  name: string;
  meta: Uint8Array | null;
  shards: Map<string, StoredShard<R>>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A shard sealed in a write: its heads and change count, final records, and every change it holds. */
export interface SealedWrite {
  heads: string[];
  changes: number;
  records: Uint8Array[];
  history: Uint8Array[];
}

type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

export class ReplicaDb {
  private readonly seq = new Map<string, number>();
  private readonly named = new Set<string>();

  private constructor(
    private readonly db: Level<string, Uint8Array>,
    private readonly dataDir: string,
  ) {}

  static async open(dataDir: string): Promise<ReplicaDb> {
    const db = new Level<string, Uint8Array>(path.join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (e) {
      const cause = (e as { cause?: Error }).cause;
      const msg = cause?.message ?? (e as Error).message;
      if (/lock/i.test(msg)) {
        throw new StorageError(`data directory ${dataDir} is in use by another process (level allows one process per directory): ${msg}`);
      }
      throw new StorageError(`cannot open the replica database in ${dataDir}: ${msg}. If it is corrupted, move ${path.join(dataDir, 'db')} aside; peers will resend the history.`);
    }
    const r = new ReplicaDb(db, dataDir);
    try {
      await r.checkFormat();
    } catch (e) {
      await db.close().catch(() => {});
      throw e;
    }
    return r;
  }

  private async checkFormat(): Promise<void> {
    const v = await this.db.get('format').catch(() => undefined);
    if (v !== undefined && v !== null) {
      const n = Number(dec.decode(v));
      if (n === UPGRADABLE_FORMAT) return this.upgrade();
      if (n !== REPLICA_FORMAT) {
        throw new StorageError(`data directory ${this.dataDir} holds a replica of format ${dec.decode(v).slice(0, 20)}; this peertune reads format ${REPLICA_FORMAT}. Use the peertune version that wrote it, or move ${path.join(this.dataDir, 'db')} aside to start empty (peers resend their trials).`);
      }
      return;
    }
    for await (const key of this.db.keys({ limit: 1 })) {
      throw new StorageError(
        `data directory ${this.dataDir} holds a replica of format 1 (one Automerge document per study, peertune before the sharded layout); this peertune reads format ${REPLICA_FORMAT}. ` +
          `Export what you need with the version that wrote it (peertune export), then move ${path.join(this.dataDir, 'db')} aside to start empty; peers running format ${REPLICA_FORMAT} resend their trials. (first key: ${key.slice(0, 40)})`,
      );
    }
    await this.db.put('format', enc.encode(String(REPLICA_FORMAT)));
  }

  /**
   * Format 2 -> 3: each sealed shard's `c/` batches become its `z/` history, one atomic write per
   * shard, then the format key. Interrupted, it resumes on the next open (moved shards have no `c/`
   * batches left to move).
   */
  private async upgrade(): Promise<void> {
    const batchKeys = new Map<string, string[]>(); // `${study}/${shard}` -> batch keys in order
    const sealedKeys: string[] = [];
    for await (const key of this.db.keys({ gte: 's/', lt: 's/~' })) {
      const parts = key.split('/');
      const k = `${parts[1]}/${parts[3]}`;
      if (parts[2] === 'c' && parts.length === 5) {
        let l = batchKeys.get(k);
        if (!l) batchKeys.set(k, (l = []));
        l.push(key);
      } else if (parts[2] === 'r' && parts.length === 4) sealedKeys.push(key);
    }
    for (const rKey of sealedKeys) {
      const parts = rKey.split('/');
      const keys = batchKeys.get(`${parts[1]}/${parts[3]}`) ?? [];
      const value = await this.db.get(rKey).catch(() => undefined);
      if (!value || keys.length === 0) continue;
      let o: Record<string, unknown>;
      try {
        o = unpackUntrusted(value, { maxBytes: 1 << 30, maxDepth: 4, maxNodes: 1_000_000 }) as Record<string, unknown>;
      } catch {
        continue; // a damaged cache: the shard keeps loading from its changes
      }
      if (o['b'] !== keys.length) continue; // written to after its seal: it loads from its changes
      const history: Uint8Array[] = [];
      for (const b of await this.db.getMany(keys)) {
        const list = b ? unpackUntrusted(b, { maxBytes: 1 << 30, maxDepth: 2, maxNodes: 10_000_000 }) : null;
        if (Array.isArray(list)) for (const c of list) if (c instanceof Uint8Array) history.push(c);
      }
      const ops: Op[] = keys.map((key) => ({ type: 'del', key }));
      ops.push({ type: 'put', key: `z/${parts[1]}/${parts[3]}`, value: pack(history) });
      ops.push({ type: 'put', key: rKey, value: pack({ ...o, b: 0 }) });
      await this.db.batch(ops, { sync: false } as never);
    }
    // The deleted batches stay in the table files (and in every scan of `s/`) until compacted.
    if (sealedKeys.length) await (this.db as unknown as { compactRange(a: string, b: string): Promise<void> }).compactRange('s/', 's/~');
    await this.db.put('format', enc.encode(String(REPLICA_FORMAT)), { sync: true } as never);
  }

  /**
   * Everything stored, in one pass over the studies' range, without reading the history of sealed
   * shards: their final records are enough to load (`z/` is read only to serve a peer that lacks the
   * shard, to reopen it, or when its records do not decode). Each shard's records are handed to
   * `decode` as they are read (null: unreadable), so the raw bytes of a big replica are never all
   * held at once.
   */
  async loadAll<R>(decode: (records: Uint8Array[]) => R | null): Promise<{ studies: StoredStudy<R>[]; deleted: Set<string> }> {
    const studies = new Map<string, StoredStudy<R>>();
    const deleted = new Set<string>();
    for await (const key of this.db.keys({ gte: 'del/', lt: 'del/~' })) deleted.add(key.slice(4));
    const covered = new Map<StoredShard<R>, number>(); // sealed shard -> the `c/` batches its seal covers
    const shardOf = (s: StoredStudy<R>, k: string): StoredShard<R> => {
      let sh = s.shards.get(k);
      if (!sh) s.shards.set(k, (sh = { key: k, batches: [], sealed: null }));
      return sh;
    };
    for await (const [key, value] of this.db.iterator({ gte: 's/', lt: 's/~', fillCache: false } as never)) {
      const parts = key.split('/');
      const id = parts[1]!;
      if (parts[2] === 'v' || deleted.has(id)) continue; // vouchers are read when the shard is served
      let s = studies.get(id);
      if (!s) studies.set(id, (s = { studyId: id, name: '', meta: null, shards: new Map() }));
      if (parts[2] === 'c' && parts.length === 5) {
        shardOf(s, parts[3]!).batches.push(value); // keys sort by their zero-padded sequence
        const k = `${id}/${parts[3]}`;
        this.seq.set(k, Math.max(this.seq.get(k) ?? 0, parseInt(parts[4]!, 10) + 1));
      } else if (parts[2] === 'name') {
        s.name = dec.decode(value);
        this.named.add(id);
      } else if (parts[2] === 'meta') s.meta = value;
      else if (parts[2] === 'r' && parts.length === 4) {
        const sh = shardOf(s, parts[3]!);
        try {
          const o = unpackUntrusted(value, { maxBytes: 1 << 30, maxDepth: 4, maxNodes: 1_000_000 }) as { h: string[]; n: number; r: Uint8Array[]; b: number };
          if (!Array.isArray(o.h) || !Array.isArray(o.r) || typeof o.n !== 'number') continue;
          const records = decode(o.r);
          if (records === null) continue; // a damaged cache: the shard loads from its changes instead
          sh.sealed = { heads: o.h, changes: o.n, records, bytes: o.r.reduce((n, b) => n + b.byteLength, 0) };
          covered.set(sh, o.b);
        } catch {
          /* as above */
        }
      }
    }
    for (const s of studies.values()) {
      for (const sh of s.shards.values()) {
        if (sh.sealed && covered.get(sh) === sh.batches.length) {
          sh.batches = [];
          continue;
        }
        // Open, written to after its seal, or its records unreadable: it loads from its changes.
        sh.sealed = null;
        const history = await this.db.get(`z/${s.studyId}/${sh.key}`).catch(() => undefined);
        if (history) sh.batches.unshift(history);
      }
    }
    return { studies: [...studies.values()], deleted };
  }

  private nameOp(studyId: string, name: string, ops: Op[]): void {
    if (this.named.has(studyId)) return;
    this.named.add(studyId);
    ops.push({ type: 'put', key: `s/${studyId}/name`, value: enc.encode(name) });
  }

  /**
   * One atomic batch: the study document (when it changed), new changes per shard, and shards sealed
   * now: their final records and, as `history`, every change they hold, which replaces their `c/`
   * batches (the new changes of a shard sealed in this write are in its history).
   */
  async write(
    studyId: string,
    name: string,
    w: { meta?: Uint8Array | null; changes?: Map<string, Uint8Array[]>; sealed?: Map<string, SealedWrite> },
    sync: boolean,
  ): Promise<void> {
    const ops: Op[] = [];
    this.nameOp(studyId, name, ops);
    if (w.meta) ops.push({ type: 'put', key: `s/${studyId}/meta`, value: w.meta });
    for (const [shard, list] of w.changes ?? []) {
      if (list.length === 0 || w.sealed?.has(shard)) continue;
      const k = `${studyId}/${shard}`;
      const seq = this.seq.get(k) ?? 0;
      this.seq.set(k, seq + 1);
      ops.push({ type: 'put', key: `s/${studyId}/c/${shard}/${String(seq).padStart(10, '0')}`, value: pack(list) });
    }
    // `b`: the change batches the seal covers (none: the history moved to `z/`); a shard written to
    // after its seal has batches again and loads from its history and them.
    for (const [shard, s] of w.sealed ?? []) {
      const k = `${studyId}/${shard}`;
      const prefix = `s/${studyId}/c/${shard}/`;
      for (let seq = 0; seq < (this.seq.get(k) ?? 0); seq++) ops.push({ type: 'del', key: `${prefix}${String(seq).padStart(10, '0')}` });
      this.seq.delete(k);
      ops.push({ type: 'put', key: `z/${studyId}/${shard}`, value: pack(s.history) });
      ops.push({ type: 'put', key: `s/${studyId}/r/${shard}`, value: pack({ h: s.heads, n: s.changes, r: s.records, b: 0 }) });
    }
    if (ops.length === 0 && !sync) return;
    await this.db.batch(ops, { sync } as never);
  }

  /** Every change of a shard, in applied order (for serving a peer that lacks the shard). */
  async shardChanges(studyId: string, shard: string): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    const prefix = `s/${studyId}/c/${shard}/`;
    const history = await this.db.get(`z/${studyId}/${shard}`).catch(() => undefined);
    if (history) {
      const list = unpackUntrusted(history, { maxBytes: 1 << 30, maxDepth: 2, maxNodes: 10_000_000 });
      if (Array.isArray(list)) for (const c of list) if (c instanceof Uint8Array) out.push(c);
    }
    for await (const v of this.db.values({ gte: prefix, lt: prefix + '~' })) {
      const list = unpackUntrusted(v, { maxBytes: 1 << 30, maxDepth: 2, maxNodes: 10_000_000 });
      if (Array.isArray(list)) for (const c of list) if (c instanceof Uint8Array) out.push(c);
    }
    return out;
  }

  /** The voucher stored for a shard (sync-adapter.ts), if any. */
  async voucher(studyId: string, shard: string): Promise<Uint8Array | undefined> {
    return (await this.db.get(`s/${studyId}/v/${shard}`).catch(() => undefined)) ?? undefined;
  }

  /** The shards of a study that have a stored voucher. */
  async vouchedShards(studyId: string): Promise<Set<string>> {
    const out = new Set<string>();
    const prefix = `s/${studyId}/v/`;
    for await (const key of this.db.keys({ gte: prefix, lt: prefix + '~' })) out.add(key.slice(prefix.length));
    return out;
  }

  async putVoucher(studyId: string, shard: string, voucher: Uint8Array): Promise<void> {
    await this.db.put(`s/${studyId}/v/${shard}`, voucher);
  }

  async markDeleted(studyId: string): Promise<void> {
    const ops: Op[] = [];
    for (const prefix of [`s/${studyId}/`, `z/${studyId}/`]) for await (const key of this.db.keys({ gte: prefix, lt: `${prefix}~` })) ops.push({ type: 'del', key });
    ops.push({ type: 'put', key: `del/${studyId}`, value: new Uint8Array([1]) });
    await this.db.batch(ops, { sync: true } as never);
  }

  async sizeOnDisk(): Promise<number> {
    let total = 0;
    for await (const [k, v] of this.db.iterator()) total += k.length + v.byteLength;
    return total;
  }

  /** Raw access for the local-data tests (corrupting a stored value on purpose). */
  get level(): Level<string, Uint8Array> {
    return this.db;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** Creates the data directory (0700, security/local-files.ts) and loads or creates the peer's stable key (`peer.key`, 0600). */
export async function loadOrCreateKey(dataDir: string): Promise<PrivateKey> {
  try {
    await ensurePrivateDir(dataDir);
  } catch (e) {
    throw new StorageError((e as Error).message);
  }
  const file = path.join(dataDir, 'peer.key');
  let bytes: Buffer | null = null;
  try {
    bytes = await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StorageError(`cannot read the peer key ${file}: ${(e as Error).message}`);
  }
  if (bytes) {
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) await chmod(file, 0o600);
    try {
      return privateKeyFromProtobuf(bytes) as unknown as PrivateKey;
    } catch (e) {
      throw new StorageError(`the peer key ${file} is corrupted (${(e as Error).message}); move it aside to start as a new peer`);
    }
  }
  const key = await generateKeyPair('Ed25519');
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' });
  return key as unknown as PrivateKey;
}
