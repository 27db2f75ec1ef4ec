/**
 * Python at Optuna's speed (issue 11). Two figures, each side by side with Optuna 3.1 in the same run:
 *
 * - The PyTorch digits example (examples/pytorch-digits/train.py), 20 trials of 10 epochs with the
 *   median pruner and TPE defaults, wall time of the whole process: Optuna in one process; peertune
 *   through its Python study API (the same script, `import peertune_client as optuna`); and a
 *   peertune worker running the script as a persistent command objective (one Python process for
 *   every trial). Target: within 1.3x of Optuna's wall time. Variants alternate, `reps` times each,
 *   and the median is the figure (the machine is shared, so single runs move a lot).
 * - Framework cost per trial: 1,000 trials of a trivial two-float objective with TPE from Python,
 *   both libraries, in memory. Target: peertune at least as fast as Optuna's in-memory TPE.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, OPTUNA_SCRIPTS, PYTHON, fmt, median, optunaAvailable, table, type BenchContext } from './lib.js';

const REPO = path.resolve(BENCH_DIR, '..');
const CLI = path.join(REPO, 'dist', 'cli', 'main.js');
const TRAIN = path.join(REPO, 'examples', 'pytorch-digits', 'train.py');

interface Run {
  wallS: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], stdin: string | null, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, {
      cwd: REPO,
      env: { ...process.env, PEERTUNE_CLI: CLI, PEERTUNE_LOG_LEVEL: 'warning', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallS = (performance.now() - t0) / 1000;
      if (code !== 0) return reject(new Error(`${[cmd, ...args].join(' ')} exited with code ${code}: ${stderr.trim().split('\n').slice(-5).join('\n')}`));
      resolve({ wallS, stdout, stderr });
    });
    child.stdin.end(stdin ?? '');
  });
}

function lastJson<T>(r: Run): T {
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`no JSON result; stdout ended ${JSON.stringify(r.stdout.slice(-200))}`);
  return JSON.parse(line) as T;
}

type DigitsVariant = 'optuna' | 'peertune-api' | 'peertune-worker';

/** One run: wall time, trials pruned, epochs trained over all trials (pruning changes the work done), best accuracy. */
interface DigitsRun {
  wallS: number;
  pruned: number;
  epochs: number;
  best: number;
}

async function digitsOnce(variant: DigitsVariant, nTrials: number, epochs: number): Promise<DigitsRun> {
  if (variant === 'peertune-worker') {
    const r = await run(process.execPath, [CLI, 'worker', '--in-memory', '--direction', 'maximize', '--study-name', 'digits', '--n-trials', String(nTrials), '--pruner', 'median', '--', PYTHON, TRAIN, '--epochs', String(epochs), '--threads', '1'], null, { PEERTUNE_LOG_LEVEL: 'info' });
    const summary = /ran (\d+) trials .*?\((\d+) complete, (\d+) pruned, (\d+) failed\).*?Best is trial \d+ with value: ([\d.]+)/.exec(r.stderr);
    if (!summary) throw new Error(`no worker summary in: ${r.stderr.slice(-400)}`);
    if (summary[4] !== '0') throw new Error(`the worker had ${summary[4]} failed trials: ${r.stderr.slice(-600)}`);
    // train.py logs one line per epoch on stderr, which the worker forwards as `[trial N] ...`.
    const epochsTrained = (r.stderr.match(/\] trial \d+ epoch \d+:/g) ?? []).length;
    return { wallS: r.wallS, pruned: Number(summary[3]), epochs: epochsTrained, best: Number(summary[5]) };
  }
  const library = variant === 'optuna' ? 'optuna' : 'peertune';
  const r = await run(PYTHON, [path.join(OPTUNA_SCRIPTS, 'python_digits.py')], JSON.stringify({ library, n_trials: nTrials, epochs }) + '\n');
  const j = lastJson<{ n_pruned: number; epochs: number; best: number }>(r);
  return { wallS: r.wallS, pruned: j.n_pruned, epochs: j.epochs, best: j.best };
}

function torchAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    const c = spawn(PYTHON, ['-c', 'import torch, sklearn'], { stdio: 'ignore' });
    c.on('close', (code) => resolve(code === 0));
    c.on('error', () => resolve(false));
  });
}

