// PBT for command objectives, from the shell (the built CLI, a real data dir): `create-study --pruner pbt`
// stores the scheduler in the study, and `peertune worker -- node toy-command.mjs` (line protocol 2,
// get_checkpoint / save_checkpoint / report) runs the population: exploited members continue as new
// trials from the cloned member's checkpoint and state, and the worker returns when all have finished.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureBuilt, runCli } from '../fixtures/cli/helpers.js';

const TOY = path.join(import.meta.dirname, 'fixtures', 'toy-command.mjs');

interface TrialJson {
  number: number;
  trial_id: string;
  state: string;
  intermediate_values: Record<string, number>;
  user_attrs: Record<string, unknown>;
  system_attrs: Record<string, unknown>;
}

test('a command objective under --pruner pbt: continuations start from the cloned checkpoint and state; the worker ends with the population', { timeout: 300_000 }, async () => {
  ensureBuilt();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-cmd-'));
  try {
    const options = { perturbationInterval: 5, populationSize: 4, seed: 5, hyperparamMutations: { lr: { type: 'float', low: 0.001, high: 1, log: true } } };
    const bad = await runCli(['create-study', '--study-name', 'x', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--pruner', 'pbt', '--pruner-options', '{"hyperparamMutations": {"lr": {"type": "float", "low": 2, "high": 1}}}']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /hyperparamMutations\.lr: .*low \(2\) must be <= high \(1\)/);
    const created = await runCli(['create-study', '--study-name', 'cmd', '--direction', 'minimize', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--sampler', 'random', '--sampler-options', '{"seed":5}', '--pruner', 'pbt', '--pruner-options', JSON.stringify(options)]);
    assert.equal(created.code, 0, created.stderr);
    const worker = await runCli(['worker', '--study-name', 'cmd', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--n-jobs', '2', '--', process.execPath, TOY], { timeoutMs: 240_000 });
    assert.equal(worker.code, 0, worker.stderr);
    const listed = await runCli(['trials', '-f', 'json', '--study-name', 'cmd', '--data-dir', dataDir]);
    assert.equal(listed.code, 0, listed.stderr);
    const trials = (JSON.parse(listed.stdout) as { trials: TrialJson[] }).trials;
    const byId = new Map(trials.map((t) => [t.trial_id, t] as const));
    const members = new Set(trials.map((t) => String(t.system_attrs['pbtMember'] ?? t.trial_id)));
    assert.equal(members.size, 4, 'population 4');
    assert.equal(trials.filter((t) => t.state === 'COMPLETE').length, 4, 'every member trained to the end, then the worker returned');
    const continuations = trials.filter((t) => t.system_attrs['pbtParent'] !== undefined);
    assert.ok(continuations.length > 0, 'some members were exploited');
    assert.equal(trials.filter((t) => t.state === 'FAIL').length, 0);
    for (const c of continuations) {
      const from = c.user_attrs['startedFrom'] as { trialId: string; step: number; loss: number };
      assert.equal(from.trialId, c.system_attrs['pbtParent']);
      assert.equal(from.step, c.system_attrs['pbtStartStep']);
      assert.equal(from.loss, byId.get(from.trialId)!.intermediate_values[String(from.step)], "restored the cloned member's state at that step");
      const replaced = byId.get(c.system_attrs['pbtReplaces'] as string)!;
      assert.equal(replaced.state, 'PRUNED');
      assert.match(String(replaced.system_attrs['pbtReason']), /bottom 0.25 quantile at step \d+/);
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
