/**
 * Replication benchmarks (issue 3): latency from tell on one peer to visible on another (3 and 8
 * peers), swarm throughput with 1/2/4/8 peer processes, partition heal of 2 x 1000 trials, a
 * 10,000-trial replica (RSS, size on disk, load time), and propagation across 32 in-process peers.
 * Peers talk TCP over 127.0.0.1; in-process peers share one event loop, so their figures include
 * that contention (on a 2-core machine that also runs other work).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { createStudy, loadStudy, RandomSampler, setVerbosity } from '../src/index.js';
import { openPeerStorage, type PeerStorage } from '../src/storage/replicated/index.js';
import type { BenchContext } from './lib.js';
import { fmt, quantile, table } from './lib.js';

const FIXTURE = path.resolve(import.meta.dirname, '..', 'test', 'fixtures', 'replication-peer.ts');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'peertune-bench-'));
  dirs.push(d);
  return d;
}

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms`);
    await sleep(5);
  }
}

/** n in-process peers on loopback: the first creates the study, the rest join it (and each other). */
async function swarm(n: number, name: string, heartbeatIntervalMs = 500): Promise<PeerStorage[]> {
  const first = await openPeerStorage({ dataDir: await tempDir(), heartbeatIntervalMs, staleAfterMs: 60_000 });
  await createStudy({ studyName: name, storage: first });
  const peers = [first];
  for (let i = 1; i < n; i++) {
    const join = [first.multiaddrs()[0]!, peers[Math.floor(Math.random() * peers.length)]!.multiaddrs()[0]!];
    peers.push(await openPeerStorage({ dataDir: await tempDir(), join: [...new Set(join)], heartbeatIntervalMs, staleAfterMs: 60_000 }));
  }
  const got = await Promise.all(peers.slice(1).map((p) => p.waitForStudy(name, 60_000)));
  if (!got.every(Boolean)) throw new Error(`only ${got.filter(Boolean).length + 1} of ${n} peers got study ${name}`);
  return peers;
}

/** Tell on one peer -> COMPLETE visible on every other: one latency sample per (trial, receiver). */
async function latency(n: number, trials: number): Promise<{ p50: number; p95: number; all: number; samples: number }> {
  const peers = await swarm(n, `lat-${n}`);
  try {
    const studyId = peers[0]!.getStudy(`lat-${n}`)!.studyId;
    await sleep(2000); // gossip mesh
    const perPair: number[] = [];
    const perAll: number[] = [];
    for (let k = 0; k < trials; k++) {
      const src = peers[k % n]!;
      const t = src.createTrial(studyId);
      src.setTrialParams(studyId, t.trialId, { x: k }, { x: { type: 'float', low: 0, high: 1e9, log: false, step: null } });
      await sleep(20);
      const seen = new Map<PeerStorage, number>();
      const offs = peers.filter((p) => p !== src).map((p) =>
        p.onTrialsChanged(() => {
          if (!seen.has(p)) {
            try {
              if (p.getTrial(studyId, t.trialId).state === 'COMPLETE') seen.set(p, performance.now());
            } catch {
              /* not there yet */
            }
          }
        }),
      );
      const t0 = performance.now();
      await src.finishTrial(studyId, t.trialId, 'COMPLETE', [k]);
      await until(() => seen.size === n - 1, 10_000, `trial ${k} visible on all ${n} peers`);
      for (const off of offs) off();
      const lat = [...seen.values()].map((x) => x - t0);
      perPair.push(...lat);
      perAll.push(Math.max(...lat));
    }
    return { p50: quantile(perPair, 0.5), p95: quantile(perPair, 0.95), all: quantile(perAll, 0.95), samples: perPair.length };
  } finally {
    await Promise.all(peers.map((p) => p.close()));
  }
}

// ---------------------------------------------------------------- throughput with peer processes

