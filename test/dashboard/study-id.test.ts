/**
 * The dashboard with two studies of one name (issue 15 F3: anyone can create a study of any name): the
 * dashboard's replica D joins two peers that each created "twin", so neither is D's and the name is
 * ambiguous there. startDashboard by name refuses with both ids; by id the page opens on that study in
 * headless Chromium, its tabs and links keep to the id, the study list links both by id, and the
 * importances (fetched by the page) come from the chosen study.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { createStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.js';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';
import { waitFor } from '../fixtures/wait.js';
import { launchBrowser, noChromium, tempDir } from './helpers.js';

setVerbosity('error');
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
type HTMLElement = any; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('dashboard: a name two studies share', { skip: noChromium }, () => {
  const dirs: string[] = [];
  const peers: PeerStorage[] = [];
  let D: PeerStorage;
  let dash: Dashboard | null = null;
  let browser: Browser;
  let first = '';
  let second = '';

  const peer = async (join: string[] = []) => {
    const dir = await tempDir('peertune-dash-twin-');
    dirs.push(dir);
    const p = await openPeerStorage({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], join, heartbeatIntervalMs: 200 });
    peers.push(p);
    return p;
  };

  before(async () => {
    const A = await peer();
    const B = await peer();
    const a = await createStudy({ studyName: 'twin', storage: A, sampler: new RandomSampler({ seed: 1 }) });
    await a.optimize((t) => t.suggestFloat('x', 0, 1) + t.suggestFloat('y', 0, 1) * 0.01, { nTrials: 12 });
    const b = await createStudy({ studyName: 'twin', storage: B, direction: 'maximize', sampler: new RandomSampler({ seed: 2 }) });
    await b.optimize((t) => t.suggestFloat('z', 0, 1), { nTrials: 5 });
    first = a.studyId;
    second = b.studyId;
    D = await peer([...A.multiaddrs(), ...B.multiaddrs()]);
    await waitFor('both studies and their trials on D', 30_000, () => D.listStudies().length === 2 && D.getAllTrials(first).length === 12 && D.getAllTrials(second).length === 5);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await dash?.close();
    for (const p of peers) await p.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('by name it refuses, listing both ids', async () => {
    await assert.rejects(startDashboard({ storage: D, studyName: 'twin', port: 0 }), (e: Error) => e.name === 'DashboardError' && e.message.includes(first) && e.message.includes(second) && /ambiguous/.test(e.message));
  });

  test('by id the page shows that study; its tabs, links and importances keep to it; the list links both by id', async () => {
    dash = await startDashboard({ storage: D, studyId: first, port: 0 });
    assert.ok(dash.url.endsWith(`#/study/${first}/history`), dash.url);
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
    await page.goto(dash.url);
    await page.waitForFunction(() => Number((document.querySelector('#trial-count') as HTMLElement | null)?.dataset['count']) === 12);
    const tabs = await page.$$eval('a[data-tab]', (as) => as.map((a) => (a as HTMLElement).getAttribute('href') as string));
    assert.ok(tabs.length > 3 && tabs.every((h) => h.startsWith(`#/study/${first}/`)), tabs.join(' '));
    const crumb = await page.$eval('#crumb', (e) => (e as HTMLElement).textContent as string);
    assert.match(crumb, /twin/);
    // Importances are fetched by the page: they name x and y (the first study's params), not z.
    await page.click(`a[data-tab="importance"]`);
    await page.waitForFunction(() => !!(document.querySelector('#plot') as HTMLElement | null)?.dataset['top']);
    assert.equal(await page.$eval('#plot', (e) => (e as HTMLElement).dataset['top']), 'x');
    // The study list: two rows named twin, each linking by its id.
    await page.goto(dash.url.replace(/#.*$/, '#/'));
    await page.waitForSelector('#study-list tr[data-study-id]');
    const rows = await page.$$eval('#study-list tr[data-study="twin"]', (trs) => trs.map((tr) => ({ id: (tr as HTMLElement).dataset['studyId'], href: tr.querySelector('a')!.getAttribute('href') })));
    assert.deepEqual(rows.map((r) => r.href).sort(), [`#/study/${first}/history`, `#/study/${second}/history`].sort());
    await page.click(`#study-list a[href="#/study/${second}/history"]`);
    await page.waitForFunction(() => Number((document.querySelector('#trial-count') as HTMLElement | null)?.dataset['count']) === 5);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
