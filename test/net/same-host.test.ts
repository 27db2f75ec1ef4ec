/**
 * Many peers of one machine (net/node.ts sameHostAddresses): gossipsub scores a peer down once more
 * than 10 peers come from its IP, and all peers of one machine come from 127.0.0.1. Past 10 of them
 * the scores went negative, the study mesh stayed empty and nothing was relayed; past about 50 the
 * authors stopped publishing to their neighbours at all (64 in-process peers never spread a trial).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, setVerbosity } from '../../src/index.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { gossipView } from '../../src/storage/replicated/testing.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const peer = inProcessPeers('peertune-same-host-', { heartbeatIntervalMs: 300, staleAfterMs: 60_000 });

test('14 peers of one machine keep non-negative scores for each other and a study mesh on every peer', async () => {
  const n = 14;
  const first = await peer();
  const { studyId } = await createStudy({ studyName: 'same-host', storage: first });
  const peers: PeerStorage[] = [first];
  for (let i = 1; i < n; i++) peers.push(await peer([first.multiaddrs()[0]!, peers[i - 1]!.multiaddrs()[0]!]));
  const got = await Promise.all(peers.slice(1).map((p) => p.waitForStudy('same-host', 60_000)));
  assert.ok(got.every(Boolean), 'every peer got the study');
  // More than 10 neighbours on one address: the point where gossipsub's colocation penalty starts.
  await waitFor('every peer connected to more than 10 others', 60_000, () => peers.every((p) => p.stats().connectedPeers.length > 10));
  await waitFor('a study mesh on every peer', 60_000, () => peers.every((p) => gossipView(p, studyId).mesh.length > 0));
  for (const [i, p] of peers.entries()) {
    const { scores } = gossipView(p, studyId);
    for (const [id, sc] of scores) assert.ok(sc >= 0, `peer ${i} scores ${id.slice(-6)} at ${sc}`);
  }
  // And a trial spreads to all of them.
  const t = peers[5]!.createTrial(studyId);
  await peers[5]!.finishTrial(studyId, t.trialId, 'COMPLETE', [1]);
  await waitFor('the trial on all 14 peers', 60_000, () =>
    peers.every((p) => {
      try {
        return p.getTrial(studyId, t.trialId).state === 'COMPLETE';
      } catch {
        return false;
      }
    }),
  );
});
