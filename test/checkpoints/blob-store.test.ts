// The checkpoint blob store on a real temp dir: files and directories round-trip, identical files are
// stored once, writes are atomic, and forged input (wrong hash, truncation, oversize, path traversal in
// a manifest) is refused with nothing written outside the store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, readdir, rm, symlink, writeFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BlobError, BlobStore, parseManifest } from '../../src/checkpoints/blob-store.js';

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
const tmp = (): Promise<string> => mkdtemp(path.join(os.tmpdir(), 'pt-blob-'));

test('a file checkpoint is stored under its sha256 and materialises byte for byte', async () => {
  const dir = await tmp();
  const store = await BlobStore.open(path.join(dir, 'store'));
  const src = path.join(dir, 'model.bin');
  const bytes = new Uint8Array(3 * (1 << 20) + 17).map((_, i) => (i * 31) & 0xff);
  await writeFile(src, bytes);
  const ref = await store.put(src);
  assert.equal(ref.kind, 'file');
  assert.equal(ref.hash, sha(bytes));
  assert.equal(ref.size, bytes.byteLength);
  assert.deepEqual(await store.list(), [ref.hash]);
  await rm(src); // the caller may delete its copy once put() returns
  const out = await store.materialize(ref, path.join(dir, 'restored', 'model.bin'));
  assert.deepEqual(new Uint8Array(await readFile(out)), bytes);
  assert.equal((await readdir(store.tmpDir)).length, 0, 'no temp files left behind');
  await rm(dir, { recursive: true, force: true });
});

