// PopulationBasedTraining in one process (in memory): Ray's explore with clipping; an exploited member
// ends PRUNED and its NEW trial starts from the top member's checkpoint (step and state); keep-N never
// drops a checkpoint a continuation clones; and on a problem that needs a learning-rate schedule,
// PBT with population 8 beats random search and TPE given at least the same total steps, over 5 seeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  createStudy,
  categoricalDistribution,
  floatDistribution,
  intDistribution,
  OptionError,
  PopulationBasedTraining,
  RandomSampler,
  Rng,
  setVerbosity,
  policyOf,
} from '../../src/index.js';
import { explore } from '../../src/pbt/explore.js';
import { baselines, toyObjective } from './toy.js';
import { waitFor } from '../fixtures/wait.js';

setVerbosity('error');

const lrDist = floatDistribution('lr', 1e-3, 1, { log: true });

test('explore: factors, neighbouring choices and resampling as in Ray, every value clipped to its distribution', () => {
  const dists = { lr: floatDistribution('lr', 0, 1), n: intDistribution('n', 1, 10), act: categoricalDistribution('act', ['a', 'b', 'c']) };
  const settings = { resampleProbability: 0, perturbationFactors: [1.2] };
  const up = explore({ lr: 0.9, n: 10, act: 'c', keep: 7 }, { lr: dists.lr, n: dists.n, act: ['a', 'b', 'c'] }, dists, settings, new Rng(1));
  assert.equal(up.params['lr'], 1, '0.9 * 1.2 clipped to high = 1 (Ray would give 1.08)');
  assert.equal(up.changes['lr']!.how, '*1.2,clipped');
  assert.equal(up.params['n'], 10, 'an int at its high stays there');
  assert.ok(['b', 'c'].includes(up.params['act'] as string), 'a choice moves to a neighbour or stays at the end');
  assert.equal(up.params['keep'], 7, 'a parameter without a mutation is copied from the clone');
  const down = explore({ lr: 0.5, n: 5 }, { lr: dists.lr, n: dists.n }, dists, { resampleProbability: 0, perturbationFactors: [0.8] }, new Rng(2));
  assert.equal(down.params['lr'], 0.4);
  assert.equal(down.params['n'], 4, 'ints round to the grid');
  for (let seed = 0; seed < 50; seed++) {
    const r = explore({ lr: 0.5 }, { lr: lrDist }, { lr: lrDist }, { resampleProbability: 1, perturbationFactors: [1.2, 0.8] }, new Rng(seed));
    assert.ok((r.params['lr'] as number) >= 1e-3 && (r.params['lr'] as number) <= 1 && r.changes['lr']!.how === 'resample');
  }
  const custom = explore({ lr: 0.5 }, { lr: dists.lr }, dists, { ...settings, customExploreFn: (c) => ({ ...c, lr: 7 }) }, new Rng(3));
  assert.equal(custom.params['lr'], 1, 'customExploreFn output is clipped too');
  assert.throws(() => new PopulationBasedTraining({}), (e: unknown) => e instanceof OptionError && e.option === 'hyperparamMutations');
  assert.throws(() => new PopulationBasedTraining({ hyperparamMutations: { lr: lrDist }, quantileFraction: 0.6 }), (e: unknown) => e instanceof OptionError && e.option === 'quantileFraction');
  assert.throws(() => new PopulationBasedTraining({ hyperparamMutations: { lr: lrDist }, perturbationFactor: [2] } as never), (e: unknown) => e instanceof OptionError && /unknown option "perturbationFactor"/.test(e.message));
  const pbt = new PopulationBasedTraining({ hyperparamMutations: { lr: lrDist } });
  assert.deepEqual([pbt.timeAttr, pbt.perturbationInterval, pbt.burnInPeriod, pbt.quantileFraction, pbt.resampleProbability, pbt.perturbationFactors], ['step', 60, 0, 0.25, 0.25, [1.2, 0.8]], "Ray's defaults (time in steps)");
});

/** Two members driven by ask(): A (good) and B (bad) report 4 steps, A saving a checkpoint of its state each step. */
async function twoMembers(opts: { numToKeep?: number } = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-'));
  const pbt = new PopulationBasedTraining({ perturbationInterval: 4, resampleProbability: 0, seed: 7, hyperparamMutations: { lr: floatDistribution('lr', 0.01, 0.5) } });
  const study = await createStudy({ direction: 'maximize', pruner: pbt, checkpointConfig: opts.numToKeep ? { numToKeep: opts.numToKeep } : {} });
  await study.enqueueTrial({ lr: 0.45 });
  await study.enqueueTrial({ lr: 0.02 });
  const a = study.ask();
  const b = study.ask();
  a.suggestFloat('lr', 0.01, 0.5);
  b.suggestFloat('lr', 0.01, 0.5);
  const decisions: boolean[] = [];
  for (let step = 1; step <= 4; step++) {
    const f = path.join(dir, `a-${step}.json`);
    await writeFile(f, JSON.stringify({ weights: [step, step * 10], owner: 'A' }));
    await a.saveCheckpoint(f, { step });
    a.report(10 * step, step);
    decisions.push(a.shouldPrune());
    b.report(step, step);
    decisions.push(b.shouldPrune());
  }
  return { dir, study, a, b, decisions };
}

