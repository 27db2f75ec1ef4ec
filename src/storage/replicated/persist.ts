/**
 * The replica on disk (format 2): one level database per data directory (level allows one process
 * per directory, which is also what keeps two processes from sharing a peer identity). Per study it
 * keeps the study document (meta and attrs, saved whole: it is small and rarely written) and, per
 * trial shard, the raw Automerge changes in the order they were applied (append-only batches), so
 * a peer catching up is served straight from disk without loading any document. A sealed shard
 * also keeps its final records (`r/`), so loading it builds no Automerge document at all.
 * The stable libp2p identity lives next to it in `peer.key` (0600).
 *
 * Keys: `format` = "2"; `s/<study>/name`; `s/<study>/meta`; `s/<study>/c/<shard>/<seq>` = msgpack
 * list of changes; `s/<study>/r/<shard>` = msgpack { h: heads, n: changes, r: [record bytes] };
 * `s/<study>/v/<shard>` = the owner's voucher this replica took the shard's changes under (schema.ts
 * `openVoucher`; read only to serve the shard); `del/<study>`. A database of format 1 (one Automerge
 * document per study, peertune before the sharded layout) is refused with a message naming both versions.
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

export const REPLICA_FORMAT = 2;

export interface StoredShard {
  key: string;
  /** Batches of raw changes, in the order they were appended. */
  batches: Uint8Array[];
  sealed: { heads: string[]; changes: number; records: Uint8Array[]; batches: number } | null;
}

export interface StoredStudy {
  studyId: string;
  name: string;
  meta: Uint8Array | null;
  shards: Map<string, StoredShard>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

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
   * Everything stored, without reading the change batches of sealed shards (their final records are
   * enough to load; the batches are read only to serve a peer that lacks the shard).
   */
  async loadAll(): Promise<{ studies: StoredStudy[]; deleted: Set<string> }> {
    const studies = new Map<string, StoredStudy>();
    const deleted = new Set<string>();
    const small: string[] = [];
    const batchKeys = new Map<string, string[]>(); // `${study}/${shard}` -> batch keys in order
    for await (const key of this.db.keys()) {
      const parts = key.split('/');
      if (parts[0] === 'del') deleted.add(parts[1]!);
      if (parts[0] !== 's') continue;
      if (parts[2] === 'v') continue; // vouchers are read when the shard is served
      const id = parts[1]!;
      if (!studies.has(id)) studies.set(id, { studyId: id, name: '', meta: null, shards: new Map() });
      if (parts[2] === 'c' && parts.length === 5) {
        const k = `${id}/${parts[3]}`;
        let l = batchKeys.get(k);
        if (!l) batchKeys.set(k, (l = []));
        l.push(key); // keys sort by their zero-padded sequence
        this.seq.set(k, Math.max(this.seq.get(k) ?? 0, parseInt(parts[4]!, 10) + 1));
      } else small.push(key);
    }
    const values = small.length ? await this.db.getMany(small) : [];
    const shardOf = (s: StoredStudy, k: string): StoredShard => {
      let sh = s.shards.get(k);
      if (!sh) s.shards.set(k, (sh = { key: k, batches: [], sealed: null }));
      return sh;
    };
    small.forEach((key, i) => {
      const value = values[i];
      if (!value) return;
      const parts = key.split('/');
      const s = studies.get(parts[1]!)!;
      if (parts[2] === 'name') {
        s.name = dec.decode(value);
        this.named.add(s.studyId);
      } else if (parts[2] === 'meta') s.meta = value;
      else if (parts[2] === 'r' && parts.length === 4) {
        try {
          const o = unpackUntrusted(value, { maxBytes: 1 << 30, maxDepth: 4, maxNodes: 1_000_000 }) as { h: string[]; n: number; r: Uint8Array[]; b: number };
          if (Array.isArray(o.h) && Array.isArray(o.r) && typeof o.n === 'number') shardOf(s, parts[3]!).sealed = { heads: o.h, changes: o.n, records: o.r, batches: o.b };
        } catch {
          /* a damaged cache: the shard loads from its changes instead */
        }
      }
    });
    for (const [k, keys] of batchKeys) {
      const [id, shard] = [k.slice(0, k.indexOf('/')), k.slice(k.indexOf('/') + 1)];
      const sh = shardOf(studies.get(id)!, shard);
      if (sh.sealed && sh.sealed.batches === keys.length) {
        sh.batches = new Array(keys.length); // counted, not read
        continue;
      }
      sh.sealed = null;
      sh.batches = (await this.db.getMany(keys)).filter((v): v is Uint8Array => v !== undefined);
    }
    return { studies: [...studies.values()].filter((s) => !deleted.has(s.studyId)), deleted };
  }

  private nameOp(studyId: string, name: string, ops: Op[]): void {
    if (this.named.has(studyId)) return;
    this.named.add(studyId);
    ops.push({ type: 'put', key: `s/${studyId}/name`, value: enc.encode(name) });
  }

  /**
   * One atomic batch: the study document (when it changed), new changes per shard, and shards sealed
   * now (their final records; their change batches are merged into one).
   */
  async write(
    studyId: string,
    name: string,
    w: { meta?: Uint8Array | null; changes?: Map<string, Uint8Array[]>; sealed?: Map<string, { heads: string[]; changes: number; records: Uint8Array[] }> },
    sync: boolean,
  ): Promise<void> {
    const ops: Op[] = [];
    this.nameOp(studyId, name, ops);
    if (w.meta) ops.push({ type: 'put', key: `s/${studyId}/meta`, value: w.meta });
    for (const [shard, list] of w.changes ?? []) {
      if (list.length === 0) continue;
      const k = `${studyId}/${shard}`;
      const seq = this.seq.get(k) ?? 0;
      this.seq.set(k, seq + 1);
      ops.push({ type: 'put', key: `s/${studyId}/c/${shard}/${String(seq).padStart(10, '0')}`, value: pack(list) });
    }
    // `b`: the change batches the seal covers; a shard written to after its seal has more and loads from its changes.
    for (const [shard, s] of w.sealed ?? []) ops.push({ type: 'put', key: `s/${studyId}/r/${shard}`, value: pack({ h: s.heads, n: s.changes, r: s.records, b: this.seq.get(`${studyId}/${shard}`) ?? 0 }) });
    if (ops.length === 0 && !sync) return;
    await this.db.batch(ops, { sync } as never);
  }

  /** Every change of a shard, in applied order (for serving a peer that lacks the shard). */
  async shardChanges(studyId: string, shard: string): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    const prefix = `s/${studyId}/c/${shard}/`;
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

  /** Replaces a shard's change batches with one (its compacted history), atomically. */
  async compactShard(studyId: string, shard: string, changes: Uint8Array[]): Promise<void> {
    const ops: Op[] = [];
    const prefix = `s/${studyId}/c/${shard}/`;
    for await (const key of this.db.keys({ gte: prefix, lt: prefix + '~' })) ops.push({ type: 'del', key });
    ops.push({ type: 'put', key: `${prefix}${String(0).padStart(10, '0')}`, value: pack(changes) });
    this.seq.set(`${studyId}/${shard}`, 1);
    await this.db.batch(ops, { sync: false } as never);
  }

  async markDeleted(studyId: string): Promise<void> {
    const ops: Op[] = [];
    for await (const key of this.db.keys({ gte: `s/${studyId}/`, lt: `s/${studyId}/~` })) ops.push({ type: 'del', key });
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
