/**
 * The replica on disk: one level database per data directory (level allows one process per
 * directory, which is also what keeps two processes from sharing a peer identity). Per study it keeps
 * the last whole-document snapshot, the incremental Automerge chunks written since, and the display
 * numbers this replica has shown. Compaction replaces snapshot + chunks with a new snapshot in one
 * atomic batch. The stable libp2p identity lives next to it in `peer.key` (0600).
 */
import { mkdir, readFile, writeFile, chmod, stat } from 'node:fs/promises';
import path from 'node:path';
import { Level } from 'level';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { StorageError } from '../storage.js';

export interface StoredStudy {
  studyId: string;
  name: string;
  snapshot: Uint8Array | null;
  chunks: Uint8Array[];
  numbers: Map<string, number>;
  conflicted: Set<string>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class ReplicaDb {
  private chunkSeq = new Map<string, number>();
  private chunkCount = new Map<string, number>();
  private chunkBytes = new Map<string, number>();
  private snapshotBytes = new Map<string, number>();

  private constructor(private readonly db: Level<string, Uint8Array>) {}

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
    return new ReplicaDb(db);
  }

  async loadAll(): Promise<{ studies: StoredStudy[]; deleted: Set<string> }> {
    const studies = new Map<string, StoredStudy>();
    const deleted = new Set<string>();
    for await (const [key, value] of this.db.iterator()) {
      const parts = key.split('/');
      if (parts[0] === 'del') deleted.add(parts[1]!);
      if (parts[0] !== 's') continue;
      const id = parts[1]!;
      let s = studies.get(id);
      if (!s) {
        s = { studyId: id, name: '', snapshot: null, chunks: [], numbers: new Map(), conflicted: new Set() };
        studies.set(id, s);
      }
      if (parts[2] === 'name') s.name = dec.decode(value);
      else if (parts[2] === 'snap') {
        s.snapshot = value;
        this.snapshotBytes.set(id, value.byteLength);
      }
      else if (parts[2] === 'c') {
        s.chunks.push(value); // keys sort by their zero-padded sequence
        const seq = parseInt(parts[3]!, 10);
        this.chunkSeq.set(id, Math.max(this.chunkSeq.get(id) ?? 0, seq + 1));
        this.chunkCount.set(id, (this.chunkCount.get(id) ?? 0) + 1);
        this.chunkBytes.set(id, (this.chunkBytes.get(id) ?? 0) + value.byteLength);
      } else if (parts[2] === 'x') s.conflicted.add(parts.slice(3).join('/'));
      else if (parts[2] === 'n') s.numbers.set(parts.slice(3).join('/'), new DataView(value.buffer, value.byteOffset).getUint32(0));
    }
    return { studies: [...studies.values()].filter((s) => !deleted.has(s.studyId)), deleted };
  }

  /** Appends an incremental chunk and the numbers assigned with it (one atomic batch). */
  async append(studyId: string, name: string, chunk: Uint8Array | null, numbers: [string, number][], sync: boolean, conflicted: string[] = []): Promise<void> {
    const ops: { type: 'put'; key: string; value: Uint8Array }[] = [];
    if (!this.chunkSeq.has(studyId)) ops.push({ type: 'put', key: `s/${studyId}/name`, value: enc.encode(name) });
    if (chunk && chunk.byteLength > 0) {
      const seq = this.chunkSeq.get(studyId) ?? 0;
      this.chunkSeq.set(studyId, seq + 1);
      this.chunkCount.set(studyId, (this.chunkCount.get(studyId) ?? 0) + 1);
      this.chunkBytes.set(studyId, (this.chunkBytes.get(studyId) ?? 0) + chunk.byteLength);
      ops.push({ type: 'put', key: `s/${studyId}/c/${String(seq).padStart(12, '0')}`, value: chunk });
    } else if (!this.chunkSeq.has(studyId)) this.chunkSeq.set(studyId, 0);
    for (const [trialId, n] of numbers) {
      const v = new Uint8Array(4);
      new DataView(v.buffer).setUint32(0, n);
      ops.push({ type: 'put', key: `s/${studyId}/n/${trialId}`, value: v });
    }
    for (const trialId of conflicted) ops.push({ type: 'put', key: `s/${studyId}/x/${trialId}`, value: new Uint8Array([1]) });
    if (ops.length === 0 && !sync) return;
    await this.db.batch(ops, { sync } as never);
  }

  chunksSinceSnapshot(studyId: string): number {
    return this.chunkCount.get(studyId) ?? 0;
  }

  /**
   * Whether a compaction pays off: enough chunks, and their bytes at least half the snapshot's, so
   * saving the whole document stays amortized O(1) per write as the study grows.
   */
  wantsCompaction(studyId: string, minChunks: number): boolean {
    return this.chunksSinceSnapshot(studyId) >= minChunks && (this.chunkBytes.get(studyId) ?? 0) * 2 >= (this.snapshotBytes.get(studyId) ?? 0);
  }

  /** Replaces the snapshot and every chunk written so far with `snapshot`, atomically. */
  async compact(studyId: string, snapshot: Uint8Array): Promise<void> {
    const ops: ({ type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string })[] = [];
    for await (const key of this.db.keys({ gte: `s/${studyId}/c/`, lt: `s/${studyId}/c/~` })) ops.push({ type: 'del', key });
    ops.push({ type: 'put', key: `s/${studyId}/snap`, value: snapshot });
    await this.db.batch(ops, { sync: true } as never);
    this.chunkCount.set(studyId, 0);
    this.chunkBytes.set(studyId, 0);
    this.snapshotBytes.set(studyId, snapshot.byteLength);
  }

  async markDeleted(studyId: string): Promise<void> {
    const ops: ({ type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string })[] = [];
    for await (const key of this.db.keys({ gte: `s/${studyId}/`, lt: `s/${studyId}/~` })) ops.push({ type: 'del', key });
    ops.push({ type: 'put', key: `del/${studyId}`, value: new Uint8Array([1]) });
    await this.db.batch(ops, { sync: true } as never);
  }

  async sizeOnDisk(): Promise<number> {
    let total = 0;
    for await (const [k, v] of this.db.iterator()) total += k.length + v.byteLength;
    return total;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** Creates the data directory (0700) and loads or creates the peer's stable key (`peer.key`, 0600). */
export async function loadOrCreateKey(dataDir: string): Promise<PrivateKey> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
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
