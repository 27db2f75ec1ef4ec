// Each example in examples/ runs as its README says, briefly (fewer trials and epochs).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CliProcess, ensureBuilt, loopbackAddr, replicationBuilt, repo, runCli, runNode } from '../fixtures/cli/helpers.js';

let dir = '';
before(async () => {
  ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'peertune-examples-'));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const tsx = (file: string, env: Record<string, string>) => runNode(['--import', 'tsx', join(repo, file)], { env, timeoutMs: 120_000 });

test('examples/quickstart', async () => {
  const r = await tsx('examples/quickstart/quickstart.ts', { QUICKSTART_TRIALS: '8' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((r.stderr.match(/Trial \d+ finished with value/g) ?? []).length, 8);
  assert.match(r.stdout, /^Best value: \d+\.\d{4} \(trial \d+\)$/m);
  assert.match(r.stdout, /^Best params: \{"x":.*"n":.*"shape":/m);
});

test('examples/iris-ts in one process', async () => {
  const r = await tsx('examples/iris-ts/main.ts', { IRIS_TRIALS: '12', IRIS_EPOCHS: '30' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Finished 12 trials \(\d+ pruned\)\.$/m);
  const acc = Number(r.stdout.match(/accuracy ([\d.]+)/)?.[1]);
  assert.ok(acc > 0.8, `the best MLP classifies iris well (accuracy ${acc})`);
});

const skipSwarm = replicationBuilt() ? false : 'replicated storage is not built';

test('examples/iris-ts and examples/two-machines: create-study, worker A, worker B joining by address', { skip: skipSwarm }, async () => {
  const loop = ['--listen', '/ip4/127.0.0.1/tcp/0'];
  const a = join(dir, 'peer-a');
  const created = await runCli(['create-study', '--study-name', 'iris', '--direction', 'minimize', '--sampler', 'tpe', '--pruner', 'median',
    '--pruner-options', '{"nStartupTrials":5,"nWarmupSteps":10}', '--data-dir', a, ...loop]);
  assert.equal(created.code, 0, created.stderr);
  const env = { IRIS_EPOCHS: '20' };
  // A keeps going while B starts (a few seconds on a busy machine), as on two real machines.
  const wa = new CliProcess(['worker', '--study-name', 'iris', '--data-dir', a, ...loop, '--timeout', '15', 'examples/iris-ts/objective.ts'], env);
  const addr = loopbackAddr((await wa.waitFor(/--join (\S+)/))[1]!);
  const wb = new CliProcess(['worker', '--study-name', 'iris', '--data-dir', join(dir, 'peer-b'), '--join', addr, ...loop, '--n-trials', '4', 'examples/iris-ts/objective.ts'], env);
  try {
    assert.equal(await wb.exit(), 0, wb.stderr);
    assert.equal(await wa.exit(), 0, wa.stderr);
  } finally {
    await wa.stop();
    await wb.stop();
  }
  assert.match(wb.stderr, /Joined study "iris" .*sampler tpe and pruner median/);
  const total = Number(wb.stderr.match(/the study has (\d+) trials/)?.[1]);
  assert.ok(total >= 5, `B saw A's trials too (study has ${total})`);
  const best = await runCli(['best-trial', '--study-name', 'iris', '--data-dir', join(dir, 'peer-b'), '-f', 'json']);
  assert.equal(best.code, 0, best.stderr);
  assert.ok((JSON.parse(best.stdout) as { value: number }).value < 1.2);
});

function pythonWithTorch(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(py, ['-c', 'import torch, sklearn'], { stdio: 'ignore' });
      return py;
    } catch {
      // try the next one
    }
  }
  return null;
}

const py = pythonWithTorch();

test('examples/pytorch-digits through the command objective', { skip: py ? false : 'torch or scikit-learn is missing (apt-get install python3-torch python3-sklearn)' }, async () => {
  const r = await runCli(
    ['worker', '--in-memory', '--direction', 'maximize', '--study-name', 'digits', '--n-trials', '2', '--pruner', 'median', '--', py!, 'examples/pytorch-digits/train.py', '--epochs', '3'],
    { timeoutMs: 180_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[trial 0\] trial 0 epoch 2: validation accuracy/);
  const values = [...r.stderr.matchAll(/Trial \d+ finished with value: ([\d.]+)/g)].map((m) => Number(m[1]));
  assert.equal(values.length, 2, r.stderr);
  for (const v of values) assert.ok(v > 0 && v <= 1);
  assert.match(r.stderr, /\(2 complete, 0 pruned, 0 failed\)/);
});

test('examples/pytorch-digits as an Optuna script through the Python study API', { skip: py ? false : 'torch or scikit-learn is missing (apt-get install python3-torch python3-sklearn)' }, async () => {
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(py!, ['examples/pytorch-digits/train.py', '--epochs', '2', '--n-trials', '3'], { cwd: repo, env: { ...process.env, PEERTUNE_CLI: join(repo, 'dist', 'cli', 'main.js') } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out\n${stderr}`));
    }, 180_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Number of finished trials: 3 \(\d+ pruned\)/);
  assert.match(r.stdout, /Best trial: \d+ with accuracy 0\.\d+/);
  // Optuna's log lines, printed by the peer the client started.
  assert.match(r.stderr, /Trial 0 finished with value: [\d.]+ and parameters: \{'n_layers'/);
});
