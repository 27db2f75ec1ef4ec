// Issue 15 F14: a member could claim every enqueued trial and never run them; claims were never
// released, so no other peer ever ran them. Now a claim holds an enqueued trial only while its owner
// is alive (a silent owner's claim is released after the grace period), for at most `claimTimeoutMs`
// while RUNNING, and only among its owner's oldest 64 RUNNING claims. Real peer processes on
// 127.0.0.1: H (the study's creator, enqueues), A (claims everything, runs nothing), V (a worker).
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Member, tempDir, waitFor } from '../fixtures/hostile-member.js';

describe('F14: claims of enqueued trials are released when their owner goes silent or holds them too long', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member, V: Member;
  let sid = '';

  before(async () => {
    dir = await tempDir();
    H = await Member.start({ dataDir: join(dir.path, 'h') });
    sid = (await H.call<{ studyId: string }>('create', { name: 'queue' })).studyId;
    await H.call('enqueue', { studyId: sid, n: 6, x: 0 });
    A = await Member.start({ dataDir: join(dir.path, 'a'), join: H.addrs });
    await A.call('await', { studyId: sid });
    await waitFor('the six enqueued trials on A', 20_000, async () => (await A.trials(sid)).filter((t) => t.state === 'WAITING').length === 6);
    const { claimed } = await A.call<{ claimed: string[] }>('claimAll', { studyId: sid });
    assert.equal(claimed.length, 6);
    await waitFor("A's six claims on H", 20_000, async () => (await H.trials(sid)).filter((t) => t.owner === A.peerId && t.claim).length === 6);
  });

  let B: Member;

  after(async () => {
    await Promise.all([H?.stop(), A?.stop(), V?.stop(), B?.stop()]);
    await dir?.remove();
  });

  it('a live member holding every claim: a worker takes the enqueued trials over once the claim time limit passes', async () => {
    V = await Member.start({ dataDir: join(dir.path, 'v'), join: H.addrs, claimTimeoutMs: 3000 });
    await V.call('await', { studyId: sid });
    await V.waitToHear([H]); // vitals count heartbeat gaps from a first hearing
    await waitFor("A's claims on V", 20_000, async () => (await V.trials(sid)).filter((t) => t.owner === A.peerId && t.claim).length === 6);
    // While the limit has not passed, A's claims hold (H, with the default 6 h limit, sees nothing to claim).
    assert.equal((await H.call<{ waiting: string | null }>('claimable', { studyId: sid })).waiting, null);
    await waitFor('the claims to be released on V', 20_000, async () => (await V.call<{ waiting: string | null }>('claimable', { studyId: sid })).waiting !== null);
    await V.call('run', { studyId: sid, n: 6 });
    const mine = (await V.trials(sid)).filter((t) => t.owner === V.peerId);
    assert.equal(mine.length, 6);
    assert.ok(mine.every((t) => t.claim !== null && t.state === 'COMPLETE'), 'all six are claims of enqueued trials, run to the end');
    assert.deepEqual(mine.map((t) => t.params['x']).sort(), [0, 1, 2, 3, 4, 5], 'every enqueued param set ran once on V');
    await waitFor("V's results on H", 20_000, async () => (await H.trials(sid)).filter((t) => t.owner === V.peerId && t.state === 'COMPLETE').length === 6);
    await V.assertVitals('F14: the worker taking over the claims', [H]);
  });

  it('a member that goes silent: its claims are released after the grace period, with the default time limit', async () => {
    await H.call('enqueue', { studyId: sid, n: 3, x: 10 });
    await waitFor('the new enqueued trials on A', 20_000, async () => (await A.trials(sid)).filter((t) => t.state === 'WAITING').length === 3);
    const { claimed } = await A.call<{ claimed: string[] }>('claimAll', { studyId: sid });
    assert.equal(claimed.length, 3);
    await waitFor("A's new claims on H", 20_000, async () => (await H.trials(sid)).filter((t) => t.owner === A.peerId && t.claim && t.state === 'RUNNING').length >= 3);
    A.kill();
    await waitFor("H to release the silent member's claims", 20_000, async () => (await H.call<{ waiting: string | null }>('claimable', { studyId: sid })).waiting !== null);
    await H.call('run', { studyId: sid, n: 3 });
    const ran = (await H.trials(sid)).filter((t) => t.owner === H.peerId && t.claim !== null && t.state === 'COMPLETE');
    assert.deepEqual(ran.map((t) => t.params['x']).sort((a, b) => Number(a) - Number(b)), [10, 11, 12]);
  });

  it("a live member claiming 70 at once: only its oldest 64 claims hold, a peer runs the other 6 at once", async () => {
    await H.call('enqueue', { studyId: sid, n: 70, x: 100 });
    B = await Member.start({ dataDir: join(dir.path, 'b'), join: H.addrs });
    await B.call('await', { studyId: sid });
    await H.waitToHear([B]); // H's vitals count B's heartbeat gaps from a first hearing
    await waitFor('the 70 enqueued trials on B', 30_000, async () => (await B.trials(sid)).filter((t) => t.state === 'WAITING').length === 70);
    assert.equal((await B.call<{ claimed: string[] }>('claimAll', { studyId: sid })).claimed.length, 70);
    await waitFor("B's 70 claims on H", 30_000, async () => (await H.trials(sid)).filter((t) => t.owner === B.peerId && t.claim && t.state === 'RUNNING').length === 70);
    // H has the default 6 h claim time limit: what it can claim is what the per-owner cap releases.
    const before = (await H.trials(sid)).filter((t) => t.owner === H.peerId).length;
    await H.call('run', { studyId: sid, n: 6 });
    const fresh = (await H.trials(sid)).filter((t) => t.owner === H.peerId).slice(before);
    assert.equal(fresh.length, 6);
    assert.ok(fresh.every((t) => t.claim !== null), 'all six are claims of enqueued trials');
    assert.ok(fresh.every((t) => Number(t.params['x']) >= 164), `the six released are B's youngest claims: ${fresh.map((t) => t.params['x'])}`);
    await H.assertVitals('F14: the peer under 70 claims', [B]);
  });
});
