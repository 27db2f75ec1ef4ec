/**
 * The built dashboard runs from dist/ alone: a copy of dist/ and package.json in a temp dir (no src/
 * beside it; node_modules linked), started as the built CLI, serves the page, its scripts, the split
 * Plotly build and the compiled figure modules from that copy, and Chromium draws the study there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import readline from 'node:readline';
import { test } from 'node:test';
import { createStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { ensureBuilt, repo } from '../fixtures/cli/helpers.js';
import { waitFor } from '../fixtures/wait.js';
import { launchBrowser, noChromium, tempDir } from './helpers.js';

setVerbosity('error');

declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
type HTMLElement = any; // eslint-disable-line @typescript-eslint/no-explicit-any

test('a copy of dist/ without src/ serves the dashboard and its assets from dist', { skip: noChromium }, async () => {
  ensureBuilt();
  // `npm run build` copies the page's files; a dist/ from tsc alone gets them from the same step.
  if (!existsSync(join(repo, 'dist', 'dashboard', 'web', 'index.html'))) {
    const r = spawn(process.execPath, [join(repo, 'dist', 'dashboard', 'build-assets.js')], { cwd: repo, stdio: 'inherit' });
    assert.equal(await new Promise((res) => r.once('exit', res)), 0);
  }
  const root = await tempDir('peertune-dash-dist-');
  const pkg = join(root, 'pkg');
  await mkdir(pkg);
  await cp(join(repo, 'dist'), join(pkg, 'dist'), { recursive: true });
  await cp(join(repo, 'package.json'), join(pkg, 'package.json'));
  await symlink(join(repo, 'node_modules'), join(pkg, 'node_modules'), 'dir');
  assert.ok(!existsSync(join(pkg, 'src')));

  const dataDir = join(root, 'data');
  const storage = await openPeerStorage({ dataDir, listen: [] });
  const study = await createStudy({ studyName: 'from-dist', storage, sampler: new RandomSampler({ seed: 4 }) });
  await study.optimize((t) => t.suggestFloat('x', -1, 1) ** 2, { nTrials: 30 });
  await storage.close();

  const child = spawn(process.execPath, [join(pkg, 'dist', 'cli', 'main.js'), 'dashboard', '--data-dir', dataDir, '--study-name', 'from-dist', '--port', '0'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PEERTUNE_LOG_LEVEL: 'warning' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const browser = await launchBrowser();
  try {
    const lines: string[] = [];
    readline.createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
    const url = await waitFor(`the dashboard URL (stderr: ${stderr})`, 30_000, () => lines.find((l) => l.startsWith('dashboard: '))?.slice('dashboard: '.length));
    const base = url.replace(/\/#.*$/, '');
    const same = async (path: string, file: string): Promise<string> => {
      const r = await fetch(`${base}${path}`);
      assert.equal(r.status, 200, path);
      const body = await r.text();
      assert.equal(body, await readFile(join(pkg, 'dist', file), 'utf8'), `${path} is ${file} of the copy`);
      return body;
    };
    await same('/static/app.js', 'dashboard/web/app.js');
    await same('/static/boot.js', 'dashboard/web/boot.js');
    await same('/static/app.css', 'dashboard/web/app.css');
    const index = await (await fetch(`${base}/`)).text();
    assert.match(index, /<script type="module" src="\/static\/app\.js">/);
    // The split Plotly build: its entry, and the chunk it imports at once (preloaded by the page).
    assert.match(index, /<script id="plotly" type="module" src="\/static\/plotly\/plotly\.js" async>/);
    await same('/static/plotly/plotly.js', 'visualization/plotly/plotly.js');
    const chunk = /href="\/static\/plotly\/(chunk-[A-Za-z0-9_-]+\.js)"/.exec(index)?.[1];
    assert.ok(chunk, 'index.html preloads the eager Plotly chunk');
    await same(`/static/plotly/${chunk}`, `visualization/plotly/${chunk}`);
    assert.equal((await fetch(`${base}/static/plotly/chunk-NOPE.js`)).status, 404);
    const fig = await (await fetch(`${base}/mod/visualization/figures.js`)).text();
    assert.match(fig, /export function plotOptimizationHistory/);

    // And the page works from there.
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction(() => (document.querySelector('#trial-count') as HTMLElement | null)?.dataset['count'] === '30' && !!document.querySelector('#plot .main-svg'), undefined, { timeout: 60_000 });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(root, { recursive: true, force: true });
  }
});
