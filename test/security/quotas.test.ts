// Issue 15 F15: no per-owner quota, so 1,000 fat trials from one member added 420 MiB to a replica.
// Now each replica takes at most `ownerQuota.trials` trials and `ownerQuota.bytes` bytes of changes
// per other owner and study (defaults 100,000 and 256 MiB, generous for honest peers); past either,
// that owner's changes are refused and counted (`quota:trials`, `quota:bytes`), never charged to the
// relaying peer; the owner's stored share is counted again on restart. Real peer processes on
// 127.0.0.1: H (creator, default quota, relays), A (the flooding member, connected to H only), V (a
// worker with a small quota so the test stays small).
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Member, tempDir, waitFor } from '../fixtures/hostile-member.js';

const QUOTA = { trials: 40, bytes: 1024 * 1024 };

describe('F15: per-owner quotas bound what one member can make a replica store', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member, V: Member;
  let sid = '';
  let flood: { lagMaxMs: number; gaps: Record<string, number>; rssGrowthMB: number } | null = null;
  const vDir = () => join(dir.path, 'v');

  before(async () => {
    dir = await tempDir();
    H = await Member.start({ dataDir: join(dir.path, 'h') });
    sid = (await H.call<{ studyId: string }>('create', { name: 'fat' })).studyId;
    await H.call('run', { studyId: sid, n: 2, seed: 1 });
    V = await Member.start({ dataDir: vDir(), join: H.addrs, ownerQuota: QUOTA });
    await V.call('await', { studyId: sid });
    A = await Member.start({ dataDir: join(dir.path, 'a'), join: H.addrs });
    await A.call('await', { studyId: sid });
  });

  after(async () => {
    await Promise.all([H?.stop(), A?.stop(), V?.stop()]);
    await dir?.remove();
  });

  it('200 trials of 16 KiB from one member: the relay takes them all, the victim its quota only, and honest trials still arrive', async () => {
    await A.call('fat', { studyId: sid, n: 200, bytes: 16 * 1024 });
    await waitFor("H to hold A's 200 trials", 60_000, async () => (await H.trials(sid)).filter((t) => t.owner === A.peerId).length === 200);
    await waitFor('V to refuse past the quota', 60_000, async () => (await V.counter('quota:trials', 'quota:bytes')) > 0);
    // Sentinel: honest trials written after the flood reach V.
    await H.call('run', { studyId: sid, n: 3, seed: 2 });
    await waitFor("H's five trials on V", 30_000, async () => (await V.trials(sid)).filter((t) => t.owner === H.peerId && t.state === 'COMPLETE').length === 5);
    const held = (await V.trials(sid)).filter((t) => t.owner === A.peerId).length;
    flood = await V.call('vitals');
    assert.ok(held > 0 && held <= QUOTA.trials, `V holds ${held} of A's trials (quota ${QUOTA.trials})`);
    // A's later changes depend on the ones V refused: refused the same way, never charged to H as
    // missing dependencies (they were, about once a second: 32 charges a minute quarantine the relay).
    assert.equal(await V.counter('missing-deps'), 0, `V charged H for changes that depend on what the quota refused: ${JSON.stringify(await V.counters())}`);
    await V.call('quit').catch(() => {});
    const h = await H.call<{ disk: number }>('stats');
    V = await Member.start({ dataDir: vDir(), join: H.addrs, ownerQuota: QUOTA });
    const v = await V.call<{ disk: number }>('stats');
    console.log(`# F15 disk: relay H (no quota hit) ${(h.disk / 2 ** 20).toFixed(2)} MiB, victim V ${(v.disk / 2 ** 20).toFixed(2)} MiB; V holds ${held} of A's 200 trials`);
    assert.ok(h.disk > 3 * 2 ** 20, `H stored A's flood (${h.disk} bytes)`);
    assert.ok(v.disk < QUOTA.bytes + 512 * 1024, `V's replica stays near the quota (${v.disk} bytes)`);
  });

  it('after a restart the stored share still counts: more of the member\'s trials are refused, honest ones arrive', async () => {
    await V.call('await', { studyId: sid });
    await V.waitToHear([H]); // the restarted V's vitals count heartbeat gaps from a first hearing
    const before = (await V.trials(sid)).filter((t) => t.owner === A.peerId).length;
    const refusedBefore = await V.counter('quota:trials', 'quota:bytes');
    await A.call('fat', { studyId: sid, n: 64, bytes: 1024 });
    await waitFor("H to hold A's 264 trials", 60_000, async () => (await H.trials(sid)).filter((t) => t.owner === A.peerId).length === 264);
    await waitFor('V to refuse them', 60_000, async () => (await V.counter('quota:trials', 'quota:bytes')) > refusedBefore);
    await H.call('run', { studyId: sid, n: 1, seed: 3 });
    await waitFor("H's sixth trial on V", 30_000, async () => (await V.trials(sid)).filter((t) => t.owner === H.peerId && t.state === 'COMPLETE').length === 6);
    const after = (await V.trials(sid)).filter((t) => t.owner === A.peerId).length;
    assert.ok(after <= QUOTA.trials, `V holds ${after} of A's trials after the restart (was ${before})`);
    await V.assertVitals('F15: the victim after its restart', [H]);
  });

  // During the flood above, V's longest event-loop stall and gap in hearing H. Last sessions: gap 3.0 to
  // 3.3 s, then (relay rule, net/node.ts) 1.1 to 1.7 s with a 3.54 s gap and a 2.24 s stall in one CI run.
  // V's profile: 80-90% of its busy stretches was Automerge's decodeChange handing each byte of a 16 KiB
  // record to JavaScript. Shard changes are now decoded in change-bounds.ts, past-quota ones refused
  // before any record is verified (replica.ts pastQuota).
  it('the victim keeps hearing the honest peer within 2 s during the flood', () => {
    assert.ok(flood, 'measured during the flood');
    console.log(`# F15 during the flood: max event-loop stall ${Math.round(flood.lagMaxMs)} ms, gap hearing H ${Math.round(flood.gaps[H.peerId] ?? -1)} ms, RSS +${flood.rssGrowthMB.toFixed(1)} MiB`);
    assert.ok(flood.lagMaxMs < 2000 && (flood.gaps[H.peerId] ?? Infinity) < 2000 && flood.rssGrowthMB < 256);
  });
});
