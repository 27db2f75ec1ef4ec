// Issue 15 F4, settings poisoning: any member could rewrite a study's sampler and pruner attrs with a
// timestamp far in the future; joining workers then ran TPE with 1e9 candidates (0 trials in 40 s,
// 1.8 GiB) or pruned every trial (threshold 1e308). Now a study's settings (system attrs) are
// written by its creator only: a member's record is refused on merge (counted `not-creator`) and
// ignored on read; and the settings a worker reads from the replica are bounded (a creator's 1e9
// candidates is a clear error before any sampler is built). Real peer processes on 127.0.0.1 and the
// CLI worker (through tsx).
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Member, repoRoot, tempDir, waitFor } from '../fixtures/hostile-member.js';
import { runCliFromSource } from '../fixtures/cli/helpers.js';

const cli = (args: string[]) => runCliFromSource(args, 90_000);

describe("F4: a study's settings are its creator's, and bounded when read", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member;
  let sid = '';
  const sampler = { name: 'random', options: { seed: 3 } };
  const pruner = { name: 'median', options: { nStartupTrials: 50 } };

  before(async () => {
    dir = await tempDir();
    H = await Member.start({ dataDir: join(dir.path, 'h') });
    sid = (await H.call<{ studyId: string }>('create', { name: 'tuned', sampler, pruner })).studyId;
    A = await Member.start({ dataDir: join(dir.path, 'a'), join: H.addrs });
    await A.call('await', { studyId: sid });
    await H.waitToHear([A]);
  });

  after(async () => {
    await Promise.all([H?.stop(), A?.stop()]);
    await dir?.remove();
  });

  it("a member's far-future sampler and pruner records are refused by the creator's replica and ignored by its own", async () => {
    await A.call('poisonSetting', { studyId: sid, key: 'sampler', value: { name: 'tpe', options: { nEiCandidates: 1e9 } }, ts: 9e12 });
    await A.call('poisonSetting', { studyId: sid, key: 'pruner', value: { name: 'threshold', options: { lower: 1e308 } }, ts: 9e12 });
    await waitFor('H to refuse the poisoned settings', 20_000, async () => (await H.counter('not-creator')) >= 1);
    // A sentinel after the attack: a user attr (open to members) from A arrives, so the settings had every chance to.
    await A.call('setAttr', { studyId: sid, key: 'sentinel', value: 1 }).catch(() => {});
    const hs = (await H.call<{ studies: { studyId: string; systemAttrs: Record<string, unknown> }[] }>('studies')).studies.find((s) => s.studyId === sid)!;
    assert.deepEqual(hs.systemAttrs['sampler'], sampler);
    assert.deepEqual(hs.systemAttrs['pruner'], pruner);
    // A holds its own records (nobody inspects its own writes), and still reads the creator's settings.
    const as = (await A.call<{ studies: { studyId: string; systemAttrs: Record<string, unknown> }[] }>('studies')).studies.find((s) => s.studyId === sid)!;
    assert.deepEqual(as.systemAttrs['sampler'], sampler, "the member's own replica ignores its non-creator record");
    assert.deepEqual(as.systemAttrs['pruner'], pruner);
    await H.assertVitals("F4: the creator's replica under the poisoning", [A]);
  });

  it('a worker joining through the lying member runs the creator\'s sampler and pruner, and its trials complete', async () => {
    const r = await cli(['worker', '--study-name', 'tuned', '--join', A.addrs[0]!, '--data-dir', join(dir.path, 'w'), '--n-trials', '6', '--no-progress-bar', join(repoRoot, 'test/fixtures/cli/objective.mjs')]);
    assert.equal(r.code, 0, r.stderr.slice(-1500));
    assert.match(r.stderr, /Joined study "tuned" .*with sampler random and pruner median/);
    assert.match(r.stderr, /ran 6 trials on this peer .*\(6 complete, 0 pruned, 0 failed\)/);
    await waitFor("the worker's trials on H", 20_000, async () => (await H.trials(sid)).filter((t) => t.state === 'COMPLETE').length >= 6);
  });

  it("a creator's setting beyond the bounds is a clear error at join, before any trial", async () => {
    const big = (await H.call<{ studyId: string }>('create', { name: 'huge', sampler: { name: 'tpe', options: { nEiCandidates: 1e9 } } })).studyId;
    const r = await cli(['worker', '--study-name', 'huge', '--join', H.addrs[0]!, '--data-dir', join(dir.path, 'w2'), '--n-trials', '3', '--no-progress-bar', join(repoRoot, 'test/fixtures/cli/objective.mjs')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nEiCandidates = 1000000000, outside the bound 10000/);
    assert.equal((await H.trials(big)).length, 0, 'no trial was started');
    // The user may still choose it on this peer: an option on its own command line is not bounded.
    const own = await cli(['worker', '--study-name', 'huge', '--join', H.addrs[0]!, '--data-dir', join(dir.path, 'w3'), '--n-trials', '2', '--sampler', 'random', '--no-progress-bar', join(repoRoot, 'test/fixtures/cli/objective.mjs')]);
    assert.equal(own.code, 0, own.stderr.slice(-1500));
  });
});
