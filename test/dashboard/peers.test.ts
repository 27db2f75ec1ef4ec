/**
 * The peers view's replica columns with real peers on 127.0.0.1: a worker peer process that holds the
 * same replica shows "agree" (its heartbeat's digest equals ours), and a peer that sent a forged
 * record (the attacker toolkit's raw libp2p node) shows the reject counted from it, while the honest
 * worker shows none.
 */
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { setVerbosity } from '../../src/index.js';
import { startDashboard, type Dashboard } from '../../src/dashboard/server.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { decodeTrial, seal } from '../../src/storage/replicated/schema.js';
import { Attacker, countOf, forge, gossipPayload, muteLogs, openPeer, replicaDoc, studyTopic, studyWithTrials } from '../fixtures/attacker.js';
import { waitFor } from '../fixtures/wait.js';
import { launchBrowser, noChromium, tempDir, WorkerPeer } from './helpers.js';

setVerbosity('error');

declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
type HTMLElement = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const SCREENSHOTS = process.env['PEERTUNE_SCREENSHOTS'] ? path.resolve(import.meta.dirname, '..', '..', 'docs', 'dashboard') : null;

describe('dashboard peers view: replicas agree, rejects per peer', { skip: noChromium }, () => {
  const dirs: string[] = [];
  let storage: PeerStorage;
  let dash: Dashboard;
  let browser: Browser;
  let worker: WorkerPeer;
  let attacker: Attacker | null = null;
  let unmute: () => void;
  let sid = '';

  before(async () => {
    unmute = muteLogs();
    const dir = await tempDir();
    dirs.push(dir);
    storage = await openPeer(dir);
    sid = (await studyWithTrials(storage, 'guarded', 3)).studyId;
    const wdir = await tempDir();
    dirs.push(wdir);
    worker = new WorkerPeer({ dataDir: wdir, join: storage.multiaddrs(), studyName: 'guarded' });
    await worker.ready;
    dash = await startDashboard({ storage, port: 0, offlineAfterMs: 3000 });
    browser = await launchBrowser();
    if (SCREENSHOTS) await mkdir(SCREENSHOTS, { recursive: true });
  });

  after(async () => {
    worker?.kill();
    await attacker?.stop();
    await browser?.close();
    await dash?.close();
    await storage?.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    unmute?.();
  });

  const cell = (page: Page, peer: string, cls: string, attr: string): Promise<string | null> =>
    page.evaluate(([p, c, a]) => (document.querySelector(`#peers-table tr[data-peer="${p}"] td.${c}`) as HTMLElement | null)?.getAttribute(a) ?? null, [peer, cls, attr] as const);

  test('a peer holding the same replica shows "agree"; a peer that sent a forged record shows its rejects', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
    const errors: string[] = [];
    page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${dash.url.replace(/\/(#.*)?$/, '')}/#/study/guarded/peers`);
    await page.waitForSelector('#peers-table');

    // The worker caught up and advertises our digest in its heartbeat.
    await waitFor('the worker to show "agree"', 20_000, () => cell(page, worker.peerId, 'replica', 'data-replica').then((v) => v === 'agree'));
    const mine = storage.peers!(sid).find((p) => p.self)!;
    const theirs = storage.peers!(sid).find((p) => p.peerId === worker.peerId)!;
    assert.equal(theirs.digest, mine.digest);
    assert.equal(theirs.changes, mine.changes);
    assert.equal(await cell(page, worker.peerId, 'rejects', 'data-rejects'), '0');

    // The attacker rewrites the worker-visible trial of ours with its own key: the replica rejects it.
    attacker = await Attacker.start();
    await attacker.connect(storage.multiaddrs());
    await attacker.joinTopic(studyTopic(sid), storage.peerId);
    const snap = replicaDoc(storage, sid);
    const [id, bytes] = Object.entries(snap.trials)[0]!;
    const rec = decodeTrial(bytes, false);
    const before = countOf(storage, 'gossip:bad-signature');
    await attacker.publish(studyTopic(sid), gossipPayload([forge(snap, (d) => void (d.trials![id] = seal(attacker!.key, { ...rec, v: rec.v + 1, vals: [-1e9] })))]));
    await waitFor('the replica to reject the forged record', 20_000, () => countOf(storage, 'gossip:bad-signature') > before);
    await waitFor('the attacker row with its reject count', 10_000, () => cell(page, attacker!.peerId, 'rejects', 'data-rejects').then((v) => Number(v) > 0));
    assert.equal(storage.peers!(sid).find((p) => p.peerId === attacker!.peerId)?.rejects, 1);
    // Nothing of it was taken: the worker still agrees, and was charged nothing.
    await waitFor('the worker to still show "agree"', 10_000, () => cell(page, worker.peerId, 'replica', 'data-replica').then((v) => v === 'agree'));
    assert.equal(await cell(page, worker.peerId, 'rejects', 'data-rejects'), '0');
    assert.equal(await cell(page, attacker.peerId, 'replica', 'data-replica'), 'unknown');
    if (SCREENSHOTS) await page.screenshot({ path: path.join(SCREENSHOTS, 'peers-replicas.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a peer that lacks our latest changes shows "behind" until it catches up', async () => {
    // Partition the worker off, write on our side: its last advertised count is below ours.
    await storage.blockPeers([worker.peerId]);
    const t = storage.createTrial(sid);
    await storage.finishTrial(sid, t.trialId, 'COMPLETE', [1]);
    await waitFor('the worker to show "behind"', 10_000, () => storage.peers!(sid).find((p) => p.peerId === worker.peerId)?.replica === 'behind');
    storage.unblockPeers([worker.peerId]);
    await waitFor('the worker to catch up and agree again', 30_000, () => storage.peers!(sid).find((p) => p.peerId === worker.peerId)?.replica === 'agree');
  });
});
