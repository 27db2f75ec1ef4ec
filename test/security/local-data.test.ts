// Local data (issue 5, item 4): the data dir is private (0700), the peer key 0600, and a damaged
// replica on disk is reported clearly on start with whatever can be recovered kept. Real level
// databases in temp dirs, damaged between a close and a reopen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chmod, mkdir, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { Level } from 'level';
import { loadStudy, setLogSink } from '../../src/index.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { counters, openPeer, sleep, studyWithTrials, tempDir, waitFor } from '../fixtures/attacker.js';

/** Runs `fn` with log lines captured. */
async function capture<T>(fn: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  try {
    return { value: await fn(), lines };
  } finally {
    setLogSink(prev);
  }
}

/** A peer that joined a study (so its level database holds the whole history), then closed. */
async function closedReplica(root: string): Promise<{ dataDir: string; studyId: string; peerA: PeerStorage }> {
  const peerA = await openPeer(join(root, 'a'));
  const study = await studyWithTrials(peerA, 'disk', 2);
  const dataDir = join(root, 'b');
  const b = await openPeer(dataDir, { join: peerA.multiaddrs() });
  const s = await loadStudy({ studyName: 'disk', storage: b });
  await waitFor(() => s.trials.length === 2, 'the replica to catch up');
  // Two more trials arriving one at a time: the replica writes them as separate chunks.
  for (let i = 3; i <= 4; i++) {
    const t = await study.ask();
    t.suggestFloat('x', 0, 1);
    await study.tell(t, i);
    await waitFor(() => s.trials.length === i && s.trials.every((x) => x.state === 'COMPLETE'), `trial ${i} to arrive`);
    await sleep(150);
  }
  await b.close();
  return { dataDir, studyId: study.studyId, peerA };
}

async function keysOf(dataDir: string): Promise<string[]> {
  const db = new Level<string, Uint8Array>(join(dataDir, 'db'), { valueEncoding: 'view' });
  await db.open();
  const keys: string[] = [];
  for await (const k of db.keys()) keys.push(k);
  await db.close();
  return keys;
}

async function putRaw(dataDir: string, key: string, value: Uint8Array): Promise<void> {
  const db = new Level<string, Uint8Array>(join(dataDir, 'db'), { valueEncoding: 'view' });
  await db.open();
  await db.put(key, value);
  await db.close();
}

test('data dir is created 0700 and the peer key 0600; loose modes are tightened on start', async (t) => {
  const dir = await tempDir();
  t.after(() => dir.remove());
  const dataDir = join(dir.path, 'fresh', 'data');
  const { value: s } = await capture(() => openPeer(dataDir));
  await s.close();
  assert.equal((await stat(dataDir)).mode & 0o777, 0o700, 'data dir');
  assert.equal((await stat(join(dataDir, 'peer.key'))).mode & 0o777, 0o600, 'peer key');
  await chmod(dataDir, 0o755);
  await chmod(join(dataDir, 'peer.key'), 0o644);
  const { value: again } = await capture(() => openPeer(dataDir));
  assert.equal(again.peerId, s.peerId, 'same identity after a restart');
  await again.close();
  assert.equal((await stat(dataDir)).mode & 0o777, 0o700, 'data dir tightened');
  assert.equal((await stat(join(dataDir, 'peer.key'))).mode & 0o777, 0o600, 'peer key tightened');
});

test('a corrupted peer key, a data dir in use, and a damaged level database are reported clearly', async (t) => {
  const dir = await tempDir();
  t.after(() => dir.remove());
  const dataDir = join(dir.path, 'd');
  const first = await capture(() => openPeer(dataDir));
  await assert.rejects(capture(() => openPeer(dataDir)), /data directory .* is in use by another process/);
  await first.value.close();

  // Damaged level metadata: the error names the database and what to do.
  await writeFile(join(dataDir, 'db', 'CURRENT'), 'garbage\n');
  await assert.rejects(capture(() => openPeer(dataDir)), /cannot open the replica database in .*move .*db aside; peers will resend the history/);

  const keyDir = join(dir.path, 'k');
  await mkdir(keyDir, { mode: 0o700 });
  await writeFile(join(keyDir, 'peer.key'), 'not a key', { mode: 0o600 });
  await assert.rejects(capture(() => openPeer(keyDir)), /the peer key .*peer\.key is corrupted.*move it aside/);

  const fileDir = join(dir.path, 'file');
  await writeFile(fileDir, 'x');
  await assert.rejects(capture(() => openPeer(fileDir)), /file|directory|ENOTDIR|EEXIST/);
});

