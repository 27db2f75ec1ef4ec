/**
 * Multi-objective sample efficiency: hypervolume (src/hypervolume.ts, fixed reference point per
 * problem) of the Pareto front after 50, 100 and 200 trials over 10 seeds, for peertune's TPE (split by
 * rank, the default before issue 14, and Optuna's hypervolume split, the default since), peertune
 * NSGA-II, peertune's GPSampler (ParEGO scalarisation for several objectives) and, in the same run, Optuna 3.1's multi-objective TPESampler and NSGAIISampler (bench/optuna/mo_worker.py asks Optuna for points
 * and gets their values from here). Problems: ZDT1, ZDT2, DTLZ2 (3 objectives) from the issue, and
 * ZDT3 (a disconnected front), on which no default was chosen.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createStudy, GPSampler, hypervolume, NSGAIISampler, setVerbosity, TPESampler, type Sampler } from '../src/index.js';
import { fmt, iqr, mannWhitneyP, median, OPTUNA_SCRIPTS, optunaAvailable, PYTHON, table, type BenchContext, runPool } from './lib.js';

interface Problem {
  name: string;
  nVars: number;
  nObjectives: number;
  reference: number[];
  f(x: number[]): number[];
}

const zdtG = (x: number[]) => 1 + (9 * x.slice(1).reduce((a, b) => a + b, 0)) / (x.length - 1);
export const PROBLEMS: Problem[] = [
  { name: 'zdt1', nVars: 6, nObjectives: 2, reference: [1.1, 11], f: (x) => { const g = zdtG(x); return [x[0]!, g * (1 - Math.sqrt(x[0]! / g))]; } },
  { name: 'zdt2', nVars: 6, nObjectives: 2, reference: [1.1, 11], f: (x) => { const g = zdtG(x); return [x[0]!, g * (1 - (x[0]! / g) ** 2)]; } },
  {
    name: 'zdt3',
    nVars: 6,
    nObjectives: 2,
    reference: [1.1, 11],
    f: (x) => {
      const g = zdtG(x);
      const r = x[0]! / g;
      return [x[0]!, g * (1 - Math.sqrt(r) - r * Math.sin(10 * Math.PI * x[0]!))];
    },
  },
  {
    name: 'dtlz2',
    nVars: 6,
    nObjectives: 3,
    reference: [2.5, 2.5, 2.5],
    f: (x) => {
      const g = x.slice(2).reduce((a, v) => a + (v - 0.5) ** 2, 0);
      const [a, b] = [x[0]! * Math.PI * 0.5, x[1]! * Math.PI * 0.5];
      return [(1 + g) * Math.cos(a) * Math.cos(b), (1 + g) * Math.cos(a) * Math.sin(b), (1 + g) * Math.sin(a)];
    },
  },
];
const ISSUE_PROBLEMS = new Set(['zdt1', 'zdt2', 'dtlz2']);

type Config = 'pt-tpe-rank' | 'pt-tpe-hv' | 'pt-nsga2' | 'pt-gp' | 'optuna-tpe' | 'optuna-nsga2';
const LABEL: Record<Config, string> = {
  'pt-tpe-rank': 'peertune TPE (rank split)',
  'pt-tpe-hv': 'peertune TPE (hypervolume split, default)',
  'pt-nsga2': 'peertune NSGA-II',
  'pt-gp': 'peertune GP (ParEGO)',
  'optuna-tpe': 'Optuna 3.1 MOTPE (multivariate)',
  'optuna-nsga2': 'Optuna 3.1 NSGA-II',
};

interface Task {
  config: Config;
  problem: string;
  seed: number;
  nTrials: number;
  /** Optuna's version, the key of the cache of Optuna's studies (see runOptuna). */
  optunaVersion?: string;
  /** MO_BENCH_OPTUNA_LIVE=1: Optuna's study runs now, in this run; the cache is only compared against. */
  live?: boolean;
  /** MO_BENCH_DEADLINE: a task not started by then (ms since the epoch) is skipped. */
  deadline?: number;
}
interface TaskResult {
  task: Task;
  values: number[][];
  seconds: number;
  /** Values from bench/optuna-cache (an earlier run of the same Optuna study). */
  cached?: boolean;
  /** Live Optuna study: whether its values equal the cached ones (null: nothing cached). */
  matchesCache?: boolean | null;
  /** Not run: the deadline had passed when its turn came. */
  skipped?: boolean;
}