test("a bottom member ends PRUNED and its new trial starts from the top member's checkpoint, step and state", async () => {
  const { dir, study, a, b, decisions } = await twoMembers();
  assert.deepEqual(decisions, [false, false, false, false, false, false, false, true], 'only B, at its perturbation point (step 4), is exploited');
  assert.equal(b.shouldPrune(), true, 'asking again gives the same answer and no second continuation');
  await study.tell(b, null, { state: 'PRUNED' });
  assert.equal(study.trials.length, 2, 'the continuation is created by the next ask() of this process, not enqueued for any peer to claim');
  const bDone = study.trials.find((t) => t.trialId === b.trialId)!;
  assert.equal(bDone.state, 'PRUNED');
  assert.match(String(bDone.systemAttrs['pbtReason']), /bottom 0.25 quantile at step 4 .*clone of trial 0 from its checkpoint at step 4: lr 0.45→0.(54|36|5)/);

  const c = study.ask();
  assert.equal(c.snapshot().systemAttrs['pbtParent'], a.trialId);
  assert.equal(c.snapshot().systemAttrs['pbtReplaces'], b.trialId);
  assert.equal(c.snapshot().systemAttrs['pbtMember'], b.trialId, 'the continuation keeps the population slot of the member it replaces');
  assert.equal(c.snapshot().systemAttrs['pbtStartStep'], 4);
  const lr = c.suggestFloat('lr', 0.01, 0.5);
  assert.ok(lr === 0.5 || Math.abs(lr - 0.36) < 1e-12, `the clone's 0.45 times 1.2 (clipped to 0.5) or 0.8, got ${lr}`);
  const ck = await c.getCheckpoint();
  assert.ok(ck, 'the new trial has a checkpoint to start from');
  assert.equal(ck.trialId, a.trialId);
  assert.equal(ck.step, 4);
  assert.deepEqual(JSON.parse(await readFile(ck.path, 'utf8')), { weights: [4, 40], owner: 'A' }, "the top member's state at step 4");
  c.report(50, 5);
  await study.tell(c, 50);
  const policy = policyOf(c.trialId, study.trials);
  assert.equal(policy.length, 1);
  assert.deepEqual([policy[0]!.trial, policy[0]!.clonedTrial, policy[0]!.step, policy[0]!.clonedStep], [b.trialId, a.trialId, 4, 4]);
  assert.deepEqual(policy[0]!.clonedConfig, { lr: 0.45 });
  assert.deepEqual(policy[0]!.newConfig, { lr });
  const rows = study.trialsDataframe();
  assert.ok(rows.columns.includes('pbt_parent') && rows.columns.includes('pbt_perturbation'));
  const row = rows.rows.find((r) => r['trial_id'] === c.trialId)!;
  assert.equal(row['pbt_parent'], 0);
  assert.equal(row['pbt_member'], 1);
  assert.equal(row['pbt_start_step'], 4);
  assert.match(String(row['pbt_perturbation']), /^lr 0.45→/);
  await study.tell(a, 40);
  await rm(dir, { recursive: true, force: true });
});

test('keep-N (numToKeep 1) never drops the checkpoint a member offers or a continuation clones, and drops it once nothing needs it', async () => {
  const { dir, study, a, b } = await twoMembers({ numToKeep: 1 });
  await study.tell(b, null, { state: 'PRUNED' });
  const m = await study.checkpoints();
  const cloned = a.checkpoints.find((r) => r.step === 4)!;
  assert.ok(cloned);
  const save = async (step: number) => {
    const f = path.join(dir, `a-${step}.json`);
    await writeFile(f, JSON.stringify({ weights: [step], owner: 'A' }));
    await a.saveCheckpoint(f, { step });
  };
  // A trains on past its perturbation point: with numToKeep 1 its step-4 checkpoint would go at once.
  await save(5);
  await save(6);
  assert.deepEqual(a.checkpoints.map((r) => r.step), [4, 6], 'the step-4 checkpoint is pinned: A offers it (its last perturbation point)');
  assert.ok(await m.store.has(cloned.hash), 'and its blob is on disk');
  const c = study.ask();
  assert.equal((await c.getCheckpoint())?.step, 4);
  // Two more points of A (8, then 12): A no longer offers step 4, but the running continuation clones it.
  a.report(80, 8);
  assert.equal(a.shouldPrune(), false);
  a.report(120, 12);
  assert.equal(a.shouldPrune(), false);
  await save(13);
  assert.deepEqual(a.checkpoints.map((r) => r.step), [4, 6, 13], 'step 4 pinned by the RUNNING continuation; 6 offered by A (at or before its points 8 and 12)');
  await study.tell(c, 1);
  await save(14);
  assert.deepEqual(a.checkpoints.map((r) => r.step), [6, 14], 'the step-4 checkpoint goes once no member needs it');
  assert.equal(await m.store.has(cloned.hash), false, 'and so does its blob');
  await study.tell(a, 90);
  await rm(dir, { recursive: true, force: true });
});

