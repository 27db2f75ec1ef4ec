// Issue 15 F7 through the public API: `loadStudy` / `createStudy` take `excludePeers` and `trustPeers`
// (before, only `openPeerStorage` and the CLI did), and the Python client's PeerStorage takes
// `exclude_peers` / `trust_peers` (passed to the replica's options by `peertune serve`). Real peers on
// 127.0.0.1: H (honest creator, 3 trials), A (a liar: 20 results of -1000 where (x - 2)^2 >= 0, 10
// RUNNING decoys on the optimum, one enqueued trial), this test process's own PeerStorage joined to H,
// and /usr/bin/python3 driving `peertune serve` from source.
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Member, repoRoot, tempDir, waitFor } from '../fixtures/hostile-member.js';
import { createStudy, loadStudy, setVerbosity, TPESampler, type Study } from '../../src/index.js';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';

const PY = '/usr/bin/python3';
const objective = (t: { suggestFloat(n: string, lo: number, hi: number): number }) => (t.suggestFloat('x', -10, 10) - 2) ** 2;

describe('F7 via the API: excludePeers / trustPeers on loadStudy and createStudy, exclude_peers in Python', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member;
  let V: PeerStorage;
  let sid = '';

  before(async () => {
    setVerbosity('error');
    dir = await tempDir();
    H = await Member.start({ dataDir: join(dir.path, 'h') });
    sid = (await H.call<{ studyId: string }>('create', { name: 'lies' })).studyId;
    await H.call('run', { studyId: sid, n: 3, seed: 1 });
    A = await Member.start({ dataDir: join(dir.path, 'a'), join: H.addrs });
    await A.call('await', { studyId: sid });
    await A.call('enqueue', { studyId: sid, n: 1, x: 9 });
    await A.call('lie', { studyId: sid, n: 20, x: -9, value: -1000, decoys: 10, decoyX: 2 });
    V = await openPeerStorage({ dataDir: join(dir.path, 'v'), join: H.addrs, heartbeatIntervalMs: 200, staleAfterMs: 2000 });
    await waitFor('V to hold the study', 20_000, () => V.waitForStudyId(sid, 1000));
    await waitFor("A's 31 trials on V", 20_000, () => V.getAllTrials(sid).filter((t) => t.owner === A.peerId).length === 31);
  });

  after(async () => {
    await V?.close();
    await Promise.all([H?.stop(), A?.stop()]);
    await dir?.remove();
  });

  it('without a filter the liar owns the best trial (the finding)', async () => {
    const plain = await loadStudy({ studyId: sid, storage: V });
    assert.equal(plain.bestValue, -1000);
    assert.equal(plain.bestTrial.owner, A.peerId);
  });

  it("loadStudy({ excludePeers }): none of the liar's trials in trials / bestTrial; the budget and the enqueued queue follow", async () => {
    const study: Study = await loadStudy({ studyId: sid, storage: V, excludePeers: [A.peerId], sampler: new TPESampler({ seed: 3, nStartupTrials: 5 }) });
    assert.equal(study.trials.filter((t) => t.owner === A.peerId).length, 0);
    assert.equal(study.trials.length, 3, "H's three trials");
    assert.equal(study.bestTrial.owner, H.peerId);
    assert.ok(study.bestValue >= 0, `an honest best value, got ${study.bestValue}`);
    // maxTrials 10: counting the liar's 20 COMPLETE trials the budget would be spent; 7 run (10 - H's 3).
    await study.optimize(objective, { nTrials: 50, maxTrials: 10 });
    const mine = study.trials.filter((t) => t.owner === V.peerId);
    assert.equal(mine.length, 7);
    assert.ok(mine.every((t) => t.systemAttrs['fixedParams'] === undefined), "the liar's enqueued trial was not claimed");
    assert.ok(study.trials.every((t) => t.state !== 'COMPLETE' || t.values![0]! >= 0), 'no impossible value read');
    // The records are still in the replica (other readers may trust A).
    const plain = await loadStudy({ studyId: sid, storage: V });
    assert.equal(plain.trials.filter((t) => t.owner === A.peerId).length, 31);
    await V.flush();
    await waitFor("V's 7 trials on H", 20_000, async () => (await H.trials(sid)).filter((t) => t.owner === V.peerId).length === 7);
  });

  it('loadStudy({ trustPeers }) and createStudy({ loadIfExists, studyId, excludePeers }) read only the trusted authors', async () => {
    const trusted = await loadStudy({ studyId: sid, storage: V, trustPeers: [H.peerId] });
    assert.deepEqual([...new Set(trusted.trials.map((t) => t.owner))].sort(), [H.peerId, V.peerId].sort(), 'H and this peer only');
    assert.notEqual(trusted.bestTrial.owner, A.peerId);
    const created = await createStudy({ studyName: 'lies', storage: V, loadIfExists: true, studyId: sid, excludePeers: [A.peerId] });
    assert.equal(created.trials.filter((t) => t.owner === A.peerId).length, 0);
    assert.ok(created.bestValue >= 0);
    await assert.rejects(loadStudy({ studyId: sid, storage: V, excludePeers: ['not-a-peer'] }), /excludePeers\[0\]: "not-a-peer" is not a valid libp2p peer id/);
  });

  it('Python: PeerStorage(exclude_peers=[liar]) reads the honest best trial; trust_peers too', { skip: !existsSync(PY) && 'no /usr/bin/python3' }, async () => {
    const cli = join(dir.path, 'peertune-from-source');
    await writeFile(cli, `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(repoRoot, 'src', 'cli', 'main.ts')}" "$@"\n`);
    await chmod(cli, 0o755);
    const script = `
import json, sys
import peertune_client as pt
cfg = json.loads(sys.argv[1])
out = {}
fooled = pt.load_study(study_id=cfg["sid"], storage=pt.PeerStorage(cfg["dir"] + "-plain", join=cfg["join"]))
out["fooled"] = fooled.best_value
st = pt.PeerStorage(cfg["dir"], join=cfg["join"], exclude_peers=[cfg["liar"]])
s = pt.load_study(study_id=cfg["sid"], storage=st)
out["best"] = s.best_value
out["owners"] = sorted(set(t.owner for t in s.trials))
url = "peer:%s-url?join=%s&trust_peer=%s" % (cfg["dir"], cfg["join"][0], cfg["honest"])
out["trusted_owners"] = sorted(set(t.owner for t in pt.load_study(study_id=cfg["sid"], storage=url).trials))
print(json.dumps(out))
`;
    const r = spawnSync(PY, ['-c', script, JSON.stringify({ dir: join(dir.path, 'py'), join: H.addrs, sid, liar: A.peerId, honest: H.peerId })], {
      cwd: repoRoot,
      env: { ...process.env, PYTHONPATH: join(repoRoot, 'python'), PEERTUNE_CLI: cli, PEERTUNE_LOG_LEVEL: 'warning' },
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(r.status, 0, `python failed: ${r.stderr.slice(-2000)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { fooled: number; best: number; owners: string[]; trusted_owners: string[] };
    assert.equal(out.fooled, -1000, 'without the option the liar wins');
    assert.ok(out.best >= 0, `honest best, got ${out.best}`);
    assert.ok(!out.owners.includes(A.peerId) && out.owners.includes(H.peerId), JSON.stringify(out.owners));
    assert.ok(!out.trusted_owners.includes(A.peerId) && out.trusted_owners.includes(H.peerId), JSON.stringify(out.trusted_owners));
  });
});
