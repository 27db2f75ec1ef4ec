/**
 * Sample efficiency on the public suite and on three functions outside it (bench/extra-functions.ts):
 * simple regret (best so far minus the optimum) after 25, 50 and 100 trials over 8 seeds (PEERTUNE_BENCH_SEEDS), for peertune
 * Random / TPE / GPSampler and, in the same run, Optuna 3.1's TPE with its defaults and with
 * multivariate + constant liar (Optuna 3.1 has no GPSampler). Runs are spread over two
 * forked copies of this file (one per core); an Optuna run drives bench/optuna/suite_worker.py, which
 * asks Optuna for points and gets their values from bench/suite.ts, so both libraries optimize the
 * same implementation of each function.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createStudy, GPSampler, RandomSampler, setVerbosity, type Sampler } from '../src/index.js';
import { EXTRA_FUNCTIONS, evaluateAny, objectiveAny } from './extra-functions.js';
import { fmt, iqr, mannWhitneyP, median, OPTUNA_SCRIPTS, optunaAvailable, peertuneOptuna3Preset, peertuneTPE, PYTHON, table, type BenchContext, runPool } from './lib.js';
import { groupFunctions, type SuiteFunction, type SuiteValue } from './suite.js';

type Config = 'pt-random' | 'pt-tpe' | 'pt-tpe-mv' | 'pt-tpe-optuna3' | 'pt-gp' | 'optuna-tpe' | 'optuna-tpe-mv-cl';
const LABEL: Record<Config, string> = {
  'pt-random': 'peertune Random',
  'pt-tpe': 'peertune TPE defaults',
  'pt-tpe-mv': 'peertune TPE multivariate',
  'pt-tpe-optuna3': 'peertune TPE Optuna-3 preset',
  'pt-gp': 'peertune GP',
  'optuna-tpe': 'Optuna 3.1 TPE',
  'optuna-tpe-mv-cl': 'Optuna 3.1 TPE mv+cl',
};

const ALL_FUNCTIONS = (): SuiteFunction[] => [...groupFunctions('public'), ...EXTRA_FUNCTIONS];
const functionNamed = (name: string): SuiteFunction => {
  const f = ALL_FUNCTIONS().find((x) => x.name === name);
  if (!f) throw new Error(`sample-efficiency: no function named ${name}`);
  return f;
};

interface Task {
  config: Config;
  fn: string;
  seed: number;
  nTrials: number;
}
interface TaskResult {
  task: Task;
  /** Objective values in trial order (NaN where a trial did not complete). */
  values: number[];
  seconds: number;
}

// ------------------------------------------------------------------------------------------------
// Worker side: a forked copy of this module runs tasks sent by the parent.

const THIS_FILE = fileURLToPath(import.meta.url);
const WORKER_ENV = 'PEERTUNE_SAMPLE_EFFICIENCY_WORKER';

async function runPeertune(task: Task): Promise<TaskResult> {
  setVerbosity('silent');
  const fn = functionNamed(task.fn);
  let sampler: Sampler;
  if (task.config === 'pt-random') {
    sampler = new RandomSampler({ seed: task.seed });
  } else if (task.config === 'pt-gp') {
    sampler = new GPSampler({ seed: task.seed });
  } else {
    const TPE = await peertuneTPE();
    if (!TPE) throw new Error('TPESampler is not exported from src/index.ts');
    const preset = task.config === 'pt-tpe-optuna3' ? await peertuneOptuna3Preset() : {};
    sampler = new TPE({ ...preset, seed: task.seed, ...(task.config === 'pt-tpe-mv' ? { multivariate: true } : {}) });
  }
  const study = await createStudy({ sampler });
  const t0 = performance.now();
  await study.optimize(objectiveAny(fn), { nTrials: task.nTrials });
  const seconds = (performance.now() - t0) / 1000;
  const values = study.trials.map((t) => (t.state === 'COMPLETE' ? t.values![0]! : NaN));
  return { task, values, seconds };
}

/** One long-lived Python process per worker, fed one study at a time. */
let python: { child: ChildProcess; lines: AsyncIterator<string> } | null = null;