const THIS_FILE = fileURLToPath(import.meta.url);
const WORKER_ENV = 'PEERTUNE_MO_BENCH_WORKER';
const problemNamed = (name: string): Problem => PROBLEMS.find((p) => p.name === name)!;

async function runPeertune(task: Task): Promise<TaskResult> {
  setVerbosity('silent');
  const p = problemNamed(task.problem);
  const sampler: Sampler =
    task.config === 'pt-nsga2'
      ? new NSGAIISampler({ seed: task.seed })
      : task.config === 'pt-gp'
        ? new GPSampler({ seed: task.seed })
        : new TPESampler({ seed: task.seed, multiObjectiveSplit: task.config === 'pt-tpe-hv' ? 'hypervolume' : 'rank' });
  const study = await createStudy({ directions: Array(p.nObjectives).fill('minimize'), sampler });
  const t0 = performance.now();
  await study.optimize((t) => p.f(Array.from({ length: p.nVars }, (_, i) => t.suggestFloat(`x${i}`, 0, 1))), { nTrials: task.nTrials });
  return { task, values: study.trials.filter((t) => t.state === 'COMPLETE').map((t) => [...t.values!]), seconds: (performance.now() - t0) / 1000 };
}

let python: { child: ChildProcess; lines: AsyncIterator<string> } | null = null;

/**
 * Optuna's studies are deterministic under their seed (the objective is deterministic too), so each is
 * run once per (sampler, problem, seed, trials, Optuna version) and its values kept in
 * bench/optuna-cache/: Optuna 3.1's MOTPE spends about 50 CPU minutes on the full set, which a shared
 * 2-core machine cannot repeat for every change on the peertune side. Delete the directory to re-run.
 */
export const OPTUNA_CACHE = path.join(path.dirname(THIS_FILE), 'optuna-cache', 'multi-objective');

async function runOptuna(task: Task): Promise<TaskResult> {
  const file = path.join(OPTUNA_CACHE, `${task.config}-${task.problem}-s${task.seed}-n${task.nTrials}.json`);
  if (task.live) {
    const r = await runOptunaStudy(task);
    let matchesCache: boolean | null = null;
    try {
      const cached = JSON.parse(await readFile(file, 'utf8')) as { optuna: string; values: number[][] };
      if (cached.optuna === task.optunaVersion) matchesCache = JSON.stringify(cached.values) === JSON.stringify(r.values);
    } catch {
      // nothing cached to compare with
    }
    return { ...r, matchesCache };
  }
  try {
    const cached = JSON.parse(await readFile(file, 'utf8')) as { optuna: string; values: number[][]; seconds: number };
    if (cached.optuna === task.optunaVersion && cached.values.length === task.nTrials) return { task, values: cached.values, seconds: cached.seconds, cached: true };
  } catch {
    // not cached yet
  }
  const r = await runOptunaStudy(task);
  await mkdir(OPTUNA_CACHE, { recursive: true });
  await writeFile(file, JSON.stringify({ optuna: task.optunaVersion, config: task.config, problem: task.problem, seed: task.seed, nTrials: task.nTrials, seconds: r.seconds, values: r.values }) + '\n');
  return r;
}

