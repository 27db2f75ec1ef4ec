/**
 * PopulationBasedTraining across two real peer processes on 127.0.0.1 (PeerStorage, real data dirs, no
 * shared disk): one population of 8 members runs on both peers; bottom members clone top members whose
 * checkpoints were saved on the other peer (fetched over the blob protocol), each continuation starts
 * from exactly the state the top member had at the cloned step, the two replicas agree on the lineage,
 * and PBT reaches a better final loss than random search and TPE given the same total steps (2 of 3 seeds at
 * least, medians with a margin).
 */
import path from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { PeerProcess, afterAll, tempDir } from '../fixtures/peer-process.js';
import { waitFor } from '../fixtures/wait.js';
import { baselines } from './toy.js';

const PEER = path.join(import.meta.dirname, 'fixtures', 'pbt-peer.ts');
after(afterAll);

interface TrialDump {
  trialId: string;
  owner: string;
  state: string;
  value: number | null;
  params: Record<string, number>;
  systemAttrs: Record<string, unknown>;
  userAttrs: Record<string, unknown>;
  intermediate: Record<string, number>;
}

const start = (cfg: Record<string, unknown>) => PeerProcess.start(PEER, cfg, { dirPrefix: 'peertune-pbt-' });
const trialsOf = async (p: PeerProcess) => (await p.send({ cmd: 'dump' }))['trials'] as TrialDump[];
const ownerOf = (p: PeerProcess) => p.hello['owner'] as string;

const T = 100;
const INTERVAL = 5;

async function pbtAcrossPeers(seed: number) {
  const cfg = { studyName: `pbt-${seed}`, seed, populationSize: 8, steps: T, interval: INTERVAL, stepMs: 10 };
  const a = await start({ ...cfg, create: true });
  const b = await start({ ...cfg, seed: seed + 1000, join: a.addrs });
  const [ra, rb] = await Promise.all([a.send({ cmd: 'run' }), b.send({ cmd: 'run' })]);
  const steps = (ra['steps'] as number) + (rb['steps'] as number);
  // Both replicas end with every trial finished, and agree on them.
  const ta = await waitFor('both replicas to agree on every finished trial', 30_000, async () => {
    const [x, y] = await Promise.all([trialsOf(a), trialsOf(b)]);
    const key = (ts: TrialDump[]) => JSON.stringify(ts.map((t) => [t.trialId, t.state, t.systemAttrs['pbtParent'] ?? null]).sort());
    return x.length > 0 && x.every((t) => t.state !== 'RUNNING' && t.state !== 'WAITING') && key(x) === key(y) ? x : null;
  });
  await Promise.all([a.quit(), b.quit()]);
  return { trials: ta, steps, owners: [ownerOf(a), ownerOf(b)] };
}

test('PBT across 2 peer processes: clones cross peers, each continuation starts from the cloned state, and PBT beats random search and TPE (3 seeds)', { timeout: 600_000 }, async () => {
  const dir = await tempDir('pt-pbt-base-');
  const rows: string[] = [];
  const results: { pbt: number; random: number; tpe: number }[] = [];
  let crossClones = 0;
  let continuations = 0;
  let fallbacks = 0;
  for (const seed of [11, 12, 13]) {
    const { trials, steps, owners } = await pbtAcrossPeers(seed);
    const byId = new Map(trials.map((t) => [t.trialId, t] as const));
    assert.deepEqual(new Set(trials.map((t) => t.owner)), new Set(owners), 'both peers ran members');
    const complete = trials.filter((t) => t.state === 'COMPLETE');
    const members = new Set(trials.map((t) => String(t.systemAttrs['pbtMember'] ?? t.trialId)));
    assert.ok(members.size >= 8 && members.size <= 10, `population 8 (at most one extra member per peer if both started the last one at once), got ${members.size}`);
    assert.equal(complete.length, members.size, 'every member trained to the end');
    for (const t of trials.filter((x) => x.systemAttrs['pbtParent'] !== undefined && x.state !== 'FAIL')) {
      const from = t.userAttrs['startedFrom'] as { trialId: string; step: number; loss: number };
      assert.ok(from, `continuation ${t.trialId} started from a checkpoint`);
      const parent = byId.get(from.trialId)!;
      assert.equal(from.trialId, t.systemAttrs['pbtParent']);
      assert.equal(from.step, t.systemAttrs['pbtStartStep']);
      // The restored state is the top member's at that step: its loss is what the top member reported there.
      assert.equal(from.loss, parent.intermediate[String(from.step)], `continuation ${t.trialId} restored ${from.trialId}'s state at step ${from.step}`);
      if (parent.owner !== t.owner) crossClones++;
      continuations++;
      if (t.systemAttrs['pbtChosenCheckpoint'] !== undefined) fallbacks++;
    }
    assert.equal(trials.filter((t) => t.state === 'FAIL').length, 0, 'no trial failed (a clone whose checkpoint cannot be fetched fails)');
    const best = Math.min(...complete.map((t) => t.value!));
    const n = Math.ceil(steps / T);
    const base = await baselines(seed, n, T, dir);
    results.push({ pbt: best, ...base });
    rows.push(`seed ${seed}: pbt ${best.toFixed(4)} random ${base.random.toFixed(4)} tpe ${base.tpe.toFixed(4)} (steps ${steps} vs ${n * T}, ${trials.length} trials)`);
  }
  const table = rows.join('\n');
  if (process.env['PBT_TABLE']) console.log(table);
  assert.ok(crossClones > 0, 'some members cloned a checkpoint saved on the other peer');
  // A continuation whose chosen checkpoint its owner had already dropped (the decision saw a view more
  // than two perturbation intervals old: about 0.1 s here, so it happens on a loaded machine) starts from the
  // member's newer one, recorded as such (the state checks above cover it too).
  assert.ok(fallbacks <= 0.25 * continuations, `${fallbacks} of ${continuations} continuations fell back to a newer checkpoint`);
  if (process.env['PBT_TABLE']) console.log(`${continuations} continuations, ${crossClones} across peers, ${fallbacks} fell back`);
  // Two processes on a shared 2-core machine interleave members unevenly (a loaded run once had a seed
  // with few perturbations), so this asserts a majority of seeds and the medians with a margin; the
  // one-process test (pbt.test.ts) asserts every seed.
  const wins = results.filter((r) => r.pbt < r.random && r.pbt < r.tpe).length;
  assert.ok(wins >= 2, `PBT beats both baselines on at least 2 of 3 seeds:\n${table}`);
  const median = (k: 'pbt' | 'random' | 'tpe') => [...results.map((r) => r[k])].sort((a, b) => a - b)[1]!;
  assert.ok(median('pbt') < 0.6 * Math.min(median('random'), median('tpe')), `median PBT loss under 0.6 of the best baseline's median:\n${table}`);
});
