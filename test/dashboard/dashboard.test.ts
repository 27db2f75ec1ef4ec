/**
 * The dashboard end to end: a real PeerStorage on a temp data dir serves studies of four shapes, the
 * server runs on 127.0.0.1, headless Chromium opens every view, and a second peer process finishes
 * trials while the page is open.
 */
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { setVerbosity, type Study } from '../../src/index.js';
import { DashboardError, startDashboard, type Dashboard } from '../../src/dashboard/server.js';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';
import { waitFor } from '../fixtures/wait.js';
import { launchBrowser, multiStudy, noChromium, prunedStudy, singleStudy, tempDir, WorkerPeer } from './helpers.js';

setVerbosity('error');

// Page-side callbacks run in Chromium; this project type-checks against Node's lib only.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const location: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any
type HTMLElement = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const VIEWS_SO = ['history', 'intermediate', 'importance', 'parallel', 'slice', 'contour', 'rank', 'edf', 'timeline', 'trials', 'peers'];
const VIEWS_MO = ['history', 'importance', 'parallel', 'slice', 'contour', 'rank', 'edf', 'timeline', 'pareto', 'hypervolume', 'trials', 'peers'];
const SCREENSHOTS = process.env['PEERTUNE_SCREENSHOTS'] ? path.resolve(import.meta.dirname, '..', '..', 'docs', 'dashboard') : null;

