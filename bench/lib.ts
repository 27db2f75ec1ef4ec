/**
 * Shared benchmark plumbing. `bench/run.ts` runs every `bench/*.bench.ts` (or those named on the
 * command line); each exports `default async function (ctx: BenchContext)`. A bench prints its figures
 * and calls `ctx.writeResult(name, data, markdown)`, which stores bench/results/<name>.json and
 * rebuilds bench/RESULTS.md from every stored result, so a partial run keeps the other tables.
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sampler } from '../src/index.js';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');
/** The public benchmark suite, kept in the repository (a copy of the workplace's shared/bench). */
export const SUITE_DIR = path.join(BENCH_DIR, 'suite-data');

export interface BenchContext {
  /** Smaller budgets for a smoke run (`npm run bench -- --quick`). */
  quick: boolean;
  log(line: string): void;
  writeResult(name: string, data: unknown, markdown: string): Promise<void>;
}

/**
 * What a figure depends on besides the code: the machine, how busy it was (other work on a 2-core box
 * moves latencies a lot), and the commit, flagged when src/ had uncommitted changes.
 */
export function machineInfo(): Record<string, unknown> {
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    totalMemGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAvg1m: Math.round(os.loadavg()[0]! * 100) / 100,
    commit: gitCommit(),
  };
}

