/**
 * Ask latency: the time of one ask() plus suggesting every parameter (where independent TPE does its
 * sampling), with 100 / 500 / 1000 / 2000 completed trials in history, on a 10-D float space and on
 * 3 categoricals + 7 floats. The history is random points; each timed trial is told right after, as a
 * worker would. peertune runs in this process; Optuna 3.1 in bench/optuna/ask_latency.py on the same
 * spaces and objective (bench/optuna/spaces.py).
 */
import {
  categoricalDistribution,
  createStudy,
  floatDistribution,
  InMemoryStorage,
  loadStudy,
  RandomSampler,
  setVerbosity,
  type Distribution,
  type Trial,
} from '../src/index.js';
import { fmt, median, optunaAvailable, peertuneOptuna3Preset, peertuneTPE, runOptunaScript, table, type BenchContext } from './lib.js';

type SpaceName = 'float10' | 'cat3float7';
/** peertune configurations: its defaults, Optuna 3's defaults as a preset, and plain multivariate. */
type PtKind = 'defaults' | 'optuna3' | 'mv';
type OpKind = 'tpe' | 'tpe-mv';
/** Rows of the table: which peertune configuration is timed against which Optuna one. */
const PAIRS: { label: string; pt: PtKind; op: OpKind }[] = [
  { label: 'TPE defaults (each library)', pt: 'defaults', op: 'tpe' },
  { label: 'peertune Optuna-3 preset vs Optuna defaults (same algorithm)', pt: 'optuna3', op: 'tpe' },
  { label: 'TPE multivariate', pt: 'mv', op: 'tpe-mv' },
];
const CHOICES = ['a', 'b', 'c', 'd'];

function space(name: SpaceName): [string, Distribution][] {
  const floats = (n: number) => Array.from({ length: n }, (_, i): [string, Distribution] => [`x${i}`, floatDistribution(`x${i}`, -5, 5)]);
  if (name === 'float10') return floats(10);
  return [...Array.from({ length: 3 }, (_, i): [string, Distribution] => [`c${i}`, categoricalDistribution(`c${i}`, CHOICES)]), ...floats(7)];
}

/** Same objective as bench/optuna/spaces.py: sphere around 1 on floats, 1 per non-'a' choice. */
function suggestAndValue(trial: Trial, sp: [string, Distribution][]): number {
  let v = 0;
  for (const [name, d] of sp) {
    const x = trial.suggest(name, d);
    v += typeof x === 'number' ? (x - 1) ** 2 : x === 'a' ? 0 : 1;
  }
  return v;
}

interface Row {
  lib: 'peertune' | 'optuna';
  sampler: PtKind | OpKind;
  space: SpaceName;
  size: number;
  medianMs: number;
  ms: number[];
}

async function peertuneLatency(kind: PtKind, spaceName: SpaceName, size: number, nAsks: number, warmup: number): Promise<Row> {
  const TPE = (await peertuneTPE())!;
  const opts = kind === 'optuna3' ? { ...(await peertuneOptuna3Preset())!, seed: 0 } : kind === 'mv' ? { seed: 0, multivariate: true } : { seed: 0 };
  const sp = space(spaceName);
  const storage = new InMemoryStorage();
  // History at random points through the public API; the TPE study then loads that same history.
  const builder = await createStudy({ storage, studyName: 'latency', sampler: new RandomSampler({ seed: 1 }) });
  await builder.optimize((t) => suggestAndValue(t, sp), { nTrials: size });
  const study = await loadStudy({ storage, studyName: 'latency', sampler: new TPE(opts) });
  const ms: number[] = [];
  for (let i = 0; i < warmup + nAsks; i++) {
    const t0 = performance.now();
    const trial = study.ask();
    const v = suggestAndValue(trial, sp);
    const t1 = performance.now();
    await study.tell(trial, v);
    if (i >= warmup) ms.push(t1 - t0);
  }
  return { lib: 'peertune', sampler: kind, space: spaceName, size, medianMs: median(ms), ms };
}

