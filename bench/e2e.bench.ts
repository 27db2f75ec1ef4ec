/**
 * End to end: a 1000-trial single-process study on a trivial 2-D objective with each library's TPE
 * defaults and logging silenced. The headline is the study itself (create + optimize, timed inside
 * each process); process start-up and library import are reported beside it, since a user pays them too.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createStudy, setVerbosity, type Trial } from '../src/index.js';
import { BENCH_DIR, fmt, optunaAvailable, peertuneOptuna3Preset, peertuneTPE, runOptunaScript, table, type BenchContext } from './lib.js';

const objective = (trial: Trial): number => {
  const x = trial.suggestFloat('x', -10, 10);
  const y = trial.suggestFloat('y', -10, 10);
  return (x - 2) ** 2 + (y + 1) ** 2;
};

/** The same study in a fresh `node` on the built library (dist/), for the start-up-included figure. */
function peertuneProcess(nTrials: number): Promise<{ wallS: number; studyS: number }> {
  const dist = path.resolve(BENCH_DIR, '..', 'dist', 'index.js');
  const script = `
    const t0 = performance.now();
    const pt = await import(${JSON.stringify(dist)});
    pt.setVerbosity('silent');
    const t1 = performance.now();
    const study = await pt.createStudy({ sampler: new pt.TPESampler({ seed: 0 }) });
    await study.optimize((t) => (t.suggestFloat('x', -10, 10) - 2) ** 2 + (t.suggestFloat('y', -10, 10) + 1) ** 2, { nTrials: ${nTrials} });
    console.log(JSON.stringify({ importS: (t1 - t0) / 1000, studyS: (performance.now() - t1) / 1000 }));`;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`the peertune child process exited with code ${code}: ${err.trim().split('\n').find((l) => /Error/.test(l)) ?? ''}`));
      const r = JSON.parse(out.trim().split('\n').pop()!) as { studyS: number };
      resolve({ wallS: (performance.now() - t0) / 1000, studyS: r.studyS });
    });
  });
}

export default async function e2e(ctx: BenchContext): Promise<void> {
  const nTrials = ctx.quick ? 200 : 1000;
  const TPE = await peertuneTPE();
  if (!TPE) throw new Error('peertune TPESampler is not exported from src/index.ts yet; the end-to-end bench needs it');
  const optuna = optunaAvailable();
  const notes: string[] = [];
  if (!optuna.ok) notes.push(optuna.why!);

  setVerbosity('silent');
  const t0 = performance.now();
  const study = await createStudy({ sampler: new TPE({ seed: 0 }) });
  await study.optimize(objective, { nTrials });
  const ptStudyS = (performance.now() - t0) / 1000;
  ctx.log(`peertune: ${nTrials} trials in ${fmt(ptStudyS)} s (best ${fmt(study.bestValue)})`);

  // The same study with Optuna 3's TPE settings, so "faster" can be read apart from "different defaults".
  const preset = await peertuneOptuna3Preset();
  let presetS = NaN;
  if (preset) {
    const t1 = performance.now();
    const s3 = await createStudy({ sampler: new TPE({ ...preset, seed: 0 }) });
    await s3.optimize(objective, { nTrials });
    presetS = (performance.now() - t1) / 1000;
    ctx.log(`peertune with OPTUNA3_TPE_OPTIONS: ${nTrials} trials in ${fmt(presetS)} s (best ${fmt(s3.bestValue)})`);
  }

  let ptProc: { wallS: number; studyS: number } | null = null;
  if (existsSync(path.resolve(BENCH_DIR, '..', 'dist', 'index.js'))) {
    try {
      ptProc = await peertuneProcess(nTrials);
      ctx.log(`peertune in a fresh process (dist/): ${fmt(ptProc.wallS)} s wall, study ${fmt(ptProc.studyS)} s`);
    } catch (e) {
      notes.push(`the fresh-process peertune figure is skipped: ${(e as Error).message} (is dist/ stale? \`npm run bench\` builds it first)`);
    }
  } else {
    notes.push('dist/ is not built (run through `npm run bench`), so the fresh-process peertune figure is skipped.');
  }

  let op: { studyS: number; wallS: number; importS: number; best: number } | null = null;
  if (optuna.ok) {
    const t = performance.now();
    const r = await runOptunaScript<{ study_s: number; import_s: number; best: number }>('e2e.py', { n_trials: nTrials, seed: 0 });
    op = { studyS: r.study_s, importS: r.import_s, best: r.best, wallS: (performance.now() - t) / 1000 };
    ctx.log(`Optuna ${optuna.version}: ${nTrials} trials in ${fmt(op.studyS)} s (best ${fmt(op.best)}), process wall ${fmt(op.wallS)} s`);
  }

  const ratio = op ? op.studyS / ptStudyS : NaN;
  const wallRatio = op && ptProc ? op.wallS / ptProc.wallS : NaN;
  const na = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? 'n/a' : fmt(x));
  const md = [
    `${nTrials}-trial single-process study, objective (x-2)^2 + (y+1)^2 on two floats, TPE defaults (seed 0), logging silenced.`,
    '',
    ...notes.map((n) => `> ${n}\n`),
    table(
      ['figure', 'peertune', `Optuna ${optuna.version ?? ''}`, 'speed-up (Optuna / peertune)'],
      [
        ['study: create + optimize (s)', fmt(ptStudyS), na(op?.studyS), Number.isFinite(ratio) ? `${fmt(ratio)}x` : 'n/a'],
        ...(preset ? [['study, peertune with OPTUNA3_TPE_OPTIONS (s)', fmt(presetS), na(op?.studyS), op ? `${fmt(op.studyS / presetS)}x` : 'n/a']] : []),
        ['whole process incl. start-up and import (s)', na(ptProc?.wallS), na(op?.wallS), Number.isFinite(wallRatio) ? `${fmt(wallRatio)}x` : 'n/a'],
        ['best value found', fmt(study.bestValue), na(op?.best), ''],
      ],
    ),
    '',
    ctx.quick ? '- Quick run: the 1000-trial target is not measured.' : `- Target (study >= 5x faster end to end): ${Number.isFinite(ratio) ? `${fmt(ratio)}x -> ${ratio >= 5 ? 'MET' : 'NOT MET'}` : 'n/a'}`,
  ].join('\n');
  console.log(md);
  await ctx.writeResult(ctx.quick ? 'e2e-quick' : 'e2e', { nTrials, optuna: optuna.version ?? null, notes, peertune: { studyS: ptStudyS, optuna3PresetStudyS: presetS, process: ptProc, best: study.bestValue }, optunaResult: op, speedup: ratio, wallSpeedup: wallRatio }, md);
}
