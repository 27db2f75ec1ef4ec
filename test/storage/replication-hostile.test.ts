/**
 * Forged changes from a member of the swarm: writing another owner's trial, putting a finished trial
 * back to RUNNING (a replayed genuine record), deleting a trial, junk bytes. Each is rejected on the
 * gossip path and on the sync path, counted by reason, leaves the victim's replica unchanged, and does
 * not reach a third peer behind the victim.
 */
import * as A from '@automerge/automerge';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, loadStudy, RandomSampler, setVerbosity, type Study } from '../../src/index.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { decodeTrial, seal } from '../../src/storage/replicated/schema.js';
import { askWholeStudy, gossipMessage, injectChange, publishRaw, replicaHeads, shardDocCopy, shardOfTrial, signingKey, studyDocCopy, trialBytes } from '../../src/storage/replicated/testing.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const peer = inProcessPeers('peertune-hostile-', { heartbeatIntervalMs: 150, staleAfterMs: 60_000 });

const until = (what: string, ms: number, pred: () => boolean): Promise<true> => waitFor(what, ms, pred) as Promise<true>;

type AnyDoc = Record<string, unknown>;
/** A change on top of `doc` made by `edit`, as a hostile peer would craft it. */
function craft(doc: A.Doc<AnyDoc>, edit: (d: AnyDoc) => void): Uint8Array {
  const forged = A.change(A.clone(doc), edit);
  return A.getLastLocalChange(forged)!;
}

const rejects = (s: PeerStorage, prefix: string) =>
  Object.entries(s.stats().counters)
    // Served catch-up pieces and shards taken under a voucher are not rejects (a wait on them passed before the victim judged a forgery).
    .filter(([k]) => k.startsWith(prefix) && !/accepted|sessions|buffered|pieces-sent|vouched-shards/.test(k))
    .reduce((n, [, v]) => n + v, 0);

test('forged changes are rejected on the gossip and sync paths and do not spread', async () => {
  const victim = await peer();
  const vStudy: Study = await createStudy({ studyName: 'hostile', storage: victim, sampler: new RandomSampler({ seed: 1 }) });
  const mallory = await peer(victim.multiaddrs());
  const third = await peer(victim.multiaddrs());
  await third.blockPeers([mallory.peerId]); // the third peer only hears Mallory through the victim
  const mStudy = await loadStudy({ studyName: 'hostile', storage: mallory, sampler: new RandomSampler({ seed: 2 }) });
  const tStudy = await loadStudy({ studyName: 'hostile', storage: third, sampler: new RandomSampler({ seed: 3 }) });
  const sid = vStudy.studyId;
  // The gossip mesh: Mallory's and the third peer's studies arrived by gossip+sync, and Mallory's topic reaches the victim.
  await until('mesh formed', 10_000, () => victim.stats().connectedPeers.length >= 2);

  // The victim runs a trial; Mallory keeps its genuine RUNNING record for a replay later.
  const t = vStudy.ask();
  t.suggestFloat('x', 0, 1);
  const tid = t.trialId;
  await until('mallory sees the RUNNING trial', 5000, () => mStudy.trials.some((x) => x.trialId === tid && Object.keys(x.params).length === 1));
  const runningBytes = (await trialBytes(mallory, sid, tid))!;
  await vStudy.tell(t, 0.5);
  await mStudy.optimize((tr) => tr.suggestFloat('x', 0, 1), { nTrials: 1 });
  await until('everyone has 2 finished trials', 5000, () => [vStudy, mStudy, tStudy].every((s) => s.getTrials({ states: ['COMPLETE'] }).length === 2));
  const mine = mStudy.trials.find((x) => x.owner === mallory.peerId)!;

  const key = signingKey(mallory);
  const victimRec = decodeTrial((await trialBytes(mallory, sid, tid))!, false);
  const mineRec = decodeTrial((await trialBytes(mallory, sid, mine.trialId))!, false);
  const vShard = shardOfTrial(tid);
  const mShard = shardOfTrial(mine.trialId);
  // [what, shard (null: the study document), edit]
  const forgeries: [string, string | null, (d: AnyDoc) => void][] = [
    ['another owner\'s trial, signed by the forger', vShard, (d) => (d[tid] = seal(key, { ...victimRec, v: victimRec.v + 1, vals: [-1e9] }))],
    ['a finished trial moved back to RUNNING (replayed genuine record)', vShard, (d) => (d[tid] = runningBytes)],
    ['own finished trial moved back to RUNNING', mShard, (d) => (d[mine.trialId] = seal(key, { ...mineRec, v: mineRec.v + 1, s: 'RUNNING', vals: null }))],
    ['a deleted trial', vShard, (d) => delete d[tid]],
    ['a record under another trial\'s key', vShard, (d) => (d[`${victim.peerId}:7`] = seal(key, { ...mineRec, v: mineRec.v + 1 }))],
    ['a write to the document root', null, (d) => (d['meta'] = new Uint8Array([1, 2, 3]))],
  ];
  const docOf = async (s: PeerStorage, shard: string | null): Promise<A.Doc<AnyDoc>> => (shard === null ? (studyDocCopy(s, sid) as unknown as A.Doc<AnyDoc>) : ((await shardDocCopy(s, sid, shard)) as A.Doc<AnyDoc>));

  const before = () => ({
    victim: JSON.stringify(vStudy.trials.map((x) => [x.trialId, x.state, x.values])),
    heads: replicaHeads(victim, sid),
    third: JSON.stringify(tStudy.trials.map((x) => [x.trialId, x.state, x.values])),
  });
  const snapshot = before();

  // Gossip path: each forged change published on the study topic.
  let gossipRejects = rejects(victim, 'gossip:');
  for (const [what, shard, edit] of forgeries) {
    const change = craft(await docOf(mallory, shard), edit);
    await publishRaw(mallory, sid, randomBytes(200)); // junk alongside each forgery
    await publishRaw(mallory, sid, gossipMessage(shard, [change]));
    await until(`gossip: victim rejects ${what}`, 5000, () => rejects(victim, 'gossip:') >= gossipRejects + 2);
    gossipRejects = rejects(victim, 'gossip:');
    assert.deepEqual(before(), snapshot, `gossip: nothing changed after ${what}`);
  }
  const counters = victim.stats().counters;
  for (const reason of ['gossip:bad-signature', 'gossip:stale-version', 'gossip:state-backward', 'gossip:delete', 'gossip:wrong-key', 'gossip:root-write']) {
    assert.ok((counters[reason] ?? 0) >= 1, `counter ${reason} in ${JSON.stringify(counters)}`);
  }

  // Sync path: Mallory holds a forged change in its own replica and offers it by sync.
  for (const [what, shard, edit] of forgeries.slice(0, 3)) {
    const m2 = await peer(victim.multiaddrs());
    await loadStudy({ studyName: 'hostile', storage: m2 });
    await until('m2 holds the shard', 5000, () => m2.getAllTrials(sid).length >= 2);
    await injectChange(m2, sid, shard, craft(await docOf(m2, shard), edit), { publish: false });
    const syncRejects = rejects(victim, 'sync:');
    await m2.syncNow(victim.peerId);
    await until(`sync: victim rejects ${what}`, 5000, () => rejects(victim, 'sync:') > syncRejects);
    assert.deepEqual(before(), snapshot, `sync: nothing changed after ${what}`);
    await m2.close();
  }
  assert.ok(Object.keys(victim.stats().counters).some((k) => k.startsWith('sync:rejected-')), JSON.stringify(victim.stats().counters));
  // The honest replicas still agree and keep working.
  await vStudy.optimize((tr) => tr.suggestFloat('x', 0, 1), { nTrials: 2 });
  await until('third peer sees the honest trials', 5000, () => tStudy.getTrials({ states: ['COMPLETE'] }).length === 4);
  assert.equal(tStudy.trials.find((x) => x.trialId === tid)!.values![0], 0.5);
  if (process.env['SHOW_COUNTERS']) console.log(JSON.stringify(victim.stats().counters), JSON.stringify(third.stats().counters));
});