interface Child {
  send(cmd: object): Promise<Record<string, unknown>>;
  ready: Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

function child(cfg: object): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: proc.stdout! });
  const waits = new Map<number, (m: Record<string, unknown>) => void>();
  let readyResolve!: (m: Record<string, unknown>) => void;
  const ready = new Promise<Record<string, unknown>>((r) => (readyResolve = r));
  rl.on('line', (l) => {
    const m = JSON.parse(l) as Record<string, unknown>;
    if (m['ev'] === 'ready') readyResolve(m);
    else waits.get(m['id'] as number)?.(m);
  });
  let id = 0;
  return {
    ready,
    exited: new Promise((r) => proc.on('exit', () => r())),
    send: (cmd) =>
      new Promise((resolve) => {
        const i = ++id;
        waits.set(i, resolve);
        proc.stdin!.write(JSON.stringify({ ...cmd, id: i }) + '\n');
      }),
  };
}

async function throughput(n: number, seconds: number): Promise<{ trialsPerSec: number; total: number; agreed: boolean }> {
  const name = `tp-${n}`;
  const first = child({ dataDir: await tempDir(), create: true, studyName: name, sampler: 'random', seed: 1, heartbeatIntervalMs: 500, staleAfterMs: 30_000 });
  const r = await first.ready;
  const rest = Array.from({ length: n - 1 }, async (_, i) => {
    const c = child({ dataDir: await tempDir(), join: r['addrs'], studyName: name, sampler: 'random', seed: i + 2, heartbeatIntervalMs: 500, staleAfterMs: 30_000 });
    await c.ready;
    return c;
  });
  const peers = [first, ...(await Promise.all(rest))];
  await sleep(1000);
  const t0 = performance.now();
  const ran = await Promise.all(peers.map((p) => p.send({ cmd: 'run', timeout: seconds })));
  const wall = (performance.now() - t0) / 1000;
  const total = ran.reduce((s, m) => s + (m['done'] as number), 0);
  // Every replica converges on the same count.
  let agreed = false;
  for (let i = 0; i < 50 && !agreed; i++) {
    const dumps = await Promise.all(peers.map((p) => p.send({ cmd: 'dump' })));
    agreed = dumps.every((d) => (d['trials'] as { state: string }[]).filter((t) => t.state === 'COMPLETE').length === total);
    if (!agreed) await sleep(200);
  }
  await Promise.all(peers.map((p) => p.send({ cmd: 'quit' })));
  await Promise.all(peers.map((p) => p.exited));
  return { trialsPerSec: total / wall, total, agreed };
}

// ---------------------------------------------------------------- partition heal

async function partitionHeal(perSide: number): Promise<{ ms: number; total: number }> {
  const [a, b] = await swarm(2, 'heal');
  try {
    const sid = a!.getStudy('heal')!.studyId;
    await a!.blockPeers([b!.peerId]);
    await b!.blockPeers([a!.peerId]);
    await sleep(300);
    for (const s of [a!, b!]) {
      const study = await loadStudy({ studyName: 'heal', storage: s, sampler: new RandomSampler({ seed: 1 }) });
      await study.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: perSide });
    }
    const t0 = performance.now();
    a!.unblockPeers([b!.peerId]);
    b!.unblockPeers([a!.peerId]);
    const want = 2 * perSide;
    await until(() => a!.getAllTrials(sid).length === want && b!.getAllTrials(sid).length === want, 60_000, 'heal');
    return { ms: performance.now() - t0, total: want };
  } finally {
    await a!.close();
    await b!.close();
  }
}

// ---------------------------------------------------------------- a 10,000-trial replica

async function buildReplica(dir: string, nTrials: number): Promise<{ msPerTrialAtEnd: number; sizeBytes: number; buildSec: number }> {
  const s = await openPeerStorage({ dataDir: dir, listen: [] });
  const info = await s.createStudy({ studyName: 'big', directions: ['minimize'] });
  const dist = { type: 'float', low: 0, high: 1, log: false, step: null } as const;
  const t0 = performance.now();
  let lastBatch = 0;
  const batchStart = nTrials - 200;
  for (let i = 0; i < nTrials; i++) {
    if (i === batchStart) lastBatch = performance.now();
    const t = s.createTrial(info.studyId);
    const params: Record<string, number> = {};
    const dists: Record<string, typeof dist> = {};
    for (let p = 0; p < 10; p++) {
      params[`p${p}`] = Math.random();
      dists[`p${p}`] = dist;
    }
    s.setTrialParams(info.studyId, t.trialId, params, dists);
    await new Promise((r) => setImmediate(r)); // the RUNNING record goes out as its own change
    for (let step = 0; step < 20; step++) s.setTrialIntermediateValue(info.studyId, t.trialId, step, Math.random());
    await s.finishTrial(info.studyId, t.trialId, 'COMPLETE', [Math.random()]);
  }
  const msPerTrialAtEnd = (performance.now() - lastBatch) / 200;
  const buildSec = (performance.now() - t0) / 1000;
  await s.close();
  // Reopen once so compaction has run and size reflects the steady state.
  const s2 = await openPeerStorage({ dataDir: dir, listen: [], compactEvery: 1 });
  await sleep(2500);
  const sizeBytes = await s2.sizeOnDisk();
  await s2.close();
  return { msPerTrialAtEnd, sizeBytes, buildSec };
}