function pythonWorker(): { child: ChildProcess; lines: AsyncIterator<string> } {
  if (python) return python;
  const child = spawn(PYTHON, [path.join(OPTUNA_SCRIPTS, 'suite_worker.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  python = { child, lines };
  return python;
}

async function runOptuna(task: Task): Promise<TaskResult> {
  const fn = functionNamed(task.fn);
  const { child, lines } = pythonWorker();
  const sampler = task.config === 'optuna-tpe' ? 'tpe' : 'tpe-mv-cl';
  child.stdin!.write(JSON.stringify({ function: fn, sampler, seed: task.seed, n_trials: task.nTrials }) + '\n');
  const values: number[] = [];
  for (;;) {
    const next = await lines.next();
    if (next.done) throw new Error('the Optuna worker (bench/optuna/suite_worker.py) exited mid-study; see its traceback above');
    const msg = JSON.parse(next.value) as { ask?: Record<string, SuiteValue>; done?: boolean; seconds?: number };
    if (msg.done) return { task, values, seconds: msg.seconds ?? NaN };
    const v = evaluateAny(fn, msg.ask!);
    values.push(v);
    child.stdin!.write(JSON.stringify({ value: v }) + '\n');
  }
}

if (process.env[WORKER_ENV] === '1' && process.send) {
  process.on('message', (task: Task | 'exit') => {
    if (task === 'exit') {
      python?.child.stdin!.end();
      process.disconnect();
      return;
    }
    const run = task.config.startsWith('pt-') ? runPeertune(task) : runOptuna(task);
    run.then(
      (r) => process.send!({ ok: true, result: r }),
      (e: unknown) => process.send!({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
    );
  });
}

// ------------------------------------------------------------------------------------------------
// Parent side.


interface Cell {
  median: number;
  q25: number;
  q75: number;
  regrets: number[];
}

function regretAt(values: number[], k: number, optimum: number): number {
  let best = Infinity;
  for (const v of values.slice(0, k)) if (Number.isFinite(v) && v < best) best = v;
  // Regret can dip a hair below zero from float rounding at a documented optimum; clamp so ratios stay meaningful.
  return Math.max(0, best - optimum);
}

function cellText(c: Cell | undefined): string {
  return c ? `${fmt(c.median)} [${fmt(c.q25)}, ${fmt(c.q75)}]` : 'n/a';
}

/** Compares peertune's median regret with Optuna's: win / tie / loss, and the ratio (target: <= 1.2). */
function versus(pt: Cell | undefined, op: Cell | undefined): { verdict: 'win' | 'tie' | 'loss' | 'n/a'; ratio: number; p: number; text: string } {
  if (!pt || !op) return { verdict: 'n/a', ratio: NaN, p: NaN, text: 'n/a' };
  const ratio = op.median === 0 ? (pt.median === 0 ? 1 : Infinity) : pt.median / op.median;
  const verdict = pt.median < op.median ? 'win' : pt.median > op.median ? 'loss' : 'tie';
  const flag = ratio > 1.2 ? ', >20% worse' : '';
  const p = mannWhitneyP(pt.regrets, op.regrets);
  return { verdict, ratio, p, text: `${verdict} (x${fmt(ratio)}${flag}, p=${p.toFixed(2)})` };
}

export default async function sampleEfficiency(ctx: BenchContext): Promise<void> {
  // 8 seeds x 8 functions x 100 trials took 19 minutes on the shared two-core machine (load average
  // 8 to 18; the GP is the slow part, about 0.1 s per trial at 100 trials unloaded); regret at 25 and 50
  // trials is read off the same studies (issue 14 asks for 25, 50 and 100). The issue asked for 20 seeds: PEERTUNE_BENCH_SEEDS=20 gives them.
  const seeds = ctx.quick ? 3 : Number(process.env['PEERTUNE_BENCH_SEEDS'] ?? 8);
  const nTrials = ctx.quick ? 30 : 100;
  const budgets = ctx.quick ? [10, 20, 30] : [25, 50, 100];
  const fns = ALL_FUNCTIONS();
  const publicNames = new Set(groupFunctions('public').map((f) => f.name));

  const configs: Config[] = ['pt-random'];
  const notes: string[] = [];
  if (await peertuneTPE()) configs.push('pt-tpe');
  else notes.push('peertune TPESampler is not exported from src/index.ts yet: its rows are skipped.');
  configs.push('pt-gp');
  const optuna = optunaAvailable();
  if (optuna.ok) configs.push('optuna-tpe', 'optuna-tpe-mv-cl');
  else notes.push(optuna.why!);
  for (const n of notes) ctx.log(n);
  if (optuna.ok) ctx.log(`Optuna ${optuna.version} via ${PYTHON}`);

  // The slowest runs (GP, Optuna) first in the queue, so the lanes finish together.
  const slow = (c: Config) => Number(c.startsWith('optuna') || c === 'pt-gp');
  const order: Config[] = [...configs].sort((a, b) => slow(b) - slow(a));
  const tasks: Task[] = [];
  for (const config of order) for (const fn of fns) for (let seed = 0; seed < seeds; seed++) tasks.push({ config, fn: fn.name, seed, nTrials });
  ctx.log(`${tasks.length} studies (${configs.length} samplers x ${fns.length} functions x ${seeds} seeds x ${nTrials} trials) on 2 workers`);

  const t0 = performance.now();
  let lastPct = -1;
  const results = await runPool<Task, TaskResult>(THIS_FILE, WORKER_ENV, tasks, 2, (t) => `${LABEL[t.config]} on ${t.fn} (seed ${t.seed})`, (done) => {
    const pct = Math.floor((done / tasks.length) * 10) * 10;
    if (pct !== lastPct) {
      lastPct = pct;
      ctx.log(`${done}/${tasks.length} studies done (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  });

  // cells[fn][config][budget]
  const cells: Record<string, Partial<Record<Config, Record<number, Cell>>>> = {};
  const seconds: Partial<Record<Config, number>> = {};
  for (const fn of fns) {
    cells[fn.name] = {};
    for (const config of configs) {
      const runs = results.filter((r) => r.task.fn === fn.name && r.task.config === config).sort((a, b) => a.task.seed - b.task.seed);
      const byBudget: Record<number, Cell> = {};
      for (const k of budgets) {
        const regrets = runs.map((r) => regretAt(r.values, k, fn.optimum.value));
        const [q25, q75] = iqr(regrets);
        byBudget[k] = { median: median(regrets), q25, q75, regrets };
      }
      cells[fn.name]![config] = byBudget;
      seconds[config] = (seconds[config] ?? 0) + runs.reduce((s, r) => s + r.seconds, 0);
    }
  }

  const pairs: [Config, Config][] = [
    ['pt-gp', 'optuna-tpe-mv-cl'],
    ['pt-gp', 'optuna-tpe'],
    ['pt-gp', 'pt-tpe'],
    ['pt-tpe', 'optuna-tpe'],
    ['pt-tpe', 'optuna-tpe-mv-cl'],
  ];
  const md: string[] = [
    `${seeds} seeds, ${nTrials} trials per study; simple regret = best value so far minus the optimum; cells are median [25th, 75th percentile]. ` +
      `"win" = the first sampler's median regret is lower; x = first median / second median; ` +
      `p = two-sided Mann-Whitney U over the seeds (p > 0.05: the difference may be chance). ` +
      `Functions after the public five (styblinski_tang5, levy6, rotated_rosenbrock4) are outside the suite (bench/extra-functions.ts): no default was chosen on them.`,
    '',
  ];
  md.push(
    'Samplers: peertune TPE defaults = `new TPESampler({ seed })`; peertune GP = `new GPSampler({ seed })` (defaults: 10 startup trials, noise fitted); ' +
      'Optuna 3.1 TPE = `TPESampler(seed=seed)`; mv+cl = `TPESampler(seed=seed, multivariate=True, constant_liar=True)`. Seeds 0..' + String(seeds - 1) + ' on both sides.',
    '',
  );
  for (const n of notes) md.push(`> ${n}`, '');
  const summary: Record<string, unknown> = {};
  const activePairs = pairs.filter(([a, b]) => configs.includes(a) && configs.includes(b));
  for (const k of budgets) {
    md.push(`### Regret after ${k} trials`, '');
    md.push(table(['function', ...configs.map((c) => LABEL[c])], fns.map((fn) => [fn.name, ...configs.map((cfg) => cellText(cells[fn.name]![cfg]?.[k]))])), '');
    if (activePairs.length) {
      const rows = fns.map((fn) => [fn.name, ...activePairs.map(([a, b]) => versus(cells[fn.name]![a]?.[k], cells[fn.name]![b]?.[k]).text)]);
      md.push(table(['function', ...activePairs.map(([a, b]) => `${LABEL[a]} vs ${LABEL[b]}`)], rows), '');
    }
    for (const [a, b] of activePairs) {
      const vs = fns.map((fn) => versus(cells[fn.name]![a]![k], cells[fn.name]![b]![k]));
      const pub = vs.filter((_, i) => publicNames.has(fns[i]!.name));
      const line = `${LABEL[a]} vs ${LABEL[b]} at ${k} trials: wins on ${pub.filter((v) => v.verdict === 'win').length}/${pub.length} public functions and ${vs.filter((v) => v.verdict === 'win').length}/${vs.length} in all`;
      md.push(`- ${line}`);
      summary[`${a} vs ${b} @${k}`] = { wins: vs.filter((v) => v.verdict === 'win').length, publicWins: pub.filter((v) => v.verdict === 'win').length, perFunction: Object.fromEntries(fns.map((fn, i) => [fn.name, vs[i]])) };
    }
    md.push('');
  }
  // The issue's target: GP's median regret at 50 trials below Optuna 3.1's better TPE variant on at
  // least 4 of the 5 public functions (goal: 2x better on 3).
  const k50 = ctx.quick ? budgets[1]! : 50;
  if (configs.includes('optuna-tpe') && configs.includes('pt-gp')) {
    let wins = 0;
    let twice = 0;
    const rows: string[][] = [];
    for (const fn of fns) {
      const gp = cells[fn.name]!['pt-gp']![k50]!.median;
      const bestOptuna = Math.min(cells[fn.name]!['optuna-tpe']![k50]!.median, cells[fn.name]!['optuna-tpe-mv-cl']![k50]!.median);
      const ratio = bestOptuna === 0 ? (gp === 0 ? 1 : Infinity) : gp / bestOptuna;
      if (publicNames.has(fn.name)) {
        if (gp < bestOptuna) wins++;
        if (ratio <= 0.5) twice++;
      }
      rows.push([fn.name + (publicNames.has(fn.name) ? '' : ' (outside the suite)'), fmt(gp), fmt(bestOptuna), `x${fmt(ratio)}`]);
    }
    md.push(`### GP target at ${k50} trials`, '', table(['function', 'peertune GP median regret', "Optuna 3.1's better TPE variant", 'ratio'], rows), '');
    const met = wins >= 4;
    const line = `GP better than Optuna 3.1's better TPE variant on ${wins}/5 public functions at ${k50} trials (target >= 4: ${ctx.quick ? 'quick run, not judged' : met ? 'MET' : 'NOT MET'}); at least 2x better on ${twice}/5 (goal 3: ${twice >= 3 ? 'MET' : 'NOT MET'})`;
    md.push(`- ${line}`, '');
    ctx.log(line);
    summary['gpTarget'] = { budget: k50, wins, twice, met };
  }
  md.push('Time spent inside the samplers and objective, summed over all studies (seconds; Optuna includes the pipe round trip to the TypeScript objective):', '');
  md.push(table(configs.map((c) => LABEL[c]), [configs.map((c) => fmt(seconds[c] ?? NaN))]));

  const text = md.join('\n');
  console.log(text);
  await ctx.writeResult(
    ctx.quick ? 'sample-efficiency-quick' : 'sample-efficiency',
    {
      seeds,
      nTrials,
      budgets,
      optuna: optuna.ok ? optuna.version : null,
      notes,
      summary,
      seconds,
      cells: Object.fromEntries(
        Object.entries(cells).map(([fn, byCfg]) => [
          fn,
          Object.fromEntries(Object.entries(byCfg).map(([cfg, byK]) => [cfg, Object.fromEntries(Object.entries(byK!).map(([k, c]) => [k, c]))])),
        ]),
      ),
    },
    text,
  );
}
