// Issue 15 F3's other doors: `peertune serve` (what the Python client drives) and the dashboard. A
// replica holding two studies of one name (anyone can create a study of any name), neither created nor
// run here, answers AmbiguousStudyError listing both ids; `study_id` (Python) and `--study-id`
// (dashboard) choose one. Real peer processes on 127.0.0.1: H (an honest "iris") and A (a member's
// "iris" dated 1970); the Python client (/usr/bin/python3) running `peertune serve` from source, and
// the `peertune dashboard` command from source, each on a fresh replica joined to H.
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Member, repoRoot, tempDir, twoStudiesNamedIris, waitFor } from '../fixtures/hostile-member.js';
import { runCliFromSource } from '../fixtures/cli/helpers.js';
import { AmbiguousStudyError, loadStudy, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';

const PY = '/usr/bin/python3';

describe('F3: serve (Python) and the dashboard choose a study by id; an ambiguous name lists the ids', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member;
  let honest = '';
  let fake = '';
  let dash: ChildProcess | null = null;

  before(async () => {
    setVerbosity('error');
    dir = await tempDir();
    // H's honest "iris"; A's "iris" dated 1970 (maximize), made offline, then joined through H.
    ({ H, A, honest, fake } = await twoStudiesNamedIris(dir.path));
  });

  after(async () => {
    if (dash && dash.exitCode === null) dash.kill('SIGKILL');
    await Promise.all([H?.stop(), A?.stop()]);
    await dir?.remove();
  });

  it('the TypeScript API: loadStudy by the name rejects with the exported AmbiguousStudyError and both ids; by studyId it loads', async () => {
    const storage = await openPeerStorage({ dataDir: join(dir.path, 'ts'), join: H.addrs });
    try {
      await waitFor('both studies on the new replica', 20_000, () => storage.listStudies().length === 2);
      const err = await loadStudy({ studyName: 'iris', storage }).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof AmbiguousStudyError, String(err));
      assert.deepEqual([...err.studyIds].sort(), [honest, fake].sort());
      assert.equal((await loadStudy({ studyId: fake, storage })).directions[0], 'maximize');
    } finally {
      await storage.close();
    }
  });

  it('Python over `peertune serve`: load_study by the name raises AmbiguousStudyError with both ids; study_id loads and runs the chosen one', { skip: !existsSync(PY) && 'no /usr/bin/python3' }, async () => {
    // The peertune command from source, as PEERTUNE_CLI (the client runs `<cli> serve`).
    const cli = join(dir.path, 'peertune-from-source');
    await writeFile(cli, `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(repoRoot, 'src', 'cli', 'main.ts')}" "$@"\n`);
    await chmod(cli, 0o755);
    const script = `
import json, sys, time
import peertune_client as pt
cfg = json.loads(sys.argv[1])
st = pt.PeerStorage(cfg["dir"], join=cfg["join"])
out = {}
# As the TypeScript subtest: wait until both studies reached the fresh replica (a name is ambiguous
# only where both are known).
deadline = time.time() + 20
while len(pt.get_all_study_names(st)) < 2 and time.time() < deadline:
    time.sleep(0.1)
try:
    pt.load_study(study_name="iris", storage=st)
    out["loaded_by_name"] = True
except pt.exceptions.AmbiguousStudyError as e:
    out["ids"] = sorted(e.study_ids)
    out["message"] = str(e)
try:
    pt.create_study(study_name="iris", storage=st, load_if_exists=True)
except pt.exceptions.AmbiguousStudyError as e:
    out["create_ids"] = sorted(e.study_ids)
s = pt.load_study(study_id=cfg["honest"], storage=st)
s.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2) ** 2, n_trials=3)
out["study_id"] = s.study_id
out["name"] = s.study_name
out["trials"] = len(s.trials)
f = pt.create_study(study_name="iris", storage=st, load_if_exists=True, study_id=cfg["fake"], direction="maximize")
out["fake_id"] = f.study_id
try:
    pt.load_study(study_name="setosa", storage=st, study_id=cfg["honest"])
except ValueError as e:
    out["mismatch"] = str(e)
try:
    pt.create_study(study_name="iris", storage=st, study_id=cfg["fake"])
except ValueError as e:
    out["id_without_load"] = str(e)
pt.delete_study(storage=st, study_id=cfg["fake"])
out["names_after_delete"] = pt.get_all_study_names(st)
print(json.dumps(out))
`;
    const r = spawnSync(PY, ['-c', script, JSON.stringify({ dir: join(dir.path, 'py'), join: H.addrs, honest, fake })], {
      cwd: repoRoot,
      env: { ...process.env, PYTHONPATH: join(repoRoot, 'python'), PEERTUNE_CLI: cli, PEERTUNE_LOG_LEVEL: 'warning' },
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(r.status, 0, `python failed: ${r.stderr.slice(-2000)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(out['loaded_by_name'], undefined, 'loading by the shared name must not pick one');
    assert.deepEqual(out['ids'], [honest, fake].sort());
    assert.match(String(out['message']), /ambiguous/);
    assert.ok(String(out['message']).includes('1970-01-01'), 'each id with its creation date, to choose by');
    assert.deepEqual(out['create_ids'], [honest, fake].sort(), 'create_study(load_if_exists=True) by the name too');
    assert.equal(out['study_id'], honest);
    assert.equal(out['name'], 'iris');
    assert.equal(out['trials'], 6, "H's 3 trials and the 3 run from Python");
    assert.equal(out['fake_id'], fake);
    assert.match(String(out['mismatch']), /is named "iris", not "setosa"/);
    assert.match(String(out['id_without_load']), /study_id chooses a study to load/);
    assert.deepEqual(out['names_after_delete'], ['iris'], 'delete_study(study_id=...) removed the 1970 one only');
    await waitFor("the Python peer's 3 trials on H's study", 20_000, async () => (await H.trials(honest)).length === 6);
    assert.equal((await H.trials(fake)).length, 0, 'nothing ran in the 1970 study');
  });

  it('the dashboard: --study-name alone exits with both ids; --study-id serves the chosen study, and its API answers 409 with the ids for the name', async () => {
    const refused = await runCliFromSource(['dashboard', '--study-name', 'iris', '--join', H.addrs[0]!, '--port', '0', '--wait', '15'], 90_000);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ambiguous/);
    assert.ok(refused.stderr.includes(honest) && refused.stderr.includes(fake), refused.stderr.slice(-800));
    assert.match(refused.stderr, /--study-id/);

    dash = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src', 'cli', 'main.ts'), 'dashboard', '--study-id', honest, '--join', H.addrs[0]!, '--port', '0', '--wait', '15'], {
      cwd: repoRoot,
      env: { ...process.env, PEERTUNE_LOG_LEVEL: 'warning', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    dash.stdout!.on('data', (d) => (text += d));
    dash.stderr!.on('data', (d) => (text += d));
    const url = await waitFor('the dashboard URL', 60_000, () => /dashboard: (http:\/\/\S+)/.exec(text)?.[1] ?? (dash!.exitCode !== null ? Promise.reject(new Error(text)) : null));
    assert.ok(url.endsWith(`#/study/${honest}/history`), `the page opens on the id: ${url}`);
    const base = url.replace(/\/(#.*)?$/, '');
    const get = async (p: string) => {
      const res = await fetch(base + p);
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    assert.equal((await get('/api/config')).body['study'], honest);
    const byName = await get('/api/studies/iris');
    assert.equal(byName.status, 409);
    assert.deepEqual([...byName.body['studyIds']].sort(), [honest, fake].sort());
    await waitFor("H's trials in the dashboard's replica", 20_000, async () => (await get(`/api/studies/${honest}`)).body['trials'] >= 3);
    const chosen = await get(`/api/studies/${honest}`);
    assert.equal(chosen.body['studyId'], honest);
    assert.equal(chosen.body['ref'], honest, 'the page names a shared-name study by its id');
    const list = (await get('/api/studies')).body['studies'] as { studyId: string; ref: string }[];
    assert.deepEqual(list.map((s) => s.ref).sort(), [honest, fake].sort(), 'the study list links both by id');
    assert.equal((await get(`/api/studies/${fake}/trials`)).status, 200);
    dash.kill('SIGTERM');
  });
});
