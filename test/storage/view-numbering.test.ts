// Issue 8, one trial one number: TrialView numbers trials by (claimed clock, id) whatever order their
// records arrive in, batch by batch, and reports exactly the numbers a batch moved. Checked against a
// full sort after every batch, for random arrival orders (trials of several owners, clocks that
// collide, versions that arrive late, batches landing anywhere in the order).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TrialView } from '../../src/storage/replicated/view.js';
import type { TrialRecord } from '../../src/storage/replicated/schema.js';

function rec(owner: string, q: number, c: number, v = 0): TrialRecord {
  return { k: 'trial', st: 's0', id: `${owner}:${q}`, o: owner, q, v, s: v ? 'COMPLETE' : 'RUNNING', p: {}, d: {}, vals: v ? [q] : null, iv: [], ua: {}, sa: {}, t0: c, t1: null, claim: null, c, ca: c };
}

test('numbers equal the rank by (clock, id) after every batch, and a batch reports exactly the numbers it moved', () => {
  const trial = fc.record({ owner: fc.constantFrom('a', 'b', 'c', 'd'), q: fc.nat(40), c: fc.integer({ min: 1000, max: 1060 }) });
  fc.assert(
    fc.property(fc.array(fc.array(trial, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 15 }), fc.boolean(), (batches, resend) => {
      const v = new TrialView('self');
      // One clock per trial id (a trial's claim never changes between its versions).
      const clockOf = new Map<string, number>();
      const known = new Map<string, TrialRecord>();
      for (const batch of batches) {
        const recs = batch.map(({ owner, q, c }) => {
          const id = `${owner}:${q}`;
          if (!clockOf.has(id)) clockOf.set(id, c);
          // A trial seen again arrives as its next version (COMPLETE), as a finished trial does.
          return rec(owner, q, clockOf.get(id)!, known.has(id) && resend ? 1 : 0);
        });
        const before = new Map(v.list().map((t) => [t.trialId, t.number]));
        const changes = v.put(recs);
        for (const r of recs) if (!known.has(r.id) || r.v > known.get(r.id)!.v) known.set(r.id, r);
        const expected = [...known.values()].sort((x, y) => x.c - y.c || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)).map((r) => r.id);
        const shown = v.list();
        assert.deepEqual(shown.map((t) => t.trialId), expected, 'trials in number order');
        shown.forEach((t, i) => assert.equal(t.number, i));
        // The view's running count of COMPLETE records (stats().studies[].complete) follows every version.
        assert.equal(v.complete, shown.filter((t) => t.state === 'COMPLETE').length, 'COMPLETE count');
        const moved = shown.filter((t) => before.has(t.trialId) && before.get(t.trialId) !== t.number).map((t) => `${t.trialId} ${before.get(t.trialId)}->${t.number}`).sort();
        assert.deepEqual(changes.map((x) => `${x.trialId} ${x.from}->${x.to}`).sort(), moved, 'changes reported = numbers moved');
      }
    }),
    { numRuns: 300, seed: 8 },
  );
});