/** Best final loss of PBT, random search and TPE on the toy problem for one seed. */
async function compare(seed: number, dir: string) {
  const T = 100;
  const interval = 5;
  const run = { steps: 0 };
  const pbt = new PopulationBasedTraining({ perturbationInterval: interval, populationSize: 8, seed, hyperparamMutations: { lr: lrDist } });
  const study = await createStudy({ sampler: new RandomSampler({ seed }), pruner: pbt, checkpointConfig: { numToKeep: 2 } });
  await study.optimize(toyObjective(dir, { steps: T, saveEvery: interval, run }), { nJobs: 4 });
  const members = new Set(study.trials.map((t) => String(t.systemAttrs['pbtMember'] ?? t.trialId)));
  assert.equal(members.size, 8, 'population 8');
  assert.equal(study.getTrials({ states: ['COMPLETE'] }).length, 8, 'every member trained to the end');
  // The baselines get at least PBT's total steps: whole runs of T steps with one fixed rate.
  const n = Math.ceil(run.steps / T);
  return { pbt: study.bestValue, ...(await baselines(seed, n, T, dir)), pbtSteps: run.steps, baselineSteps: n * T };
}

test('on a problem that needs a learning-rate schedule, PBT (population 8) beats random search and TPE with the same total steps, over 5 seeds', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-toy-'));
  const results = [];
  for (const seed of [1, 2, 3, 4, 5]) results.push(await compare(seed, dir));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const table = results.map((r, i) => `seed ${i + 1}: pbt ${r.pbt.toFixed(4)} random ${r.random.toFixed(4)} tpe ${r.tpe.toFixed(4)} (steps ${r.pbtSteps} vs ${r.baselineSteps})`).join('\n');
  for (const r of results) {
    assert.ok(r.baselineSteps >= r.pbtSteps);
    assert.ok(r.pbt < r.random && r.pbt < r.tpe, `PBT wins on every seed:\n${table}`);
  }
  const ratio = median(results.map((r) => r.pbt)) / Math.min(median(results.map((r) => r.random)), median(results.map((r) => r.tpe)));
  assert.ok(ratio < 0.5, `median PBT loss under half the best baseline's median (ratio ${ratio.toFixed(3)}):\n${table}`);
  if (process.env['PBT_TABLE']) console.log(table);
  await rm(dir, { recursive: true, force: true });
});

test("a retried member keeps its member's perturbation clock (the points of the trial it retries)", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-retry-'));
  const pbt = new PopulationBasedTraining({ perturbationInterval: 4, hyperparamMutations: { lr: lrDist } });
  const study = await createStudy({ pruner: pbt, maxRetries: 1, retryFailed: true });
  const points: (number | null)[] = [];
  let crashed = false;
  await study.optimize(async (trial) => {
    trial.suggestFloat('lr', 1e-3, 1, { log: true });
    const ck = await trial.getCheckpoint();
    for (let step = (ck?.step ?? 0) + 1; step <= 8; step++) {
      if (step === 5 && !crashed) {
        crashed = true;
        throw new Error('lost the GPU');
      }
      const f = path.join(dir, `${step}.json`);
      await writeFile(f, '{}');
      await trial.saveCheckpoint(f, { step });
      trial.report(1 / step, step);
      trial.shouldPrune();
      points.push((trial.snapshot().systemAttrs['pbtLast'] as { step: number } | undefined)?.step ?? null);
    }
    return 0;
  }, { nTrials: 2 });
  assert.deepEqual(points, [null, null, null, 4, null, null, null, 8], 'the retry (steps 5 to 8) has its next point at 8, not at its first report');
  await rm(dir, { recursive: true, force: true });
});

