/**
 * A content-addressed store of checkpoint blobs in a peer's data dir. A blob is named by the sha256 of
 * its bytes; a directory checkpoint is a manifest blob listing each file's relative path, hash and size,
 * so a file that did not change between epochs is stored (and later sent) once. Every write goes to a
 * temporary name, is fsynced, then renamed into place: a crash leaves either the whole blob or nothing
 * under its hash. Blobs arriving from other peers are written the same way and kept only if their hash
 * matches the one the signed reference promised.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, stat, chmod, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PeertuneError } from '../errors.js';

/** What the replicated document holds about a stored checkpoint: small, signable, no bytes. */
export interface BlobRef {
  /** sha256 of the blob (the file's bytes, or the manifest's bytes for a directory), lowercase hex. */
  hash: string;
  /** The checkpoint's total size in bytes (for a directory: the sum of its files). */
  size: number;
  kind: 'file' | 'dir';
  /** For a directory: the manifest blob's own size (`size` is the files' total). */
  manifestSize?: number;
}

export interface ManifestEntry {
  /** Relative path with '/' separators, no '.' or '..' parts. */
  path: string;
  hash: string;
  size: number;
  /** Unix permission bits (0o644 style); only the executable bit is restored. */
  mode: number;
}

export interface Manifest {
  v: 1;
  files: ManifestEntry[];
}

export interface BlobStoreLimits {
  /** Largest single blob accepted from anywhere (default 64 GiB). */
  maxBlobBytes: number;
  /** Most files a directory checkpoint may list (default 100,000). */
  maxManifestFiles: number;
  /** Largest manifest blob (default 32 MiB). */
  maxManifestBytes: number;
}

export const DEFAULT_BLOB_LIMITS: BlobStoreLimits = {
  maxBlobBytes: 64 * 2 ** 30,
  maxManifestFiles: 100_000,
  maxManifestBytes: 32 * 2 ** 20,
};

/** A blob or manifest that is not what it claims to be; `reason` is a short label for counters. */
export class BlobError extends PeertuneError {
  override name = 'BlobError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const HASH_RE = /^[0-9a-f]{64}$/;

export function isBlobHash(h: unknown): h is string {
  return typeof h === 'string' && HASH_RE.test(h);
}

/**
 * Checks one manifest path: relative, '/'-separated, no empty, '.' or '..' part, no backslash or NUL,
 * not too long. A manifest from another peer that fails this is refused whole: materialising it could
 * write outside the destination.
 */
export function checkManifestPath(p: unknown): string {
  if (typeof p !== 'string' || p.length === 0 || p.length > 4096) throw new BlobError('manifest-path', `manifest path ${JSON.stringify(p)} is empty, too long or not a string`);
  if (p.includes('\0') || p.includes('\\')) throw new BlobError('manifest-path', `manifest path ${JSON.stringify(p)} contains a NUL or a backslash`);
  if (p.startsWith('/')) throw new BlobError('manifest-path', `manifest path ${JSON.stringify(p)} is absolute`);
  for (const part of p.split('/')) {
    if (part === '' || part === '.' || part === '..') throw new BlobError('manifest-path', `manifest path ${JSON.stringify(p)} has an empty, "." or ".." part`);
  }
  return p;
}

/** Parses and checks a manifest blob's bytes (from disk or from another peer). */
export function parseManifest(bytes: Uint8Array, limits: BlobStoreLimits = DEFAULT_BLOB_LIMITS): Manifest {
  if (bytes.byteLength > limits.maxManifestBytes) throw new BlobError('manifest-too-large', `manifest of ${bytes.byteLength} bytes exceeds ${limits.maxManifestBytes}`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new BlobError('manifest-undecodable', `manifest is not UTF-8 JSON: ${(e as Error).message}`);
  }
  const m = raw as Partial<Manifest> | null;
  if (!m || typeof m !== 'object' || m.v !== 1 || !Array.isArray(m.files)) throw new BlobError('manifest-schema', 'manifest must be {"v":1,"files":[...]}');
  if (m.files.length > limits.maxManifestFiles) throw new BlobError('manifest-too-many', `manifest lists ${m.files.length} files, more than ${limits.maxManifestFiles}`);
  const seen = new Set<string>();
  const files: ManifestEntry[] = [];
  for (const f of m.files as unknown[]) {
    const e = f as Partial<ManifestEntry> | null;
    if (!e || typeof e !== 'object') throw new BlobError('manifest-schema', 'manifest entry is not an object');
    const p = checkManifestPath(e.path);
    if (!isBlobHash(e.hash)) throw new BlobError('manifest-schema', `manifest entry ${JSON.stringify(p)} has no valid sha256 hash`);
    if (!Number.isSafeInteger(e.size) || (e.size as number) < 0 || (e.size as number) > limits.maxBlobBytes) throw new BlobError('manifest-schema', `manifest entry ${JSON.stringify(p)} has an invalid size`);
    const mode = Number.isSafeInteger(e.mode) ? (e.mode as number) & 0o777 : 0o644;
    // A file and a directory of the same name, or a path twice, cannot both be materialised.
    const lower = p;
    if (seen.has(lower)) throw new BlobError('manifest-schema', `manifest lists ${JSON.stringify(p)} twice`);
    seen.add(lower);
    files.push({ path: p, hash: e.hash, size: e.size as number, mode });
  }
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (seen.has(parts.slice(0, i).join('/'))) throw new BlobError('manifest-schema', `manifest lists ${JSON.stringify(parts.slice(0, i).join('/'))} as a file and as a directory`);
    }
  }
  return { v: 1, files };
}