function gitCommit(): string | null {
  try {
    const git = (args: string[]) => execFileSync('git', args, { cwd: BENCH_DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git(['rev-parse', '--short', 'HEAD']);
    return git(['status', '--porcelain', '--', '../src']) ? `${head}+dirty-src` : head;
  } catch {
    return null;
  }
}

export async function writeResult(name: string, data: unknown, markdown: string): Promise<void> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const record = { name, date: new Date().toISOString(), machine: machineInfo(), data, markdown };
  await writeFile(path.join(RESULTS_DIR, `${name}.json`), JSON.stringify(record, null, 2) + '\n');
  await rebuildResultsMd();
}

export async function rebuildResultsMd(): Promise<void> {
  const files = (await readdir(RESULTS_DIR)).filter((f) => f.endsWith('.json')).sort();
  const parts = ['# Benchmark results', '', 'Written by `npm run bench`; each section names the run it came from.', ''];
  for (const f of files) {
    const r = JSON.parse(await readFile(path.join(RESULTS_DIR, f), 'utf8')) as { name: string; date: string; machine: Record<string, unknown>; markdown: string };
    const m = r.machine;
    const extra = [m['loadAvg1m'] !== undefined ? `load average ${String(m['loadAvg1m'])}` : '', m['commit'] ? `commit ${String(m['commit'])}` : ''].filter(Boolean);
    parts.push(`## ${r.name}`, '', `_${[r.date, `node ${String(m['node'])}`, `${String(m['cpus'])} cores`, ...extra].join(', ')}_`, '', r.markdown.trim(), '');
  }
  await writeFile(path.join(BENCH_DIR, 'RESULTS.md'), parts.join('\n'));
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export const median = (xs: readonly number[]): number => quantile(xs, 0.5);
export const iqr = (xs: readonly number[]): [number, number] => [quantile(xs, 0.25), quantile(xs, 0.75)];

/** Formats a number for tables: 4 significant digits, exponent for tiny/huge. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a < 1e-3 || a >= 1e6 ? x.toExponential(2) : Number(x.toPrecision(4)).toString();
}

export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Whether Debian's python3-optuna is importable by /usr/bin/python3 (the side-by-side reference). */
export function optunaAvailable(): { ok: boolean; version?: string; why?: string } {
  try {
    const v = execFileSync('/usr/bin/python3', ['-c', 'import optuna; print(optuna.__version__)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    return { ok: true, version: v };
  } catch (e) {
    return { ok: false, why: 'Optuna is not installed for /usr/bin/python3 (apt-get install python3-optuna); Optuna columns skipped' };
  }
}

export const PYTHON = '/usr/bin/python3';
export const OPTUNA_SCRIPTS = path.join(BENCH_DIR, 'optuna');

/**
 * Runs one of bench/optuna/*.py with a JSON job on stdin and returns the JSON object it prints last.
 * stderr is kept for the error message, so a Python traceback reaches the bench report.
 */
export function runOptunaScript<T>(script: string, job: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [path.join(OPTUNA_SCRIPTS, script)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${script} exited with code ${code}: ${err.trim().split('\n').slice(-5).join('\n')}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${script} printed no JSON result (stdout ended with ${JSON.stringify(last.slice(-200))})`));
      }
    });
    child.stdin.end(JSON.stringify(job) + '\n');
  });
}

/** Options of peertune's TPESampler, as the benches use them. */
export interface TPEOptions {
  seed?: number;
  multivariate?: boolean;
  constantLiar?: boolean;
  group?: boolean;
  nStartupTrials?: number;
}

/**
 * peertune's TPESampler constructor, or null while it is not exported yet: benches then skip the TPE
 * rows with a message instead of failing to load.
 */
export async function peertuneTPE(): Promise<(new (opts: TPEOptions) => Sampler) | null> {
  const lib = (await import('../src/index.js')) as Record<string, unknown>;
  const ctor = lib['TPESampler'];
  return typeof ctor === 'function' ? (ctor as new (opts: TPEOptions) => Sampler) : null;
}

/**
 * Two-sided p-value of the Mann-Whitney U test (normal approximation with tie correction): with 20
 * seeds a median can move a lot by chance, so a win or loss is read together with this.
 */
export function mannWhitneyP(a: readonly number[], b: readonly number[]): number {
  const n1 = a.length;
  const n2 = b.length;
  if (n1 === 0 || n2 === 0) return NaN;
  const all = [...a.map((v) => ({ v, g: 0 })), ...b.map((v) => ({ v, g: 1 }))].sort((x, y) => x.v - y.v);
  const ranks = new Array<number>(all.length);
  let tieTerm = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j + 1 < all.length && all[j + 1]!.v === all[i]!.v) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[k] = r;
    const t = j - i + 1;
    tieTerm += t ** 3 - t;
    i = j + 1;
  }
  let r1 = 0;
  all.forEach((x, i) => {
    if (x.g === 0) r1 += ranks[i]!;
  });
  const u = r1 - (n1 * (n1 + 1)) / 2;
  const n = n1 + n2;
  const sigma = Math.sqrt(((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1))));
  if (sigma === 0) return 1;
  const z = (Math.abs(u - (n1 * n2) / 2) - 0.5) / sigma;
  return Math.min(1, 2 * (1 - normalCdf(Math.max(0, z))));
}

/** Standard normal CDF (Abramowitz-Stegun 7.1.26 via erf; |error| < 1.5e-7, plenty for a p-value). */
function normalCdf(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erf = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return z >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

/** peertune's `OPTUNA3_TPE_OPTIONS` preset (Optuna 3.x's TPE defaults), or null where it is not exported. */
export async function peertuneOptuna3Preset(): Promise<TPEOptions | null> {
  const lib = (await import('../src/index.js')) as Record<string, unknown>;
  const preset = lib['OPTUNA3_TPE_OPTIONS'];
  return preset && typeof preset === 'object' ? (preset as TPEOptions) : null;
}

/**
 * Runs `tasks` on `n` forked copies of `file` (started with `workerEnv` set to 1), one task at a time
 * per lane; resolves with every result, rejects on the first failure. The worker side answers each
 * task message with `{ ok, result | error }` and exits on the message 'exit'.
 */
export async function runPool<Task, Result>(
  file: string,
  workerEnv: string,
  tasks: Task[],
  n: number,
  describe: (task: Task) => string,
  onDone: (done: number) => void,
): Promise<Result[]> {
  const results: Result[] = [];
  let nextIndex = 0;
  const lane = async (): Promise<void> => {
    const child = fork(file, [], { env: { ...process.env, [workerEnv]: '1' }, execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    try {
      while (nextIndex < tasks.length) {
        const task = tasks[nextIndex++]!;
        const reply = await new Promise<{ ok: boolean; result?: Result; error?: string }>((resolve, reject) => {
          const onExit = (code: number | null) => reject(new Error(`a benchmark worker exited with code ${code} while running ${JSON.stringify(task)}`));
          child.once('exit', onExit);
          child.once('message', (m) => {
            child.off('exit', onExit);
            resolve(m as { ok: boolean; result?: Result; error?: string });
          });
          child.send(task as object);
        });
        if (!reply.ok) throw new Error(`${describe(task)} failed: ${reply.error}`);
        results.push(reply.result!);
        onDone(results.length);
      }
    } catch (err) {
      nextIndex = tasks.length; // the bench has failed: let the other lanes stop after their current task
      throw err;
    } finally {
      if (child.connected) child.send('exit');
      await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
    }
  };
  await Promise.all(Array.from({ length: n }, () => lane()));
  return results;
}
