// Issue 8 (sync-adapter.ts apply, replica.ts held): a catch-up piece is applied shard by shard. When a
// later shard of the piece is refused, the shards applied before it are in their documents already:
// the view must show their trials too (before, they sat in the documents unseen until a restart), and
// later merges must check new records against them (the view, not a read of the shard document, is
// what the merge rules now consult).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createStudy, loadStudy } from '../../src/index.js';
import { Attacker, allChanges, counters, diffCounters, forge, history, muteLogs, openPeer, replicaDoc, syncFrames, tempDir } from '../fixtures/attacker.js';
import { shardOfTrial } from '../../src/storage/replicated/testing.js';

it('a piece whose last shard is refused: the trials of the shards applied before it are in the view, and a stale record of them is still refused', async (t0) => {
  const unmute = muteLogs();
  const dir = await tempDir();
  const atk = await Attacker.start();
  const Y = await openPeer(join(dir.path, 'y'));
  const V = await openPeer(join(dir.path, 'v'), { join: Y.multiaddrs() });
  t0.after(async () => {
    await atk.stop();
    await V.close();
    await Y.close();
    await dir.remove();
    unmute();
  });
  const study = await createStudy({ studyName: 'partial', storage: Y });
  await loadStudy({ studyName: 'partial', storage: V });
  // V has the genesis only; Y runs two trials while they are apart.
  await V.blockPeers([Y.peerId]);
  await Y.blockPeers([V.peerId]);
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const t = await study.ask();
    t.suggestFloat('x', 0, 1);
    await Y.flush();
    await study.tell(t, i);
    ids.push(t.trialId);
  }
  await Y.flush();
  const docY = replicaDoc(Y, study.studyId);
  const shard = shardOfTrial(ids[0]!);
  const genuine = allChanges(docY).filter((c) => c.shard === shard);
  assert.ok(genuine.length >= 2, `Y's shard holds its history: ${genuine.length} changes`);
  // The attacker's own shard, with a value that is no signed record: refused at inspection.
  const bad = forge(docY, (d) => void (d.trials![`${atk.peerId}:0`] = new Uint8Array([1, 2, 3])));
  assert.notEqual(bad.shard, shard);
  await atk.connect(V.multiaddrs());
  const before = counters(V);
  await atk.rawSync(V.peerId, syncFrames(study.studyId, 'partial', [...genuine, bad]));
  const d = diffCounters(before, counters(V));
  assert.ok(Object.keys(d).some((k) => k.startsWith('sync:') && k !== 'sync:sessions-served' && k !== 'sync:accepted-changes' && /bad|envelope|schema|record|signature/.test(k)), `V refused the last shard: ${JSON.stringify(d)}`);
  assert.equal(d['sync:accepted-changes'], 1, `the shard before it was taken: ${JSON.stringify(d)}`);
  // Y is still blocked: the trials can only have come from the piece.
  const shown = V.getAllTrials(study.studyId);
  for (const [i, id] of ids.entries()) {
    const t = shown.find((x) => x.trialId === id);
    assert.ok(t, `trial ${id} of the applied shard is in V's view`);
    assert.equal(t.state, 'COMPLETE');
    assert.deepEqual(t.values, [i]);
  }
  assert.ok(!shown.some((x) => x.trialId.startsWith(atk.peerId)), 'nothing of the refused shard');
  // Y's own first (RUNNING) record written again on top, by a fresh actor: the merge rules check it
  // against the COMPLETE record the view took from the piece, and refuse it.
  const running = history(docY, 'trials', ids[0]!)[0]!;
  const back = forge(docY, (d) => void (d.trials![ids[0]!] = running));
  const b2 = counters(V);
  await atk.rawSync(V.peerId, syncFrames(study.studyId, 'partial', [back]));
  const d2 = diffCounters(b2, counters(V));
  assert.ok(d2['sync:stale-version'] === 1 || d2['sync:state-backward'] === 1, `the stale record was refused: ${JSON.stringify(d2)}`);
  assert.equal(V.getTrial(study.studyId, ids[0]!).state, 'COMPLETE');
});
