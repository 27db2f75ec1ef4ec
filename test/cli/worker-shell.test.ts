// The worker and the query commands from the shell, as issue 11 and 13 want them: enqueue, one JSON
// key style, --stop-on-error for commands, a worker whose trials all fail the same way stops and says
// how to fix it, an in-memory multi-objective run prints its Pareto front.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CliProcess, ensureBuilt, fixtures, loopbackAddr, runCli } from '../fixtures/cli/helpers.js';

before(() => ensureBuilt());

const camel = /"[a-z]+[A-Z][A-Za-z]*":/;

test('enqueue puts fixed params first; every JSON the CLI prints uses snake_case keys', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peertune-enqueue-'));
  const dataDir = join(dir, 'peer');
  const common = ['--study-name', 'q', '--data-dir', dataDir];
  const created = await runCli(['create-study', ...common, '--listen', '/ip4/127.0.0.1/tcp/0']);
  assert.equal(created.code, 0, created.stderr);
  const enq = await runCli(['enqueue', ...common, '--params', '{"x": 1.25}', '--user-attrs', '{"source": "manual"}']);
  assert.equal(enq.code, 0, enq.stderr);
  assert.match(enq.stdout, /Enqueued a trial in study "q" with params \{"x":1.25\}/);
  const again = await runCli(['enqueue', ...common, '--params', '{"x": 1.25}', '--skip-if-exists']);
  assert.match(again.stdout, /exists already/);
  const bad = await runCli(['enqueue', ...common, '--params', '[1]']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--params must be a JSON object/);

  const w = await runCli(['worker', ...common, '--listen', '/ip4/127.0.0.1/tcp/0', '--n-trials', '2', join(fixtures, 'objective.mjs')]);
  assert.equal(w.code, 0, w.stderr);
  const trials = await runCli(['trials', ...common, '-f', 'json']);
  assert.equal(trials.code, 0, trials.stderr);
  const doc = JSON.parse(trials.stdout) as { study_name: string; trials: Record<string, unknown>[] };
  assert.equal(doc.study_name, 'q');
  assert.equal(doc.trials[0]!['number'], 0);
  assert.equal((doc.trials[0]!['params'] as { x: number }).x, 1.25, 'the enqueued trial ran first');
  assert.deepEqual(doc.trials[0]!['user_attrs'], { source: 'manual' });
  assert.ok('distributions' in doc.trials[0]! && 'datetime_start' in doc.trials[0]! && 'system_attrs' in doc.trials[0]!);
  for (const args of [['trials', '-f', 'json'], ['best-trial', '-f', 'json'], ['best-trials', '-f', 'json'], ['export', '-f', 'json'], ['studies', '-f', 'json']]) {
    const r = await runCli([...args, ...(args[0] === 'studies' ? ['--data-dir', dataDir] : common)]);
    assert.equal(r.code, 0, r.stderr);
    // Keys only: values (params, attrs) are the user's.
    const keys = JSON.stringify(JSON.parse(r.stdout), (k, v) => (k === 'params' || k === 'user_attrs' || k === 'system_attrs' || k === 'distributions' ? {} : v));
    assert.doesNotMatch(keys, camel, `${args[0]} prints snake_case keys: ${keys.slice(0, 300)}`);
  }
});

test('--stop-on-error stops a command objective at its first failure, naming its last error line', async () => {
  const r = await runCli(['worker', '--in-memory', '--study-name', 's', '--n-trials', '5', '--stop-on-error', '--', 'sh', '-c', 'echo "ValueError: lr must be positive" >&2; exit 3']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /peertune: error: the command exited with code 3 \(last error: ValueError: lr must be positive\)/);
  assert.equal((r.stderr.match(/Trial \d+ failed/g) ?? []).length, 1, 'one trial ran');
});

test('a worker whose trials all fail the same way stops after three and says how to fix it', async () => {
  const missing = await runCli(['worker', '--in-memory', '--study-name', 's', '--n-trials', '50', '--', 'peertune-no-such-program']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /stopped after 3 trials that all failed the same way: could not start "peertune-no-such-program".*Fix: "peertune-no-such-program" was not found on PATH/);
  assert.match(missing.stderr, /ran 3 trials/);

  // A Python without the objective's import, found first on PATH: the advice names a Python that has it.
  const r = await runCli(['worker', '--in-memory', '--study-name', 's', '--n-trials', '50', '--', 'python3', '-c', 'import peertune_module_that_is_nowhere']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /last error: ModuleNotFoundError: No module named 'peertune_module_that_is_nowhere'/);
  assert.match(r.stderr, /has no module peertune_module_that_is_nowhere; install peertune_module_that_is_nowhere for it/);

  // One success, then failures: an occasional crash is the trial's problem; the budget runs out.
  const flag = join(mkdtempSync(join(tmpdir(), 'peertune-mixed-')), 'ran-once');
  const once = `if [ -e "${flag}" ]; then echo "RuntimeError: flaky" >&2; exit 1; fi; touch "${flag}"; echo 1`;
  const mixed = await runCli(['worker', '--in-memory', '--study-name', 's', '--n-trials', '6', '--', 'sh', '-c', once]);
  assert.match(mixed.stderr, /ran 6 trials/, mixed.stderr);
});

test('an in-memory multi-objective run prints its Pareto front', async () => {
  const r = await runCli(['worker', '--in-memory', '--study-name', 'mo', '--direction', 'minimize', '--direction', 'minimize', '--n-trials', '8', '--', process.execPath, '-e', 'const a = Math.random(); console.log(JSON.stringify([a, 1 - a + Math.random() / 10]))']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /Pareto front: \d+ trial\(s\)/);
  assert.match(r.stdout, /^number\s+values_0\s+values_1/m);
});

test('a two-peer run that outlives its peer does not warn "Cannot reach ... yet" when that peer ends', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peertune-lost-'));
  const a = join(dir, 'a');
  const created = await runCli(['create-study', '--study-name', 's', '--data-dir', a, '--listen', '/ip4/127.0.0.1/tcp/0']);
  assert.equal(created.code, 0, created.stderr);
  const slow = ['--', 'sh', '-c', 'sleep 0.3; echo 1'];
  // A starts its trials only once B holds the study (else, on a loaded machine, A can finish its four
  // trials and exit before B has connected, and B never gets the study).
  const wa = new CliProcess(['worker', '--study-name', 's', '--data-dir', a, '--listen', '/ip4/127.0.0.1/tcp/0', '--n-trials', '4', '--wait-for-peers', '1', ...slow]);
  const addr = loopbackAddr((await wa.waitFor(/--join \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+/))[0]);
  const wb = new CliProcess(['worker', '--study-name', 's', '--data-dir', join(dir, 'b'), '--join', addr, '--n-trials', '14', ...slow], { PEERTUNE_LOG_LEVEL: 'debug' });
  assert.equal(await wa.exit(60_000), 0, wa.stderr);
  assert.equal(await wb.exit(90_000), 0, wb.stderr);
  assert.match(wb.stderr, /ran 14 trials/);
  // B did lose A while it ran (the debug line proves the path was taken), and said so quietly.
  assert.match(wb.stderr, /\[D [^\]]+\] Lost \/ip4\/127\.0\.0\.1/);
  assert.doesNotMatch(wb.stderr, /Cannot reach/);
});
