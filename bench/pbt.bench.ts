/**
 * PBT against random search and TPE with the same total training steps (issue 10's comparison), in one
 * process, population 8 (4 at a time), several seeds, two problems:
 * - `schedule`: SGD on a noisy quadratic (test/pbt/toy.ts), whose optimum needs a decaying learning
 *   rate: 100 steps, perturbation every 5 steps; the score is the final loss (lower is better).
 * - `jaderberg-toy`: the toy problem of the PBT paper's appendix (Jaderberg et al. 2017): maximise
 *   Q(theta) = 1.2 - (theta0^2 + theta1^2) from theta = (0.9, 0.9) by gradient ascent on the surrogate
 *   1.2 - (h0 theta0^2 + h1 theta1^2), h in [0, 1]^2 being the hyperparameters: 40 steps of 0.02,
 *   perturbation every 4 steps; the score is the final Q (higher is better; 1.2 at best).
 * The baselines run whole trials with one fixed configuration, as many as PBT's total steps need
 * (rounded up), so they get at least PBT's budget.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStudy, floatDistribution, NopPruner, PopulationBasedTraining, RandomSampler, setVerbosity, TPESampler, TrialPruned, type Sampler, type Trial } from '../src/index.js';
import { toyObjective } from '../test/pbt/toy.js';
import { machineInfo, type BenchContext } from './lib.js';

setVerbosity('error');

interface Problem {
  name: string;
  direction: 'minimize' | 'maximize';
  steps: number;
  interval: number;
  mutations: PopulationBasedTraining['hyperparamMutations'];
  objective: (dir: string, run: { steps: number }, saveEvery: number) => (trial: Trial) => Promise<number>;
}

/** The paper's toy: theta's state is two numbers, checkpointed as JSON. */
function jaderbergObjective(steps: number, dir: string, run: { steps: number }, saveEvery: number) {
  const q = (t: number[]) => 1.2 - (t[0]! ** 2 + t[1]! ** 2);
  return async (trial: Trial): Promise<number> => {
    const h = [trial.suggestFloat('h0', 0, 1), trial.suggestFloat('h1', 0, 1)];
    const ck = await trial.getCheckpoint();
    let theta = ck ? (JSON.parse(await readFile(ck.path, 'utf8')) as number[]) : [0.9, 0.9];
    for (let step = (ck?.step ?? 0) + 1; step <= steps; step++) {
      theta = theta.map((t, i) => t + 0.02 * (-2 * h[i]! * t)); // ascent on the surrogate
      run.steps++;
      if (step % saveEvery === 0) {
        const f = path.join(dir, `${trial.trialId.replace(/\W/g, '_')}.json`);
        await writeFile(f, JSON.stringify(theta));
        await trial.saveCheckpoint(f, { step });
      }
      trial.report(q(theta), step);
      if (step < steps && trial.shouldPrune()) throw new TrialPruned();
    }
    return q(theta);
  };
}

const PROBLEMS: Problem[] = [
  {
    name: 'schedule',
    direction: 'minimize',
    steps: 100,
    interval: 5,
    mutations: { lr: floatDistribution('lr', 1e-3, 1, { log: true }) },
    objective: (dir, run, saveEvery) => toyObjective(dir, { steps: 100, saveEvery, run }),
  },
  {
    name: 'jaderberg-toy',
    direction: 'maximize',
    steps: 40,
    interval: 4,
    mutations: { h0: floatDistribution('h0', 0, 1), h1: floatDistribution('h1', 0, 1) },
    objective: (dir, run, saveEvery) => jaderbergObjective(40, dir, run, saveEvery),
  },
];

async function best(p: Problem, sampler: Sampler, dir: string, nTrials: number): Promise<number> {
  const s = await createStudy({ direction: p.direction, sampler, pruner: new NopPruner() });
  await s.optimize(p.objective(dir, { steps: 0 }, Infinity), { nTrials });
  return s.bestValue;
}