/** Loads the replica in a fresh process so RSS is the replica's alone. */
function loadInChild(dir: string): Promise<{ loadMs: number; rssMB: number; baseRssMB: number; trials: number }> {
  const code = `
    const { openPeerStorage } = await import(${JSON.stringify(path.resolve(import.meta.dirname, '..', 'src', 'storage', 'replicated', 'index.ts'))});
    globalThis.gc?.();
    const baseRssMB = process.memoryUsage().rss / 2 ** 20;
    const t0 = performance.now();
    const s = await openPeerStorage({ dataDir: ${JSON.stringify(dir)}, listen: [] });
    const id = s.getStudy('big').studyId;
    const trials = s.getAllTrials(id).length;
    const loadMs = performance.now() - t0;
    globalThis.gc?.();
    const rssMB = process.memoryUsage().rss / 2 ** 20;
    await s.close();
    console.log(JSON.stringify({ loadMs, rssMB, baseRssMB, trials }));
  `;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.on('exit', (c) => (c === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`loader exited ${c}`))));
  });
}

// ---------------------------------------------------------------- 32 peers

async function scale(n: number, trials: number): Promise<{ p50: number; p95: number; msgsPerTrial: number }> {
  // One event loop runs all n peers here: slower heartbeats keep that CPU for the trials.
  const peers = await swarm(n, `scale-${n}`, 2000);
  try {
    const sid = peers[0]!.getStudy(`scale-${n}`)!.studyId;
    await sleep(3000);
    const accepted = () => peers.reduce((s, p) => s + (p.stats().counters['gossip:accepted'] ?? 0) + (p.stats().counters['gossip:buffered'] ?? 0), 0);
    const before = accepted();
    const prop: number[] = [];
    for (let k = 0; k < trials; k++) {
      const src = peers[(k * 7) % n]!;
      const seen = new Set<PeerStorage>();
      const t = src.createTrial(sid);
      const offs = peers.filter((p) => p !== src).map((p) =>
        p.onTrialsChanged(() => {
          try {
            if (p.getTrial(sid, t.trialId).state === 'COMPLETE') seen.add(p);
          } catch {
            /* not yet */
          }
        }),
      );
      await sleep(10);
      const t0 = performance.now();
      await src.finishTrial(sid, t.trialId, 'COMPLETE', [k]);
      await until(() => seen.size === n - 1, 60_000, `trial ${k} on all ${n} peers`);
      prop.push(performance.now() - t0);
      for (const off of offs) off();
    }
    await sleep(500);
    return { p50: quantile(prop, 0.5), p95: quantile(prop, 0.95), msgsPerTrial: (accepted() - before) / trials };
  } finally {
    await Promise.all(peers.map((p) => p.close()));
  }
}

