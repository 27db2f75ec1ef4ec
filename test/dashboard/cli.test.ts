/**
 * `peertune dashboard` through the built CLI: it serves a data dir's study (page, compiled figure
 * modules and the API answer), refuses a public host without a token, and prints a token URL with one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import readline from 'node:readline';
import { test } from 'node:test';
import { createStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { cliPath, ensureBuilt, runCli } from '../fixtures/cli/helpers.js';
import { waitFor } from '../fixtures/wait.js';
import { tempDir } from './helpers.js';

setVerbosity('error');

async function dataDirWithStudy(): Promise<{ dir: string; best: number; n: number }> {
  const dir = await tempDir('peertune-dash-cli-');
  const storage = await openPeerStorage({ dataDir: dir, listen: [] });
  const study = await createStudy({ studyName: 'cli-study', storage, sampler: new RandomSampler({ seed: 1 }) });
  await study.optimize((t) => 10 * t.suggestFloat('x', -1, 1) ** 2 + 0.01 * t.suggestFloat('y', -1, 1), { nTrials: 40 });
  const best = study.bestValue;
  await storage.close();
  return { dir, best, n: 40 };
}

test('peertune dashboard serves a data dir read-only and prints its URL', async () => {
  ensureBuilt();
  const { dir, best, n } = await dataDirWithStudy();
  const child = spawn(process.execPath, [cliPath, 'dashboard', '--data-dir', dir, '--study-name', 'cli-study', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PEERTUNE_LOG_LEVEL: 'warning' } });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const lines: string[] = [];
    readline.createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
    const url = await waitFor(`the dashboard URL (stderr: ${stderr})`, 30_000, () => lines.find((l) => l.startsWith('dashboard: '))?.slice('dashboard: '.length));
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/#\/study\/cli-study\/history$/);
    const base = url.replace(/\/#.*$/, '');
    const summary = (await (await fetch(`${base}/api/studies/cli-study`)).json()) as { trials: number; best: { value: number } };
    assert.equal(summary.trials, n);
    assert.equal(summary.best.value, best);
    // The built CLI serves the compiled figure module to the browser.
    const mod = await fetch(`${base}/mod/visualization/figures.js`);
    assert.equal(mod.status, 200);
    assert.match(await mod.text(), /export function plotOptimizationHistory/);
    assert.equal((await fetch(`${base}/`)).status, 200);
    // Importances come from the compiled worker thread.
    const imp = (await (await fetch(`${base}/api/studies/cli-study/importances`)).json()) as { evaluator: string; importances: Record<string, number> };
    assert.equal(imp.evaluator, 'fanova');
    assert.deepEqual(new Set(Object.keys(imp.importances)), new Set(['x', 'y']));
    assert.equal((await fetch(`${base}/api/studies/cli-study`, { method: 'DELETE' })).status, 405);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(dir, { recursive: true, force: true });
  }
});

test('peertune dashboard --host 0.0.0.0 needs --token', async () => {
  ensureBuilt();
  const { dir } = await dataDirWithStudy();
  try {
    const r = await runCli(['dashboard', '--data-dir', dir, '--host', '0.0.0.0', '--port', '0'], { timeoutMs: 30_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /refusing to serve the dashboard on 0\.0\.0\.0 without a token.*--token/);
    assert.equal(r.stdout, '');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('peertune plot writes an offline HTML figure; peertune importance ranks the dominant param first', async () => {
  ensureBuilt();
  const { dir } = await dataDirWithStudy();
  try {
    const file = join(dir, 'history.html');
    const r = await runCli(['plot', 'optimization-history', '--data-dir', dir, '--study-name', 'cli-study', '-o', file], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /wrote .*history\.html/);
    const html = await readFile(file, 'utf8');
    assert.match(html, /Optimization History Plot/);
    assert.doesNotMatch(html, /<script src=/, 'Plotly inlined, nothing fetched');
    const bad = await runCli(['plot', 'contour', '--data-dir', dir, '--study-name', 'cli-study', '--params', 'x', '-o', file], { timeoutMs: 30_000 });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /takes two params/);
    const unknown = await runCli(['plot', 'nope', '--data-dir', dir, '--study-name', 'cli-study', '-o', file], { timeoutMs: 30_000 });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown plot "nope"; one of: optimization-history/);
    const imp = await runCli(['importance', '--data-dir', dir, '--study-name', 'cli-study', '--seed', '0', '-f', 'json'], { timeoutMs: 30_000 });
    assert.equal(imp.code, 0, imp.stderr);
    const parsed = JSON.parse(imp.stdout) as Record<string, number>;
    assert.deepEqual(Object.keys(parsed), ['x', 'y']);
    assert.ok(parsed['x']! > 0.6 && parsed['x']! > parsed['y']!, imp.stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('peertune dashboard --join syncs a temporary replica and streams what the swarm tells', async () => {
  ensureBuilt();
  const dir = await tempDir('peertune-dash-cli-');
  const storage = await openPeerStorage({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], heartbeatIntervalMs: 200 });
  const study = await createStudy({ studyName: 'joined', storage, sampler: new RandomSampler({ seed: 2 }) });
  await study.optimize((t) => t.suggestFloat('x', -1, 1) ** 2, { nTrials: 5 });
  const child = spawn(process.execPath, [cliPath, 'dashboard', '--join', storage.multiaddrs()[0]!, '--study-name', 'joined', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PEERTUNE_LOG_LEVEL: 'warning' } });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const lines: string[] = [];
    readline.createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
    const url = await waitFor(`the dashboard URL (stderr: ${stderr})`, 60_000, () => lines.find((l) => l.startsWith('dashboard: '))?.slice('dashboard: '.length));
    const base = url.replace(/\/#.*$/, '');
    await waitFor('the 5 trials in the joined replica', 30_000, async () => ((await (await fetch(`${base}/api/studies/joined`)).json()) as { trials: number }).trials === 5);
    // Listen to the event stream, then tell one more trial on the original peer.
    const ac = new AbortController();
    const res = await fetch(`${base}/api/studies/joined/events`, { signal: ac.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    let text = '';
    const reader = res.body!.getReader();
    const pump = (async () => {
      for (;;) {
        const r = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (r.done) return;
        text += new TextDecoder().decode(r.value);
      }
    })();
    await waitFor('the snapshot event', 30_000, () => text.includes('event: snapshot'));
    await study.optimize(() => -7.25, { nTrials: 1 });
    const delta = await waitFor('a delta carrying the new trial', 30_000, () => {
      const m = /event: delta\ndata: (.*)\n/.exec(text);
      return m ? (JSON.parse(m[1]!) as { rows: unknown[][] }) : null;
    });
    assert.equal(delta.rows.length, 1, 'only the changed trial is sent');
    assert.deepEqual(delta.rows[0]![4], [-7.25]);
    ac.abort();
    await pump;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  }
});