export default async function askLatency(ctx: BenchContext): Promise<void> {
  setVerbosity('silent');
  const sizes = ctx.quick ? [100] : [100, 500, 1000, 2000];
  const nAsks = ctx.quick ? 10 : 30;
  const warmup = 5;
  const spaces: SpaceName[] = ['float10', 'cat3float7'];
  const ptKinds: PtKind[] = ['defaults', 'mv'];
  if (await peertuneOptuna3Preset()) ptKinds.push('optuna3');
  const opKinds: OpKind[] = ['tpe', 'tpe-mv'];
  const pairs = PAIRS.filter((p) => ptKinds.includes(p.pt));
  const notes: string[] = [];
  const TPE = await peertuneTPE();
  if (!TPE) notes.push('peertune TPESampler is not exported from src/index.ts yet: peertune rows are skipped.');
  const optuna = optunaAvailable();
  if (!optuna.ok) notes.push(optuna.why!);
  for (const n of notes) ctx.log(n);

  // Each space and history size is timed for both libraries back to back: on a shared 2-core machine
  // the background load drifts, and neighbouring measurements see about the same load.
  const rows: Row[] = [];
  if (optuna.ok) ctx.log(`Optuna ${optuna.version} via bench/optuna/ask_latency.py`);
  for (const sp of spaces) {
    for (const size of sizes) {
      if (TPE) {
        for (const kind of ptKinds) {
          const r = await peertuneLatency(kind, sp, size, nAsks, warmup);
          ctx.log(`peertune ${kind} ${sp} ${size} trials: median ${fmt(r.medianMs)} ms`);
          rows.push(r);
        }
      }
      if (optuna.ok) {
        const out = await runOptunaScript<{ results: { sampler: OpKind; space: SpaceName; size: number; ms: number[] }[] }>('ask_latency.py', {
          spaces: [sp],
          sizes: [size],
          n_asks: nAsks,
          warmup,
          seed: 0,
          samplers: opKinds,
        });
        for (const r of out.results) {
          rows.push({ lib: 'optuna', sampler: r.sampler, space: r.space, size: r.size, medianMs: median(r.ms), ms: r.ms });
          ctx.log(`optuna ${r.sampler} ${r.space} ${r.size} trials: median ${fmt(median(r.ms))} ms`);
        }
      }
    }
  }

  const find = (lib: Row['lib'], kind: Row['sampler'], sp: SpaceName, size: number) =>
    rows.find((r) => r.lib === lib && r.sampler === kind && r.space === sp && r.size === size);
  const tableRows: (string | number)[][] = [];
  const summary: Record<string, number> = {};
  for (const pair of pairs) {
    for (const sp of spaces) {
      for (const size of sizes) {
        const p = find('peertune', pair.pt, sp, size);
        const o = find('optuna', pair.op, sp, size);
        const ratio = p && o ? o.medianMs / p.medianMs : NaN;
        summary[`${pair.pt}-vs-${pair.op}/${sp}/${size}`] = ratio;
        tableRows.push([pair.label, sp, size, p ? fmt(p.medianMs) : 'n/a', o ? fmt(o.medianMs) : 'n/a', Number.isFinite(ratio) ? `${fmt(ratio)}x` : 'n/a']);
      }
    }
  }
  const targetOf = (pair: (typeof PAIRS)[number]) =>
    spaces.map((sp) => summary[`${pair.pt}-vs-${pair.op}/${sp}/1000`] ?? NaN);
  const targetLines = sizes.includes(1000)
    ? pairs
        .filter((p) => p.op === 'tpe')
        .map((p) => {
          const r = targetOf(p);
          return `- Target (1000 trials, >= 10x lower than Optuna's default TPE), ${p.label}: ${spaces.map((sp, i) => `${sp} ${Number.isFinite(r[i]!) ? `${fmt(r[i]!)}x` : 'n/a'}`).join(', ')} -> ${r.every((x) => x >= 10) ? 'MET' : 'NOT MET'}`;
        })
    : ['- Quick run: the 1000-trial target is not measured.'];
  const md = [
    `Median ms per ask() + suggesting all 10 parameters, over ${nAsks} asks (after ${warmup} warm-up asks), each told right after; history of random completed trials. ` +
      `Speed-up = Optuna median / peertune median.`,
    '',
    ...notes.map((n) => `> ${n}\n`),
    table(['samplers', 'space', 'trials in history', 'peertune ms', `Optuna ${optuna.version ?? ''} ms`, 'speed-up'], tableRows),
    '',
    ...targetLines,
  ].join('\n');
  console.log(md);
  await ctx.writeResult(ctx.quick ? 'ask-latency-quick' : 'ask-latency', { sizes, nAsks, warmup, optuna: optuna.version ?? null, notes, speedup: summary, rows }, md);
}