export default async function (ctx: BenchContext): Promise<void> {
  setVerbosity('error');
  const q = ctx.quick;
  const data: Record<string, unknown> = {};
  const md: string[] = [];
  try {
    // Latency.
    const lat: [number, Awaited<ReturnType<typeof latency>>][] = [];
    for (const n of [3, 8]) {
      const r = await latency(n, q ? 10 : 40);
      ctx.log(`latency ${n} peers: p50 ${fmt(r.p50)} ms, p95 ${fmt(r.p95)} ms (${r.samples} samples)`);
      lat.push([n, r]);
    }
    data['latency'] = Object.fromEntries(lat);
    const save = () => ctx.writeResult('replication', data, md.join('\n'));
    md.push('### Replication latency (tell on one peer -> COMPLETE visible on another; in-process peers, TCP loopback)', '');
    md.push(table(['peers', 'p50 ms', 'p95 ms', 'p95 until all peers ms', 'samples'], lat.map(([n, r]) => [n, fmt(r.p50), fmt(r.p95), fmt(r.all), r.samples])), '');
    await save();

    // Throughput.
    const tp: [number, Awaited<ReturnType<typeof throughput>>][] = [];
    for (const n of q ? [1, 2] : [1, 2, 4, 8]) {
      const r = await throughput(n, q ? 3 : 8);
      ctx.log(`throughput ${n} peer processes: ${fmt(r.trialsPerSec)} trials/s (${r.total} trials, replicas agree: ${r.agreed})`);
      tp.push([n, r]);
    }
    data['throughput'] = Object.fromEntries(tp);
    md.push('### Throughput (peer processes, RandomSampler, trivial objective, every trial durable before tell returns)', '');
    md.push(table(['peers', 'trials/s', 'trials', 'all replicas agree'], tp.map(([n, r]) => [n, fmt(r.trialsPerSec), r.total, r.agreed ? 'yes' : 'NO'])), '');
    md.push('Optuna side by side (PostgreSQL / JournalStorage) was not run in this bench.', '');
    await save();

    // Partition heal.
    const heal = await partitionHeal(q ? 200 : 1000);
    ctx.log(`partition heal 2 x ${heal.total / 2}: ${fmt(heal.ms)} ms`);
    data['partitionHeal'] = heal;
    md.push('### Partition heal', '', table(['trials per side', 'converged after ms', 'target'], [[heal.total / 2, fmt(heal.ms), '< 5000']]), '');
    await save();

    // Big replica.
    const nBig = q ? 1000 : 10_000;
    const dir = await tempDir();
    const built = await buildReplica(dir, nBig);
    const loaded = await loadInChild(dir);
    ctx.log(`replica of ${nBig}: ${fmt(built.msPerTrialAtEnd)} ms/trial at the end, ${fmt(built.sizeBytes / 2 ** 20)} MiB on disk, load ${fmt(loaded.loadMs)} ms, RSS ${fmt(loaded.rssMB)} MB`);
    data['replica'] = { trials: nBig, ...built, ...loaded };
    md.push(`### A ${nBig}-trial replica (10 params, 20 intermediate values each; 2 changes per trial)`, '');
    md.push(
      table(
        ['trials', 'write ms/trial (last 200)', 'size on disk MiB', 'load ms', 'RSS after load MB', 'targets'],
        [[loaded.trials, fmt(built.msPerTrialAtEnd), fmt(built.sizeBytes / 2 ** 20), fmt(loaded.loadMs), fmt(loaded.rssMB), 'RSS < 150 MB, load < 3000 ms']],
      ),
      '',
      `RSS includes Node, tsx and libp2p loaded before the replica opens (${fmt(loaded.baseRssMB)} MB in that process).`,
      '',
    );
    await save();

    // Scale.
    const nScale = q ? 12 : 32;
    const sc = await scale(nScale, q ? 5 : 20);
    ctx.log(`${nScale} peers: propagation p50 ${fmt(sc.p50)} ms p95 ${fmt(sc.p95)} ms, ${fmt(sc.msgsPerTrial)} gossip messages received per trial`);
    data['scale'] = { peers: nScale, ...sc };
    md.push(`### ${nScale} in-process peers`, '');
    md.push(table(['peers', 'propagation to all p50 ms', 'p95 ms', 'gossip messages received per trial (swarm total)'], [[nScale, fmt(sc.p50), fmt(sc.p95), fmt(sc.msgsPerTrial)]]), '');
    md.push('A trial is 2 changes (RUNNING record, terminal record); each peer validates each message once. All peers share one event loop here, so propagation is CPU-bound (heartbeats every 2 s).', '');

    await ctx.writeResult('replication', data, md.join('\n'));
  } finally {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}
