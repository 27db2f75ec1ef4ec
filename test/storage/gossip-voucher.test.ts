/**
 * Issue 8: a gossip message carries, per shard, its owner's voucher (one signature over the hashes of
 * the changes in it: schema.ts makeVoucher / openVoucher), and receivers skip the one-by-one record
 * signature checks of the changes it lists. Honest trials arrive under vouchers; a voucher that is not
 * the shard owner's rejects the message whole; a genuine voucher replayed next to a forged change
 * does not cover it (the forgery's records are checked and refused). Real in-process peers on
 * 127.0.0.1 with level dirs.
 */
import * as A from '@automerge/automerge';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, loadStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { changeHash, decodeTrial, makeVoucher, seal } from '../../src/storage/replicated/schema.js';
import { publishRaw, shardDocCopy, shardOfTrial, signingKey, trialBytes } from '../../src/storage/replicated/testing.js';
import { pack } from '../../src/net/wire.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const peer = inProcessPeers('peertune-voucher-', { heartbeatIntervalMs: 150, staleAfterMs: 60_000 });
const counter = (s: PeerStorage, k: string) => s.stats().counters[k] ?? 0;

test('gossip vouchers: honest trials arrive under them; a voucher not by the shard owner, or not covering a forged change, does not let it in', async () => {
  const victim = await peer();
  const vStudy = await createStudy({ studyName: 'vouch', storage: victim, sampler: new RandomSampler({ seed: 1 }) });
  const mallory = await peer(victim.multiaddrs());
  const mStudy = await loadStudy({ studyName: 'vouch', storage: mallory, sampler: new RandomSampler({ seed: 2 }) });
  const sid = vStudy.studyId;
  await waitFor('connected', 10_000, () => victim.stats().connectedPeers.includes(mallory.peerId));
  await vStudy.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 3 });
  await mStudy.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 3 });
  await waitFor('both replicas with 6 finished trials', 10_000, () => [vStudy, mStudy].every((s) => s.getTrials({ states: ['COMPLETE'] }).length === 6));
  assert.ok(counter(victim, 'gossip:accepted') >= 1, 'mallory\'s honest trials came by gossip');

  const tid = vStudy.trials[0]!.trialId;
  const vShard = shardOfTrial(tid);
  const rec = decodeTrial((await trialBytes(mallory, sid, tid))!, false);
  const doc = (await shardDocCopy(mallory, sid, vShard)) as A.Doc<Record<string, unknown>>;
  const forged = A.getLastLocalChange(A.change(A.clone(doc), (d) => void (d[tid] = seal(signingKey(mallory), { ...rec, v: rec.v + 1, vals: [-1e9] }))))!;
  const shownBefore = JSON.stringify(vStudy.trials.map((t) => [t.trialId, t.state, t.values]));

  // 1. A voucher for the victim's shard signed by mallory: not the owner's, the message is rejected whole.
  const badVoucher = makeVoucher(signingKey(mallory), sid, vShard, [changeHash(forged)])!;
  const r1 = counter(victim, 'gossip:bad-voucher');
  await publishRaw(mallory, sid, pack({ t: [[vShard, [forged], badVoucher]] }));
  await waitFor('the victim to refuse the voucher', 5000, () => counter(victim, 'gossip:bad-voucher') > r1);

  // 2. A genuine voucher of the victim (over its own changes) next to the forged change: it does not
  //    list the forgery, whose record is then checked one by one and refused.
  const genuine = makeVoucher(signingKey(victim), sid, vShard, A.getAllChanges(doc).map(changeHash))!;
  const r2 = counter(victim, 'gossip:bad-signature');
  await publishRaw(mallory, sid, pack({ t: [[vShard, [forged], genuine]] }));
  await waitFor('the victim to refuse the forged record', 5000, () => counter(victim, 'gossip:bad-signature') > r2);

  // 3. A voucher that is not bytes: refused by the message schema.
  const r3 = counter(victim, 'gossip:schema');
  await publishRaw(mallory, sid, pack({ t: [[vShard, [forged], 'not a voucher']] }));
  await waitFor('the victim to refuse the malformed entry', 5000, () => counter(victim, 'gossip:schema') > r3);

  assert.equal(JSON.stringify(vStudy.trials.map((t) => [t.trialId, t.state, t.values])), shownBefore, 'nothing forged got in');
  // Honest trials still flow after the attempts.
  await mStudy.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 2 });
  await waitFor('mallory\'s two new honest trials on the victim', 10_000, () => vStudy.getTrials({ states: ['COMPLETE'] }).length === 8);
});
