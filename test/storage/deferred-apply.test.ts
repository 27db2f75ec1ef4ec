/**
 * Issue 8: a receiver takes others' shard changes that extend the shard in one line without applying
 * them to the shard's Automerge document at once (replica.ts Shard.defer); they are applied in one
 * call when the document is read. What must hold all the same: the receiver's heads are the owner's,
 * a relay serves the changes it deferred to a peer that joins through it (unsealed shard: from the
 * document; sealed shard: from disk), the sealed shard holds every record, and a restart reads all of
 * it back from disk with the same heads. Real in-process peers on 127.0.0.1 with level dirs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, loadStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { replicaHeads, shardDocCopy, shardOfTrial, trialBytes } from '../../src/storage/replicated/testing.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const OPTS = { heartbeatIntervalMs: 150, staleAfterMs: 60_000 };
const peer = inProcessPeers('peertune-deferred-', OPTS);

test('changes taken by gossip and applied later: same heads as the owner, served on by sync, sealed whole, read back after a restart', async () => {
  const owner = await peer();
  const oStudy = await createStudy({ studyName: 'deferred', storage: owner, sampler: new RandomSampler({ seed: 1 }) });
  const sid = oStudy.studyId;
  const relayDir = await peer.dir();
  let relay = peer.adopt(await openPeerStorage({ ...OPTS, dataDir: relayDir, join: owner.multiaddrs() }));
  const rStudy = await loadStudy({ studyName: 'deferred', storage: relay });
  await waitFor('connected', 10_000, () => relay.stats().connectedPeers.includes(owner.peerId));

  // 64 finished trials fill the owner's first shard (sealed once all are finished); 3 more start the
  // second, the last of them left RUNNING so that shard stays open.
  await oStudy.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 66 });
  const running = oStudy.ask();
  running.suggestFloat('x', 0, 1);
  const viewOf = (s: typeof oStudy) => JSON.stringify(s.trials.map((t) => [t.trialId, t.number, t.state, t.values, t.params]));
  await waitFor('the relay to hold the owner\'s 67 trials as the owner shows them', 20_000, () => viewOf(rStudy) === viewOf(oStudy));
  assert.ok((relay.stats().counters['gossip:accepted'] ?? 0) >= 1, 'the trials came by gossip');
  await waitFor('the relay\'s heads to be the owner\'s', 10_000, () => replicaHeads(relay, sid) === replicaHeads(owner, sid));
  await waitFor('the first shard sealed on the relay', 10_000, () => (relay.stats().studies.find((s) => s.studyId === sid)?.sealedShards ?? 0) >= 1);
  assert.ok((relay.stats().counters['seal:from-deferred'] ?? 0) >= 1, 'the relay sealed the shard from its deferred changes, without applying them');

  // The open shard's document, read on the relay, holds each record byte for byte as the owner wrote it.
  const open = shardOfTrial(running.trialId);
  const doc = await shardDocCopy(relay, sid, open);
  const openIds = oStudy.trials.filter((t) => shardOfTrial(t.trialId) === open).map((t) => t.trialId);
  assert.equal(openIds.length, 3);
  for (const id of openIds) assert.deepEqual(doc[id], await trialBytes(owner, sid, id), `trial ${id} in the relay's shard document`);

  // A peer that joins through the relay alone, with the owner gone, gets all of it from the relay.
  const heads = replicaHeads(owner, sid);
  await owner.close();
  const joiner = await peer(relay.multiaddrs());
  const jStudy = await loadStudy({ studyName: 'deferred', storage: joiner });
  await waitFor('the joiner to hold the 67 trials from the relay', 30_000, () => viewOf(jStudy) === viewOf(rStudy));
  await waitFor('the joiner\'s heads to be the owner\'s', 10_000, () => replicaHeads(joiner, sid) === heads);

  // The relay restarted: what it deferred was on disk.
  const before = viewOf(rStudy);
  await relay.close();
  relay = peer.adopt(await openPeerStorage({ ...OPTS, dataDir: relayDir }));
  const again = await loadStudy({ studyName: 'deferred', storage: relay });
  assert.equal(viewOf(again), before, 'the restarted relay shows the same trials');
  assert.equal(replicaHeads(relay, sid), heads, 'and the same heads');
});
