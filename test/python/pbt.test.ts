// PBT from the Python study API (`peertune_client.pruners.PopulationBasedTraining`, Ray's option
// names): population_size 4, run 4 at a time in threads; exploited members end PRUNED and their continuations
// resume from the checkpoint of the member they clone, at a perturbation point.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cliPath, ensureBuilt, repo } from '../fixtures/cli/helpers.js';

const PY = '/usr/bin/python3';

test('python: PopulationBasedTraining as the study pruner clones checkpoints at perturbation points', { skip: existsSync(PY) ? false : `${PY} is missing`, timeout: 240_000 }, async () => {
  ensureBuilt();
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(PY, [join(repo, 'test', 'python', 'scripts', 'pbt_study.py')], {
      cwd: repo,
      env: { ...process.env, PYTHONPATH: join(repo, 'python'), PEERTUNE_CLI: cliPath, PEERTUNE_LOG_LEVEL: 'warning' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { n: number; members: number; children: number; pruned: number; resumed: { step: number; saved_step: number }[]; start_steps: number[] };
  assert.equal(out.members, 4, 'optimize keeps the population at population_size (new trials past it are continuations only)');
  assert.ok(out.n < 60, `optimize returned once every member finished, before n_trials: ${out.n}`);
  assert.ok(out.children > 0, 'some members were exploited and continued as new trials');
  assert.ok(out.pruned > 0, 'exploited members ended PRUNED');
  assert.equal(out.resumed.length, out.children, 'every continuation started from a checkpoint');
  for (const x of out.resumed) assert.equal(x.saved_step, x.step, 'the state restored is the one saved at the cloned checkpoint\'s step');
  for (const s of out.start_steps) assert.equal(s % 4, 0, `continuations start at perturbation points (interval 4), got ${s}`);
});
