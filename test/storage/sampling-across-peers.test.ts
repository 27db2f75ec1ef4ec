/**
 * The samplers of issue 14 with two real peer processes on 127.0.0.1 (PeerStorage, real data dirs):
 * GPSampler on both peers at once sees the other's trials in flight and does not propose the same
 * point (kriging believer), and its constraint values replicate with the trials; multi-objective TPE
 * with the hypervolume split runs on both peers into one study.
 *
 * Each test starts the peers' runs once the two have met (test/fixtures/sampler-peer.ts `meet`: each
 * has heard the other's heartbeat announce the study), as Optuna's workers start on a ready database.
 * Started earlier, the first trial one peer publishes can reach nobody (its gossipsub does not know yet
 * that the other subscribed to the study's topic, and drops the message), and the other peer then
 * holds back every later change of that peer's shard (a missing dependency) until a catch-up session
 * fills the gap, over a second later (storage/replicated/inbox.ts, PENDING_SYNC_AFTER_MS): for that
 * long, one GP sees none of the other's trials (reproduced: the joining peer first saw a trial of the
 * other 1.4 to 4.3 s into its run in 3 of 10 runs, with 'gossip:buffered' counted).
 */
import path from 'node:path';
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { PeerProcess, afterAll } from '../fixtures/peer-process.js';
import { waitFor } from '../fixtures/wait.js';

const WORKER = path.join(import.meta.dirname, '..', 'fixtures', 'sampler-peer.ts');
after(afterAll);

interface Asked {
  x: number[];
  inFlight: { owner: string; x: number[] }[];
  complete: number;
}
interface TrialDump {
  owner: string;
  state: string;
  params: Record<string, number>;
  constraints: number[] | null;
}

const start = (cfg: Record<string, unknown>) => PeerProcess.start(WORKER, cfg, { dirPrefix: 'peertune-sampling-' });
async function dumpOf(p: PeerProcess): Promise<{ owner: string; trials: TrialDump[] }> {
  const r = await p.send({ cmd: 'dump' });
  return { owner: r['owner'] as string, trials: r['trials'] as TrialDump[] };
}

