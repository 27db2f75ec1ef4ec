// One trial, one number (issue 8): optimize's callbacks receive their trial once its number is
// settled (study.ts). A trial shorter than the round the settling takes does not hold the next one:
// its callbacks wait behind (at most OVERLAPPED_WRITES), in finish order, and optimize resolves after
// all of them; stop() and a throwing callback still end optimize, with at most that many trials more.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, loadStudy, type FrozenTrial, type Study } from '../../src/index.js';
import { OVERLAPPED_WRITES } from '../../src/study.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

const peer = inProcessPeers('peertune-settled-cb-', { heartbeatIntervalMs: 500, staleAfterMs: 30_000 });

async function pair(name: string): Promise<[Study, Study]> {
  const A = await peer();
  const a = await createStudy({ studyName: name, storage: A });
  const B = await peer(A.multiaddrs());
  const b = await loadStudy({ studyName: name, storage: B });
  await waitFor('heartbeats both ways', 20_000, () => A.peers!(a.studyId).some((p) => p.peerId === B.peerId) && B.peers!(b.studyId).some((p) => p.peerId === A.peerId));
  return [a, b];
}

const seq = (t: FrozenTrial): number => Number(t.trialId.split(':').at(-1));
const own = (s: Study): FrozenTrial[] => s.trials.filter((t) => t.owner === s.storage.ownerId && t.state === 'COMPLETE');

describe('callbacks of a replicated study', () => {
  it('see the final number of every trial, in finish order, all before optimize resolves', async () => {
    const [a, b] = await pair('cb-numbers');
    const seen = new Map<Study, FrozenTrial[]>([[a, []], [b, []]]);
    const run = (s: Study) => s.optimize((t) => (t.suggestFloat('x', -10, 10) - 2) ** 2, { nTrials: 150, callbacks: [(_st, t) => void seen.get(s)!.push(t)] });
    await Promise.all([run(a), run(b)]);
    for (const s of [a, b]) {
      const got = seen.get(s)!;
      assert.equal(got.length, 150, 'a callback for each trial, before optimize resolved');
      assert.deepEqual(got.map(seq), [...got.map(seq)].sort((x, y) => x - y), 'in the order the trials finished');
      assert.ok(got.every((t) => t.state === 'COMPLETE'), 'each finished');
    }
    await waitFor('both replicas hold the 300 trials', 20_000, () => a.trials.length === 300 && b.trials.length === 300);
    const final = new Map(a.trials.map((t) => [t.trialId, t.number]));
    assert.deepEqual(new Map(b.trials.map((t) => [t.trialId, t.number])), final, 'the same numbers on both replicas');
    const moved = [...seen.values()].flat().filter((t) => final.get(t.trialId) !== t.number);
    const timeouts = [a, b].reduce((n, s) => n + ((s.storage as unknown as { stats(): { counters: Record<string, number> } }).stats().counters['numbers:settle-timeout'] ?? 0), 0);
    assert.ok(moved.length <= timeouts, `${moved.length} numbers callbacks saw moved, ${timeouts} settle waits timed out: ${moved.slice(0, 5).map((t) => `${t.trialId} #${t.number} -> #${final.get(t.trialId)}`).join('; ')}`);
  });

  it('stop() in a callback ends optimize within the callbacks allowed behind, and every started trial gets its callbacks', async () => {
    const [a, b] = await pair('cb-stop');
    const other = b.optimize((t) => t.suggestFloat('x', 0, 1), { timeout: 30, callbacks: [() => {}] });
    let calls = 0;
    await a.optimize((t) => t.suggestFloat('x', 0, 1), {
      nTrials: 1000,
      callbacks: [
        (s) => {
          calls++;
          if (calls === 10) s.stop();
        },
      ],
    });
    b.stop();
    await other;
    const ran = own(a).length;
    assert.ok(ran >= 10 && ran <= 10 + OVERLAPPED_WRITES + 1, `stopped at the 10th callback: ${ran} trials ran (at most ${OVERLAPPED_WRITES + 1} more)`);
    assert.equal(calls, ran, 'a callback for each trial that ran');
  });

  it('a callback that throws rejects optimize with its error, and stops the worker', async () => {
    const [a, b] = await pair('cb-throw');
    const other = b.optimize((t) => t.suggestFloat('x', 0, 1), { timeout: 30, callbacks: [() => {}] });
    let calls = 0;
    await assert.rejects(
      a.optimize((t) => t.suggestFloat('x', 0, 1), {
        nTrials: 1000,
        callbacks: [
          () => {
            calls++;
            if (calls === 5) throw new Error('callback five refuses');
          },
        ],
      }),
      /callback five refuses/,
    );
    b.stop();
    await other;
    const ran = own(a).length;
    assert.ok(ran >= 5 && ran <= 5 + OVERLAPPED_WRITES + 1, `stopped at the 5th callback: ${ran} trials ran`);
  });
});