export default async function pythonBench(ctx: BenchContext): Promise<void> {
  if (!existsSync(CLI)) throw new Error('dist/ is not built; run through `npm run bench`, which builds first');
  const optuna = optunaAvailable();
  const notes: string[] = [];
  if (!optuna.ok) notes.push(optuna.why!);
  const load0 = os.loadavg()[0]!;

  // --- digits -------------------------------------------------------------------------------
  const nTrials = ctx.quick ? 4 : 20;
  const epochs = ctx.quick ? 3 : 10;
  const reps = ctx.quick ? 1 : 3;
  const variants: DigitsVariant[] = optuna.ok ? ['optuna', 'peertune-api', 'peertune-worker'] : ['peertune-api', 'peertune-worker'];
  const digits: Record<DigitsVariant, DigitsRun[]> = { optuna: [], 'peertune-api': [], 'peertune-worker': [] };
  const haveTorch = await torchAvailable();
  if (haveTorch) {
    for (let rep = 0; rep < reps; rep++) {
      for (const v of variants) {
        const r = await digitsOnce(v, nTrials, epochs);
        digits[v].push(r);
        ctx.log(`digits ${v} #${rep + 1}: ${fmt(r.wallS)} s wall, ${r.pruned} pruned, ${r.epochs} epochs trained, best ${fmt(r.best)}`);
      }
    }
  } else {
    notes.push('torch or sklearn is missing for /usr/bin/python3 (apt-get install python3-torch python3-sklearn); the digits figures are skipped');
  }
  const med = (v: DigitsVariant) => (digits[v].length ? median(digits[v].map((r) => r.wallS)) : NaN);
  const opWall = med('optuna');
  const perEpoch = (v: DigitsVariant) => (digits[v].length ? median(digits[v].map((r) => (r.wallS / Math.max(1, r.epochs)) * 1000)) : NaN);
  const epochRatio = (v: DigitsVariant) => (Number.isFinite(perEpoch(v) / perEpoch('optuna')) ? `${fmt(perEpoch(v) / perEpoch('optuna'))}x` : 'n/a');

  // --- trivial objective, 1,000 trials ---------------------------------------------------------
  const nTrivial = ctx.quick ? 200 : 1000;
  const trivial: Record<'optuna' | 'peertune', { wallS: number; studyS: number; importS: number; best: number } | null> = { optuna: null, peertune: null };
  for (const library of optuna.ok ? (['optuna', 'peertune'] as const) : (['peertune'] as const)) {
    const r = await run(PYTHON, [path.join(OPTUNA_SCRIPTS, 'python_trivial.py')], JSON.stringify({ library, n_trials: nTrivial }) + '\n');
    const j = lastJson<{ study_s: number; import_s: number; best: number }>(r);
    trivial[library] = { wallS: r.wallS, studyS: j.study_s, importS: j.import_s, best: j.best };
    ctx.log(`trivial ${library}: ${nTrivial} trials, study ${fmt(j.study_s)} s, process ${fmt(r.wallS)} s, best ${fmt(j.best)}`);
  }
  const load1 = os.loadavg()[0]!;

  const na = (x: number) => (Number.isFinite(x) ? fmt(x) : 'n/a');
  const ratio = (x: number) => (Number.isFinite(x) && Number.isFinite(opWall) ? `${fmt(x / opWall)}x` : 'n/a');
  const verdict = (x: number, limit: number) => (Number.isFinite(x) ? (x <= limit ? 'MET' : 'NOT MET') : 'n/a');
  const row = (label: string, v: DigitsVariant) => {
    const rs = digits[v];
    const perEpoch = rs.length ? median(rs.map((r) => (r.wallS / Math.max(1, r.epochs)) * 1000)) : NaN;
    return [label, na(med(v)), rs.map((r) => fmt(r.wallS)).join(' / ') || 'n/a', rs.map((r) => r.pruned).join(' / ') || 'n/a', rs.map((r) => r.epochs).join(' / ') || 'n/a', na(perEpoch), rs.length ? fmt(median(rs.map((r) => r.best))) : 'n/a', v === 'optuna' ? '1x' : ratio(med(v))];
  };
  const trivialRatio = trivial.optuna && trivial.peertune ? trivial.peertune.studyS / trivial.optuna.studyS : NaN;
  const md = [
    `Load average (1 min) ${fmt(load0)} at the start, ${fmt(load1)} at the end, on ${os.cpus().length} cores.`,
    '',
    ...notes.map((n) => `> ${n}\n`),
    `PyTorch digits (examples/pytorch-digits/train.py): ${nTrials} trials, ${epochs} epochs, median pruner, TPE defaults, torch on 1 thread; wall time of the whole process, median of ${reps}.`,
    '',
    table(
      ['variant', 'wall (s), median', 'each run (s)', 'pruned', 'epochs trained', 'wall per epoch trained (ms), median', 'best accuracy', 'vs Optuna (wall)'],
      [row(`Optuna ${optuna.version ?? ''} in one process`, 'optuna'), row('peertune, Python study API (import peertune_client as optuna)', 'peertune-api'), row('peertune worker, persistent command objective', 'peertune-worker')],
    ),
    '',
    'The samplers differ, so each run prunes a different number of trials and trains a different number of epochs; the wall time per epoch trained is the figure that does not depend on that.',
    '',
    `${nTrivial} trials of a trivial objective (two floats) with TPE (seed 0) from Python, in memory:`,
    '',
    table(
      ['library', 'create + optimize (s)', 'per trial (ms)', 'import (s)', 'whole process (s)', 'best'],
      (['optuna', 'peertune'] as const)
        .filter((l) => trivial[l])
        .map((l) => {
          const t = trivial[l]!;
          return [l === 'optuna' ? `Optuna ${optuna.version ?? ''}` : 'peertune_client', fmt(t.studyS), fmt((t.studyS / nTrivial) * 1000), fmt(t.importS), fmt(t.wallS), fmt(t.best)];
        }),
    ),
    '',
    ctx.quick
      ? '- Quick run: the targets are not judged.'
      : [
          `- Target: digits within 1.3x of Optuna. Python study API ${ratio(med('peertune-api'))} -> ${verdict(med('peertune-api') / opWall, 1.3)}; persistent command objective ${ratio(med('peertune-worker'))} -> ${verdict(med('peertune-worker') / opWall, 1.3)}. Per epoch trained: study API ${epochRatio('peertune-api')}, persistent command objective ${epochRatio('peertune-worker')} of Optuna's.`,
          `- Target: the trivial objective at least as fast as Optuna's in-memory TPE. peertune / Optuna study time ${Number.isFinite(trivialRatio) ? `${fmt(trivialRatio)}x` : 'n/a'} -> ${verdict(trivialRatio, 1)}.`,
        ].join('\n'),
  ].join('\n');
  console.log(md);
  await ctx.writeResult(ctx.quick ? 'python-quick' : 'python', { nTrials, epochs, reps, nTrivial, optuna: optuna.version ?? null, loadAvg: [load0, load1], digits, trivial, notes }, md);
}
