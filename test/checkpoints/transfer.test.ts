// The blob protocol between two real libp2p nodes on 127.0.0.1: a checkpoint moves whole and verified,
// an interrupted download resumes from its partial file, a holder that lies about the bytes is caught
// by the hash, and a blob no record references is never served.
import '../../src/net/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile, readFile, readdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLibp2p, type Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { BlobError, BlobStore } from '../../src/checkpoints/blob-store.js';
import { BLOB_PROTOCOL, fetchBlob, serveBlobs } from '../../src/checkpoints/transfer.js';
import { frame, pack } from '../../src/net/wire.js';

async function node(): Promise<Libp2p> {
  return createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
}

async function pair(): Promise<{ a: Libp2p; b: Libp2p; dir: string; sa: BlobStore; sb: BlobStore; stop(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-xfer-'));
  const [a, b] = await Promise.all([node(), node()]);
  await b.dial(a.getMultiaddrs()[0]!);
  const sa = await BlobStore.open(path.join(dir, 'a'));
  const sb = await BlobStore.open(path.join(dir, 'b'));
  return { a, b, dir, sa, sb, stop: async () => { await Promise.all([a.stop(), b.stop()]); await rm(dir, { recursive: true, force: true }); } };
}

test('a 24 MiB checkpoint moves between two nodes and is verified', async () => {
  const p = await pair();
  const bytes = randomBytes(24 * (1 << 20) + 123);
  await writeFile(path.join(p.dir, 'ck.bin'), bytes);
  const ref = await p.sa.put(path.join(p.dir, 'ck.bin'));
  const rejects: string[] = [];
  await serveBlobs(p.a, p.sa, { mayServe: (h) => h === ref.hash, onReject: (_peer, r) => rejects.push(r) });
  const got = await fetchBlob(p.b, p.a.peerId.toString(), ref, p.sb);
  assert.equal(got, bytes.byteLength);
  assert.ok(await p.sb.has(ref.hash));
  const out = await p.sb.materialize(ref, path.join(p.dir, 'out.bin'));
  assert.equal(createHash('sha256').update(await readFile(out)).digest('hex'), ref.hash);
  assert.equal(await fetchBlob(p.b, p.a.peerId.toString(), ref, p.sb), 0, 'a blob already held is not fetched again');
  assert.deepEqual(rejects, []);
  await p.stop();
});

test('an interrupted download resumes from the bytes it has', async () => {
  const p = await pair();
  const bytes = randomBytes(5 * (1 << 20));
  await writeFile(path.join(p.dir, 'ck.bin'), bytes);
  const ref = await p.sa.put(path.join(p.dir, 'ck.bin'));
  // First attempt: a holder that sends 2 MiB and then closes the stream.
  await p.a.handle(BLOB_PROTOCOL, ({ stream }) => {
    void stream.sink((async function* () {
      yield frame(pack({ ok: true, size: ref.size }));
      yield frame(bytes.subarray(0, 1 << 20));
      yield frame(bytes.subarray(1 << 20, 2 << 20));
    })());
  });
  await assert.rejects(fetchBlob(p.b, p.a.peerId.toString(), ref, p.sb), (e: unknown) => e instanceof BlobError && e.reason === 'interrupted');
  const partial = (await readdir(p.sb.tmpDir)).filter((n) => n.endsWith('.partial'));
  assert.equal(partial.length, 1);
  assert.equal((await stat(path.join(p.sb.tmpDir, partial[0]!))).size, 2 << 20);
  await p.a.unhandle(BLOB_PROTOCOL);
  // Second attempt against the honest server: only the rest is sent.
  await serveBlobs(p.a, p.sa, { mayServe: () => true });
  const got = await fetchBlob(p.b, p.a.peerId.toString(), ref, p.sb);
  assert.equal(got, bytes.byteLength - (2 << 20));
  assert.ok(await p.sb.has(ref.hash));
  assert.deepEqual(await readdir(p.sb.tmpDir), []);
  await p.stop();
});

test('a holder sending other bytes is caught by the hash; nothing is stored', async () => {
  const p = await pair();
  const bytes = randomBytes(300_000);
  const ref = await p.sa.putBytes(bytes);
  await p.a.handle(BLOB_PROTOCOL, ({ stream }) => {
    void stream.sink((async function* () {
      yield frame(pack({ ok: true, size: ref.size }));
      yield frame(randomBytes(ref.size));
    })());
  });
  await assert.rejects(fetchBlob(p.b, p.a.peerId.toString(), ref, p.sb), (e: unknown) => e instanceof BlobError && e.reason === 'hash-mismatch');
  assert.deepEqual(await p.sb.list(), []);
  assert.deepEqual(await readdir(p.sb.tmpDir), [], 'a proven-wrong download leaves no partial file');
  await p.stop();
});

test('a blob no record references is refused and the request is charged to the asker', async () => {
  const p = await pair();
  const secret = await p.sa.putBytes(new TextEncoder().encode('not referenced by anything'));
  const rejects: { peer: string; reason: string }[] = [];
  await serveBlobs(p.a, p.sa, { mayServe: () => false, onReject: (peer, reason) => rejects.push({ peer, reason }) });
  await assert.rejects(fetchBlob(p.b, p.a.peerId.toString(), secret, p.sb), (e: unknown) => e instanceof BlobError && e.reason === 'refused' && /not referenced/.test(e.message));
  assert.deepEqual(rejects, [{ peer: p.b.peerId.toString(), reason: 'blob-not-referenced' }]);
  // A size that disagrees with the signed reference is refused before any byte is written.
  await p.a.unhandle(BLOB_PROTOCOL);
  await serveBlobs(p.a, p.sa, { mayServe: () => true });
  await assert.rejects(fetchBlob(p.b, p.a.peerId.toString(), { hash: secret.hash, size: secret.size + 1 }, p.sb), (e: unknown) => e instanceof BlobError && e.reason === 'size-mismatch');
  assert.deepEqual(await p.sb.list(), []);
  await p.stop();
});