/** Resolves once each peer has heard the other's heartbeat announcing the study (see the file comment). */
async function meet(t: TestContext, a: PeerProcess, b: PeerProcess): Promise<void> {
  const t0 = Date.now();
  await Promise.all([a.send({ cmd: 'meet', peers: [b.peerId] }), b.send({ cmd: 'meet', peers: [a.peerId] })]);
  t.diagnostic(`the peers met ${Date.now() - t0} ms after both were ready`);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// The kriging believer keeps the GP off another peer's in-flight point while EI has a shape; once the
// GP has converged, EI is near zero everywhere and the local search would end on its warm start or a
// believed point (seen in CI: 6 of 23 suggestions at distance 0), so the sampler also refuses to
// return a point already observed or in flight (OptimizerOptions.avoid). Near a converged optimum the
// posterior variance is already below the GP's noise, so the believer must condition on the latent
// value at the in-flight point, not on a noisy observation of it (which barely moved the posterior and
// let 3 to 5 of 20 suggestions land within 1e-3 of the other peer's point in about 1 run of 4).
// The spread of the suggestions is reported, not asserted (it was a median gap over 0.25, a threshold
// read off early runs): with the peers met before the run (no blind start) it still fell below in
// some runs with no race in them: both GPs converge into the same one of branin's two feasible
// basins before either has found the other, then alternate points 0.04 to 0.2 from each other's
// trial in flight (a run at cba1e01 under load: median 0.178, 14 gaps; each peer saw the other's first
// trial 43 ms into its run, no gossip held back). The believer removes the variance at the point in
// flight only, and near a converged optimum EI there still beats EI anywhere unexplored. Two
// GPSamplers in one process in lockstep at this budget: median below 0.25 for 10 of 100 seed pairs.
// Excluding points correlated above 0.8 with a trial in flight fixed that (0 of 100) and did no harm
// on branin, but on hartmann6 (two peers, 28 trials) it lost in 66 of 100 seed pairs, so it is not
// in the sampler. Two GPs exploiting one basin a little apart is what a GP with a believer does (as
// Optuna's does): what the believer must guarantee, and what is asserted, is that no suggestion lands
// on the other peer's point in flight (the defect: within 1e-3 in about 1 run of 4).
test('GPSampler on two peers: suggestions keep away from the other peer\'s trials in flight; constraints replicate', { timeout: 180_000 }, async (t) => {
  const a = await start({ create: true, studyName: 'gp-peers', sampler: 'gp', seed: 1 });
  const b = await start({ join: a.addrs, studyName: 'gp-peers', sampler: 'gp', seed: 2 });
  await meet(t, a, b);
  const n = 14;
  const [ra, rb] = await Promise.all([a.send({ cmd: 'run', n, sleepMs: 250 }), b.send({ cmd: 'run', n, sleepMs: 250 })]);
  // Each peer's run start and first sight of a trial of the other (ms after its ready line), for the messages.
  const timeline = [ra, rb].map((r, i) => `${'ab'[i]}: run at ${r['runAt']} ms, first trial of the other at ${r['otherSeenAt']} ms, ${r['buffered']} gossip messages held back`).join('; ');
  const { owner: ownerA } = await dumpOf(a);
  const { owner: ownerB } = await dumpOf(b);
  // Both replicas end with every trial of both peers, each carrying its constraint value.
  for (const p of [a, b]) {
    const trials = await waitFor('both replicas to hold all 28 finished trials with constraint values', 30_000, async () => {
      const { trials } = await dumpOf(p);
      const done = trials.filter((t) => t.state === 'COMPLETE' && Array.isArray(t.constraints));
      return done.length === 2 * n ? done : null;
    });
    assert.deepEqual(new Set(trials.map((t) => t.owner)), new Set([ownerA, ownerB]));
    for (const t of trials) assert.ok(Math.abs(t.constraints![0]! - (t.params['x1']! - 8)) < 1e-9, 'the stored constraint is the one computed');
  }
  // GP suggestions (after the 4 startup trials) made while the other peer had a trial in flight.
  const scale = [15, 15];
  const gaps: number[] = [];
  for (const [asked, other] of [[ra['asked'] as Asked[], ownerB], [rb['asked'] as Asked[], ownerA]] as const) {
    for (const q of asked) {
      const theirs = q.inFlight.filter((f) => f.owner === other);
      if (q.complete < 4 || theirs.length === 0) continue;
      gaps.push(Math.min(...theirs.map((f) => Math.hypot((f.x[0]! - q.x[0]!) / scale[0]!, (f.x[1]! - q.x[1]!) / scale[1]!))));
    }
  }
  assert.ok(gaps.length >= 6, `only ${gaps.length} GP suggestions overlapped a trial of the other peer; the test needs concurrency`);
  // Two GPs fitted to the same history without the believer converge on the same maximizer of EI
  // (distance ~0); with it, the other peer's in-flight point has no variance left and is avoided.
  assert.ok(Math.min(...gaps) > 1e-3, `a suggestion landed on the other peer's in-flight point: gaps ${gaps.map((g) => g.toFixed(3))}`);
  t.diagnostic(`median gap to the other peer's in-flight trial ${median(gaps).toFixed(3)} (unit-cube distance; gaps ${gaps.map((g) => g.toFixed(3))}; ${timeline})`);
  await Promise.all([a.quit(), b.quit()]);
});

test('multi-objective TPE (hypervolume split) on two peers fills one study', { timeout: 120_000 }, async (t) => {
  const a = await start({ create: true, studyName: 'mo-peers', sampler: 'motpe', seed: 3 });
  const b = await start({ join: a.addrs, studyName: 'mo-peers', sampler: 'motpe', seed: 4 });
  await meet(t, a, b);
  await Promise.all([a.send({ cmd: 'run', n: 15, sleepMs: 20 }), b.send({ cmd: 'run', n: 15, sleepMs: 20 })]);
  for (const p of [a, b]) {
    await waitFor('both replicas to hold 30 finished trials', 30_000, async () => (await dumpOf(p)).trials.filter((t) => t.state === 'COMPLETE').length === 30);
  }
  await Promise.all([a.quit(), b.quit()]);
});
