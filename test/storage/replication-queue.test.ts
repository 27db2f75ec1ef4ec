/**
 * Enqueued trials across peers: a trial enqueued on one peer runs once in a connected swarm, takes
 * over the enqueued trial's display number, and every replica agrees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, loadStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const peer = inProcessPeers('peertune-queue-', { heartbeatIntervalMs: 150 });

test('an enqueued trial runs once across peers and keeps its number', async () => {
  const a = await peer();
  const sa = await createStudy({ studyName: 'queue', storage: a, sampler: new RandomSampler({ seed: 1 }) });
  const b = await peer(a.multiaddrs());
  const sb = await loadStudy({ studyName: 'queue', storage: b, sampler: new RandomSampler({ seed: 2 }) });
  await sa.enqueueTrial({ x: 0.25 });
  const waiting = sa.trials.find((t) => t.state === 'WAITING')!;
  await waitFor('b to see the enqueued trial', 10_000, () => sb.trials.some((t) => t.state === 'WAITING'));
  // b claims it (it runs first), then both run more once a has seen the claim.
  await sb.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 1 });
  await waitFor('a to see b\'s claim of the enqueued trial', 10_000, () => !sa.trials.some((t) => t.state === 'WAITING'));
  await Promise.all([sa.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 3 }), sb.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 3 })]);
  await waitFor('both replicas to hold all 7 trials', 10_000, () => sa.trials.length === 7 && sb.trials.length === 7);
  for (const s of [sa, sb]) {
    const runs = s.trials.filter((t) => t.params['x'] === 0.25);
    assert.equal(runs.length, 1, 'the enqueued params ran exactly once');
    assert.equal(runs[0]!.owner, b.peerId);
    assert.equal(s.trials.filter((t) => t.state === 'WAITING').length, 0, 'the claimed WAITING trial is not shown');
    assert.equal(s.trials.length, 7);
    assert.equal(new Set(s.trials.map((t) => t.number)).size, 7, 'numbers unique');
  }
  assert.equal(sa.trials.find((t) => t.params['x'] === 0.25)!.number, waiting.number, 'the claim took over the enqueued number on the enqueuing peer');
});

test('the creator of a study keeps it, its trials and its queue across a restart', async () => {
  const dir = await peer.dir();
  const a = await openPeerStorage({ dataDir: dir, listen: [] });
  const sa = await createStudy({ studyName: 'kept', storage: a, sampler: new RandomSampler({ seed: 1 }) });
  await sa.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 3 });
  await sa.enqueueTrial({ x: 0.5 });
  const before = sa.trials.map((t) => [t.trialId, t.number, t.state]);
  await a.close();
  const again = await openPeerStorage({ dataDir: dir, listen: [] });
  peer.adopt(again);
  const s2 = await loadStudy({ studyName: 'kept', storage: again });
  assert.deepEqual(s2.trials.map((t) => [t.trialId, t.number, t.state]), before);
  await s2.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 1 });
  assert.equal(s2.trials.filter((t) => t.params['x'] === 0.5).length, 1, 'the queue survived the restart');
});