test('a corrupted study document inside the database is reported, the trial shards are kept, and peers resend the loss', async (t) => {
  const dir = await tempDir();
  const { dataDir, studyId, peerA } = await closedReplica(dir.path);
  t.after(async () => {
    await peerA.close();
    await dir.remove();
  });
  await putRaw(dataDir, `s/${studyId}/meta`, new TextEncoder().encode('definitely not an automerge document'));
  const { value: b, lines } = await capture(() => openPeer(dataDir, { listen: [] }));
  assert.ok(Object.keys(counters(b)).some((k) => k.startsWith('load:')), JSON.stringify(counters(b)));
  assert.ok(lines.some((l) => /^\[E .*study disk is corrupted/.test(l)), lines.join('\n'));
  assert.equal(b.getAllTrials(studyId).length, 4, 'every trial is recovered from its shard');
  await b.close();
  // Back on the network, a peer resends the study document.
  const healed = await openPeer(dataDir, { join: peerA.multiaddrs() });
  await waitFor(() => healed.getStudy('disk') !== null && healed.getAllTrials(studyId).length === 4, 'the study to be whole again');
  await healed.close();
});

// HOLE-11, fixed in 5acd018: Automerge's loadIncremental does not always throw on a damaged chunk (it
// can silently load nothing). loadDocument now counts a non-empty chunk that adds nothing as corrupt,
// and start reports A.getMissingDeps(doc, []) when it is not empty.
test('HOLE-11 (fixed) a corrupted chunk inside the database is reported, the rest is kept, and peers resend the loss', async (t) => {
  const dir = await tempDir();
  const { dataDir, studyId, peerA } = await closedReplica(dir.path);
  t.after(async () => {
    await peerA.close();
    await dir.remove();
  });
  const chunkKeys = (await keysOf(dataDir)).filter((k) => k.startsWith(`s/${studyId}/c/`));
  assert.ok(chunkKeys.length >= 2, `the replica was written in several chunks: ${chunkKeys.length}`);
  await putRaw(dataDir, chunkKeys[chunkKeys.length - 1]!, new Uint8Array([0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5]));
  const { value: b, lines } = await capture(() => openPeer(dataDir, { listen: [] }));
  try {
    assert.ok(b.getStudy('disk'), 'the study itself survived');
    const kept = b.getAllTrials(studyId).length;
    assert.ok(kept >= 2, `the undamaged chunks were recovered (${kept} trials)`);
    assert.ok(lines.some((l) => /^\[E .*chunk of study disk is corrupted/.test(l)), `no error was logged for the damaged chunk: ${JSON.stringify(counters(b))}`);
  } finally {
    await b.close();
  }
  // Back on the network, peers resend what was lost.
  const healed = await openPeer(dataDir, { join: peerA.multiaddrs() });
  await waitFor(() => healed.getAllTrials(studyId).length === 4, 'the replica to be whole again');
  await healed.close();
});

test('a truncated level log (a torn last write) keeps every earlier write', async (t) => {
  const dir = await tempDir();
  const { dataDir, studyId, peerA } = await closedReplica(dir.path);
  t.after(async () => {
    await peerA.close();
    await dir.remove();
  });
  const dbDir = join(dataDir, 'db');
  const log = (await readdir(dbDir)).find((f) => /^\d+\.log$/.test(f));
  assert.ok(log, 'level keeps a write-ahead log');
  const size = (await stat(join(dbDir, log))).size;
  if (size > 16) await truncate(join(dbDir, log), size - 7);
  const { value: b } = await capture(() => openPeer(dataDir, { listen: [] }));
  t.after(() => b.close());
  assert.ok(b.getStudy('disk'), 'the study is still there');
  assert.ok(b.getAllTrials(studyId).length >= 3, `trials kept: ${b.getAllTrials(studyId).length}`);
});

// Fixed in 5acd018: a created study's replica started with savedHeads = the genesis heads, so the
// genesis change was never written to level and the creator's study was gone after a restart, with
// no error. Now the genesis is persisted, and missing history is logged and counted 'load:missing-deps'.
test("HOLE-10 (fixed) the study's creator keeps its study across a restart (and a replica missing part of its history says so)", async (t) => {
  const dir = await tempDir();
  t.after(() => dir.remove());
  const dataDir = join(dir.path, 'creator');
  const { value: a } = await capture(() => openPeer(dataDir, { listen: [] }));
  const study = await capture(() => studyWithTrials(a, 'mine', 3));
  await a.close();
  const { value: again, lines } = await capture(() => openPeer(dataDir, { listen: [] }));
  t.after(() => again.close());
  const missing = lines.some((l) => /\[E /.test(l));
  assert.ok(again.getStudy('mine'), `the creator lost its study on restart (an error was ${missing ? '' : 'not '}logged)`);
  assert.equal(again.getAllTrials(study.value.studyId).length, 3);
});

/** A data dir holding only these raw entries (as another peertune version would have left it). */
async function rawDataDir(root: string, entries: [string, Uint8Array][]): Promise<string> {
  const dataDir = join(root, 'raw');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const db = new Level<string, Uint8Array>(join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  for (const [k, v] of entries) await db.put(k, v);
  await db.close();
  return dataDir;
}

/** Every entry of a data dir's database, values in hex, sorted by key. */
async function rawEntries(dataDir: string): Promise<[string, string][]> {
  const db = new Level<string, Uint8Array>(join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  const out: [string, string][] = [];
  for await (const [k, v] of db.iterator()) out.push([k, Buffer.from(v).toString('hex')]);
  await db.close();
  return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

// Issue 8: the sharded layout is replica format 2 (3 since sealed histories moved to `z/`). A data dir of format 1 (one Automerge document per
// study) is refused before anything is written to it, with a message naming both formats and what to do.
test('a data dir written in replica format 1 is refused with a message naming the versions, and left as it was', async (t) => {
  const dir = await tempDir();
  t.after(() => dir.remove());
  const entries: [string, Uint8Array][] = [
    ['s/s0123456789abcdef01234567/name', new TextEncoder().encode('old-study')],
    ['s/s0123456789abcdef01234567/snap', new Uint8Array([1, 2, 3])],
  ];
  const dataDir = await rawDataDir(dir.path, entries);
  const before = await rawEntries(dataDir);
  await assert.rejects(openPeer(dataDir, { listen: [] }), (e: Error) => /format 1/.test(e.message) && /format 3/.test(e.message) && /move .*db aside/.test(e.message));
  assert.deepEqual(await rawEntries(dataDir), before, 'nothing was written to the old database');
  assert.deepEqual(before.map(([k]) => k), entries.map(([k]) => k));
});

// Issue 8, format 3: a data dir written by a newer peertune (a format this one does not know) is refused
// before anything is read or written, with a message naming both formats.
test('a data dir of a newer replica format is refused with a message naming the versions, and left as it was', async (t) => {
  const dir = await tempDir();
  t.after(() => dir.remove());
  const dataDir = await rawDataDir(dir.path, [
    ['format', new TextEncoder().encode('4')],
    ['z/s0123456789abcdef01234567/x', new Uint8Array([1, 2, 3])],
  ]);
  await assert.rejects(openPeer(dataDir, { listen: [] }), (e: Error) => /format 4/.test(e.message) && /reads format 3/.test(e.message) && /move .*db aside/.test(e.message));
  assert.deepEqual(await rawEntries(dataDir), [['format', '34'], ['z/s0123456789abcdef01234567/x', '010203']], 'nothing was written to the newer database');
});