test("timeAttr 'time_total_s': points come by the seconds a member's lineage has trained, and a continuation carries the clone's clock", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-time-'));
  const pbt = new PopulationBasedTraining({ timeAttr: 'time_total_s', perturbationInterval: 0.2, resampleProbability: 0, seed: 1, hyperparamMutations: { lr: lrDist } });
  const study = await createStudy({ direction: 'maximize', pruner: pbt });
  const [a, b] = [study.ask(), study.ask()];
  a.suggestFloat('lr', 1e-3, 1, { log: true });
  b.suggestFloat('lr', 1e-3, 1, { log: true });
  const f = path.join(dir, 'a.json');
  await writeFile(f, JSON.stringify({ a: 1 }));
  await a.saveCheckpoint(f, { step: 1 });
  a.report(10, 1);
  assert.equal(a.shouldPrune(), false);
  assert.equal(a.snapshot().systemAttrs['pbtLast'], undefined, 'no point before 0.2 s');
  let stepA = 1;
  const pointA = await waitFor("A's first point, 0.2 s in", 10_000, () => {
    a.report(10, ++stepA);
    a.shouldPrune();
    return a.snapshot().systemAttrs['pbtLast'] as { time: number } | undefined;
  });
  assert.ok(pointA.time >= 0.2);
  let stepB = 0;
  await waitFor("B's first point, where it is the bottom member", 10_000, () => {
    b.report(1, ++stepB);
    return b.shouldPrune();
  });
  await study.tell(b, null, { state: 'PRUNED' });
  const c = study.ask();
  assert.equal(c.snapshot().systemAttrs['pbtTimeBase'], pointA.time, "the continuation's clock starts at the clone's point");
  assert.equal((await c.getCheckpoint())?.step, 1);
  await study.tell(c, 1);
  await study.tell(a, 1);
  await rm(dir, { recursive: true, force: true });
});

test('an exploited member whose objective completes anyway (a prune at its last step, ignored) ends there: no second lineage', async () => {
  const { dir, study, a, b } = await twoMembers();
  assert.equal(b.shouldPrune(), true);
  const other = study.ask(); // a job that asks while B still runs does not take B's continuation
  assert.equal(other.snapshot().systemAttrs['pbtParent'], undefined);
  await study.tell(b, 3); // COMPLETE: the objective ignored the prune
  const next = study.ask();
  assert.equal(next.snapshot().systemAttrs['pbtParent'], undefined, 'the continuation was dropped');
  await study.tell(other, 1);
  await study.tell(next, 1);
  await study.tell(a, 1);
  await rm(dir, { recursive: true, force: true });
});

test('synch: every member stops at each sync point, and no continuation starts before all have reached it; bottom members clone, the others continue from themselves', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-pbt-synch-'));
  const pbt = new PopulationBasedTraining({ synch: true, perturbationInterval: 10, populationSize: 4, seed: 2, hyperparamMutations: { lr: lrDist } });
  const study = await createStudy({ sampler: new RandomSampler({ seed: 2 }), pruner: pbt });
  const started: { trialId: string; at: number }[] = [];
  const stopped: { trialId: string; at: number }[] = [];
  let clock = 0;
  const inner = toyObjective(dir, { steps: 30, saveEvery: 10, run: { steps: 0 }, onStart: (t) => started.push({ trialId: t.trialId, at: clock++ }) });
  // Two job slots for four members: the first two wait at each barrier until the other two get there.
  await study.optimize(async (t) => {
    try {
      return await inner(t);
    } finally {
      stopped.push({ trialId: t.trialId, at: clock++ });
    }
  }, { nJobs: 2 });
  const trials = study.trials;
  const byId = new Map(trials.map((t) => [t.trialId, t] as const));
  assert.equal(trials.filter((t) => t.state === 'COMPLETE').length, 4);
  for (const sync of [10, 20]) {
    const at = trials.filter((t) => (t.systemAttrs['pbtStopped'] as { sync: number } | undefined)?.sync === sync);
    assert.equal(at.length, 4, `all 4 members stopped at sync point ${sync}`);
    const lastStop = Math.max(...at.map((t) => stopped.find((s) => s.trialId === t.trialId)!.at));
    const next = trials.filter((t) => t.systemAttrs['pbtTimeBase'] === sync);
    assert.equal(next.length, 4, `4 continuations from sync point ${sync}`);
    for (const c of next) assert.ok(started.find((s) => s.trialId === c.trialId)!.at > lastStop, `continuation ${c.number} started after every member reached ${sync}`);
    const clones = next.filter((c) => c.systemAttrs['pbtParent'] !== c.systemAttrs['pbtReplaces']);
    assert.equal(clones.length, 1, 'one bottom member of 4 (quantile 0.25) cloned a top one');
    for (const c of next.filter((x) => !clones.includes(x))) assert.deepEqual(c.params, byId.get(c.systemAttrs['pbtReplaces'] as string)!.params, 'the others keep their params');
  }
  assert.equal(policyOf(trials.find((t) => t.state === 'COMPLETE')!.trialId, trials).every((l) => l.trial !== l.clonedTrial), true, 'self continuations are not perturbations');
  await rm(dir, { recursive: true, force: true });
});
