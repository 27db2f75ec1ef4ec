/**
 * The relay filter (net/node.ts): a peer does not forward a study message to peers that its author
 * said (in its signed heartbeat) it is connected to, since the author's flood publish reached them.
 * In a fully connected swarm each peer then receives one copy of each message instead of one per
 * neighbour; where a peer is out of the author's reach, relays still carry the message to it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, loadStudy, RandomSampler, setVerbosity, type Study } from '../../src/index.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { neighbourLists } from '../../src/storage/replicated/testing.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const peer = inProcessPeers('peertune-relay-', { heartbeatIntervalMs: 150, staleAfterMs: 60_000 });

const counter = (s: PeerStorage, k: string): number => s.stats().counters[k] ?? 0;
const copiesOf = (s: PeerStorage): number => s.stats().gossipCopies.study;

async function runTrials(study: Study, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t = study.ask();
    t.suggestFloat('x', 0, 1);
    await study.tell(t, 1);
    // Trials apart from each other, so each leaves in its own message.
    await new Promise((r) => setTimeout(r, 30));
  }
}

test('fully connected swarm of 4: each peer receives about one copy of each study message', async () => {
  const a = await peer();
  const study = await createStudy({ studyName: 'relay-mesh', storage: a, sampler: new RandomSampler({ seed: 1 }) });
  const others = [await peer(a.multiaddrs()), await peer(a.multiaddrs()), await peer(a.multiaddrs())];
  for (const s of others) await loadStudy({ studyName: 'relay-mesh', storage: s, sampler: new RandomSampler({ seed: 2 }) });
  const all = [a, ...others];
  await waitFor('a full mesh, and every peer holding the others\' full neighbour lists', 20_000, () =>
    all.every((s) => s.stats().connectedPeers.length === 3 && all.every((o) => o === s || neighbourLists(s).get(o.peerId) === 3)),
  );
  const before = others.map((s) => ({ copies: copiesOf(s), accepted: counter(s, 'gossip:accepted') }));
  await runTrials(study, 30);
  await waitFor('30 trials on every peer', 20_000, () => others.every((s) => s.getAllTrials(study.studyId).filter((t) => t.state === 'COMPLETE').length === 30));
  for (const [i, s] of others.entries()) {
    const copies = copiesOf(s) - before[i]!.copies;
    const accepted = counter(s, 'gossip:accepted') - before[i]!.accepted;
    assert.ok(accepted >= 15, `peer ${i + 1} accepted ${accepted} messages for 30 trials`);
    // Without the filter each peer gets the author's copy plus one forwarded by each of the 2 other
    // receivers: 3 per message. With it, 1 (a few more while lists refresh are fine).
    assert.ok(copies <= 1.5 * accepted, `peer ${i + 1} received ${copies} copies of ${accepted} messages`);
  }
});

test('a peer out of the author\'s reach still gets its trials by relay, not by catch-up', async () => {
  const a = await peer();
  const study = await createStudy({ studyName: 'relay-line', storage: a, sampler: new RandomSampler({ seed: 1 }) });
  const b = await peer(a.multiaddrs());
  await loadStudy({ studyName: 'relay-line', storage: b, sampler: new RandomSampler({ seed: 2 }) });
  const c = await peer(b.multiaddrs());
  await c.blockPeers([a.peerId]); // c hears a only through b
  await loadStudy({ studyName: 'relay-line', storage: c, sampler: new RandomSampler({ seed: 3 }) });
  await waitFor('b connected to both, and b knowing a\'s neighbours', 20_000, () => b.stats().connectedPeers.length === 2 && neighbourLists(b).has(a.peerId) && neighbourLists(c).has(b.peerId));
  assert.ok(!c.stats().connectedPeers.includes(a.peerId));
  // b forwards to its gossip mesh of the topic, which it grafts c into at one of its heartbeats: warm up until it did.
  const warm = counter(c, 'gossip:accepted');
  await waitFor('c taking a first message relayed by b', 20_000, async () => {
    await runTrials(study, 1);
    return counter(c, 'gossip:accepted') > warm;
  });
  const warmTrials = study.trials.length;
  await waitFor('the warm-up trials on c', 20_000, () => c.getAllTrials(study.studyId).filter((t) => t.state === 'COMPLETE').length === warmTrials);
  const syncBefore = counter(c, 'sync:accepted-changes');
  const gossipBefore = counter(c, 'gossip:accepted');
  await runTrials(study, 20);
  await waitFor('20 more trials on c', 20_000, () => c.getAllTrials(study.studyId).filter((t) => t.state === 'COMPLETE').length === warmTrials + 20);
  // Had b skipped c, every trial would have come by catch-up (anti-entropy) and none by gossip.
  assert.ok(counter(c, 'gossip:accepted') - gossipBefore >= 10, `c took a's trials from gossip relayed by b (${JSON.stringify(c.stats().counters)})`);
  assert.ok(counter(c, 'sync:accepted-changes') - syncBefore < 10, 'most trials reached c without a catch-up session');
});
