// Persistent command objectives (protocol 2): one process per job slot for trial after trial; a crash
// fails that trial only and the next one starts a new process; the worker's death (kill -9) takes
// its children with it; device slots.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStudy } from '../../src/study.js';
import { CommandObjectiveError, commandObjective } from '../../src/objectives/command.js';
import { cliPath, ensureBuilt, fixtures, repo } from '../fixtures/cli/helpers.js';
import { waitFor } from '../fixtures/wait.js';

const PY = '/usr/bin/python3';
const script = join(fixtures, 'persistent.py');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('one process runs trial after trial; n_jobs 2 keeps two', async () => {
  const study = await createStudy();
  const objective = commandObjective({ command: [PY, script] });
  await study.optimize(objective, { nTrials: 8, nJobs: 2, catch: [CommandObjectiveError] });
  await objective.close();
  assert.equal(study.trials.length, 8);
  for (const t of study.trials) assert.equal(t.state, 'COMPLETE', String(t.systemAttrs['failReason']));
  const pids = new Set(study.trials.map((t) => t.userAttrs['pid']));
  assert.equal(pids.size, 2, `two processes for two job slots, got ${[...pids].join(', ')}`);
  assert.equal(objective.processesStarted, 2);
  for (const pid of pids) await waitFor(`process ${pid} to exit after close()`, 10_000, () => !alive(pid as number));
});

test('a child crashing mid-trial fails that trial; a new process runs the next one', async () => {
  const study = await createStudy();
  const objective = commandObjective({ command: [PY, script], env: { CRASH_AT: '2', RAISE_AT: '4' } });
  await study.optimize(objective, { nTrials: 6, catch: [CommandObjectiveError] });
  await objective.close();
  const states = study.trials.map((t) => t.state);
  assert.deepEqual(states, ['COMPLETE', 'COMPLETE', 'FAIL', 'COMPLETE', 'FAIL', 'COMPLETE']);
  const crashed = study.trials[2]!;
  assert.match(String(crashed.systemAttrs['failReason']), /exited with code 1/);
  assert.equal(crashed.systemAttrs['exitCode'], 1);
  // The exception in trial 4 failed that trial only, with the exception line, in the same process.
  assert.match(String(study.trials[4]!.systemAttrs['failReason']), /ValueError: bad trial 4/);
  const pid = (n: number) => study.trials[n]!.userAttrs['pid'];
  assert.equal(pid(0), pid(1), 'trials 0 and 1 share a process');
  assert.notEqual(pid(3), pid(1), 'the crash started a new process');
  assert.equal(pid(3), pid(5), 'the exception did not end the process');
  assert.equal(objective.processesStarted, 2);
});

test('--devices gives each job slot its own CUDA_VISIBLE_DEVICES, shown on the trial', async () => {
  ensureBuilt();
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [cliPath, 'worker', '--in-memory', '--study-name', 'dev', '--n-trials', '6', '--devices', '0,1,2,3', '--devices-per-trial', '2', '--', PY, script], { cwd: repo, env: { ...process.env, PEERTUNE_LOG_LEVEL: 'debug' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((r.stderr.match(/imported once per process/g) ?? []).length, 2, 'two slots, two processes');
  assert.match(r.stderr, /Worker finished: ran 6 trials.*6 complete/);
});

test('devices are recorded per trial and slots never share a device', async () => {
  const study = await createStudy();
  const objective = commandObjective({ command: [PY, script], devices: [['0'], ['1']] });
  await study.optimize(objective, { nTrials: 6, nJobs: 2, catch: [CommandObjectiveError] });
  await objective.close();
  for (const t of study.trials) {
    assert.equal(t.state, 'COMPLETE');
    assert.equal(t.systemAttrs['devices'], t.userAttrs['cuda'], 'the device the child saw is the one on the trial');
  }
  assert.deepEqual(new Set(study.trials.map((t) => t.userAttrs['cuda'])), new Set(['0', '1']));
});

test('kill -9 of the worker leaves no child running', async () => {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'peertune-kill9-'));
  const pidfile = join(dir, 'child.pid');
  const worker = spawn(process.execPath, [cliPath, 'worker', '--in-memory', '--study-name', 'k', '--n-trials', '3', '--', PY, script], {
    cwd: repo,
    env: { ...process.env, HANG_PIDFILE: pidfile },
    stdio: 'ignore',
  });
  await waitFor('the child to start its trial', 30_000, () => existsSync(pidfile));
  const [pid, pgid] = readFileSync(pidfile, 'utf8').split(' ').map(Number) as [number, number];
  assert.ok(alive(pid));
  worker.kill('SIGKILL');
  await waitFor(`the child ${pid} to be gone after kill -9 of its worker`, 10_000, () => !alive(pid));
  // Nothing of the child's process group survives either (its supervisor included).
  await waitFor(`process group ${pgid} to be empty`, 10_000, () => {
    try {
      process.kill(-pgid, 0);
      return false;
    } catch {
      return true;
    }
  });
});
