/**
 * Issue 8, replica format 3 (persist.ts): a sealed shard's whole history is one batch under `z/`,
 * outside the studies' key range that loading reads, and its `c/` batches are gone; a restart loads
 * every trial from the sealed records, a peer that joins is served the sealed shards from `z/`, a
 * shard written to after its seal (a late user attr) still loads whole, and a data dir of format 2
 * (histories as `c/` batches) is upgraded in place when opened. Real in-process peers on 127.0.0.1
 * with level dirs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Level } from 'level';
import { createStudy, loadStudy, RandomSampler, setVerbosity, type Study } from '../../src/index.js';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';
import { unpackUntrusted, pack } from '../../src/net/wire.js';
import { shardOfTrial } from '../../src/storage/replicated/testing.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const OPTS = { heartbeatIntervalMs: 150, staleAfterMs: 60_000 };
const peer = inProcessPeers('peertune-disk-format-', OPTS);

/** Everything a user reads of the trials, intermediate values and attrs included. */
function viewOf(s: Study): string {
  return JSON.stringify(s.trials.map((t) => [t.trialId, t.number, t.state, t.values, t.params, [...t.intermediateValues], t.userAttrs]));
}

/** 130 trials, each reporting 5 intermediate values: two owner shards of 64 sealed, the third open. */
async function studyOf130(name: string): Promise<{ dataDir: string; study: Study; storage: PeerStorage }> {
  const dataDir = await peer.dir();
  const storage = peer.adopt(await openPeerStorage({ ...OPTS, dataDir }));
  const study = await createStudy({ studyName: name, storage, sampler: new RandomSampler({ seed: 3 }) });
  await study.optimize(
    (t) => {
      const x = t.suggestFloat('x', 0, 1);
      for (let step = 0; step < 5; step++) t.report(x * (5 - step), step);
      return x;
    },
    { nTrials: 130 },
  );
  await waitFor('two shards sealed', 10_000, () => (storage.stats().studies.find((s) => s.studyId === study.studyId)?.sealedShards ?? 0) === 2);
  return { dataDir, study, storage };
}

interface RawDb {
  keys: string[];
  db: Level<string, Uint8Array>;
}