test('a peer that asks for the whole study over and over is served about its budget, then refused for the window, without quarantine (issue 15 F13)', async (t) => {
  const victim = await peer(undefined, { serveBudgetBytes: 256 * 1024 });
  const vStudy = await createStudy({ studyName: 'f13', storage: victim, sampler: new RandomSampler({ seed: 1 }) });
  await vStudy.optimize((t) => {
    t.setUserAttr('pad', 'x'.repeat(1500));
    return t.suggestFloat('x', 0, 1);
  }, { nTrials: 120 });
  await victim.flush();
  const asker = await peer(victim.multiaddrs());
  await until('asker connected', 10_000, () => asker.stats().connectedPeers.includes(victim.peerId));
  // The budget: 256 KiB + 2 x 4 KiB per change held (sync-adapter.ts); each whole-study session draws the whole replica.
  let drawn = 0;
  let whole = 0;
  let refusedAfter = -1;
  for (let i = 0; i < 80 && refusedAfter < 0; i++) {
    const r = await askWholeStudy(asker, victim.peerId, vStudy.studyId);
    drawn += r.bytes;
    whole = Math.max(whole, r.bytes);
    if (!r.finished) refusedAfter = i;
  }
  t.diagnostic(`whole study ${whole} bytes; refused at session ${refusedAfter + 1} after ${drawn} bytes`);
  assert.ok(refusedAfter > 0, `the repeated asker is refused at some point (drew ${drawn} bytes)`);
  const counters = victim.stats().counters;
  assert.ok((counters['sync:serve-budget'] ?? 0) >= 1, JSON.stringify(counters));
  // At most 3 changes per trial here (RUNNING, attr, finished) and the study document's few.
  const budget = 256 * 1024 + 2 * 4096 * (3 * 120 + 10);
  assert.ok(whole > 100_000 && drawn >= 2 * whole, `each session drew the whole study (${whole} bytes), more than once`);
  assert.ok(drawn <= budget + 300 * 1024, `drawn ${drawn} bytes within the window, budget at most ${budget} (+ one piece)`);
  // Refused again right away, still connected (not a violation: no quarantine).
  const again = await askWholeStudy(asker, victim.peerId, vStudy.studyId);
  assert.equal(again.bytes, 0, 'nothing more within the window');
  assert.equal(counters['quarantine:peers'] ?? 0, 0);
  assert.ok(victim.stats().connectedPeers.includes(asker.peerId), 'the asker is not disconnected');
  // An honest joiner has a budget of its own and gets everything.
  const joiner = await peer(victim.multiaddrs());
  const jStudy = await loadStudy({ studyName: 'f13', storage: joiner });
  await until('the joiner caught up', 20_000, () => jStudy.getTrials({ states: ['COMPLETE'] }).length === 120);
});
