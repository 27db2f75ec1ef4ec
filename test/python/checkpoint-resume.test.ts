// The Python client through the worker protocol (issue 9): a command objective saves a checkpoint at
// every step with trial.save_checkpoint; its worker is killed with -9 after step 3 and its data dir
// deleted; another worker retries the trial, and the objective's trial.get_checkpoint() gives it the
// step-3 state (from whichever peer holds the copy), so the retry reports steps 4..6 only and ends with
// the full sum. `peertune checkpoints` lists the holders; `peertune checkpoint get` fetches one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CliProcess, ensureBuilt, loopbackAddr, repo, runCli } from '../fixtures/cli/helpers.js';
import { waitFor } from '../fixtures/wait.js';

const PY = '/usr/bin/python3';
const SCRIPT = join(repo, 'test', 'python', 'scripts', 'checkpointed.py');
const LOOP = ['--listen', '/ip4/127.0.0.1/tcp/0'];
let dir = '';
const running: CliProcess[] = [];

before(async () => {
  ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'pt-ckpy-'));
});
after(async () => {
  for (const p of running) await p.stop().catch(() => {});
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface TrialOut {
  number: number;
  trial_id?: string;
  state: string;
  values: number[] | null;
  params: Record<string, number>;
  system_attrs: Record<string, unknown>;
  intermediate_values: Record<string, number>;
}

test('python: save, kill -9, resume on another worker from the copy', { skip: existsSync(PY) ? false : `${PY} is missing`, timeout: 240_000 }, async () => {
  const home = join(dir, 'home');
  const created = await runCli(['create-study', '--study-name', 'ckpy', '--direction', 'maximize', '--sampler', 'random', '--data-dir', home, ...LOOP]);
  assert.equal(created.code, 0, created.stderr);
  const node = new CliProcess(['node', '--study-name', 'ckpy', '--data-dir', home, ...LOOP]);
  running.push(node);
  await node.waitFor(/Keeping study "ckpy" online/);
  const nodeAddr = loopbackAddr(node.stdout);

  const a = new CliProcess(['worker', '--study-name', 'ckpy', '--data-dir', join(dir, 'a'), '--join', nodeAddr, ...LOOP, '--n-trials', '1', '--keep-checkpoints', '1', '--', PY, SCRIPT], { PT_HANG_AT: '3', PEERTUNE_LOG_LEVEL: 'debug' });
  running.push(a);
  await a.waitFor(/hanging after step 3/, 60_000);
  // B runs short filler trials meanwhile, so it is connected and sees A go silent.
  const b = new CliProcess(['worker', '--study-name', 'ckpy', '--data-dir', join(dir, 'b'), '--join', nodeAddr, ...LOOP, '--timeout', '35', '--max-retries', '1', '--', PY, SCRIPT]);
  running.push(b);
  await b.waitFor(/Joined study "ckpy"/, 60_000);
  // A's latest checkpoint (seq 3, step 3) is confirmed on another peer before the machine is lost.
  await a.waitFor(/Checkpoint \S+#3 \(step 3\) is confirmed on peer/, 60_000);
  a.child.kill('SIGKILL');
  await a.exit(10_000).catch(() => null);
  await rm(join(dir, 'a'), { recursive: true, force: true });

  const resumed = await b.waitFor(/resumed at step (\d+) with acc (\d+)/, 90_000);
  assert.equal(resumed[1], '4', 'the retry starts at the step after the last checkpoint');
  assert.equal(await b.exit(90_000), 0, b.stderr);

  const listed = await runCli(['trials', '--study-name', 'ckpy', '--data-dir', join(dir, 'b'), '-f', 'json']);
  assert.equal(listed.code, 0, listed.stderr);
  const trials = (JSON.parse(listed.stdout) as { trials: TrialOut[] }).trials;
  const lost = trials.find((t) => t.number === 0)!;
  assert.equal(lost.state, 'FAIL');
  const retries = trials.filter((t) => t.system_attrs['retryOf'] !== undefined);
  assert.equal(retries.length, 1, 'one retry');
  const retry = retries[0]!;
  assert.equal(retry.state, 'COMPLETE');
  assert.equal(retry.params['token'], lost.params['token'], 'same params');
  const token = lost.params['token']!;
  assert.equal(Number(resumed[2]), 60 + 3 * token, 'the state saved at step 3');
  assert.equal(retry.values![0], 210 + 6 * token, 'the full sum: steps 1..3 from the checkpoint, 4..6 in the retry');
  assert.deepEqual(Object.keys(retry.intermediate_values).map(Number).sort(), [4, 5, 6], 'the retry reported steps 4..6 only');

  // The shell: holders are listed, and a checkpoint is fetched from the swarm (B has stopped; the node holds copies).
  const cks = await runCli(['checkpoints', '--study-name', 'ckpy', '--join', nodeAddr, ...LOOP, '-f', 'json']);
  assert.equal(cks.code, 0, cks.stderr);
  const rows = JSON.parse(cks.stdout) as { trial: number; step: number; holders: string[] }[];
  const ofRetry = rows.filter((r) => r.trial === retry.number);
  assert.ok(ofRetry.length >= 1, cks.stdout);
  assert.ok(ofRetry.every((r) => r.holders.length >= 2), `each checkpoint confirmed on a second peer: ${cks.stdout}`);
  const out = join(dir, 'out');
  const got = await waitFor('checkpoint get from the swarm', 60_000, async () => {
    const r = await runCli(['checkpoint', 'get', '--study-name', 'ckpy', '--trial', String(retry.number), '-o', out, '--join', nodeAddr, ...LOOP]);
    return r.code === 0 ? r : null;
  });
  const written = JSON.parse(got.stdout.trim().split('\n').at(-1)!) as { path: string; step: number };
  assert.equal(written.step, 6);
  assert.deepEqual(JSON.parse(await readFile(written.path, 'utf8')), { step: 6, acc: 210 + 6 * token });
  assert.equal((await readdir(out)).length, 1);
});