async function openRaw(dataDir: string): Promise<RawDb> {
  const db = new Level<string, Uint8Array>(path.join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  const keys: string[] = [];
  for await (const k of db.keys()) keys.push(k);
  return { keys, db };
}

/** Per shard of the study: its `c/` batch keys, whether it has `z/`, and the `b` of its `r/` (null: none). */
async function layout(raw: RawDb, sid: string): Promise<Map<string, { c: string[]; z: boolean; b: number | null }>> {
  const out = new Map<string, { c: string[]; z: boolean; b: number | null }>();
  const of = (shard: string) => {
    let e = out.get(shard);
    if (!e) out.set(shard, (e = { c: [], z: false, b: null }));
    return e;
  };
  for (const k of raw.keys) {
    const p = k.split('/');
    if (p[0] === 'z' && p[1] === sid) of(p[2]!).z = true;
    if (p[0] !== 's' || p[1] !== sid) continue;
    if (p[2] === 'c') of(p[3]!).c.push(k);
    if (p[2] === 'r') of(p[3]!).b = (unpackUntrusted(await raw.db.get(k), { maxBytes: 1 << 30, maxDepth: 4, maxNodes: 1_000_000 }) as { b: number }).b;
  }
  return out;
}

/**
 * Reopens the data dir: it must show `before` (trials, intermediate values, attrs); then a fresh peer
 * that joins it alone must come to hold the same. Returns the reopened storage.
 */
async function reopenAndJoin(dataDir: string, name: string, before: string): Promise<PeerStorage> {
  const again = peer.adopt(await openPeerStorage({ ...OPTS, dataDir }));
  const reloaded = await loadStudy({ studyName: name, storage: again });
  assert.equal(viewOf(reloaded), before, `the reopened peer shows the same trials of ${name}`);
  const joiner = await peer(again.multiaddrs());
  const joined = await loadStudy({ studyName: name, storage: joiner });
  await waitFor(`a joiner to hold what the reopened peer shows of ${name}`, 30_000, () => viewOf(joined) === before);
  return again;
}

test('a sealed shard keeps its history under z/ and no c/ batches; a restart and a joiner get every trial, a late attr on a sealed trial included', async () => {
  const { dataDir, study, storage } = await studyOf130('format3');
  const sid = study.studyId;
  // A user attr set on a finished trial of the first, sealed shard: the shard is written to again.
  storage.setTrialUserAttr(sid, study.trials[0]!.trialId, 'late', 'after the seal');
  await waitFor('the late attr to be read', 5_000, () => study.trials[0]!.userAttrs['late'] === 'after the seal');
  const before = viewOf(study);
  const late = shardOfTrial(study.trials[0]!.trialId);
  await storage.close();

  const raw = await openRaw(dataDir);
  try {
    const shards = await layout(raw, sid);
    assert.equal(shards.size, 3, 'three shards of this owner on disk');
    const sealed = [...shards].filter(([, e]) => e.b !== null);
    assert.equal(sealed.length, 2, 'two of them sealed');
    for (const [shard, e] of sealed) {
      assert.ok(e.z, `sealed shard ${shard} has its history under z/`);
      // The late attr's shard was sealed again (no batches) or is open since (batches past its seal).
      if (shard !== late) assert.ok(e.c.length === 0 && e.b === 0, `sealed shard ${shard} keeps no c/ batches (${e.c.length}, b ${e.b})`);
    }
    const open = [...shards].find(([, e]) => e.b === null)!;
    assert.ok(open[1].c.length >= 1 && !open[1].z, 'the open shard keeps its c/ batches');
  } finally {
    await raw.db.close();
  }

  await reopenAndJoin(dataDir, 'format3', before);
});

test('a data dir of format 2 (sealed histories as c/ batches) is upgraded in place when opened, and loads and serves all of it', async () => {
  const { dataDir, study, storage } = await studyOf130('format2');
  const sid = study.studyId;
  const before = viewOf(study);
  await storage.close();

  // Back to format 2: each z/ history becomes the shard's one c/ batch, covered by its seal.
  let raw = await openRaw(dataDir);
  try {
    const ops: ({ type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string })[] = [{ type: 'put', key: 'format', value: new TextEncoder().encode('2') }];
    for (const [shard, e] of await layout(raw, sid)) {
      if (e.b === null) continue;
      assert.equal(e.c.length, 0);
      const z = `z/${sid}/${shard}`;
      ops.push({ type: 'put', key: `s/${sid}/c/${shard}/0000000000`, value: await raw.db.get(z) });
      ops.push({ type: 'del', key: z });
      const r = `s/${sid}/r/${shard}`;
      const o = unpackUntrusted(await raw.db.get(r), { maxBytes: 1 << 30, maxDepth: 4, maxNodes: 1_000_000 }) as Record<string, unknown>;
      ops.push({ type: 'put', key: r, value: pack({ ...o, b: 1 }) });
    }
    assert.equal(ops.length, 1 + 2 * 3, 'two sealed shards rewritten');
    await raw.db.batch(ops);
  } finally {
    await raw.db.close();
  }

  await (await reopenAndJoin(dataDir, 'format2', before)).close();

  raw = await openRaw(dataDir);
  try {
    assert.equal(new TextDecoder().decode(await raw.db.get('format')), '3', 'the data dir is marked format 3');
    const sealed = [...(await layout(raw, sid))].filter(([, e]) => e.b !== null);
    assert.equal(sealed.length, 2);
    for (const [shard, e] of sealed) assert.ok(e.z && e.c.length === 0 && e.b === 0, `sealed shard ${shard} moved to z/ (c/ ${e.c.length}, b ${e.b})`);
  } finally {
    await raw.db.close();
  }
});
