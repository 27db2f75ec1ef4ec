// Checkpoints of trials over a real storage and a real blob store: the keep rules decide exactly which
// blobs stay on disk, a retry reads the latest checkpoint of the trial it retries, and the best
// checkpoint of the study is found by metric.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStudy, InMemoryStorage, setVerbosity } from '../../src/index.js';
import { BlobStore } from '../../src/checkpoints/blob-store.js';
import { CheckpointManager, CheckpointError, checkpointRefs } from '../../src/checkpoints/manager.js';

setVerbosity('warning');

async function setup(config: ConstructorParameters<typeof CheckpointManager>[2]['config']) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-ckm-'));
  const storage = new InMemoryStorage();
  const study = await createStudy({ storage, studyName: 'ck' });
  const store = await BlobStore.open(path.join(dir, 'store'));
  const mgr = new CheckpointManager(storage, store, { peerId: 'local', config });
  return { dir, storage, study, store, mgr };
}

async function saveEpochs(s: Awaited<ReturnType<typeof setup>>, trialId: string, accs: (number | undefined)[]) {
  const refs = [];
  for (let i = 0; i < accs.length; i++) {
    const f = path.join(s.dir, `epoch${i}.bin`);
    await writeFile(f, `weights after epoch ${i}`);
    refs.push(await s.mgr.save(s.study.studyId, trialId, f, { step: i + 1, metrics: accs[i] === undefined ? {} : { acc: accs[i]! } }));
  }
  return refs;
}

test('keep rules with a score: the blobs on disk are exactly the best numToKeep and the latest', async () => {
  const s = await setup({ numToKeep: 2, scoreAttribute: 'acc', scoreOrder: 'max' });
  const t = s.study.ask();
  const refs = await saveEpochs(s, t.trialId, [0.5, 0.9, NaN, 0.7, undefined, 0.2]);
  const kept = checkpointRefs(s.storage.getTrial(s.study.studyId, t.trialId)).map((r) => r.step).sort();
  assert.deepEqual(kept, [2, 4, 6], 'acc 0.9 (step 2), 0.7 (step 4) and the latest (step 6)');
  const onDisk = (await s.store.list()).sort();
  assert.deepEqual(onDisk, [refs[1]!.hash, refs[3]!.hash, refs[5]!.hash].sort());
  assert.equal(s.mgr.bestRef(s.study.studyId, 'acc', 'max')?.step, 2);
  assert.equal(s.mgr.bestRef(s.study.studyId, 'acc', 'min')?.step, 6);
  await rm(s.dir, { recursive: true, force: true });
});

test('keep rules without a score: the newest numToKeep; left out: all', async () => {
  const s = await setup({ numToKeep: 1 });
  const t = s.study.ask();
  const refs = await saveEpochs(s, t.trialId, [1, 2, 3]);
  assert.deepEqual(await s.store.list(), [refs[2]!.hash]);
  const all = await setup(undefined);
  const t2 = all.study.ask();
  await saveEpochs(all, t2.trialId, [1, 2, 3]);
  assert.equal((await all.store.list()).length, 3);
  await rm(s.dir, { recursive: true, force: true });
  await rm(all.dir, { recursive: true, force: true });
});

test('a retry reads the latest checkpoint of the trial it retries; a fresh trial reads none', async () => {
  const s = await setup({});
  const t = s.study.ask();
  await saveEpochs(s, t.trialId, [0.1, 0.2, 0.3]);
  await s.study.tell(t, null, { state: 'FAIL' });
  const retry = s.storage.createTrial(s.study.studyId, { systemAttrs: { retryOf: t.trialId } });
  const ck = await s.mgr.get(s.study.studyId, retry.trialId);
  assert.ok(ck);
  assert.equal(ck.step, 3);
  assert.equal(ck.trialId, t.trialId);
  assert.equal(await readFile(ck.path, 'utf8'), 'weights after epoch 2');
  const fresh = s.study.ask();
  assert.equal(await s.mgr.get(s.study.studyId, fresh.trialId), null);
  await rm(s.dir, { recursive: true, force: true });
});

test('directory checkpoints round-trip; bad saves are errors naming the problem and store nothing', async () => {
  const s = await setup({ numToKeep: 1 });
  const t = s.study.ask();
  const ck = path.join(s.dir, 'ckdir');
  await mkdir(ck);
  await writeFile(path.join(ck, 'model.pt'), 'model');
  await writeFile(path.join(ck, 'optim.pt'), 'optim');
  await s.mgr.save(s.study.studyId, t.trialId, ck, { step: 1 });
  const got = await s.mgr.get(s.study.studyId, t.trialId);
  assert.equal(await readFile(path.join(got!.path, 'optim.pt'), 'utf8'), 'optim');
  const before = (await s.store.list()).sort();
  await assert.rejects(s.mgr.save(s.study.studyId, t.trialId, ck, { step: -1 }), (e: unknown) => e instanceof CheckpointError && /step must be an integer >= 0/.test(e.message));
  await assert.rejects(s.mgr.save(s.study.studyId, t.trialId, ck, { metrics: { acc: [1] as never } }), /metric "acc" must be a number/);
  await assert.rejects(s.mgr.save(s.study.studyId, t.trialId, path.join(s.dir, 'missing')), /does not exist/);
  assert.deepEqual((await s.store.list()).sort(), before);
  await s.study.tell(t, 1);
  await assert.rejects(s.mgr.save(s.study.studyId, t.trialId, ck, { step: 2 }), /is COMPLETE; checkpoints are saved while it runs/);
  await rm(s.dir, { recursive: true, force: true });
});
