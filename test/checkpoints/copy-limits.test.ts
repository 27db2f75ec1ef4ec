// Issue 15: a member asking this peer to hold checkpoint copies could fill its disk (no per-owner
// quota) and pin its inbound copy slots (a copy trickled slowly had no deadline). Now a receiver holds
// at most ownerQuota.checkpointBytes of copies per owner and study (`checkpoint:copy-quota`), answers
// at most COPIES_PER_PEER copy requests per peer at once (more: `checkpoint:copy-busy`), and cuts a copy
// after copyDeadlineMs of its size, dropping its partial file and charging the owner
// (`blob-copy:deadline`); partial downloads count towards the quota and are collected once no
// reference needs them. Real peer processes on 127.0.0.1 (test/checkpoints/copy-peer.ts): R (the
// receiver, quota 1 MiB), M (a member trickling its blobs at 1 KiB/s), H (an honest owner).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { PeerProcess, afterAll } from '../fixtures/peer-process.js';
import { waitFor } from '../fixtures/wait.js';
import { COPIES_PER_PEER, copyDeadlineMs } from '../../src/checkpoints/swarm.js';

const FIXTURE = fileURLToPath(new URL('./copy-peer.ts', import.meta.url));
const start = (name: string, cfg: Record<string, unknown>) => PeerProcess.start(FIXTURE, cfg, { dirPrefix: `pt-copylim-${name}-` });
const KiB = 1024;

interface Ref {
  owner: string;
  trialId: string;
  hash: string;
  size: number;
  holders: string[];
}

after(afterAll);

test('copies: slots per peer and a deadline against a trickling member, then a per-owner disk quota', { timeout: 300_000 }, async () => {
  const R = await start('r', { create: true, studyName: 'ck-quota', ownerQuota: { checkpointBytes: 1024 * KiB } });
  const counters = async () => (await R.send({ cmd: 'stats' }))['counters'] as Record<string, number>;
  const refs = async (p: PeerProcess) => (await p.send({ cmd: 'refs' }))['refs'] as Ref[];
  const held = async (owner: string) => (await R.send({ cmd: 'held', owner })) as unknown as { bytes: number; count: number };

  // --- slots and deadline: M (its only peer is R) asks for 6 copies of 64 KiB, served at 1 KiB/s.
  const M = await start('m', { studyName: 'ck-quota', join: R.addrs, minReplicas: 2 });
  await M.send({ cmd: 'slow', frameBytes: 2 * KiB, everyMs: 2000 });
  const slowAt = Date.now();
  const slow = (await M.send({ cmd: 'save', n: 6, bytes: 64 * KiB }))['hashes'] as string[];
  await waitFor('R to answer the requests past its per-peer slots busy', 30_000, async () => ((await counters())['checkpoint:copy-busy'] ?? 0) >= 6 - COPIES_PER_PEER);

  // While M's copies hold R's slots for M, an honest owner's copy still lands on R.
  const H = await start('h', { studyName: 'ck-quota', join: R.addrs, minReplicas: 2 });
  const honest = ((await H.send({ cmd: 'save', n: 1, bytes: 64 * KiB }))['hashes'] as string[])[0]!;
  await waitFor("H's copy confirmed on R", 60_000, async () => (await refs(H)).find((r) => r.hash === honest)?.holders.includes(R.peerId));
  const pinnedFor = Date.now() - slowAt;
  console.log(`# H's copy reached R ${pinnedFor} ms after M's trickled copies began (M's deadline ${copyDeadlineMs(64 * KiB)} ms)`);
  assert.equal((await counters())['blob-copy:deadline'] ?? 0, 0, "H's copy landed while M's copies still held their slots");

  // The trickled copies are cut at their deadline (64 KiB at 1 KiB/s would take 64 s), charged, their partial files dropped.
  await waitFor("R to cut M's trickled copies", copyDeadlineMs(64 * KiB) + 30_000, async () => ((await counters())['blob-copy:deadline'] ?? 0) >= COPIES_PER_PEER);
  const cutAfter = Date.now() - slowAt;
  console.log(`# R cut M's trickled copies ${cutAfter} ms after they began (deadline ${copyDeadlineMs(64 * KiB)} ms; busy answers ${(await counters())['checkpoint:copy-busy']})`);
  assert.ok(cutAfter < copyDeadlineMs(64 * KiB) + 20_000, `cut after ${cutAfter} ms`);
  const partials = (await R.send({ cmd: 'partials' }))['files'] as string[];
  assert.ok(!partials.some((f) => slow.some((h) => f.startsWith(h))), `R keeps no partial file of M's cut copies: ${partials.join(', ')}`);
  assert.equal((await held(M.peerId)).count, 0, 'no copy of M completed while it trickled');

  // --- quota: M serves at full speed again and saves 4 more checkpoints of 300 KiB. R takes M's
  // 6 x 64 KiB and 300 KiB blobs up to 1 MiB in all, and refuses the rest.
  await M.send({ cmd: 'slow', frameBytes: 1 << 20, everyMs: 0 });
  await M.send({ cmd: 'save', n: 4, bytes: 300 * KiB });
  await waitFor('R to refuse a copy past its quota for M', 90_000, async () => ((await counters())['checkpoint:copy-quota'] ?? 0) >= 1);
  // Which blobs fill the quota depends on the order the copies arrive in: within one blob of it.
  await waitFor("R to hold M's copies up to its quota", 90_000, async () => (await held(M.peerId)).bytes > 1024 * KiB - 300 * KiB);
  const m = await held(M.peerId);
  console.log(`# R holds ${m.count} of M's blobs, ${(m.bytes / KiB).toFixed(0)} KiB (quota 1024 KiB); copy-quota refusals ${(await counters())['checkpoint:copy-quota']}`);
  assert.ok(m.bytes <= 1024 * KiB, `R holds ${m.bytes} bytes of M's copies`);
  const mRefs = (await refs(R)).filter((r) => r.owner === M.peerId);
  assert.ok(mRefs.some((r) => !r.holders.includes(R.peerId)), "some of M's checkpoints are not held by R");
  // Per owner: H's copy on R is untouched by M's quota, and H can still add one.
  const honest2 = ((await H.send({ cmd: 'save', n: 1, bytes: 300 * KiB }))['hashes'] as string[])[0]!;
  await waitFor("H's second copy confirmed on R", 60_000, async () => (await refs(H)).find((r) => r.hash === honest2)?.holders.includes(R.peerId));
  assert.equal((await held(H.peerId)).count, 2);

  // Partial downloads: one of a blob no reference needs (a copy cut midway, its reference dropped
  // since) is collected; one of a blob M's kept reference needs stays (a later copy resumes from it).
  const orphan = 'f'.repeat(64);
  // (a 300 KiB one R refused: with R past 724 KiB for M, its copy never resumes from this fake partial)
  const needed = mRefs.find((r) => r.size === 300 * KiB && !r.holders.includes(R.peerId))!.hash;
  await R.send({ cmd: 'fakePartial', hash: orphan, bytes: 100 * KiB, ageMs: 60_000 });
  await R.send({ cmd: 'fakePartial', hash: needed, bytes: 10 * KiB, ageMs: 60_000 });
  await H.send({ cmd: 'save', n: 1, bytes: 16 * KiB }); // a reference change: R collects
  await waitFor('R to collect the orphan partial file', 60_000, async () => !((await R.send({ cmd: 'partials' }))['files'] as string[]).includes(`${orphan}.partial`));
  assert.ok(((await R.send({ cmd: 'partials' }))['files'] as string[]).includes(`${needed}.partial`), "the partial of a referenced blob stays");
});
