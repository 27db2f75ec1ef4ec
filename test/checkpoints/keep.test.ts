// Keep rules for checkpoints (Ray's CheckpointConfig with peertune's mends): the latest always stays,
// then the best numToKeep by score; a missing or NaN score ranks worst; ties go to the newer; pinned
// checkpoints stay whatever their rank.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bestCheckpoint, checkCheckpointConfig, rankCheckpoints, selectKept } from '../../src/checkpoints/keep.js';
import { OptionError } from '../../src/errors.js';

const cp = (seq: number, acc?: number) => ({ id: `c${seq}`, seq, metrics: acc === undefined ? {} : { acc } });
const ids = (s: Set<string>): string[] => [...s].sort();

test('without a score attribute the newest numToKeep stay', () => {
  const cps = [cp(1), cp(2), cp(3), cp(4)];
  assert.deepEqual(ids(selectKept(cps, { numToKeep: 2 })), ['c3', 'c4']);
  assert.deepEqual(ids(selectKept(cps, {})), ['c1', 'c2', 'c3', 'c4'], 'numToKeep left out keeps all');
});

test('with a score attribute: the best numToKeep plus the latest (K+1 at most)', () => {
  const cps = [cp(1, 0.9), cp(2, 0.5), cp(3, 0.7), cp(4, 0.1)];
  assert.deepEqual(ids(selectKept(cps, { numToKeep: 2, scoreAttribute: 'acc' })), ['c1', 'c3', 'c4']);
  assert.deepEqual(ids(selectKept(cps, { numToKeep: 2, scoreAttribute: 'acc', scoreOrder: 'min' })), ['c2', 'c4']);
});

test('missing and NaN scores rank worst; ties go to the newer', () => {
  const cps = [cp(1, NaN), cp(2), cp(3, 0.2), cp(4, 0.2), cp(5, NaN)];
  const ranked = rankCheckpoints(cps, { scoreAttribute: 'acc' }).map((c) => c.id);
  assert.deepEqual(ranked.slice(0, 2), ['c4', 'c3'], 'the newer of two equal scores first');
  assert.deepEqual(new Set(ranked.slice(2)), new Set(['c1', 'c2', 'c5']));
  assert.deepEqual(ids(selectKept(cps, { numToKeep: 1, scoreAttribute: 'acc' })), ['c4', 'c5'], 'the latest stays even with a NaN score');
  assert.equal(bestCheckpoint([cp(1, NaN), cp(2)], 'acc'), null);
  assert.equal(bestCheckpoint(cps, 'acc', 'max')?.id, 'c4');
});

test('pinned checkpoints are kept whatever their rank', () => {
  const cps = [cp(1, 0.1), cp(2, 0.9), cp(3, 0.5)];
  assert.deepEqual(ids(selectKept(cps, { numToKeep: 1, scoreAttribute: 'acc' }, new Set(['c1']))), ['c1', 'c2', 'c3']);
  assert.deepEqual(ids(selectKept([], { numToKeep: 1 })), []);
});

test('checkpointConfig mistakes are OptionErrors naming the option', () => {
  assert.throws(() => checkCheckpointConfig({ numToKeep: 0 }), (e: unknown) => e instanceof OptionError && e.option === 'numToKeep' && /integer >= 1/.test(e.message));
  assert.throws(() => checkCheckpointConfig({ scoreOrder: 'up' as never }), (e: unknown) => e instanceof OptionError && e.option === 'scoreOrder');
  assert.throws(() => checkCheckpointConfig({ minReplicas: 99 }), (e: unknown) => e instanceof OptionError && e.option === 'minReplicas');
  assert.throws(() => checkCheckpointConfig({ numTokeep: 2 } as never), /unknown option "numTokeep"/);
  assert.deepEqual(checkCheckpointConfig(undefined), { scoreOrder: 'max', minReplicas: 1 });
});
