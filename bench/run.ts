/**
 * Benchmark runner: `node --import tsx bench/run.ts [names...] [--quick]`. Runs every
 * bench/*.bench.ts in name order, or only those whose file name contains one of the given names.
 * A failing bench is reported and the run goes on; the exit code is non-zero if any failed, so a
 * broken bench cannot hide behind the tables of the others.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BENCH_DIR, writeResult, type BenchContext } from './lib.js';

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  const unknownFlags = argv.filter((a) => a.startsWith('-') && a !== '--quick');
  if (unknownFlags.length) {
    console.error(`bench/run.ts: unknown option(s) ${unknownFlags.join(', ')}; usage: bench/run.ts [names...] [--quick]`);
    return 2;
  }
  const names = argv.filter((a) => !a.startsWith('-'));
  const all = (await readdir(BENCH_DIR)).filter((f) => f.endsWith('.bench.ts')).sort();
  const chosen = names.length ? all.filter((f) => names.some((n) => f.includes(n))) : all;
  if (chosen.length === 0) {
    console.error(`bench/run.ts: no bench matches ${names.map((n) => `"${n}"`).join(', ')}; available: ${all.join(', ') || '(none)'}`);
    return 2;
  }

  const failed: string[] = [];
  const t0 = performance.now();
  for (const file of chosen) {
    const label = file.replace(/\.bench\.ts$/, '');
    const ctx: BenchContext = {
      quick,
      log: (line) => console.log(`[${label}] ${line}`),
      writeResult,
    };
    console.log(`\n=== ${label}${quick ? ' (quick)' : ''} ===`);
    const t = performance.now();
    try {
      const mod = (await import(pathToFileURL(path.join(BENCH_DIR, file)).href)) as { default?: unknown };
      if (typeof mod.default !== 'function') throw new Error(`${file} does not export a default async function (ctx: BenchContext)`);
      await (mod.default as (ctx: BenchContext) => Promise<void>)(ctx);
      console.log(`=== ${label} done in ${((performance.now() - t) / 1000).toFixed(1)} s ===`);
    } catch (err) {
      failed.push(label);
      console.error(`=== ${label} FAILED after ${((performance.now() - t) / 1000).toFixed(1)} s ===`);
      console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    }
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (failed.length) {
    console.error(`\n${failed.length} of ${chosen.length} bench(es) failed: ${failed.join(', ')} (${secs} s)`);
    return 1;
  }
  console.log(`\n${chosen.length} bench(es) passed in ${secs} s; tables in bench/RESULTS.md, figures in bench/results/`);
  return 0;
}

// process.exitCode rather than exit(): a bench that leaves a handle open is a bug worth seeing, but
// still exit so the runner never hangs on one.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 1000).unref();
  },
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
