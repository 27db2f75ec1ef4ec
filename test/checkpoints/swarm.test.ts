// Checkpoints across real peer processes on 127.0.0.1 (test/fixtures/checkpoint-peer.ts): a copy of
// each checkpoint reaches another peer and is confirmed in the reference's holders; after the machine
// that trained a trial is lost (kill -9 and its data dir deleted), exactly one of two live peers retries
// it and resumes at the step after the last checkpoint with the state it saved; a peer that holds no
// copy fetches one from a holder; the keep rules leave exactly the kept blobs on every holder.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PeerProcess, afterAll } from '../fixtures/peer-process.js';
import { waitFor } from '../fixtures/wait.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/checkpoint-peer.ts', import.meta.url));
const FINAL = ['trained', 'trials', 'got', 'blobs', 'bye', 'hanging'];

interface TrialDump {
  trialId: string;
  owner: string;
  state: string;
  value: number | null;
  params: Record<string, unknown>;
  systemAttrs: Record<string, unknown>;
  checkpoints: { hash: string; step: number | null; holders: string[]; seq: number }[];
}

after(afterAll);

const start = (name: string, cfg: Record<string, unknown>) => PeerProcess.start(FIXTURE, cfg, { final: FINAL, dirPrefix: `pt-cks-${name}-` });
const trialsOf = async (p: PeerProcess) => (await p.send({ cmd: 'trials' }))['trials'] as TrialDump[];
const blobsOf = async (p: PeerProcess) => (await p.send({ cmd: 'blobs' }))['hashes'] as string[];

test('machine loss: the checkpoint copy on another peer lets one live peer resume the trial at step k+1', { timeout: 240_000 }, async () => {
  const study = 'ck-loss';
  const a = await start('a', { create: true, studyName: study, numToKeep: 1, minReplicas: 1, maxRetries: 1 });
  const b = await start('b', { studyName: study, join: a.addrs, numToKeep: 1, minReplicas: 1, maxRetries: 1 });
  const c = await start('c', { studyName: study, join: a.addrs, numToKeep: 1, minReplicas: 1, maxRetries: 1 });
  // B and C each run one short trial first, so each counts as a worker in the other's retry assignment.
  await Promise.all([b.send({ cmd: 'train', steps: 1 }), c.send({ cmd: 'train', steps: 1 })]);

  const hanging = await a.send({ cmd: 'train', steps: 6, hangAt: 3 });
  const lost = hanging['trialId'] as string;
  // The latest checkpoint (step 3) is confirmed on one other peer: its holders name A and B or C.
  const confirmed = await waitFor('a confirmed copy of step 3 on B or C', 60_000, async () => {
    const t = (await trialsOf(b)).find((x) => x.trialId === lost);
    const latest = t?.checkpoints.at(-1);
    return latest && latest.step === 3 && latest.holders.length >= 2 ? latest : null;
  });
  assert.equal(confirmed.holders[0], a.peerId, 'the owner is the first holder');
  const holder = confirmed.holders.find((h) => h !== a.peerId)!;
  assert.ok([b.peerId, c.peerId].includes(holder));
  const [holderPeer, otherPeer] = holder === b.peerId ? [b, c] : [c, b];
  // Keep rules on the holder too: numToKeep 1 keeps only the latest; its blob store ends with exactly
  // the blobs the kept references need (B's and C's own step-1 checkpoints, and A's step 3).
  const expectedOnHolder = async () => new Set((await trialsOf(holderPeer)).flatMap((t) => t.checkpoints.filter((r) => r.holders.includes(holder)).map((r) => r.hash)));
  await waitFor('the holder dropped copies of A\'s older checkpoints', 60_000, async () => {
    const want = await expectedOnHolder();
    const have = await blobsOf(holderPeer);
    return have.length === want.size && have.every((h) => want.has(h));
  });

  // The machine is lost: kill -9 and its data dir deleted.
  a.proc.kill('SIGKILL');
  await rm(a.dataDir, { recursive: true, force: true });
  await waitFor('B and C see the lost trial as FAIL', 30_000, async () => {
    const [tb, tc] = await Promise.all([trialsOf(b), trialsOf(c)]);
    return tb.find((t) => t.trialId === lost)?.state === 'FAIL' && tc.find((t) => t.trialId === lost)?.state === 'FAIL';
  });

  // Both live peers run one trial: exactly one of them takes the retry, the other a fresh trial.
  const [rb, rc] = await Promise.all([b.send({ cmd: 'train', steps: 6 }), c.send({ cmd: 'train', steps: 6 })]);
  const starts = [...b.events, ...c.events].filter((e) => e.ev === 'start' && (e.id === rb.id || e.id === rc.id));
  const retries = starts.filter((e) => e['retryOf'] === lost);
  assert.equal(retries.length, 1, `one retry of the lost trial, got ${retries.length}: ${JSON.stringify(starts)}`);
  const r = retries[0]!;
  assert.equal(r['firstStep'], 4, 'the retry starts at the step after the last checkpoint');
  assert.equal(r['from'], lost, 'from the lost trial\'s checkpoint');
  const lostToken = (await trialsOf(b)).find((t) => t.trialId === lost)!.params['token'] as number;
  assert.equal(r['acc'], 10 + 20 + 30 + 3 * lostToken, 'with the state it saved at step 3');

  const final = await waitFor('both replicas show the retry COMPLETE', 30_000, async () => {
    const t = await trialsOf(otherPeer);
    const retry = t.find((x) => x.systemAttrs['retryOf'] === lost && x.state === 'COMPLETE');
    return retry ? { t, retry } : null;
  });
  assert.equal(final.retry.value, (10 + 20 + 30 + 40 + 50 + 60) + 6 * lostToken, 'the retry finished with the full sum');
  assert.deepEqual(final.retry.systemAttrs['retryHistory'], [lost]);
  assert.equal(final.t.find((x) => x.trialId === lost)!.state, 'FAIL', 'the original stays FAIL');

  // The peer that holds no copy of A's checkpoint fetches it from the holder (A is gone).
  const retrier = b.events.includes(r) ? b : c;
  const otherHas = (await blobsOf(otherPeer)).includes(confirmed.hash);
  // If the retry ran on the peer without the copy, it fetched the copy from the holder to resume.
  assert.equal(otherHas, retrier === otherPeer, retrier === otherPeer ? 'the retrier fetched the copy' : 'the non-holder has no copy before it asks');
  const got = await otherPeer.send({ cmd: 'get', trialId: lost });
  assert.deepEqual(JSON.parse(got['content'] as string), { step: 3, acc: 60 + 3 * lostToken });
  assert.ok((await blobsOf(otherPeer)).includes(confirmed.hash), 'the fetched blob is in its store');
  await Promise.all([b.send({ cmd: 'quit' }), c.send({ cmd: 'quit' })]);
});