export default async function (ctx: BenchContext): Promise<void> {
  const seeds = ctx.quick ? [1, 2] : [1, 2, 3, 4, 5, 6, 7, 8];
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-bench-pbt-'));
  const rows: { problem: string; seed: number; pbt: number; pbtSynch: number; pbtSynchSteps: number; random: number; tpe: number; pbtSteps: number; baselineSteps: number; pbtTrials: number }[] = [];
  for (const p of PROBLEMS) {
    for (const seed of seeds) {
      const runPbt = async (synch: boolean) => {
        const run = { steps: 0 };
        const pbt = new PopulationBasedTraining({ perturbationInterval: p.interval, populationSize: 8, seed, synch, hyperparamMutations: p.mutations });
        const study = await createStudy({ direction: p.direction, sampler: new RandomSampler({ seed }), pruner: pbt, checkpointConfig: { numToKeep: 2 } });
        await study.optimize(p.objective(dir, run, p.interval), { nJobs: 4 });
        return { best: study.bestValue, steps: run.steps, trials: study.trials.length };
      };
      const synch = await runPbt(true);
      const asyncRun = await runPbt(false);
      // The baselines get at least the larger of the two PBT budgets.
      const n = Math.ceil(Math.max(asyncRun.steps, synch.steps) / p.steps);
      const row = {
        problem: p.name,
        seed,
        pbtSynch: synch.best,
        pbtSynchSteps: synch.steps,
        pbt: asyncRun.best,
        random: await best(p, new RandomSampler({ seed }), dir, n),
        tpe: await best(p, new TPESampler({ seed, nStartupTrials: 4 }), dir, n),
        pbtSteps: asyncRun.steps,
        baselineSteps: n * p.steps,
        pbtTrials: asyncRun.trials,
      };
      rows.push(row);
      ctx.log(`${p.name} seed ${seed}: pbt ${row.pbt.toFixed(4)} pbt-synch ${row.pbtSynch.toFixed(4)} random ${row.random.toFixed(4)} tpe ${row.tpe.toFixed(4)} (steps ${row.pbtSteps} vs ${row.baselineSteps}, ${row.pbtTrials} PBT trials)`);
    }
  }
  await rm(dir, { recursive: true, force: true });
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const f = (v: number) => v.toFixed(4);
  const lines = [
    `Population 8 (4 at a time, one process), seeds ${seeds.join(', ')}; PBT asynchronous and synch; the baselines get at least the larger PBT budget (whole runs, one fixed configuration each). schedule: final loss (lower is better); jaderberg-toy: final Q (higher is better, 1.2 at best).`,
    '',
    '| problem | PBT median | PBT synch median | random median | TPE median | PBT better than both (seeds) | PBT synch better than both | PBT steps (median) | synch steps (median) | baseline steps (median) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const p of PROBLEMS) {
    const rs = rows.filter((r) => r.problem === p.name);
    const better = (a: number, b: number) => (p.direction === 'minimize' ? a < b : a > b);
    const wins = rs.filter((r) => better(r.pbt, r.random) && better(r.pbt, r.tpe)).length;
    const synchWins = rs.filter((r) => better(r.pbtSynch, r.random) && better(r.pbtSynch, r.tpe)).length;
    lines.push(`| ${p.name} | ${f(median(rs.map((r) => r.pbt)))} | ${f(median(rs.map((r) => r.pbtSynch)))} | ${f(median(rs.map((r) => r.random)))} | ${f(median(rs.map((r) => r.tpe)))} | ${wins} of ${rs.length} | ${synchWins} of ${rs.length} | ${median(rs.map((r) => r.pbtSteps))} | ${median(rs.map((r) => r.pbtSynchSteps))} | ${median(rs.map((r) => r.baselineSteps))} |`);
  }
  lines.push('', '| problem | seed | PBT | PBT synch | random | TPE | PBT steps | synch steps | baseline steps |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) lines.push(`| ${r.problem} | ${r.seed} | ${f(r.pbt)} | ${f(r.pbtSynch)} | ${f(r.random)} | ${f(r.tpe)} | ${r.pbtSteps} | ${r.pbtSynchSteps} | ${r.baselineSteps} |`);
  const md = lines.join('\n');
  ctx.log('\n' + md);
  await ctx.writeResult(ctx.quick ? 'pbt-quick' : 'pbt', { machine: machineInfo(), rows }, md);
}
