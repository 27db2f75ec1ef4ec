// Issue 15 F7, lies and no way out: fake great results plus RUNNING decoys on the true optimum moved a
// victim's trials, its best trial became the attacker's, nothing let a user exclude a peer's trials,
// and COMPLETE trials with no values or the wrong number of values were accepted. Now: excludePeers
// (--ignore-peer) reads a study as if the peer's trials did not exist, trustPeers (--trust-peer)
// reads only trials authored by listed peers whichever peer relayed them, and a trial whose values do
// not match the study's directions is refused at merge (counted). Real peer processes on 127.0.0.1:
// H (honest creator), A (the liar, connected to H only), V (--ignore-peer A), W (trusts H only),
// and the CLI (through tsx).
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Member, repoRoot, tempDir, waitFor } from '../fixtures/hostile-member.js';
import { runCliFromSource } from '../fixtures/cli/helpers.js';

const cli = (args: string[]) => runCliFromSource(args, 60_000);

describe('F7: excluding a peer, trusting only some authors, and refusing values that do not fit the study', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member, V: Member, W: Member;
  let sid = '';

  before(async () => {
    dir = await tempDir();
    H = await Member.start({ dataDir: join(dir.path, 'h') });
    sid = (await H.call<{ studyId: string }>('create', { name: 'lies' })).studyId;
    await H.call('run', { studyId: sid, n: 3, seed: 1 });
    A = await Member.start({ dataDir: join(dir.path, 'a'), join: H.addrs });
    await A.call('await', { studyId: sid });
    // 20 results better than possible ((x - 2)^2 >= 0) far from the optimum, 10 RUNNING decoys on it.
    await A.call('lie', { studyId: sid, n: 20, x: -9, value: -1000, decoys: 10, decoyX: 2 });
    await waitFor("H to hold A's 30 trials", 20_000, async () => (await H.trials(sid)).filter((t) => t.owner === A.peerId).length === 30);
  });

  after(async () => {
    await Promise.all([H?.stop(), A?.stop(), V?.stop(), W?.stop()]);
    await dir?.remove();
  });

  it('a COMPLETE trial with no values, or with two values in a one-direction study, is refused at merge and counted', async () => {
    const before = await H.counter('wrong-values', 'no-values');
    const empty = (await A.call<{ trialId: string }>('forgeValues', { studyId: sid, values: [] })).trialId;
    const two = (await A.call<{ trialId: string }>('forgeValues', { studyId: sid, values: [-5000, -5000] })).trialId;
    await waitFor('H to refuse both forged results', 20_000, async () => (await H.counter('wrong-values', 'no-values')) >= before + 2);
    // Sentinel: a valid write of A's after the forgeries (a study user attr: A's later changes to that
    // shard depend on the refused ones and wait for good) arrives, so the forgeries had every chance to.
    await A.call('setAttr', { studyId: sid, key: 'sentinel', value: 7 });
    await waitFor("A's sentinel on H", 20_000, async () => (await H.call<{ value: unknown }>('userAttr', { studyId: sid, key: 'sentinel' })).value === 7);
    const ids = new Set((await H.trials(sid)).map((t) => t.trialId));
    assert.ok(!ids.has(empty) && !ids.has(two), 'neither forged result is in the study');
    assert.ok((await H.trials(sid)).every((t) => t.state !== 'COMPLETE' || t.values?.length === 1));
  });

  it('without exclusion the liar owns the best trial (the finding), with --ignore-peer the CLI answers from the others', async () => {
    const addr = H.addrs[0]!;
    const fooled = await cli(['best-trial', '--study-id', sid, '--join', addr, '--wait', '15', '-f', 'json']);
    assert.equal(fooled.code, 0, fooled.stderr.slice(-800));
    assert.equal(JSON.parse(fooled.stdout).values[0], -1000);
    const honest = await cli(['best-trial', '--study-id', sid, '--join', addr, '--wait', '15', '-f', 'json', '--ignore-peer', A.peerId]);
    assert.equal(honest.code, 0, honest.stderr.slice(-800));
    const best = JSON.parse(honest.stdout) as { values: number[] };
    const hs = (await H.trials(sid)).filter((t) => t.owner === H.peerId && t.state === 'COMPLETE').map((t) => t.values![0]!);
    assert.equal(best.values[0], Math.min(...hs), "the best of H's trials");
    const listed = await cli(['trials', '--study-id', sid, '--join', addr, '--wait', '15', '-f', 'json', '--ignore-peer', A.peerId]);
    const trials = JSON.parse(listed.stdout).trials as { number: number }[];
    assert.equal(trials.length, 3, "only H's three trials are listed");
    assert.deepEqual(trials.map((t) => t.number), [0, 1, 2], 'numbered as if the liar never wrote');
  });

  it('a worker excluding the liar: none of its trials in the study, its budget counts the others only', async () => {
    V = await Member.start({ dataDir: join(dir.path, 'v'), join: H.addrs, excludePeers: [A.peerId] });
    await V.call('await', { studyId: sid });
    await V.waitToHear([H]); // vitals count heartbeat gaps from a first hearing
    await waitFor("H's three trials on V", 20_000, async () => (await V.trials(sid)).length >= 3);
    // maxTrials 10: with A's 21 COMPLETE trials counted V would run none; it runs 7 (10 minus H's 3).
    await V.call('run', { studyId: sid, n: 50, maxTrials: 10, sampler: 'tpe', seed: 4 });
    await V.assertVitals('F7: the worker excluding the liar', [H]);
    const seen = await V.trials(sid);
    assert.equal(seen.filter((t) => t.owner === A.peerId).length, 0, "V reads none of A's trials");
    assert.equal(seen.filter((t) => t.owner === V.peerId && t.state === 'COMPLETE').length, 7);
    assert.ok(seen.every((t) => t.state !== 'COMPLETE' || t.values![0]! >= 0), 'no impossible value reached V');
    // A's records are still stored and relayed by V's peers: H keeps reading them.
    assert.equal((await H.trials(sid)).filter((t) => t.owner === A.peerId).length, 30);
  });

  it('an authorship allowlist: trusting H only, a peer connected to H reads none of the trials H relays from A', async () => {
    W = await Member.start({ dataDir: join(dir.path, 'w'), join: H.addrs, trustPeers: [H.peerId] });
    await W.call('await', { studyId: sid });
    await waitFor("V's trials on W through H", 20_000, async () => (await W.trials(sid)).length >= 3);
    const seen = await W.trials(sid);
    assert.deepEqual([...new Set(seen.map((t) => t.owner))], [H.peerId], `only H's trials: ${[...new Set(seen.map((t) => t.owner.slice(-6)))]}`);
    assert.equal(seen.length, 3);
  });
});
