// The peertune command as a user runs it: the built CLI in child processes. This file covers what
// needs no network (usage errors, the in-memory worker with module and command objectives);
// cli-swarm.test.ts covers studies shared by several peer processes.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { join } from 'node:path';
import { CliProcess, ensureBuilt, fixtures, runCli } from '../fixtures/cli/helpers.js';

before(() => ensureBuilt());

function assertOneLineError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.code, 0, 'a user mistake exits non-zero');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.match(lines[0]!, pattern);
}

test('user mistakes are one clear line on stderr and a non-zero exit', async () => {
  assertOneLineError(await runCli(['worker', '--study-name', 's', '--n-trials', 'abc', 'x.js']), /--n-trials.*expected a positive integer, got "abc"/);
  assertOneLineError(await runCli(['worker', '--in-memory', '--study-name', 's', '--sampler', 'bogus', join(fixtures, 'objective.mjs')]), /unknown sampler "bogus"; valid samplers: .*tpe/);
  assertOneLineError(await runCli(['worker', '--in-memory', '--study-name', 's', 'train.py']), /must be \.js.*put it after --/);
  assertOneLineError(await runCli(['worker', '--in-memory', '--study-name', 's', 'missing.js']), /missing\.js does not exist/);
  assertOneLineError(await runCli(['worker', '--in-memory', '--study-name', 's', '--']), /nothing after --/);
  assertOneLineError(await runCli(['worker', '--in-memory', '--study-name', 's', 'objective.js', '--', 'python3', 'x.py']), /either an objective module or a command after --, not both/);
  assertOneLineError(await runCli(['trials', '--study-name', 's', '--data-dir', '/nonexistent/peertune-data']), /data dir \/nonexistent\/peertune-data does not exist/);
  assertOneLineError(await runCli(['worker', '--in-memory', '--study-name', 's', '--sampler', 'tpe', '--sampler-options', '{oops', join(fixtures, 'objective.mjs')]), /--sampler-options must be a JSON object/);
  assertOneLineError(await runCli(['worker', '--in-memory', '--study-name', 's', '--pruner', 'percentile', join(fixtures, 'objective.mjs')]), /percentile.*needs a numeric percentile/);
  assertOneLineError(await runCli(['create-study', '--direction', 'sideways']), /--direction.*"minimize" or "maximize", got "sideways"/);
  assertOneLineError(await runCli(['frobnicate']), /unknown command 'frobnicate'/);
  assertOneLineError(await runCli(['trials', '--study-name', 'x', '--join', 'not-an-address']), /not a multiaddr/);
  const help = await runCli(['worker', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--trial-timeout/);
});

test('in-memory worker with a module objective (.js and .ts)', async () => {
  const js = await runCli(['worker', '--in-memory', '--study-name', 'js', '--n-trials', '6', '--sampler', 'random', '--sampler-options', '{"seed":3}', join(fixtures, 'objective.mjs')]);
  assert.equal(js.code, 0, js.stderr);
  assert.equal((js.stderr.match(/Trial \d+ (finished with value|pruned)/g) ?? []).length, 6);
  assert.match(js.stderr, /Worker finished: ran 6 trials on this peer/);
  const ts = await runCli(['worker', '--in-memory', '--study-name', 'ts', '--n-trials', '3', join(fixtures, 'objective-ts.ts')]);
  assert.equal(ts.code, 0, ts.stderr);
  assert.match(ts.stderr, /Worker finished: ran 3 trials on this peer .*\(3 complete, 0 pruned, 0 failed\)/);
});

test('in-memory worker with a misbehaving command: garbage, exit 1 and a hang each FAIL, and the worker keeps going', async () => {
  const t0 = Date.now();
  const r = await runCli(
    // 3 s per trial: a node command under a loaded machine can take over a second to start and print.
    ['worker', '--in-memory', '--study-name', 'bad', '--n-trials', '8', '--trial-timeout', '3', '--', process.execPath, join(fixtures, 'by-trial.mjs')],
    { timeoutMs: 60_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /Trial 0 failed .*not protocol JSON.*Epoch 1\/10/);
  assert.match(r.stderr, /Trial 1 failed .*exited with code 1/);
  assert.match(r.stderr, /Trial 2 failed .*per-trial timeout of 3 s/);
  assert.match(r.stderr, /Trial 3 finished with value/);
  assert.match(r.stderr, /Trial 7 finished with value/);
  assert.match(r.stderr, /\[trial 1\] RuntimeError: simulated crash/, "the child's stderr is forwarded");
  assert.match(r.stderr, /ran 8 trials on this peer .*\(2 complete, 0 pruned, 6 failed\)/);
  assert.ok(Date.now() - t0 < 40_000);
});

test('SIGTERM stops a worker: the running command is killed, its trial FAILs, the worker exits cleanly', async () => {
  const w = new CliProcess(['worker', '--in-memory', '--study-name', 'stop', '--n-trials', '5', '--', process.execPath, join(fixtures, 'hang.mjs')]);
  try {
    await w.waitFor(/\[trial 0\] hanging/);
    w.child.kill('SIGTERM');
    assert.equal(await w.exit(15_000), 0, w.stderr);
  } finally {
    await w.stop();
  }
  assert.match(w.stderr, /Received SIGTERM: stopping/);
  assert.match(w.stderr, /Trial 0 failed .*killed by SIGTERM/);
  assert.match(w.stderr, /ran 1 trials on this peer/);
});

test('in-memory worker with the Python client as the command objective', async () => {
  const r = await runCli(['worker', '--in-memory', '--study-name', 'py', '--n-trials', '3', '--pruner', 'nop', '--', 'python3', join(fixtures, 'python_objective.py')], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[trial 0\] a plain print from the script \(must not break the protocol\)/);
  assert.equal((r.stderr.match(/Trial \d+ finished with value: [\d.]+ and parameters: \{'lr': [\d.e-]+, 'layers': \d, 'activation': '(relu|tanh)'\}/g) ?? []).length, 3);
  assert.match(r.stderr, /\(3 complete, 0 pruned, 0 failed\)/);
});