test('a directory checkpoint is a manifest; unchanged files are stored once across epochs', async () => {
  const dir = await tmp();
  const store = await BlobStore.open(path.join(dir, 'store'));
  const ck = path.join(dir, 'ck');
  await mkdir(path.join(ck, 'sub'), { recursive: true });
  await writeFile(path.join(ck, 'weights.pt'), 'W'.repeat(10_000));
  await writeFile(path.join(ck, 'sub', 'optim.pt'), 'epoch 1');
  await writeFile(path.join(ck, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  const r1 = await store.put(ck);
  assert.equal(r1.kind, 'dir');
  assert.equal(r1.size, 10_000 + 7 + 10);
  const blobs1 = await store.list();
  assert.equal(blobs1.length, 4, 'three files and one manifest');
  await writeFile(path.join(ck, 'sub', 'optim.pt'), 'epoch 2');
  const r2 = await store.put(ck);
  assert.notEqual(r2.hash, r1.hash);
  const blobs2 = await store.list();
  assert.equal(blobs2.length, 6, 'only the changed file and the new manifest were added');
  const needs = await store.blobsOf(r2);
  assert.equal(needs.length, 3);
  const out = await store.materialize(r1, path.join(dir, 'r1'));
  assert.equal(await readFile(path.join(out, 'sub', 'optim.pt'), 'utf8'), 'epoch 1');
  assert.equal(await readFile(path.join(out, 'weights.pt'), 'utf8'), 'W'.repeat(10_000));
  assert.ok(((await stat(path.join(out, 'run.sh'))).mode & 0o100) !== 0, 'the executable bit is restored');
  await rm(dir, { recursive: true, force: true });
});

test('symbolic links in a checkpoint are refused with a message naming them', async () => {
  const dir = await tmp();
  const store = await BlobStore.open(path.join(dir, 'store'));
  const ck = path.join(dir, 'ck');
  await mkdir(ck);
  await writeFile(path.join(ck, 'a'), 'x');
  await symlink('/etc/passwd', path.join(ck, 'leak'));
  await assert.rejects(store.put(ck), (e: unknown) => e instanceof BlobError && /symbolic link \(leak\)/.test(e.message));
  await assert.rejects(store.put(path.join(dir, 'nope')), /does not exist/);
  await rm(dir, { recursive: true, force: true });
});

test('a download must match the hash and size of its reference; a partial one resumes', async () => {
  const dir = await tmp();
  const store = await BlobStore.open(path.join(dir, 'store'));
  const good = new TextEncoder().encode('the real checkpoint bytes');
  const ref = { hash: sha(good), size: good.byteLength };

  // Wrong bytes: refused, nothing stored.
  const w1 = await store.writer(ref);
  await w1.write(new TextEncoder().encode('the fake checkpoint bytes'));
  await assert.rejects(w1.commit(), (e: unknown) => e instanceof BlobError && e.reason === 'hash-mismatch');
  assert.deepEqual(await store.list(), []);

  // Oversized: refused at the write that passes the size.
  const w2 = await store.writer(ref);
  await assert.rejects(w2.write(new Uint8Array(good.byteLength + 1)), (e: unknown) => e instanceof BlobError && e.reason === 'too-large');
  await w2.abort(false);

  // Truncated then resumed: the second writer starts at the bytes already there.
  const w3 = await store.writer(ref);
  assert.equal(w3.offset, 0);
  await w3.write(good.subarray(0, 10));
  await w3.abort(true);
  const w4 = await store.writer(ref);
  assert.equal(w4.offset, 10);
  await w4.write(good.subarray(10));
  const done = await w4.commit();
  assert.equal(done.hash, ref.hash);
  assert.deepEqual(await store.list(), [ref.hash]);

  // A short blob committed is "truncated".
  const other = new Uint8Array([1, 2, 3, 4]);
  const w5 = await store.writer({ hash: sha(other), size: 4 });
  await w5.write(other.subarray(0, 2));
  await assert.rejects(w5.commit(), (e: unknown) => e instanceof BlobError && e.reason === 'truncated');
  assert.deepEqual(await store.list(), [ref.hash]);
  await assert.rejects(store.writer({ hash: 'not-a-hash', size: 1 }), /not a sha256/);
  await rm(dir, { recursive: true, force: true });
});

test('manifests from other peers: traversal, absolute paths, duplicates and file/dir clashes are refused', async () => {
  const h = 'a'.repeat(64);
  const m = (files: unknown[]): Uint8Array => new TextEncoder().encode(JSON.stringify({ v: 1, files }));
  for (const bad of ['../escape', 'a/../../b', '/etc/passwd', 'a//b', './a', 'a\\b', 'a\0b', '']) {
    assert.throws(() => parseManifest(m([{ path: bad, hash: h, size: 1, mode: 0o644 }])), (e: unknown) => e instanceof BlobError && e.reason === 'manifest-path', `path ${JSON.stringify(bad)}`);
  }
  assert.throws(() => parseManifest(m([{ path: 'x', hash: h, size: 1 }, { path: 'x', hash: h, size: 1 }])), /twice/);
  assert.throws(() => parseManifest(m([{ path: 'x', hash: h, size: 1 }, { path: 'x/y', hash: h, size: 1 }])), /as a file and as a directory/);
  assert.throws(() => parseManifest(m([{ path: 'x', hash: 'zz', size: 1 }])), /valid sha256/);
  assert.throws(() => parseManifest(m([{ path: 'x', hash: h, size: -1 }])), /invalid size/);
  assert.throws(() => parseManifest(new TextEncoder().encode('{"v":2,"files":[]}')), /"v":1/);
  assert.throws(() => parseManifest(new Uint8Array([0xff, 0xfe])), /not UTF-8 JSON/);
  assert.throws(() => parseManifest(m([]), { maxBlobBytes: 1, maxManifestFiles: 1, maxManifestBytes: 5 }), /exceeds 5/);
  // A good one parses and keeps only the permission bits.
  const ok = parseManifest(m([{ path: 'dir/file.pt', hash: h, size: 3, mode: 0o100755 }]));
  assert.deepEqual(ok.files, [{ path: 'dir/file.pt', hash: h, size: 3, mode: 0o755 }]);
});
