// A RUNNING trial that another peer retried (systemAttrs.retryOf) reads FAIL on a replica that does not
// hear its owner (one opened after the owner was lost), but stays RUNNING on a replica that hears the
// owner: any member can write a trial naming another's in retryOf, and must not fail a live peer's
// trial that way. Three real PeerStorage replicas on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setVerbosity } from '../../src/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const peer = inProcessPeers('pt-retried-', { heartbeatIntervalMs: 200, staleAfterMs: 3000 });

test('a retry claim fails the trial only where its owner is not heard', async () => {
  const h = await peer();
  const info = await h.createStudy({ studyName: 'r', directions: ['minimize'] });
  const running = h.createTrial(info.studyId);
  await h.flush();
  const m = await peer(h.multiaddrs());
  await waitFor('M to hold the study and H\'s trial', 20_000, () => m.listStudies().length === 1 && m.getAllTrials(info.studyId).length === 1);
  // M (a member, honest or not) writes a "retry" of H's trial while H is alive and running it.
  const claim = m.createTrial(info.studyId, { systemAttrs: { retryOf: running.trialId, retryHistory: [running.trialId] } });
  await m.finishTrial(info.studyId, claim.trialId, 'COMPLETE', [1]);
  await waitFor('H to hold M\'s trial', 20_000, () => h.getAllTrials(info.studyId).length === 2);
  await waitFor('M to hear H', 20_000, () => m.peers(info.studyId).some((p) => p.peerId === h.peerId && p.online));
  assert.equal(m.getTrial(info.studyId, running.trialId).state, 'RUNNING', 'a replica that hears the owner keeps its trial RUNNING');

  // A replica that joins through M only after H is gone cannot hear H: there the retried trial reads FAIL.
  await h.close();
  const q = await peer(m.multiaddrs());
  await waitFor('Q to hold both trials', 20_000, () => q.listStudies().length === 1 && q.getAllTrials(info.studyId).length === 2);
  const lost = q.getTrial(info.studyId, running.trialId);
  assert.equal(lost.state, 'FAIL', 'retried, and its owner is not heard here');
  assert.match(String(lost.systemAttrs['failReason']), /retried as trial \d+/);
});
