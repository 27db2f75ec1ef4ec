// A partition heals with two catch-up sessions at once, one each way, both bringing the same shards
// (session 13: the bench's heal of 2 x 10,000 stalled in about one run of five). sync-adapter.ts
// `apply` waits for the disk between looking at a shard and applying to it; interleaved, one session
// took a shard whole while the other (or a refusal's pruneEmpty) left a fresh empty shard of the same
// key beside trials the view already held, and from then on every piece of that shard was refused as
// "v0 RUNNING cannot replace v1 COMPLETE": the honest peers quarantined each other and never converged.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { setVerbosity } from '../../src/index.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';
import { writeTrials } from '../fixtures/trials.js';

const peer = inProcessPeers('peertune-heal-sessions-', { heartbeatIntervalMs: 200, staleAfterMs: 60_000 });
const PER_SIDE = 3000;
const ROUNDS = 4;

/** Counters that mean a peer refused an honest peer's catch-up, or quarantined it. */
function refusals(s: PeerStorage): Record<string, number> {
  return Object.fromEntries(Object.entries(s.stats().counters).filter(([k]) => /^sync:rejected|^sync:stale|^quarantine:|^denied-quarantined/.test(k)));
}

it(`partition heals of 2 x ${PER_SIDE} trials, ${ROUNDS} times: both sides hold all trials, and neither refused a piece of the other's`, async () => {
  setVerbosity('error');
  for (let round = 0; round < ROUNDS; round++) {
    const a = await peer();
    const sid = (await a.createStudy({ studyName: `heal-${round}`, directions: ['minimize'] })).studyId;
    const b = await peer(a.multiaddrs());
    await waitFor('b to hold the study', 20_000, () => b.waitForStudyId(sid, 1000));
    await a.blockPeers([b.peerId]);
    await b.blockPeers([a.peerId]);
    await Promise.all([writeTrials(a, sid, PER_SIDE), writeTrials(b, sid, PER_SIDE)]);
    await Promise.all([a.flush(), b.flush()]);
    a.unblockPeers([b.peerId]);
    b.unblockPeers([a.peerId]);
    try {
      await waitFor(`round ${round}: both sides to hold ${2 * PER_SIDE} trials`, 60_000, () => a.getAllTrials(sid).length === 2 * PER_SIDE && b.getAllTrials(sid).length === 2 * PER_SIDE);
    } catch (e) {
      throw new Error(`${(e as Error).message}: a holds ${a.getAllTrials(sid).length}, b ${b.getAllTrials(sid).length}; refusals a ${JSON.stringify(refusals(a))}, b ${JSON.stringify(refusals(b))}`);
    }
    assert.deepEqual(refusals(a), {}, `round ${round}: a refused b's catch-up`);
    assert.deepEqual(refusals(b), {}, `round ${round}: b refused a's catch-up`);
    await a.close();
    await b.close();
  }
});