function encodeManifest(m: Manifest): Uint8Array {
  const files = [...m.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return new TextEncoder().encode(JSON.stringify({ v: 1, files }));
}

/** A blob being written: bytes go to a temp file while they are hashed; `commit` checks and renames. */
export interface BlobWriter {
  /** Bytes already on disk (a resumed download continues from here). */
  readonly offset: number;
  write(chunk: Uint8Array): Promise<void>;
  /** Verifies the hash (and size when expected), fsyncs and renames into place. */
  commit(): Promise<BlobRef>;
  /** Keeps the partial file for a later resume (for network writes) or deletes it. */
  abort(keepPartial: boolean): Promise<void>;
}

export class BlobStore {
  readonly blobsDir: string;
  readonly tmpDir: string;
  /** Downloads in progress, by hash (see writer). */
  private readonly downloading = new Map<string, Promise<void>>();
  private constructor(
    readonly root: string,
    readonly limits: BlobStoreLimits,
  ) {
    this.blobsDir = path.join(root, 'blobs');
    this.tmpDir = path.join(root, 'tmp');
  }

  /** Opens (creating it, owner-only) the store under `root`, e.g. `<dataDir>/checkpoints`. */
  static async open(root: string, limits: Partial<BlobStoreLimits> = {}): Promise<BlobStore> {
    const s = new BlobStore(path.resolve(root), { ...DEFAULT_BLOB_LIMITS, ...limits });
    await mkdir(s.blobsDir, { recursive: true, mode: 0o700 });
    await mkdir(s.tmpDir, { recursive: true, mode: 0o700 });
    await chmod(s.root, 0o700).catch(() => {});
    // Temp files of writes that never finished (a crash): a local write is gone, a download can resume.
    for (const name of await readdir(s.tmpDir)) {
      if (!name.endsWith('.partial')) await rm(path.join(s.tmpDir, name), { force: true });
    }
    return s;
  }

  pathOf(hash: string): string {
    if (!isBlobHash(hash)) throw new BlobError('bad-hash', `${JSON.stringify(hash)} is not a sha256 hex hash`);
    return path.join(this.blobsDir, hash.slice(0, 2), hash.slice(2));
  }

  async has(hash: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(hash))).isFile();
    } catch {
      return false;
    }
  }

  async sizeOf(hash: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(hash))).size;
    } catch {
      return null;
    }
  }

  /** Every blob hash in the store. */
  async list(): Promise<string[]> {
    const out: string[] = [];
    for (const prefix of await readdir(this.blobsDir)) {
      if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
      for (const rest of await readdir(path.join(this.blobsDir, prefix))) {
        const h = prefix + rest;
        if (isBlobHash(h)) out.push(h);
      }
    }
    return out.sort();
  }

  /** Drops the partial download of `hash` (kept for a resume otherwise), unless a download of it is running. */
  async dropPartial(hash: string): Promise<void> {
    if (!isBlobHash(hash) || this.downloading.has(hash)) return;
    await rm(path.join(this.tmpDir, `${hash}.partial`), { force: true });
  }

  /** Partial downloads kept for a resume: hash, bytes so far, last written. */
  async partials(): Promise<{ hash: string; size: number; mtimeMs: number }[]> {
    const out: { hash: string; size: number; mtimeMs: number }[] = [];
    for (const name of await readdir(this.tmpDir)) {
      const hash = name.endsWith('.partial') ? name.slice(0, -'.partial'.length) : '';
      if (!isBlobHash(hash)) continue;
      const st = await stat(path.join(this.tmpDir, name)).catch(() => null);
      if (st) out.push({ hash, size: st.size, mtimeMs: st.mtimeMs });
    }
    return out;
  }

  async delete(hash: string): Promise<void> {
    await rm(this.pathOf(hash), { force: true });
  }

  /** Reads a blob from `offset` (for sending it to a peer). */
  openRead(hash: string, offset = 0, highWaterMark = 1 << 20, endInclusive?: number): ReadStream {
    return createReadStream(this.pathOf(hash), { start: offset, highWaterMark, ...(endInclusive === undefined ? {} : { end: endInclusive }) });
  }

  async readSmall(hash: string, max: number): Promise<Uint8Array> {
    const size = await this.sizeOf(hash);
    if (size === null) throw new BlobError('missing', `blob ${hash} is not in the store`);
    if (size > max) throw new BlobError('too-large', `blob ${hash} has ${size} bytes, more than ${max}`);
    return new Uint8Array(await readFile(this.pathOf(hash)));
  }

  /**
   * A writer for a blob. With `expected` (a download), the temp name is fixed by the hash so an
   * interrupted download resumes from the bytes already there, and the result must match the hash and
   * size the signed reference gave; without it (a local save), the hash is whatever the bytes are.
   */
  async writer(expected?: { hash: string; size: number }): Promise<BlobWriter> {
    if (expected) {
      if (!isBlobHash(expected.hash)) throw new BlobError('bad-hash', `${JSON.stringify(expected.hash)} is not a sha256 hex hash`);
      if (!Number.isSafeInteger(expected.size) || expected.size < 0 || expected.size > this.limits.maxBlobBytes) throw new BlobError('too-large', `blob size ${expected.size} is outside 0..${this.limits.maxBlobBytes}`);
    }
    // One download per hash at a time: two writers appending to the same .partial (a PBT clone and a
    // replica copy of one checkpoint) each hashed their own bytes and renamed a file holding both.
    let release = (): void => {};
    if (expected) {
      for (let busy = this.downloading.get(expected.hash); busy; busy = this.downloading.get(expected.hash)) await busy;
      const turn = new Promise<void>((r) => (release = () => (this.downloading.delete(expected.hash), r())));
      this.downloading.set(expected.hash, turn);
    }
    const tmp = path.join(this.tmpDir, expected ? `${expected.hash}.partial` : `${randomBytes(12).toString('hex')}.tmp`);
    const hasher = createHash('sha256');
    let offset = 0;
    let fh: FileHandle;
    try {
      if (expected) {
        // Resume: re-hash what an earlier attempt left, then append.
        fh = await open(tmp, 'a+', 0o600);
        const st = await fh.stat();
        if (st.size > expected.size) {
          await fh.truncate(0);
        } else if (st.size > 0) {
          for await (const c of createReadStream(tmp, { highWaterMark: 1 << 20 })) hasher.update(c as Buffer);
          offset = st.size;
        }
      } else {
        fh = await open(tmp, 'w', 0o600);
      }
    } catch (e) {
      release();
      throw e;
    }
    let written = offset;
    let done = false;
    const store = this;
    return {
      offset,
      async write(chunk) {
        if (done) throw new BlobError('closed', 'blob writer already closed');
        written += chunk.byteLength;
        const cap = expected ? expected.size : store.limits.maxBlobBytes;
        if (written > cap) throw new BlobError('too-large', `blob grew past ${cap} bytes${expected ? ' (its reference says ' + expected.size + ')' : ''}`);
        hasher.update(chunk);
        let off = 0;
        while (off < chunk.byteLength) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
      },
      async commit() {
        if (done) throw new BlobError('closed', 'blob writer already closed');
        done = true;
        const hash = hasher.digest('hex');
        try {
          if (expected && written !== expected.size) throw new BlobError('truncated', `blob ${expected.hash} ended at ${written} of ${expected.size} bytes`);
          if (expected && hash !== expected.hash) throw new BlobError('hash-mismatch', `blob claimed to be ${expected.hash} hashes to ${hash}`);
          await fh.sync();
          await fh.close();
        } catch (e) {
          await fh.close().catch(() => {});
          await rm(tmp, { force: true });
          release();
          throw e;
        }
        try {
          const dest = store.pathOf(hash);
          await mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
          await rename(tmp, dest);
          await syncDir(path.dirname(dest));
        } finally {
          release();
        }
        return { hash, size: written, kind: 'file' };
      },
      async abort(keepPartial) {
        if (done) return;
        done = true;
        await fh.close().catch(() => {});
        if (!(keepPartial && expected)) await rm(tmp, { force: true });
        release();
      },
    };
  }

  async putBytes(bytes: Uint8Array): Promise<BlobRef> {
    const w = await this.writer();
    try {
      await w.write(bytes);
      return await w.commit();
    } catch (e) {
      await w.abort(false);
      throw e;
    }
  }

  async putFile(file: string): Promise<BlobRef> {
    const w = await this.writer();
    try {
      for await (const c of createReadStream(file, { highWaterMark: 1 << 20 })) await w.write(c as Buffer);
      return await w.commit();
    } catch (e) {
      await w.abort(false);
      throw e;
    }
  }

  /**
   * Stores a file or a directory (recursively; symbolic links are refused, since following them could
   * pull in files from anywhere). Returns the reference to record.
   */
  async put(src: string): Promise<BlobRef> {
    const st = await lstat(src).catch(() => null);
    if (!st) throw new BlobError('missing', `checkpoint path ${src} does not exist`);
    if (st.isSymbolicLink()) throw new BlobError('symlink', `checkpoint path ${src} is a symbolic link; pass the file or directory it points to`);
    if (st.isFile()) return this.putFile(src);
    if (!st.isDirectory()) throw new BlobError('not-file', `checkpoint path ${src} is neither a file nor a directory`);
    const files: ManifestEntry[] = [];
    let total = 0;
    const walk = async (dir: string, rel: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true });
      entries.sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const e of entries) {
        const full = path.join(dir, e.name);
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isSymbolicLink()) throw new BlobError('symlink', `checkpoint directory holds a symbolic link (${r}); copy the target in instead`);
        if (e.isDirectory()) await walk(full, r);
        else if (e.isFile()) {
          checkManifestPath(r);
          const ref = await this.putFile(full);
          const mode = (await stat(full)).mode & 0o777;
          files.push({ path: r, hash: ref.hash, size: ref.size, mode });
          total += ref.size;
          if (files.length > this.limits.maxManifestFiles) throw new BlobError('manifest-too-many', `checkpoint directory has more than ${this.limits.maxManifestFiles} files`);
        }
      }
    };
    await walk(src, '');
    const manifest = await this.putBytes(encodeManifest({ v: 1, files }));
    return { hash: manifest.hash, size: total, kind: 'dir', manifestSize: manifest.size };
  }

  /** The blobs a reference needs (for a directory: the manifest and each distinct file blob). */
  async blobsOf(ref: BlobRef): Promise<{ hash: string; size: number }[]> {
    if (ref.kind === 'file') return [{ hash: ref.hash, size: ref.size }];
    const m = parseManifest(await this.readSmall(ref.hash, this.limits.maxManifestBytes), this.limits);
    const out = new Map<string, number>();
    for (const f of m.files) out.set(f.hash, f.size);
    return [...out].map(([hash, size]) => ({ hash, size }));
  }

  /**
   * Writes a stored checkpoint out to `dest` (a file path for a file checkpoint; a directory, created,
   * for a directory checkpoint). Every path is checked to stay under `dest`; every blob must be here.
   */
  async materialize(ref: BlobRef, dest: string): Promise<string> {
    if (ref.kind === 'file') {
      await mkdir(path.dirname(dest), { recursive: true });
      await copyBlob(this.pathOf(ref.hash), dest, 0o644);
      return dest;
    }
    const m = parseManifest(await this.readSmall(ref.hash, this.limits.maxManifestBytes), this.limits);
    const root = path.resolve(dest);
    await mkdir(root, { recursive: true });
    for (const f of m.files) {
      const target = path.resolve(root, ...f.path.split('/'));
      if (target !== root && !target.startsWith(root + path.sep)) throw new BlobError('manifest-path', `manifest path ${JSON.stringify(f.path)} leaves the destination`);
      if (!(await this.has(f.hash))) throw new BlobError('missing', `blob ${f.hash} of ${f.path} is not in the store`);
      await mkdir(path.dirname(target), { recursive: true });
      await copyBlob(this.pathOf(f.hash), target, f.mode & 0o100 ? 0o755 : 0o644);
    }
    return root;
  }
}

async function copyBlob(src: string, dest: string, mode: number): Promise<void> {
  const out = await open(dest, 'w', mode);
  try {
    for await (const c of createReadStream(src, { highWaterMark: 1 << 20 })) {
      const b = c as Buffer;
      let off = 0;
      while (off < b.byteLength) off += (await out.write(b, off, b.byteLength - off)).bytesWritten;
    }
  } finally {
    await out.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}
