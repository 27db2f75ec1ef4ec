/**
 * Issue 8 (replica memory): a record decoded from bytes holds its intermediate values packed (one
 * Float64Array, schema.ts IntermediateList), while the wire keeps [step, value] pairs. Checked end to
 * end with real in-process peers on 127.0.0.1 and level dirs: the values (NaN, ±Infinity, a step
 * reported twice) read the same on the writer, on a peer that got them by gossip, and on the writer
 * after a restart from disk; and a record this peer signs again after the restart (a user attr on
 * the finished trial, so the packed record is encoded anew) still reaches the other peer whole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';
import { setVerbosity } from '../../src/index.js';
import { PackedStepMap } from '../../src/storage/storage.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');
const peer = inProcessPeers('peertune-ivpack-', { heartbeatIntervalMs: 150, staleAfterMs: 60_000 });

const steps = (s: PeerStorage, sid: string, tid: string): [number, number][] =>
  [...s.getTrial(sid, tid).intermediateValues.entries()].sort((a, b) => a[0] - b[0]);

test('intermediate values read the same on the writer, by gossip and after a restart; a record signed again after it still arrives whole', async () => {
  const dirA = await peer.dir();
  let a = peer.adopt(await openPeerStorage({ dataDir: dirA, heartbeatIntervalMs: 150, staleAfterMs: 60_000 }));
  const b = await peer(a.multiaddrs());
  const info = await a.createStudy({ studyName: 'ivpack', directions: ['minimize'] });
  const sid = info.studyId;
  await waitFor('the study on b', 10_000, () => b.getStudy('ivpack'));
  const t = a.createTrial(sid);
  const expected: [number, number][] = [
    [0, 0.5],
    [1, Number.NaN],
    [2, Number.POSITIVE_INFINITY],
    [3, Number.NEGATIVE_INFINITY],
    [7, -2.25],
    [2 ** 40, 1e-300],
  ];
  for (const [step, value] of expected) a.setTrialIntermediateValue(sid, t.trialId, step, step === 7 ? 99 : value);
  a.setTrialIntermediateValue(sid, t.trialId, 7, -2.25); // the same step again: the last value stays
  await a.finishTrial(sid, t.trialId, 'COMPLETE', [1]);
  assert.deepEqual(steps(a, sid, t.trialId), expected, 'on the writer');
  await waitFor('the finished trial on b', 10_000, () => b.getAllTrials(sid).find((x) => x.trialId === t.trialId && x.state === 'COMPLETE'));
  assert.deepEqual(steps(b, sid, t.trialId), expected, 'on the peer that got it by gossip');

  await a.close();
  a = peer.adopt(await openPeerStorage({ dataDir: dirA, heartbeatIntervalMs: 150, staleAfterMs: 60_000, join: b.multiaddrs() }));
  assert.deepEqual(steps(a, sid, t.trialId), expected, 'on the writer after a restart (decoded from disk)');

  // Signed again from the record decoded off the disk.
  a.setTrialUserAttr(sid, t.trialId, 'note', 'after restart');
  await waitFor('the attr on b', 10_000, () => b.getTrial(sid, t.trialId).userAttrs['note'] === 'after restart');
  assert.deepEqual(steps(b, sid, t.trialId), expected, 'on the other peer after the record was signed again');
  assert.equal(b.stats().counters['gossip:schema'] ?? 0, 0, 'no record was refused as malformed');
});

test('a packed step map reads as the Map of the same pairs: steps in order, out of order, repeated, and after writes to it', () => {
  const cases: [number, number][][] = [
    [],
    [[0, 1.5]],
    [[0, 1], [1, Number.NaN], [5, -2], [2 ** 40, 3]],
    [[3, 1], [1, 2], [2, 3]], // out of order
    [[0, 1], [2, 2], [2, 7], [4, 3]], // a step twice: the later value, as Map.set
  ];
  for (const pairs of cases) {
    const packed = new PackedStepMap(pairs.flat());
    const map = new Map(pairs);
    const what = JSON.stringify(pairs);
    assert.ok(packed instanceof Map, what);
    assert.equal(packed.size, map.size, `size of ${what}`);
    assert.deepEqual([...packed], [...map], `entries of ${what}`);
    assert.deepEqual([...packed.keys()], [...map.keys()], `keys of ${what}`);
    assert.deepEqual([...packed.values()], [...map.values()], `values of ${what}`);
    const seen: [number, number][] = [];
    packed.forEach((v, k, m) => {
      assert.equal(m, packed);
      seen.push([k, v]);
    });
    assert.deepEqual(seen, [...map], `forEach of ${what}`);
    for (const step of [-1, 0, 1, 2, 3, 4, 5, 6, 2 ** 40]) {
      assert.equal(packed.has(step), map.has(step), `has(${step}) in ${what}`);
      assert.deepEqual(packed.get(step), map.get(step), `get(${step}) in ${what}`);
    }
    assert.deepEqual(new Map(packed), map, `a copy of ${what}`);
    // Written to, it is an ordinary map of the same entries plus the write.
    packed.set(9, 0.25);
    map.set(9, 0.25);
    packed.delete(0);
    map.delete(0);
    assert.deepEqual([...packed], [...map], `after writes to ${what}`);
    assert.equal(packed.get(9), 0.25);
    packed.clear();
    assert.equal(packed.size, 0);
    assert.deepEqual([...packed], []);
  }
});
