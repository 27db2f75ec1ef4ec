// Optuna-shaped scripts run through `import peertune_client as optuna`: the same files run under
// Optuna 3.1 (when installed) and, with only their optuna imports changed, under peertune; in memory
// and on two peers joined by address. /usr/bin/python3 is the Python that has optuna (and torch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, ensureBuilt, repo } from '../fixtures/cli/helpers.js';
import { waitFor } from '../fixtures/wait.js';

const PY = '/usr/bin/python3';
const scripts = join(repo, 'test', 'python', 'scripts');
const hasPython = existsSync(PY);
const hasOptuna = hasPython && (() => {
  try {
    execFileSync(PY, ['-c', 'import optuna'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** The script with its optuna imports pointed at peertune_client, and nothing else changed. */
function peertuneVersion(name: string, dir: string): { path: string; changed: number } {
  const text = readFileSync(join(scripts, `${name}.py`), 'utf8');
  let changed = 0;
  const out = text
    .split('\n')
    .map((line) => {
      const next = line.replace(/^import optuna$/, 'import peertune_client as optuna').replace(/^from optuna\.(\w+) import /, 'from peertune_client.$1 import ');
      if (next !== line) changed++;
      return next;
    })
    .join('\n');
  const path = join(dir, `${name}.py`);
  writeFileSync(path, out);
  return { path, changed };
}

function runPython(path: string, env: Record<string, string> = {}, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PY, [path], {
      cwd: repo,
      env: { ...process.env, PYTHONPATH: join(repo, 'python'), PEERTUNE_CLI: cliPath, PEERTUNE_LOG_LEVEL: 'warning', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out: ${path}\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function lastJson(stdout: string): Record<string, any> {
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  assert.ok(line, `no JSON summary in: ${stdout}`);
  return JSON.parse(line!);
}

async function both(name: string): Promise<{ optuna: Record<string, any> | null; peertune: Record<string, any> }> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'peertune-py-'));
  const { path, changed } = peertuneVersion(name, dir);
  assert.ok(changed >= 1, 'the import line was changed');
  let optuna: Record<string, any> | null = null;
  if (hasOptuna) {
    const o = await runPython(join(scripts, `${name}.py`), { PYTHONPATH: '' });
    assert.equal(o.code, 0, `under Optuna: ${o.stderr}`);
    optuna = lastJson(o.stdout);
  }
  const p = await runPython(path);
  assert.equal(p.code, 0, `under peertune: ${p.stderr}`);
  return { optuna, peertune: lastJson(p.stdout) };
}

const skip = !hasPython && 'no /usr/bin/python3';

test('simple: create_study, optimize, best_trial, trials, get_trials(states=), trials_dataframe', { skip }, async () => {
  const { optuna, peertune } = await both('simple');
  assert.equal(peertune['n'], 40);
  assert.equal(peertune['complete'], 40);
  assert.ok(peertune['states'].every((s: string) => s === 'COMPLETE'));
  assert.ok(peertune['best_value'] < 3, `TPE found a good point: ${peertune['best_value']}`);
  assert.deepEqual(Object.keys(peertune['best_params']).sort(), ['kind', 'n', 'x']);
  assert.equal(peertune['duration_ok'], true);
  if (optuna) {
    assert.deepEqual(Object.keys(optuna['best_params']).sort(), Object.keys(peertune['best_params']).sort());
    if (optuna['columns'] && peertune['columns']) assert.deepEqual(peertune['columns'], optuna['columns']);
  }
});

test('pruning: report, should_prune, optuna.exceptions.TrialPruned, the median pruner', { skip }, async () => {
  const { optuna, peertune } = await both('pruning');
  assert.equal(peertune['n'], 30);
  assert.ok(peertune['pruned'] > 0, 'some trials were pruned (not failed)');
  assert.equal(peertune['pruned'] + peertune['complete'], 30, 'no trial FAILed');
  assert.equal(peertune['pruned_have_value'], true, 'a pruned trial keeps its last value, as in Optuna');
  assert.equal(peertune['iv'], 10);
  if (optuna) assert.ok(optuna['pruned'] > 0);
});

test('multi-objective: directions, best_trials is a Pareto front, best_trial raises', { skip }, async () => {
  const { peertune } = await both('multi_objective');
  assert.equal(peertune['n'], 40);
  assert.ok(peertune['front'] >= 1);
  assert.equal(peertune['dominated'], 0);
  assert.equal(peertune['best_trial'], 'RuntimeError');
  assert.deepEqual(peertune['directions'], ['MINIMIZE', 'MINIMIZE']);
  assert.equal(peertune['values_len'], 2);
});

test('enqueue_trial: enqueued params run first, with their user attrs', { skip }, async () => {
  const { optuna, peertune } = await both('enqueue');
  assert.equal(peertune['n'], 10);
  assert.deepEqual(peertune['first_params'], { x: 0, y: 0 });
  assert.deepEqual(peertune['second_params'], { x: 1, y: 1 });
  assert.deepEqual(peertune['second_attrs'], { source: 'manual', sum: 2 });
  assert.equal(peertune['best_value'], 0);
  if (optuna) assert.deepEqual(peertune['second_attrs'], optuna['second_attrs']);
});

test('ask and tell: fixed distributions, PRUNED and FAIL by state', { skip }, async () => {
  const { optuna, peertune } = await both('ask_tell');
  assert.deepEqual(peertune['numbers'], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  assert.equal(peertune['states'][3], 'PRUNED');
  assert.equal(peertune['states'][5], 'FAIL');
  assert.deepEqual(peertune['best_params_keys'], ['lr', 'opt', 'units']);
  if (optuna) {
    assert.deepEqual(peertune['states'], optuna['states']);
    assert.deepEqual(peertune['distributions'], optuna['distributions']);
  }
});

test('optimize options (callbacks, catch, n_jobs, timeout, MaxTrialsCallback), Trial attributes, a reloaded study', { skip }, async () => {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'peertune-pyopts-'));
  const { path } = peertuneVersion('optimize_options', dir);
  const r = await runPython(path, { STUDY_STORAGE: `peer:${join(dir, 'peer')}?listen=/ip4/127.0.0.1/tcp/0` });
  assert.equal(r.code, 0, r.stderr);
  const j = lastJson(r.stdout);
  assert.equal(j['callbacks'], 8);
  assert.equal(j['failed'], 1, 'the caught exception failed its trial');
  assert.equal(j['uncaught'], 'raised');
  assert.equal(j['after_uncaught'], 9, 'the uncaught exception failed one trial, then stopped optimize');
  assert.equal(j['limited'], 5);
  assert.equal(j['timed_some'], true);
  assert.equal(j['user_attr'], true);
  assert.equal(j['reloaded'], 9);
  assert.equal(j['missing'], 'KeyError');
  if (hasOptuna) {
    const o = await runPython(join(scripts, 'optimize_options.py'), { PYTHONPATH: '' });
    assert.equal(o.code, 0, o.stderr);
    const jo = lastJson(o.stdout);
    for (const k of ['callbacks', 'failed', 'uncaught', 'after_uncaught', 'limited']) assert.equal(j[k], jo[k], `${k} as in Optuna`);
  }
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

test('two peers joined by address share one study (only the storage= string differs from Optuna)', { skip }, async () => {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'peertune-py2-'));
  const { path } = peertuneVersion('two_peers', dir);
  const port = await freePort();
  const env = { TOTAL_TRIALS: '16', N_TRIALS: '8' };
  const a = runPython(path, { ...env, LINGER: '2', STUDY_STORAGE: `peer:${join(dir, 'a')}?listen=/ip4/127.0.0.1/tcp/${port}` });
  // B joins once A listens (started together, B's first dial would fail, and rightly warn).
  await waitFor('peer A to listen', 60_000, () => canConnect(port));
  const b = runPython(path, { ...env, LINGER: '2', STUDY_STORAGE: `peer:${join(dir, 'b')}?join=/ip4/127.0.0.1/tcp/${port}` });
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(ra.code, 0, ra.stderr);
  assert.equal(rb.code, 0, rb.stderr);
  const ja = lastJson(ra.stdout);
  const jb = lastJson(rb.stdout);
  assert.equal(ja['n_complete'], 16, 'A sees both peers\' trials');
  assert.equal(jb['n_complete'], 16, 'B sees both peers\' trials');
  assert.equal(ja['best_value'], jb['best_value']);
  assert.doesNotMatch(ra.stderr + rb.stderr, /Cannot reach/);
});

test('trials_dataframe (a clear error without pandas); a function as a sampler option and a non-peer storage are refused', { skip }, async () => {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'peertune-py3-'));
  const path = join(dir, 'errors.py');
  writeFileSync(
    path,
    `import json, sys
import peertune_client as optuna
out = {}
try:
    optuna.samplers.TPESampler(gamma=lambda n: 10)
except ValueError as e:
    out["gamma"] = str(e)
study = optuna.create_study()
study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
try:
    import pandas
    out["df"] = list(study.trials_dataframe().columns)
except ImportError as e:
    try:
        study.trials_dataframe()
    except ImportError as e2:
        out["df"] = str(e2)
try:
    optuna.create_study(study_name="s", storage="sqlite:///x.db")
except ValueError as e:
    out["storage"] = str(e)
print(json.dumps(out))
`,
  );
  const r = await runPython(path);
  assert.equal(r.code, 0, r.stderr);
  const j = lastJson(r.stdout);
  assert.match(j['gamma'], /gamma takes a value here, not a function/);
  if (typeof j['df'] === 'string') assert.match(j['df'], /needs pandas/);
  else assert.ok(j['df'].includes('params_x'));
  assert.match(j['storage'], /use None \(in memory\), "peer:<data dir>/);
});
