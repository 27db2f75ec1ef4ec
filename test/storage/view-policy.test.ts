// The view's rules against hostile members (issue 15 F7, F14), on TrialView alone (pure: no I/O):
// hidden owners are left out, and a claim of an enqueued trial holds it only while its owner is live,
// under the time limit, and within its owner's oldest claims. The same rules run against real peers
// in test/security/exclude-peers.test.ts and claims.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TrialView, DEFAULT_VIEW_POLICY } from '../../src/storage/replicated/view.js';
import type { TrialRecord } from '../../src/storage/replicated/schema.js';

const SELF = 'self-peer';
let clock = 1000;

function rec(owner: string, q: number, over: Partial<TrialRecord> = {}): TrialRecord {
  clock++;
  return { k: 'trial', st: 's0', id: `${owner}:${q}`, o: owner, q, v: 0, s: 'RUNNING', p: {}, d: {}, vals: null, iv: [], ua: {}, sa: {}, t0: clock, t1: null, claim: null, c: clock, ca: clock, ...over };
}

describe('TrialView policy (issue 15)', () => {
  it('hide: records of hidden owners are left out of records, numbers and claims; own records never are', () => {
    const v = new TrialView(SELF, { ...DEFAULT_VIEW_POLICY, hide: (o) => o === 'liar' || o === SELF });
    v.put([rec('honest', 0, { s: 'COMPLETE', vals: [1] }), rec('liar', 0, { s: 'COMPLETE', vals: [-1000] }), rec(SELF, 0)]);
    assert.deepEqual(v.list().map((t) => t.owner), ['honest', SELF]);
    assert.deepEqual(v.list().map((t) => t.number), [0, 1]);
    assert.equal(v.hiddenRecords, 1);
    const waiting = rec('honest', 1, { s: 'WAITING', t0: null });
    v.put([waiting, rec('liar', 1, { claim: waiting.id, c: waiting.c, ca: waiting.ca })]);
    assert.equal(v.oldestUnclaimed()?.id, waiting.id, "a hidden owner's claim does not hide the enqueued trial");
  });

  it('a live claim holds; a stale one, or one past claimTimeoutMs, is released; own claims always hold', () => {
    const v = new TrialView(SELF, { ...DEFAULT_VIEW_POLICY, claimTimeoutMs: 1000 });
    const w = rec('enq', 0, { s: 'WAITING', t0: null });
    const claim = rec('member', 0, { claim: w.id, c: w.c, ca: w.ca });
    v.put([w, claim], 0);
    assert.equal(v.oldestUnclaimed(500), null, 'held while live and under the limit');
    assert.equal(v.oldestUnclaimed(1500)?.id, w.id, 'released past the limit (from when this replica first saw it)');
    v.checkStale((owner) => (owner === 'member' ? 'silent' : null));
    assert.equal(v.oldestUnclaimed(500)?.id, w.id, 'released when its owner went silent');
    v.put([rec(SELF, 0, { claim: w.id, c: w.c, ca: w.ca })], 0);
    assert.equal(v.oldestUnclaimed(1e12), null, 'our own claim holds it');
    assert.equal(v.list().filter((t) => t.state === 'WAITING').length, 0, 'the enqueued trial stays hidden behind its claims');
  });

  it("finished claims hold; of one owner's RUNNING claims only the oldest maxClaimsPerOwner do", () => {
    const v = new TrialView(SELF, { ...DEFAULT_VIEW_POLICY, maxClaimsPerOwner: 2 });
    const ws = [0, 1, 2, 3].map((q) => rec('enq', q, { s: 'WAITING', t0: null }));
    v.put(ws, 0);
    v.put(ws.map((w, i) => rec('member', i, { claim: w.id, c: w.c, ca: w.ca, ...(i === 0 ? { s: 'COMPLETE', vals: [1] } : {}) })), 0);
    // Claims 1, 2, 3 are RUNNING: 1 and 2 hold, 3 is over the cap.
    assert.equal(v.oldestUnclaimed(1)?.id, ws[3]!.id);
  });
});

describe('TrialView clock (issue 15, found along F7)', () => {
  it("a member's claim near 2^53 does not drag this replica's clock: new trials stay safe integers", () => {
    const v = new TrialView(SELF);
    const now = Date.now();
    v.put([rec('liar', 0, { c: Number.MAX_SAFE_INTEGER })], now);
    const c = v.nextClaim(now);
    assert.ok(Number.isSafeInteger(c) && c < now + 1000, `next claim ${c}`);
    v.put([rec('peer', 0, { c: now + 5000 })], now);
    assert.equal(v.nextClaim(now), now + 5001, 'a claim a little ahead (clock skew) still orders ours after it');
  });
});
