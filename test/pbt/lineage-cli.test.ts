// The lineage from the shell (the built CLI on a real data dir): `peertune trials` shows each member's
// parent and perturbation, `export -f csv` has the columns, and `peertune pbt-policy` prints Ray's
// pbt_policy lines; and the pbt-ts example runs as its README says, printing the lineage at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStudy, floatDistribution, parseCsv, PopulationBasedTraining, policyOf, RandomSampler, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { ensureBuilt, repo, runCli, runNode } from '../fixtures/cli/helpers.js';
import { toyObjective } from './toy.js';

setVerbosity('error');

test('peertune trials, export and pbt-policy show the PBT lineage of a study in a data dir', { timeout: 300_000 }, async () => {
  ensureBuilt();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-cli-'));
  const work = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-cli-ck-'));
  const storage = await openPeerStorage({ dataDir, listen: [] });
  const pbt = new PopulationBasedTraining({ perturbationInterval: 5, populationSize: 4, seed: 3, hyperparamMutations: { lr: floatDistribution('lr', 1e-3, 1, { log: true }) } });
  const study = await createStudy({ studyName: 'pbt-cli', storage, sampler: new RandomSampler({ seed: 3 }), pruner: pbt });
  await study.optimize(toyObjective(work, { steps: 30, saveEvery: 5, run: { steps: 0 } }), { nJobs: 2 });
  const trials = study.trials;
  const child = trials.filter((t) => t.systemAttrs['pbtParent'] !== undefined).at(-1);
  assert.ok(child, 'the run perturbed at least one member');
  const expected = policyOf(child.trialId, trials);
  await storage.close();
  try {
    const table = await runCli(['trials', '--study-name', 'pbt-cli', '--data-dir', dataDir]);
    assert.equal(table.code, 0, table.stderr);
    const header = table.stdout.split('\n')[0]!;
    for (const c of ['pbt_member', 'pbt_parent', 'pbt_start_step', 'pbt_perturbation']) assert.ok(header.includes(c), `trials table has ${c}`);
    const parent = trials.find((t) => t.trialId === child.systemAttrs['pbtParent'])!;
    const line = table.stdout.split('\n').find((l) => l.startsWith(`${child.number} `))!;
    assert.match(line, new RegExp(` ${parent.number} +${child.systemAttrs['pbtStartStep']} +lr `), `trial ${child.number} shows parent ${parent.number}, its start step and its perturbation: ${line}`);

    const csv = await runCli(['export', '-f', 'csv', '--study-name', 'pbt-cli', '--data-dir', dataDir]);
    assert.equal(csv.code, 0, csv.stderr);
    const row = parseCsv(csv.stdout).rows.find((r) => r['trial_id'] === child.trialId)!;
    assert.equal(row['pbt_parent'], String(parent.number));
    assert.match(row['pbt_perturbation']!, /^lr [\d.e-]+→[\d.e-]+ \((\*1\.2|\*0\.8|resample)(,clipped)?\)$/);

    const policy = await runCli(['pbt-policy', '--study-name', 'pbt-cli', '--data-dir', dataDir, '--trial', String(child.number)]);
    assert.equal(policy.code, 0, policy.stderr);
    const lines = policy.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown[]);
    const num = (id: string) => trials.find((t) => t.trialId === id)!.number;
    assert.deepEqual(lines, expected.map((l) => [num(l.trial), num(l.clonedTrial), l.step, l.clonedStep, l.clonedConfig, l.newConfig]), "Ray's pbt_policy lines: the ancestors' perturbations, then the trial's own");
    const all = await runCli(['pbt-policy', '--study-name', 'pbt-cli', '--data-dir', dataDir, '-f', 'json']);
    assert.equal(all.code, 0, all.stderr);
    assert.equal((JSON.parse(all.stdout) as unknown[]).length, trials.filter((t) => t.systemAttrs['pbtParent'] !== undefined).length, 'every perturbation of the study (pbt_global.txt)');
    const none = await runCli(['pbt-policy', '--study-name', 'pbt-cli', '--data-dir', dataDir, '--trial', '999']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /has no trial 999/);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
});

test('examples/pbt-ts runs and prints the best member and the lineage', { timeout: 300_000 }, async () => {
  const r = await runNode(['--import', 'tsx', path.join(repo, 'examples/pbt-ts/main.ts')], { env: { PBT_STEPS: '60' }, timeoutMs: 240_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Best member: trial \d+, validation loss \d+\.\d{4}, accuracy [\d.]+, \d+ trials for 8 members\.$/m);
  assert.match(r.stdout, /^Lineage \(as `peertune trials` shows it\):$/m);
  assert.match(r.stdout, /<- trial \d+ at step \d+: (lr|momentum) /, 'at least one member continued from another');
});