describe('dashboard', { skip: noChromium }, () => {
  const dirs: string[] = [];
  let storage: PeerStorage;
  let dash: Dashboard;
  let browser: Browser;
  const studies: Record<string, Study> = {};
  const workers: WorkerPeer[] = [];

  before(async () => {
    const dir = await tempDir();
    dirs.push(dir);
    storage = await openPeerStorage({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], heartbeatIntervalMs: 200 });
    studies['single'] = await singleStudy(storage, 'single', 60);
    studies['pruned'] = await prunedStudy(storage, 'pruned', 40);
    studies['multi2'] = await multiStudy(storage, 'multi2', 40, 2);
    studies['multi3'] = await multiStudy(storage, 'multi3', 30, 3);
    dash = await startDashboard({ storage, port: 0, offlineAfterMs: 1500 });
    browser = await launchBrowser();
    if (SCREENSHOTS) await mkdir(SCREENSHOTS, { recursive: true });
  });

  after(async () => {
    for (const w of workers) w.kill();
    await browser?.close();
    await dash?.close();
    await storage?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function open(hash: string): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${dash.url.replace(/\/$/, '')}/${hash}`);
    return { page, errors };
  }

  async function view(page: Page, name: string, v: string): Promise<void> {
    await page.evaluate((h) => (location.hash = h), `#/study/${name}/${v}`);
    await page.waitForFunction((want) => {
      const main = document.querySelector('#main') as HTMLElement | null;
      if (!main || main.dataset['view'] !== want) return false;
      if (want === 'peers') return !!document.querySelector('#peers-table');
      if (want === 'trials') return !!document.querySelector('#table-count[data-count]');
      const plot = document.querySelector('#plot') as HTMLElement | null;
      if (want === 'importance') return !!plot?.dataset['top'];
      return !!plot?.dataset['traces'] && !!plot.querySelector('.main-svg');
    }, v);
  }

  test('the study list shows directions, trials by state, best value and peers online', async () => {
    const { page, errors } = await open('');
    await page.waitForSelector('#study-list tr[data-study="single"]');
    const row = await page.$eval('#study-list tr[data-study="single"]', (tr) => ({
      trials: tr.querySelector('.trials')!.textContent,
      best: (tr.querySelector('.best') as HTMLElement).dataset['value'],
      peers: tr.querySelector('.peers')!.textContent,
    }));
    assert.equal(Number(row.trials), studies['single']!.trials.length);
    assert.equal(Number(row.best), studies['single']!.bestValue);
    assert.match(row.peers!, /^1 \/ \d+$/);
    assert.equal(await page.$$eval('#study-list tr[data-study]', (r) => r.length), 4);
    if (SCREENSHOTS) await page.screenshot({ path: path.join(SCREENSHOTS, 'study-list.png') });
    assert.deepEqual(errors, []);
    await page.close();
  });

  for (const [name, views] of [['single', VIEWS_SO], ['pruned', VIEWS_SO], ['multi2', VIEWS_MO], ['multi3', VIEWS_MO]] as const) {
    test(`every view of "${name}" renders with no console error`, async () => {
      const { page, errors } = await open(`#/study/${name}/history`);
      for (const v of views) {
        await view(page, name, v);
        if (SCREENSHOTS && name === (v === 'pareto' || v === 'hypervolume' ? 'multi3' : 'single')) await page.screenshot({ path: path.join(SCREENSHOTS, `${v}.png`), fullPage: true });
      }
      const study = studies[name]!;
      assert.equal(Number(await page.$eval('#trial-count', (e) => (e as HTMLElement).dataset['count'])), study.trials.length);
      if (study.directions.length === 1) {
        assert.equal(Number(await page.$eval('#best-value', (e) => (e as HTMLElement).dataset['value'])), study.bestValue);
      }
      assert.deepEqual(errors, [], `${name}: console errors`);
      assert.deepEqual(await page.evaluate(() => (window as unknown as { __dash: { errors: string[] } }).__dash.errors), []);
      await page.close();
    });
  }

  test('the importance view ranks what dominates', async () => {
    const { page, errors } = await open('#/study/single/importance');
    await view(page, 'single', 'importance');
    // (x - 2)^2 over [-10, 10] dwarfs y, opt and lr.
    assert.equal(await page.$eval('#plot', (e) => (e as HTMLElement).dataset['top']), 'x');
    assert.match(await page.$eval('#importance-info', (e) => e.textContent ?? ''), /fanova on \d+ COMPLETE trials/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a table filter and a parallel-coordinate brush change the visible rows', async () => {
    const study = studies['single']!;
    const { page, errors } = await open('#/study/single/trials');
    await view(page, 'single', 'trials');
    await page.fill('#table-filter', 'x>0 state=COMPLETE');
    const want = study.trials.filter((t) => t.state === 'COMPLETE' && (t.params['x'] as number) > 0).length;
    await page.waitForFunction((n) => (document.querySelector('#table-count') as HTMLElement).dataset['count'] === String(n), want);
    // Sorting by a param: the first visible row is the trial with the smallest lr among the filtered ones.
    await page.click('.thead [data-col="lr"]');
    const smallest = study.trials.filter((t) => t.state === 'COMPLETE' && (t.params['x'] as number) > 0).sort((a, b) => (a.params['lr'] as number) - (b.params['lr'] as number))[0]!;
    await page.waitForFunction((n) => document.querySelector('#table-body .tr')?.getAttribute('data-number') === String(n), smallest.number);
    // User attrs and peers are columns too.
    const owner = study.trials[0]!.owner;
    await page.fill('#table-filter', `attr.fold=1 peer~${owner.slice(-6)} state!=FAIL`);
    const wantAttr = study.trials.filter((t) => t.userAttrs['fold'] === 1 && t.owner === owner && t.state !== 'FAIL').length;
    await page.waitForFunction((n) => (document.querySelector('#table-count') as HTMLElement).dataset['count'] === String(n), wantAttr);
    await page.fill('#table-filter', '');

    await view(page, 'single', 'parallel');
    const inBrush = study.trials.filter((t) => t.state === 'COMPLETE' && (t.params['x'] as number) >= 0 && (t.params['x'] as number) <= 5).map((t) => t.number);
    assert.ok(inBrush.length > 0 && inBrush.length < study.getTrials({ states: ['COMPLETE'] }).length);
    await page.evaluate(() => {
      const gd = document.querySelector('#plot') as unknown as { data: { dimensions: { label: string }[] }[] };
      const i = gd.data[0]!.dimensions.findIndex((d) => d.label === 'x');
      return (window as unknown as { Plotly: { restyle: (g: unknown, u: unknown) => Promise<void> } }).Plotly.restyle(gd, { [`dimensions[${i}].constraintrange`]: [[0, 5]] });
    });
    await page.waitForFunction((n) => (document.querySelector('#table-count') as HTMLElement).dataset['count'] === String(n), inBrush.length);
    const shown = await page.$$eval('#table-body .tr', (rows) => rows.map((r) => Number(r.getAttribute('data-number'))));
    assert.deepEqual(shown.sort((a, b) => a - b), inBrush.sort((a, b) => a - b));
    if (SCREENSHOTS) await page.screenshot({ path: path.join(SCREENSHOTS, 'parallel-brushed.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a trial finished on another peer appears live; the peers view shows the peer, then offline when killed', async () => {
    const { page, errors } = await open('#/study/single/trials');
    await view(page, 'single', 'trials');
    await page.evaluate(() => ((window as unknown as { __marker: number }).__marker = 42));
    const before = studies['single']!.trials.length;
    const w = new WorkerPeer({ dataDir: await tempDir(), join: storage.multiaddrs(), studyName: 'single' });
    workers.push(w);
    await w.ready;
    const latencies: number[] = [];
    for (let i = 0; i < 3; i++) {
      const value = -100 - i;
      const r = await w.send({ cmd: 'trial', value });
      const t0 = Date.now();
      await page.waitForFunction((v) => (document.querySelector('#best-value') as HTMLElement | null)?.dataset['value'] === String(v), value, { timeout: 10_000 });
      latencies.push(Date.now() - t0);
      await page.waitForFunction((n) => (document.querySelector('#trial-count') as HTMLElement).dataset['count'] === String(n), before + i + 1);
      await page.fill('#table-filter', `number=${r['number']}`);
      await page.waitForFunction(([n, v]) => {
        const row = document.querySelector(`#table-body .tr[data-number="${n}"]`);
        return !!row && row.textContent!.includes(String(v)) && row.textContent!.includes('COMPLETE');
      }, [r['number'], value] as const);
      await page.fill('#table-filter', '');
    }
    // No reload: the marker set before the trials is still there, and deltas (not snapshots) carried them.
    assert.equal(await page.evaluate(() => (window as unknown as { __marker: number }).__marker), 42);
    assert.ok((await page.evaluate(() => (window as unknown as { __dash: { deltas: number } }).__dash.deltas)) >= 3);
    console.log(`# told on the worker -> shown in the page: ${latencies.join(', ')} ms`);

    // A RUNNING trial shows with its age in the peers view; killing the worker takes it offline.
    await w.send({ cmd: 'trial', hold: true });
    await view(page, 'single', 'peers');
    await page.waitForFunction((id) => document.querySelector(`#peers-table tr[data-peer="${id}"]`)?.getAttribute('data-online') === 'true', w.peerId);
    await page.waitForFunction((id) => /#\d+ for /.test(document.querySelector(`#peers-table tr[data-peer="${id}"]`)?.textContent ?? ''), w.peerId);
    if (SCREENSHOTS) await page.screenshot({ path: path.join(SCREENSHOTS, 'peers.png'), fullPage: true });
    w.kill();
    await page.waitForFunction((id) => document.querySelector(`#peers-table tr[data-peer="${id}"]`)?.getAttribute('data-online') === 'false', w.peerId, { timeout: 15_000 });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('trial detail shows params, values, attrs and the fail reason', async () => {
    const failed = studies['single']!.trials.find((t) => t.state === 'FAIL')!;
    const { page, errors } = await open(`#/study/single/trial/${failed.number}`);
    await page.waitForSelector('#trial-state');
    assert.equal(await page.$eval('#trial-state', (e) => e.textContent), 'FAIL');
    assert.match(await page.$eval('#fail-reason', (e) => e.textContent ?? ''), /diverged/);
    assert.match(await page.$eval('#trial-params', (e) => e.textContent ?? ''), /opt/);
    const best = studies['single']!.getTrials({ states: ['COMPLETE'] })[0]!;
    await page.evaluate((h) => (location.hash = h), `#/study/single/trial/${best.number}`);
    await page.waitForFunction((v) => document.querySelector('#trial-values')?.textContent === v, String(+best.value!.toPrecision(6)));
    await page.waitForSelector('#trial-curve .main-svg');
    if (SCREENSHOTS) await page.screenshot({ path: path.join(SCREENSHOTS, 'trial-detail.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('read-only: POST, PUT and DELETE are refused and change nothing', async () => {
    const base = dash.url.replace(/\/(#.*)?$/, '');
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await fetch(`${base}/api/studies/single`, { method, body: method === 'DELETE' ? undefined : '{}' });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.get('allow'), 'GET, HEAD');
    }
    assert.ok(storage.getStudy('single'));
    const r = await fetch(`${base}/api/studies/single`);
    assert.equal(r.status, 200);
    // DNS rebinding: a loopback dashboard answers only to loopback Host headers.
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/api/studies`, { headers: { host: 'attacker.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 421);
  });
});

describe('dashboard over an in-memory storage', () => {
  test('the event stream starts with a snapshot and then carries only changed trials', async () => {
    const { InMemoryStorage, createStudy } = await import('../../src/index.js');
    const storage = new InMemoryStorage();
    const study = await createStudy({ studyName: 'mem', storage });
    await study.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 3 });
    const d = await startDashboard({ storage, port: 0, studyName: 'mem' });
    const ac = new AbortController();
    try {
      const res = await fetch(`${d.url.replace(/\/(#.*)?$/, '')}/api/studies/mem/events`, { signal: ac.signal });
      let text = '';
      void (async () => {
        for await (const chunk of res.body!) text += Buffer.from(chunk).toString();
      })().catch(() => {});
      const snap = await waitFor('the snapshot', 10_000, () => {
        const m = /event: snapshot\ndata: (.*)\n/.exec(text);
        return m ? (JSON.parse(m[1]!) as { rows: unknown[][]; params: { name: string }[] }) : null;
      });
      assert.equal(snap.rows.length, 3);
      assert.deepEqual(snap.params.map((p) => p.name), ['x']);
      const t = study.ask();
      t.suggestFloat('x', 0, 1);
      t.suggestCategorical('c', ['a', 'b']);
      await study.tell(t, 0.5);
      const delta = await waitFor('a delta', 10_000, () => {
        const all = [...text.matchAll(/event: delta\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]!) as { rows: unknown[][]; params: { name: string }[] });
        return all.find((x) => x.rows.some((r) => r[2] === 2));
      });
      assert.deepEqual(delta.rows.map((r) => r[1]), [3], 'only trial 3 changed');
      assert.deepEqual(delta.params.map((p) => p.name), ['x', 'c'], 'the param header grows, old indices stay');
    } finally {
      ac.abort();
      await d.close();
    }
  });
});

describe('dashboard binding', () => {
  test('a non-loopback host needs a token, and then every request needs it', async () => {
    const dir = await tempDir();
    const storage = await openPeerStorage({ dataDir: dir, listen: [] });
    try {
      await assert.rejects(startDashboard({ storage, host: '0.0.0.0', port: 0 }), (e: unknown) => e instanceof DashboardError && /--token/.test((e as Error).message));
      await assert.rejects(startDashboard({ storage, port: 0, token: 'short' }), /at least 8/);
      await assert.rejects(startDashboard({ storage, port: 0, studyName: 'nope' }), /no study named "nope"/);
      const d = await startDashboard({ storage, host: '0.0.0.0', port: 0, token: true });
      try {
        assert.ok(d.token && d.token.length >= 16);
        assert.match(d.url, new RegExp(`^http://0\\.0\\.0\\.0:${d.port}/\\?token=`));
        const base = `http://127.0.0.1:${d.port}`;
        assert.equal((await fetch(`${base}/api/studies`)).status, 401);
        assert.equal((await fetch(`${base}/api/studies?token=wrong-token-123`)).status, 401);
        const ok = await fetch(`${base}/?token=${d.token}`);
        assert.equal(ok.status, 200);
        const cookie = ok.headers.get('set-cookie')!;
        assert.match(cookie, /HttpOnly; SameSite=Strict/);
        assert.equal((await fetch(`${base}/api/studies`, { headers: { cookie: cookie.split(';')[0]! } })).status, 200);
        assert.equal((await fetch(`${base}/api/studies`, { headers: { authorization: `Bearer ${d.token}` } })).status, 200);
      } finally {
        await d.close();
      }
    } finally {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
