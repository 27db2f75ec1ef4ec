// A RUNNING trial that another peer retried (systemAttrs.retryOf) reads FAIL on a replica that does not
// hear its owner (one opened after the owner was lost), but stays RUNNING on a replica that hears the
// owner: any member can write a trial naming another's in retryOf, and must not fail a live peer's
// trial that way. Three real PeerStorage replicas on 127.0.0.1.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';
import { setVerbosity } from '../../src/index.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const dirs: string[] = [];
const open: PeerStorage[] = [];
after(async () => {
  for (const s of open) await s.close().catch(() => {});
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function peer(join: string[] = []): Promise<PeerStorage> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pt-retried-'));
  dirs.push(d);
  const s = await openPeerStorage({ dataDir: d, join, heartbeatIntervalMs: 200, staleAfterMs: 3000 });
  open.push(s);
  return s;
}

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
  open.splice(open.indexOf(h), 1);
  const q = await peer(m.multiaddrs());
  await waitFor('Q to hold both trials', 20_000, () => q.listStudies().length === 1 && q.getAllTrials(info.studyId).length === 2);
  const lost = q.getTrial(info.studyId, running.trialId);
  assert.equal(lost.state, 'FAIL', 'retried, and its owner is not heard here');
  assert.match(String(lost.systemAttrs['failReason']), /retried as trial \d+/);
});
