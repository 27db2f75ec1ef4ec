/**
 * Dashboard (issue 12): headless Chromium on this machine (software WebGL).
 * - First paint of the study page (history view drawn, every trial loaded) at 10,000 trials; history
 *   and trial table at 100,000 trials. Target: 10k under 2 s; 100k history and table under 5 s.
 * - A trial told on another peer process appears in the open page: p95 over 50 trials, target 1 s.
 * - Server memory at 100,000 trials (RSS and JS heap of the serving process, storage included).
 * Page figures use an in-memory storage (the page and server cost do not depend on the backend); the
 * live figure uses a PeerStorage on a temp data dir and a worker peer process joined to it.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';
import { createStudy, InMemoryStorage, RandomSampler, setVerbosity } from '../src/index.js';
import { startDashboard } from '../src/dashboard/server.js';
import { openPeerStorage } from '../src/storage/replicated/index.js';
import { BENCH_DIR, machineInfo, quantile, table, type BenchContext } from './lib.js';

setVerbosity('error');
// Page-side callbacks run in Chromium; this project type-checks against Node's lib only.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const location: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any
type HTMLElement = any; // eslint-disable-line @typescript-eslint/no-explicit-any
const WORKER = path.join(BENCH_DIR, '..', 'test', 'dashboard', 'peer-process.ts');
const mib = (b: number): number => Math.round(b / 2 ** 20);

async function fill(storage: InMemoryStorage, name: string, n: number): Promise<void> {
  const info = await storage.createStudy({ studyName: name, directions: ['minimize'] });
  const d = {
    x: { type: 'float', low: -10, high: 10, log: false, step: null },
    y: { type: 'int', low: 0, high: 100, log: false, step: 1 },
    lr: { type: 'float', low: 1e-5, high: 1, log: true, step: null },
    opt: { type: 'categorical', choices: ['sgd', 'adam', 'rmsprop'] },
  } as const;
  let seed = 1;
  const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < n; i++) {
    const t = storage.createTrial(info.studyId);
    const p = { x: rnd() * 20 - 10, y: Math.floor(rnd() * 101), lr: 10 ** (-5 * rnd()), opt: ['sgd', 'adam', 'rmsprop'][Math.floor(rnd() * 3)]! };
    storage.setTrialParams(info.studyId, t.trialId, p, d as never);
    storage.setTrialIntermediateValue(info.studyId, t.trialId, 0, p.x * p.x + 10);
    const pruned = i % 7 === 3;
    await storage.finishTrial(info.studyId, t.trialId, pruned ? 'PRUNED' : 'COMPLETE', pruned ? null : [p.x * p.x + p.y / 10 + Math.log10(p.lr)]);
  }
}

export default async function (ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [10_000] : [10_000, 100_000];
  const reps = ctx.quick ? 1 : 3;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--use-angle=swiftshader'] });
  const rows: (string | number)[][] = [];
  const data: Record<string, unknown> = { machine: machineInfo() };
  try {
    for (const n of sizes) {
      const storage = new InMemoryStorage();
      const name = `s${n}`;
      const rss0 = process.memoryUsage();
      await fill(storage, name, n);
      global.gc?.();
      const rss1 = process.memoryUsage();
      const dash = await startDashboard({ storage, port: 0 });
      const base = dash.url.replace(/\/(#.*)?$/, '');
      const history: number[] = [];
      const tableMs: number[] = [];
      let snapshotBytes = 0;
      for (let r = 0; r < reps; r++) {
        const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
        const t0 = Date.now();
        await page.goto(`${base}/#/study/${name}/history`);
        await page.waitForFunction((want) => (document.querySelector('#trial-count') as HTMLElement | null)?.dataset['count'] === String(want) && !!document.querySelector('#plot .main-svg') && (document.querySelector('#main') as HTMLElement).dataset['view'] === 'history', n, { timeout: 120_000, polling: 50 });
        history.push(Date.now() - t0);
        const timing = await page.evaluate(() => ({ ...window.__dash.timing, plotly: (performance.getEntriesByName(location.origin + '/static/plotly/plotly.js')[0] ?? performance.getEntriesByName(location.origin + '/static/plotly.min.js')[0])?.toJSON() }));
        ctx.log(`  ${n}: page timing ms: module start ${Math.round(timing.moduleStart)}, snapshot received ${Math.round(timing.snapshotReceived)}, decoded ${Math.round(timing.snapshotDecoded)}; Plotly fetched by ${Math.round(timing.plotly?.responseEnd ?? -1)}, evaluated by ${Math.round(timing.plotlyLoaded ?? -1)}; history drawn ${Math.round(timing.firstPlot ?? -1)}`);
        const t1 = Date.now();
        await page.evaluate((h) => (location.hash = h), `#/study/${name}/trials`);
        await page.waitForFunction((want) => (document.querySelector('#table-count') as HTMLElement | null)?.dataset['count'] === String(want) && !!document.querySelector('#table-body .tr'), n, { timeout: 120_000, polling: 50 });
        tableMs.push(Date.now() - t1);
        await page.close();
      }
      snapshotBytes = (await (await fetch(`${base}/api/studies/${name}/trials`)).arrayBuffer()).byteLength;
      global.gc?.();
      const rss2 = process.memoryUsage();
      await dash.close();
      const hMed = quantile(history, 0.5);
      const tMed = quantile(tableMs, 0.5);
      ctx.log(`${n} trials: history first paint ${hMed} ms (runs ${history.join(', ')}), then table ${tMed} ms; snapshot ${mib(snapshotBytes)} MiB JSON; RSS storage ${mib(rss1.rss - rss0.rss)} MiB, +dashboard ${mib(rss2.rss - rss1.rss)} MiB (heap ${mib(rss2.heapUsed)} MiB total)`);
      rows.push([n, hMed, tMed, mib(snapshotBytes), mib(rss2.rss), mib(rss2.heapUsed), mib(rss1.rss - rss0.rss), mib(rss2.rss - rss1.rss)]);
      data[`n${n}`] = { historyMs: history, tableMs, snapshotBytes, rssAfterLoad: rss1.rss, rssAfterServe: rss2.rss, heapAfterServe: rss2.heapUsed };
    }

    // Live: a worker peer process tells trials; the page shows each.
    const dirA = await mkdtemp(path.join(os.tmpdir(), 'peertune-dash-bench-'));
    const dirB = await mkdtemp(path.join(os.tmpdir(), 'peertune-dash-bench-'));
    const storage = await openPeerStorage({ dataDir: dirA, listen: ['/ip4/127.0.0.1/tcp/0'], heartbeatIntervalMs: 200 });
    const study = await createStudy({ studyName: 'live', storage, sampler: new RandomSampler({ seed: 1 }) });
    await study.optimize((t) => t.suggestFloat('x', -10, 10) ** 2, { nTrials: ctx.quick ? 50 : 500 });
    const dash = await startDashboard({ storage, port: 0 });
    const page = await browser.newPage();
    await page.goto(`${dash.url.replace(/\/(#.*)?$/, '')}/#/study/live/history`);
    await page.waitForSelector('#plot .main-svg');
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify({ dataDir: dirB, join: storage.multiaddrs(), studyName: 'live' })], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async () => JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
    await next(); // ready
    const lat: number[] = [];
    const count = 50;
    for (let i = 0; i < count; i++) {
      child.stdin!.write(JSON.stringify({ cmd: 'trial', id: i + 1, value: i }) + '\n');
      const r = await next();
      const toldAt = r['at'] as number;
      await page.waitForFunction((num) => window.__dashTrial?.(num) ?? false, r['number'] as number, { polling: 'raf', timeout: 10_000 });
      lat.push(Date.now() - toldAt);
    }
    child.stdin!.write(JSON.stringify({ cmd: 'quit', id: 999 }) + '\n');
    await new Promise((r) => child.once('exit', r));
    await page.close();
    await dash.close();
    await storage.close();
    await rm(dirA, { recursive: true, force: true });
    await rm(dirB, { recursive: true, force: true });
    const p50 = Math.round(quantile(lat, 0.5));
    const p95 = Math.round(quantile(lat, 0.95));
    ctx.log(`live: told on another peer -> in the page: p50 ${p50} ms, p95 ${p95} ms, max ${Math.max(...lat)} ms over ${count} trials`);
    data['live'] = { latenciesMs: lat, p50, p95 };
    const md = [
      `Headless Chromium (SwiftShader WebGL), ${reps} page loads per size (median); load average ${os.loadavg()[0]!.toFixed(2)} at the end.`,
      '',
      table(['trials', 'history first paint ms', 'then table ms', 'snapshot MiB', 'server RSS MiB', 'server heap MiB', 'storage RSS MiB', 'dashboard RSS MiB'], rows),
      '',
      `Live (trial told on a second peer process until visible in the page, ${count} trials on a 500-trial study): p50 ${p50} ms, p95 ${p95} ms.`,
    ].join('\n');
    await ctx.writeResult('dashboard', data, md);
  } finally {
    await browser.close();
  }
}