async function runOptunaStudy(task: Task): Promise<TaskResult> {
  const p = problemNamed(task.problem);
  if (!python) {
    const child = spawn(PYTHON, [path.join(OPTUNA_SCRIPTS, 'mo_worker.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
    python = { child, lines: createInterface({ input: child.stdout! })[Symbol.asyncIterator]() };
  }
  const { child, lines } = python;
  child.stdin!.write(JSON.stringify({ n_vars: p.nVars, n_objectives: p.nObjectives, sampler: task.config === 'optuna-tpe' ? 'tpe-mv' : 'nsga2', seed: task.seed, n_trials: task.nTrials }) + '\n');
  const values: number[][] = [];
  for (;;) {
    const next = await lines.next();
    if (next.done) throw new Error('the Optuna worker (bench/optuna/mo_worker.py) exited mid-study; see its traceback above');
    const msg = JSON.parse(next.value) as { ask?: Record<string, number>; done?: boolean; seconds?: number };
    if (msg.done) return { task, values, seconds: msg.seconds ?? NaN };
    const v = p.f(Array.from({ length: p.nVars }, (_, i) => msg.ask![`x${i}`]!));
    values.push(v);
    child.stdin!.write(JSON.stringify({ values: v }) + '\n');
  }
}

if (process.env[WORKER_ENV] === '1' && process.send) {
  process.on('message', (task: Task | 'exit') => {
    if (task === 'exit') {
      python?.child.stdin!.end();
      process.disconnect();
      return;
    }
    const run = task.deadline !== undefined && Date.now() > task.deadline ? Promise.resolve<TaskResult>({ task, values: [], seconds: 0, skipped: true }) : task.config.startsWith('pt-') ? runPeertune(task) : runOptuna(task);
    run.then(
      (r) => process.send!({ ok: true, result: r }),
      (e: unknown) => process.send!({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
    );
  });
}


export default async function multiObjective(ctx: BenchContext): Promise<void> {
  // 10 seeds x 4 problems x 200 trials. Optuna 3.1's MOTPE is the slow part: in its default univariate
  // mode it recomputes hypervolume contributions (Python WFG) for every parameter of every trial, which
  // took over 5 minutes per 200-trial DTLZ2 study on the shared machine; multivariate=True does that
  // once per trial (and matches peertune's multivariate default), so that is the baseline here.
  // MO_BENCH_SEEDS / MO_BENCH_PROBLEMS (comma list) shrink a full run when the shared machine is busy.
  // MO_BENCH_OPTUNA_LIVE=1 runs every Optuna study in this run (bench/optuna-cache/ is neither read nor
  // written, only compared with). MO_BENCH_DEADLINE (an ISO time) skips the tasks not started by then;
  // the tables then cover only the (problem, seed) pairs every sampler finished, and say which.
  const seeds = ctx.quick ? 2 : Number(process.env['MO_BENCH_SEEDS'] ?? 10);
  const nTrials = ctx.quick ? 60 : 200;
  const budgets = ctx.quick ? [30, 60] : [50, 100, 200];
  let configs: Config[] = ['pt-tpe-rank', 'pt-tpe-hv', 'pt-nsga2', 'pt-gp'];
  const optuna = optunaAvailable();
  const notes: string[] = [];
  if (optuna.ok) configs.push('optuna-tpe', 'optuna-nsga2');
  else notes.push(optuna.why!);
  // MO_BENCH_CONFIGS=a,b runs only those samplers (e.g. to fill the Optuna cache ahead of a full run);
  // such a partial run prints its table but does not replace the stored result.
  const only = process.env['MO_BENCH_CONFIGS']?.split(',').filter(Boolean) ?? null;
  if (only) configs = configs.filter((c) => only.includes(c));
  const tasks: Task[] = [];
  const live = process.env['MO_BENCH_OPTUNA_LIVE'] === '1';
  const deadlineText = process.env['MO_BENCH_DEADLINE'];
  const deadline = deadlineText ? Date.parse(deadlineText) : undefined;
  if (deadline !== undefined && !Number.isFinite(deadline)) throw new Error(`MO_BENCH_DEADLINE=${deadlineText} is not a date (use an ISO time such as 2026-12-01T18:30:00Z)`);
  const onlyProblems = process.env['MO_BENCH_PROBLEMS']?.split(',').filter(Boolean) ?? null;
  const problems = PROBLEMS.filter((p) => !onlyProblems || onlyProblems.includes(p.name));
  const base = { nTrials, optunaVersion: optuna.version, live, deadline };
  if (deadline === undefined) {
    // The slowest first (the GP; then Optuna, whose cached studies take no time), so the lanes finish together.
    const order = (c: Config) => (c === 'pt-gp' ? 0 : c.startsWith('optuna') ? 1 : 2);
    for (const config of [...configs].sort((a, b) => order(a) - order(b))) for (const p of problems) for (let seed = 0; seed < seeds; seed++) tasks.push({ ...base, config, problem: p.name, seed });
  } else {
    // Against a deadline: problem by problem (the issue's first), seed by seed, so that whole
    // (problem, seed) pairs, every sampler included, finish one after another.
    const rank = (p: Problem) => (ISSUE_PROBLEMS.has(p.name) ? 0 : 1);
    const order = (c: Config) => (c === 'optuna-tpe' ? 0 : c === 'pt-gp' ? 1 : 2);
    for (const p of [...problems].sort((a, b) => rank(a) - rank(b))) for (let seed = 0; seed < seeds; seed++) for (const config of [...configs].sort((a, b) => order(a) - order(b))) tasks.push({ ...base, config, problem: p.name, seed });
  }
  if (live) ctx.log('Optuna runs live in this run (bench/optuna-cache/ only compared with)');
  if (deadline !== undefined) ctx.log(`tasks not started by ${new Date(deadline).toISOString()} are skipped`);
  ctx.log(`${tasks.length} studies (${configs.length} samplers x ${problems.length} problems x ${seeds} seeds x ${nTrials} trials) on 2 workers`);
  const t0 = performance.now();
  let lastPct = -1;
  const results = await runPool<Task, TaskResult>(THIS_FILE, WORKER_ENV, tasks, 2, (t) => `${LABEL[t.config]} on ${t.problem} (seed ${t.seed})`, (done) => {
    const pct = Math.floor((done / tasks.length) * 10) * 10;
    if (pct !== lastPct) {
      lastPct = pct;
      ctx.log(`${done}/${tasks.length} studies done (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  });

  const hv = (r: TaskResult, k: number): number => hypervolume(r.values.slice(0, k), problemNamed(r.task.problem).reference);
  // The (problem, seed) pairs with a skipped task are left out whole, so every sampler has the same seeds.
  const incomplete = new Set(results.filter((r) => r.skipped).map((r) => `${r.task.problem}/${r.task.seed}`));
  const kept = results.filter((r) => !incomplete.has(`${r.task.problem}/${r.task.seed}`));
  const seedsOf = Object.fromEntries(problems.map((p) => [p.name, [...new Set(kept.filter((r) => r.task.problem === p.name).map((r) => r.task.seed))].sort((a, b) => a - b)]));
  const partial = incomplete.size > 0;
  if (partial) {
    const all = problems.filter((p) => seedsOf[p.name]!.length > 0);
    if (all.length === 0) throw new Error('the deadline passed before any (problem, seed) pair was finished by every sampler');
    problems.splice(0, problems.length, ...all);
  }
  const cell: Record<string, Partial<Record<Config, Record<number, number[]>>>> = {};
  const seconds: Partial<Record<Config, number>> = {};
  for (const p of problems) {
    cell[p.name] = {};
    for (const c of configs) {
      const runs = kept.filter((r) => r.task.problem === p.name && r.task.config === c).sort((a, b) => a.task.seed - b.task.seed);
      cell[p.name]![c] = Object.fromEntries(budgets.map((k) => [k, runs.map((r) => hv(r, k))]));
      seconds[c] = (seconds[c] ?? 0) + runs.reduce((s, r) => s + r.seconds, 0);
    }
  }
  const text = (xs: number[] | undefined) => {
    if (!xs) return 'n/a';
    const [a, b] = iqr(xs);
    return `${fmt(median(xs))} [${fmt(a)}, ${fmt(b)}]`;
  };
  const md: string[] = [
    `${seeds} seeds, ${nTrials} trials per study, 6 variables in [0, 1]; hypervolume of the Pareto front of the first k trials (higher is better; reference points: ZDT ${'(1.1, 11)'}, DTLZ2 (2.5, 2.5, 2.5)); cells are median [25th, 75th percentile]. ` +
      'peertune TPE = `new TPESampler({ seed, multiObjectiveSplit })` (defaults otherwise: multivariate, constant liar); NSGA-II = `new NSGAIISampler({ seed })` (population 50); GP = `new GPSampler({ seed })` (defaults; several objectives by ParEGO: a random augmented Chebyshev scalarisation per trial); ' +
      'Optuna 3.1 = `TPESampler(seed=seed, multivariate=True)` (its MOTPE: hypervolume subset selection and contribution weights; univariate mode was too slow to run here, see the bench source) and `NSGAIISampler(seed=seed)`. ZDT3 is outside the issue\'s list: no default was chosen on it.',
    '',
  ];
  for (const n of notes) md.push(`> ${n}`, '');
  if (partial) md.push(`> Partial run (MO_BENCH_DEADLINE ${deadlineText}): ${problems.map((p) => `${p.name} seeds ${seedsOf[p.name]!.join(',')}`).join('; ')}; not run: ${PROBLEMS.filter((p) => !problems.includes(p)).map((p) => p.name).join(', ') || 'none'}.`, '');
  if (live) {
    const lv = kept.filter((r) => r.task.config.startsWith('optuna'));
    const same = lv.filter((r) => r.matchesCache === true).length;
    const differ = lv.filter((r) => r.matchesCache === false).length;
    md.push(`Optuna ${optuna.version ?? '?'} ran live in this run: ${lv.length} studies; ${same} gave exactly the values cached in bench/optuna-cache/, ${differ} differed, ${lv.length - same - differ} had nothing cached.`, '');
  }
  const summary: Record<string, unknown> = {};
  for (const k of budgets) {
    md.push(`### Hypervolume after ${k} trials`, '');
    md.push(table(['problem', ...configs.map((c) => LABEL[c])], problems.map((p) => [p.name, ...configs.map((c) => text(cell[p.name]![c]?.[k]))])), '');
    const pairs: [Config, Config][] = (
      [
        ['pt-tpe-rank', 'optuna-tpe'],
        ['pt-tpe-rank', 'optuna-nsga2'],
        ['pt-tpe-hv', 'optuna-tpe'],
        ['pt-tpe-rank', 'pt-tpe-hv'],
        ['pt-nsga2', 'optuna-nsga2'],
        ['pt-gp', 'optuna-tpe'],
        ['pt-gp', 'optuna-nsga2'],
        ['pt-gp', 'pt-tpe-hv'],
      ] as [Config, Config][]
    ).filter(([a, b]) => configs.includes(a) && configs.includes(b));
    const rows = problems.map((p) => [
      p.name,
      ...pairs.map(([a, b]) => {
        const xa = cell[p.name]![a]![k]!;
        const xb = cell[p.name]![b]![k]!;
        const ratio = median(xa) / median(xb);
        return `${median(xa) > median(xb) ? 'win' : median(xa) < median(xb) ? 'loss' : 'tie'} (x${fmt(ratio)}, p=${mannWhitneyP(xa, xb).toFixed(2)})`;
      }),
    ]);
    md.push(table(['problem', ...pairs.map(([a, b]) => `${LABEL[a]} vs ${LABEL[b]}`)], rows), '');
    summary[String(k)] = Object.fromEntries(problems.map((p) => [p.name, Object.fromEntries(configs.map((c) => [c, median(cell[p.name]![c]![k]!)]))]));
  }
  const last = budgets[budgets.length - 1]!;
  if (configs.includes('optuna-tpe') && configs.includes('optuna-nsga2')) {
    for (const c of (['pt-tpe-rank', 'pt-tpe-hv', 'pt-gp'] as Config[]).filter((x) => configs.includes(x))) {
      const above = problems.filter((p) => ISSUE_PROBLEMS.has(p.name)).filter((p) => {
        const m = median(cell[p.name]![c]![last]!);
        return m > median(cell[p.name]!['optuna-tpe']![last]!) && m > median(cell[p.name]!['optuna-nsga2']![last]!);
      });
      const line = `${LABEL[c]} above both Optuna samplers' median hypervolume at ${last} trials on ${above.length}/3 of ZDT1, ZDT2, DTLZ2 (target 3/3: ${ctx.quick ? 'quick run, not judged' : above.length === 3 ? 'MET' : 'NOT MET'})`;
      md.push(`- ${line}`);
      ctx.log(line);
    }
    md.push('');
  }
  md.push('Time inside the samplers and objective, summed over all studies (seconds; Optuna includes the pipe round trip):', '');
  md.push(table(configs.map((c) => LABEL[c]), [configs.map((c) => fmt(seconds[c] ?? NaN))]));
  const nCached = results.filter((r) => r.cached).length;
  if (nCached > 0) md.push('', `Optuna's values for ${nCached} of its ${results.filter((r) => r.task.config.startsWith('optuna')).length} studies came from bench/optuna-cache/ (the same studies, run earlier with Optuna ${optuna.version ?? '?'}; deterministic under their seed); their times are those of that run.`);
  const out = md.join('\n');
  console.log(out);
  if (only) return;
  // Only a full run (every problem, 10 seeds or more, every pair finished) replaces the stored result.
  const full = !ctx.quick && !partial && problems.length === PROBLEMS.length && seeds >= 10;
  const name = ctx.quick ? 'multi-objective-quick' : full ? 'multi-objective' : 'multi-objective-partial';
  await ctx.writeResult(name, { seeds, seedsPerProblem: seedsOf, nTrials, budgets, optuna: optuna.ok ? optuna.version : null, optunaLive: live, summary, seconds }, out);
}
