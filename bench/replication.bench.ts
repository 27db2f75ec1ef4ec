/**
 * Replication benchmarks (issues 3 and 8): latency from tell on one peer to visible on another (3 and
 * 8 peers), swarm throughput with 1/2/4/8/16 peer processes next to Optuna, the receiving CPU cost per
 * remote trial event and a joiner's catch-up at 1,000 / 10,000 / 100,000 trials (processes), partition
 * heal of 2 x 10,000 trials, 10,000- and 100,000-trial replicas (RSS, size on disk, load time), and
 * propagation across 64 in-process peers (the issue's figure). PEERTUNE_BENCH_MAX_TRIALS caps the largest study built.
 * Peers talk TCP over 127.0.0.1; in-process peers share one event loop, so their figures include
 * that contention (on a 2-core machine that also runs other work).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { createStudy, loadStudy, RandomSampler, setVerbosity } from '../src/index.js';
import { openPeerStorage, type PeerStorage } from '../src/storage/replicated/index.js';
import type { BenchContext } from './lib.js';
import { OPTUNA_SCRIPTS, PYTHON, fmt, optunaAvailable, quantile, table } from './lib.js';

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
async function swarm(n: number, name: string, heartbeatIntervalMs = 500, joinWithinMs = 60_000): Promise<PeerStorage[]> {
  const first = await openPeerStorage({ dataDir: await tempDir(), heartbeatIntervalMs, staleAfterMs: 60_000 });
  await createStudy({ studyName: name, storage: first });
  const peers = [first];
  for (let i = 1; i < n; i++) {
    const join = [first.multiaddrs()[0]!, peers[Math.floor(Math.random() * peers.length)]!.multiaddrs()[0]!];
    peers.push(await openPeerStorage({ dataDir: await tempDir(), join: [...new Set(join)], heartbeatIntervalMs, staleAfterMs: 60_000 }));
  }
  const got = await Promise.all(peers.slice(1).map((p) => p.waitForStudy(name, joinWithinMs)));
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
  kill(): void;
}

/** Extra node flags for the first peer process only, e.g. PEERTUNE_BENCH_PEER_FLAGS=--cpu-prof to profile one peer. */
const PEER_FLAGS = (process.env['PEERTUNE_BENCH_PEER_FLAGS'] ?? '').split(' ').filter(Boolean);

function child(cfg: object, flags: string[] = []): Child {
  const proc = spawn(process.execPath, [...flags, '--import', 'tsx', FIXTURE, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: proc.stdout! });
  const waits = new Map<number, (m: Record<string, unknown>) => void>();
  let readyResolve!: (m: Record<string, unknown>) => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<Record<string, unknown>>((r, j) => ((readyResolve = r), (readyReject = j)));
  // A peer that dies before it is ready (e.g. it could not get the study in time on a loaded machine) fails the run instead of hanging it.
  proc.on('exit', (code) => readyReject(new Error(`a peer process exited (${code}) before it was ready`)));
  rl.on('line', (l) => {
    const m = JSON.parse(l) as Record<string, unknown>;
    if (m['ev'] === 'ready') readyResolve(m);
    else waits.get(m['id'] as number)?.(m);
  });
  let id = 0;
  return {
    ready,
    exited: new Promise((r) => proc.on('exit', () => r())),
    kill: () => void proc.kill('SIGKILL'),
    send: (cmd) =>
      new Promise((resolve) => {
        const i = ++id;
        waits.set(i, resolve);
        proc.stdin!.write(JSON.stringify({ ...cmd, id: i }) + '\n');
      }),
  };
}

/** Peers run with the product's default heartbeat interval (1 s): every heartbeat costs each peer in proportion to the swarm. */
/**
 * CPU seconds (process.cpuUsage, all threads) that every peer process spends on untimed trials before
 * a throughput window (see throughput()). Equal CPU, not equal wall time: a fresh Node.js process
 * spends its first seconds of CPU in V8's compilers (a perf profile of 16 peer processes, 10 s in:
 * 28 % of all CPU in TurboFan; 17 % at 40 s), and N processes on the 2 cores get 2 / N of the CPU
 * each, so a fixed wall-clock warm-up left the 16-process row measuring processes 8x colder than the
 * 1-process row (16 processes after 6 s: 409 / 380 trials/s; after 30 s: 1,035 / 761). A peer of a real
 * run is past this within its first minutes; how fast the swarm is meanwhile is logged (warm-up rate).
 */
export const WARMUP_CPU_SECONDS = 6;
/** Longest wall time of that warm-up (a row whose processes cannot get the CPU in time is measured colder, and says so). */
const WARMUP_MAX_SECONDS = 120;

/** `callback`: each peer's optimize has one callback (which waits for its trial's settled number: study.ts). */
export async function throughput(
  n: number,
  seconds: number,
  heartbeatIntervalMs = 1000,
  callback = false,
): Promise<{ trialsPerSec: number; total: number; agreed: boolean; counters: Record<string, number>; cpuMsPerTrial: number; ceiling: number; idleCpuMsPerSec: number; warmup: { seconds: number; trialsPerSec: number; minCpuSeconds: number } }> {
  const name = `tp-${n}`;
  const first = child({ dataDir: await tempDir(), create: true, studyName: name, sampler: 'random', seed: 1, heartbeatIntervalMs, staleAfterMs: 30_000 }, PEER_FLAGS);
  const r = await first.ready;
  const started: Child[] = [first];
  const rest = Array.from({ length: n - 1 }, async (_, i) => {
    const c = child({ dataDir: await tempDir(), join: r['addrs'], studyName: name, sampler: 'random', seed: i + 2, heartbeatIntervalMs, staleAfterMs: 30_000 });
    started.push(c);
    await c.ready;
    return c;
  });
  let peers: Child[];
  try {
    peers = [first, ...(await Promise.all(rest))];
  } catch (e) {
    await Promise.allSettled(rest);
    for (const c of started) c.kill();
    throw e;
  }
  // Steady state: every peer connected to every other (peers learn each other's addresses from
  // heartbeats and dial), then two heartbeats so their neighbour lists are out (the relay rule).
  const formed = Date.now();
  for (;;) {
    const dumps = await Promise.all(peers.map((p) => p.send({ cmd: 'dump' })));
    if (dumps.every((d) => (d['peers'] as string[]).length >= n - 1) || Date.now() - formed > 30_000) break;
    await sleep(200);
  }
  await sleep(2 * heartbeatIntervalMs + 500);
  // CPU time of each peer process (process.cpuUsage, all its threads): what the swarm spends per trial,
  // and what its busiest peer does (with a core per peer, that one bounds it).
  const cpuOf = async (): Promise<number[]> => (await Promise.all(peers.map((p) => p.send({ cmd: 'count' })))).map((m) => ((m['cpu'] as { user: number }).user + (m['cpu'] as { system: number }).system) / 1000);
  // Warm-up, not timed, until every process has spent WARMUP_CPU_SECONDS of CPU:
  // V8 has compiled the hot paths, and a saturated swarm's gossip pacing (src/storage/replicated/pacing.ts)
  // has settled (the gap doubles once per heartbeat), as in any run past its first minutes.
  const w0 = performance.now();
  const wc0 = await cpuOf();
  let warmTotal = 0;
  let warmCpu = 0;
  for (;;) {
    const warm = await Promise.all(peers.map((p) => p.send({ cmd: 'run', timeout: 2, trivial: true, callback })));
    warmTotal += warm.reduce((s, m) => s + (m['done'] as number), 0);
    warmCpu = Math.min(...(await cpuOf()).map((c, i) => (c - wc0[i]!) / 1000));
    if (warmCpu >= WARMUP_CPU_SECONDS || performance.now() - w0 > WARMUP_MAX_SECONDS * 1000) break;
  }
  const warmSec = (performance.now() - w0) / 1000;
  // Each process's CPU rate with no trials running (heartbeats, timers) over 2 s, to tell it from the per-trial part.
  const idle0 = await cpuOf();
  const i0 = performance.now();
  await sleep(2000);
  const idleMsPerSec = (await cpuOf()).map((c, i) => (c - idle0[i]!) / ((performance.now() - i0) / 1000));
  const cpu0 = await cpuOf();
  const t0 = performance.now();
  const ran = await Promise.all(peers.map((p) => p.send({ cmd: 'run', timeout: seconds, trivial: true, callback })));
  const wall = (performance.now() - t0) / 1000;
  const cpuMs = (await cpuOf()).map((c, i) => c - cpu0[i]!);
  const total = ran.reduce((s, m) => s + (m['done'] as number), 0);
  // Every replica converges on the same count.
  let agreed = false;
  let counters: Record<string, number> = {};
  for (let i = 0; i < 50 && !agreed; i++) {
    const dumps = await Promise.all(peers.map((p) => p.send({ cmd: 'dump' })));
    agreed = dumps.every((d) => (d['trials'] as { state: string }[]).filter((t) => t.state === 'COMPLETE').length === warmTotal + total);
    // Swarm totals of the replication counters (gossip accepted, sync sessions, rejects): where the work went.
    counters = {};
    for (const d of dumps) for (const [k, v] of Object.entries(d['stats'] as Record<string, number>)) counters[k] = (counters[k] ?? 0) + v;
    if (!agreed) await sleep(200);
  }
  await Promise.all(peers.map((p) => p.send({ cmd: 'quit' })));
  await Promise.all(peers.map((p) => p.exited));
  // With a core of its own, process i spends idle_i + v_i x per second at swarm throughput x (v_i: its CPU
  // per swarm trial beyond its idle rate), so the swarm cannot pass min_i (1000 - idle_i) / v_i.
  const ceiling = Math.min(...cpuMs.map((c, i) => (1000 - idleMsPerSec[i]!) / Math.max(1e-6, (c - idleMsPerSec[i]! * wall) / total)));
  return { trialsPerSec: total / wall, total, agreed, counters, cpuMsPerTrial: cpuMs.reduce((a, b) => a + b, 0) / total, ceiling, idleCpuMsPerSec: idleMsPerSec.reduce((a, b) => a + b, 0), warmup: { seconds: warmSec, trialsPerSec: warmTotal / warmSec, minCpuSeconds: warmCpu } };
}

// ---------------------------------------------------------------- Optuna side by side

type OptunaStorage = { kind: 'rdb'; url: string } | { kind: 'journal'; path: string };

interface OptunaRun {
  trialsPerSec: number;
  total: number;
  failed: number;
  errors: number;
  lastError: string | null;
}

/** Runs a bench/optuna/throughput.py mode to completion and returns its last JSON line. */
function optunaOnce(mode: string, job: object): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const p = spawn(PYTHON, [path.join(OPTUNA_SCRIPTS, 'throughput.py'), mode], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`throughput.py ${mode} exited ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>);
    });
    p.stdin!.end(JSON.stringify(job) + '\n');
  });
}

/**
 * n Optuna worker processes on one study: all import Optuna and load the study first, then start
 * their window together on "go"; trials/s = COMPLETE trials in the storage / wall time of the window.
 */
export async function optunaThroughput(n: number, seconds: number, storage: OptunaStorage, study: string): Promise<OptunaRun> {
  await optunaOnce('create', { storage, study });
  const procs = Array.from({ length: n }, (_, i) => {
    const p = spawn(PYTHON, [path.join(OPTUNA_SCRIPTS, 'throughput.py'), 'worker'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    const lines = readline.createInterface({ input: p.stdout! });
    const msgs: Record<string, unknown>[] = [];
    let wake: (() => void) | null = null;
    lines.on('line', (l) => {
      try {
        msgs.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        /* not ours */
      }
      wake?.();
    });
    const exited = new Promise<number | null>((r) => p.on('close', (c) => (r(c), wake?.())));
    let code: number | null | undefined;
    void exited.then((c) => (code = c));
    const next = async (ev: string): Promise<Record<string, unknown>> => {
      for (;;) {
        const i = msgs.findIndex((m) => m['ev'] === ev);
        if (i >= 0) return msgs.splice(i, 1)[0]!;
        if (code !== undefined) throw new Error(`Optuna worker exited ${code} before "${ev}": ${err.trim().split('\n').slice(-3).join(' | ')}`);
        await new Promise<void>((r) => (wake = r));
      }
    };
    p.stdin!.write(JSON.stringify({ storage, study, seed: i + 1, seconds }) + '\n');
    return { p, next, exited };
  });
  try {
    await Promise.all(procs.map((x) => x.next('ready')));
    const t0 = performance.now();
    for (const x of procs) x.p.stdin!.write('go\n');
    const ran = await Promise.all(procs.map((x) => x.next('ran')));
    const wall = (performance.now() - t0) / 1000;
    await Promise.all(procs.map((x) => x.exited));
    const counts = (await optunaOnce('count', { storage, study })) as Record<string, number>;
    const total = counts['COMPLETE'] ?? 0;
    const errors = ran.reduce((s, m) => s + (m['errors'] as number), 0);
    const lastError = (ran.map((m) => m['error'] as string | null).find((e) => e) ?? null);
    // A trial left RUNNING by a worker whose storage call raised counts as failed too.
    return { trialsPerSec: total / wall, total, failed: (counts['FAIL'] ?? 0) + (counts['RUNNING'] ?? 0), errors, lastError };
  } finally {
    for (const x of procs) if (x.p.exitCode === null) x.p.kill('SIGKILL');
  }
}

/** A throwaway PostgreSQL cluster on 127.0.0.1 in a temp dir, run as the postgres user when we are root. */
export async function startPostgres(): Promise<{ url: string; stop(): Promise<void> } | { skip: string }> {
  let bin: string | undefined;
  try {
    const versions = (await readdir('/usr/lib/postgresql')).sort((a, b) => Number(b) - Number(a));
    bin = versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find((b) => existsSync(`${b}/initdb`));
  } catch {
    /* none */
  }
  if (!bin) return { skip: 'PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb; apt-get install postgresql); Optuna-on-PostgreSQL rows skipped' };
  try {
    execFileSync(PYTHON, ['-c', 'import psycopg2'], { stdio: 'ignore' });
  } catch {
    return { skip: 'psycopg2 is not importable by /usr/bin/python3 (apt-get install python3-psycopg2); Optuna-on-PostgreSQL rows skipped' };
  }
  const root = process.getuid?.() === 0;
  const dir = await tempDir();
  const data = path.join(dir, 'pg');
  if (root) execFileSync('chown', ['postgres:postgres', dir]);
  const as = (cmd: string, args: string[]) => (root ? execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe', cwd: '/' }) : execFileSync(cmd, args, { stdio: 'pipe', cwd: '/' }));
  const port = await freePort();
  try {
    as(`${bin}/initdb`, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    // fsync stays on: Optuna's figures should be with the durability users run it with.
    as(`${bin}/pg_ctl`, ['-D', data, '-l', path.join(dir, 'pg.log'), '-w', '-t', '30', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=100`, 'start']);
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return { skip: `could not start PostgreSQL (${(err.stderr?.toString() || err.message).trim().split('\n').slice(-2).join(' ')}); Optuna-on-PostgreSQL rows skipped` };
  }
  return {
    url: `postgresql+psycopg2://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      try {
        as(`${bin}/pg_ctl`, ['-D', data, '-m', 'fast', '-w', 'stop']);
      } catch (e) {
        console.error(`stopping the benchmark's PostgreSQL failed: ${(e as Error).message}`);
      }
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------- partition heal

export async function partitionHeal(perSide: number): Promise<{ ms: number; total: number }> {
  const [a, b] = await swarm(2, 'heal');
  try {
    const sid = a!.getStudy('heal')!.studyId;
    await a!.blockPeers([b!.peerId]);
    await b!.blockPeers([a!.peerId]);
    await sleep(300);
    for (const s of [a!, b!]) await writeTrials(s, sid, perSide, 2, 0);
    const t0 = performance.now();
    a!.unblockPeers([b!.peerId]);
    b!.unblockPeers([a!.peerId]);
    const want = 2 * perSide;
    try {
      await until(() => a!.getAllTrials(sid).length === want && b!.getAllTrials(sid).length === want, 60_000, 'heal');
    } catch (e) {
      // What each side holds, whom it is connected to and what it counted: the figures to read a heal that stalls by.
      const side = (s: PeerStorage) => {
        const st = s.stats();
        return { trials: s.getAllTrials(sid).length, connected: st.connectedPeers.length, counters: st.counters, study: st.studies.find((x) => x.studyId === sid) };
      };
      throw new Error(`${(e as Error).message}; a: ${JSON.stringify(side(a!))}; b: ${JSON.stringify(side(b!))}`);
    }
    return { ms: performance.now() - t0, total: want };
  } finally {
    await a!.close();
    await b!.close();
  }
}

// ---------------------------------------------------------------- a 10,000-trial replica

/**
 * Writes `n` finished trials (10 params, 20 intermediate values) into a study: 256 at a time, each
 * trial's RUNNING record committed (one change per shard) before its terminal record, as a worker
 * would, but with many trials in flight so one disk sync covers many.
 */
async function writeTrials(s: PeerStorage, sid: string, n: number, nParams = 10, steps = 20): Promise<void> {
  const dist = { type: 'float', low: 0, high: 1, log: false, step: null } as const;
  for (let made = 0; made < n; ) {
    const ids: string[] = [];
    for (let k = 0; k < 256 && made < n; k++, made++) {
      const t = s.createTrial(sid);
      const params: Record<string, number> = {};
      const dists: Record<string, typeof dist> = {};
      for (let p = 0; p < nParams; p++) {
        params[`p${p}`] = Math.random();
        dists[`p${p}`] = dist;
      }
      s.setTrialParams(sid, t.trialId, params, dists);
      ids.push(t.trialId);
    }
    await new Promise((r) => setImmediate(r)); // the RUNNING records go out as their own changes
    await Promise.all(
      ids.map((id) => {
        for (let step = 0; step < steps; step++) s.setTrialIntermediateValue(sid, id, step, Math.random());
        return s.finishTrial(sid, id, 'COMPLETE', [Math.random()]);
      }),
    );
  }
}

async function buildReplica(dir: string, nTrials: number): Promise<{ msPerTrialAtEnd: number; sizeBytes: number; buildSec: number }> {
  const s = await openPeerStorage({ dataDir: dir, listen: [] });
  const info = await s.createStudy({ studyName: 'big', directions: ['minimize'] });
  const t0 = performance.now();
  await writeTrials(s, info.studyId, nTrials - 512);
  const lastBatch = performance.now();
  await writeTrials(s, info.studyId, 512);
  const msPerTrialAtEnd = (performance.now() - lastBatch) / 512;
  const buildSec = (performance.now() - t0) / 1000;
  const sizeBytes = await s.sizeOnDisk();
  await s.close();
  return { msPerTrialAtEnd, sizeBytes, buildSec };
}

/**
 * The compiled storage module when `npm run bench` has just built it (newer than every source file),
 * else the TypeScript source through tsx: what a user runs is compiled JS, and tsx's compiler alone
 * adds tens of MB to a process.
 */
function storageModule(): { spec: string; runtime: 'dist' | 'tsx' } {
  const root = path.resolve(import.meta.dirname, '..');
  const dist = path.join(root, 'dist', 'storage', 'replicated', 'index.js');
  const newestSrc = (dir: string): number => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newestSrc(p) : statSync(p).mtimeMs);
    }
    return t;
  };
  if (existsSync(dist) && statSync(dist).mtimeMs >= newestSrc(path.join(root, 'src'))) return { spec: dist, runtime: 'dist' };
  return { spec: path.join(root, 'src', 'storage', 'replicated', 'index.ts'), runtime: 'tsx' };
}

interface Loaded {
  loadMs: number;
  rssMB: number;
  baseRssMB: number;
  heapUsedMB: number;
  externalMB: number;
  trials: number;
  runtime: 'dist' | 'tsx';
}

/** Loads the replica in a fresh process so RSS is the replica's alone. */
function loadInChild(dir: string): Promise<Loaded> {
  const mod = storageModule();
  const code = `
    const { openPeerStorage } = await import(${JSON.stringify(mod.spec)});
    const mb = (x) => x / 2 ** 20;
    globalThis.gc?.();
    const baseRssMB = mb(process.memoryUsage().rss);
    const t0 = performance.now();
    const s = await openPeerStorage({ dataDir: ${JSON.stringify(dir)}, listen: [] });
    const id = s.getStudy('big').studyId;
    const trials = s.getAllTrials(id).length;
    const loadMs = performance.now() - t0;
    globalThis.gc?.();
    const m = process.memoryUsage();
    await s.close();
    console.log(JSON.stringify({ loadMs, rssMB: mb(m.rss), baseRssMB, heapUsedMB: mb(m.heapUsed), externalMB: mb(m.external), trials, runtime: ${JSON.stringify(mod.runtime)} }));
  `;
  const flags = mod.runtime === 'tsx' ? ['--import', 'tsx'] : [];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', ...flags, '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.on('exit', (c) => (c === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`loader exited ${c}`))));
  });
}


// ---------------------------------------------------------------- receiving cost and joiner (processes)

interface Receiving {
  trials: number;
  buildSec: number;
  joinSec: number;
  joinerRssMB: number;
  cpuMsPerEvent: number;
  events: number;
  idleCpuMsPerSec: number;
  counters: Record<string, number>;
}

/**
 * A sender process builds a study of `n` trials; a receiver process joins it (the joiner catch-up
 * figure: from spawn until it holds all n) and then receives 2 x `k` trial events (RUNNING, COMPLETE)
 * sent a few ms apart; its CPU time (process.cpuUsage, minus its idle rate measured just before)
 * divided by the events is the receiving cost per remote trial event.
 */
export async function receiving(n: number, k: number): Promise<Receiving> {
  const name = `recv-${n}`;
  // One owner writes the whole study: past the default quota of 100,000 trials per owner (issue 15
  // F15) the receiver would refuse the events, so it admits the study as a user of such a study would.
  const cfg = { heartbeatIntervalMs: 1000, staleAfterMs: 60_000, sampler: 'random', ownerQuota: { trials: 2 * n + 100_000, bytes: 2 ** 31 } };
  const s = child({ ...cfg, dataDir: await tempDir(), create: true, studyName: name, seed: 1 });
  const sr = await s.ready;
  const b0 = performance.now();
  await s.send({ cmd: 'build', count: n, params: 2, steps: 0 });
  const buildSec = (performance.now() - b0) / 1000;
  const j0 = performance.now();
  const r = child({ ...cfg, dataDir: await tempDir(), join: sr['addrs'], studyName: name, seed: 2 }, (process.env['PEERTUNE_BENCH_RECV_FLAGS'] ?? '').split(' ').filter(Boolean));
  await r.ready;
  let c = await r.send({ cmd: 'count' });
  while ((c['complete'] as number) < n) {
    await sleep(100);
    c = await r.send({ cmd: 'count' });
  }
  const joinSec = (performance.now() - j0) / 1000;
  const cpu = (m: Record<string, unknown>): number => ((m['cpu'] as { user: number; system: number }).user + (m['cpu'] as { user: number; system: number }).system) / 1000;
  // Warm-up, not measured, in another study of the same two processes (this one keeps its n trials):
  // until the receiver has spent WARMUP_CPU_SECONDS of CPU since it joined, as every throughput peer does.
  // A fresh process's first seconds of CPU go largely to V8's compilers, in background threads that
  // process.cpuUsage counts: at 1,000 trials, 500 trials of warm-up gave 0.52 ms per event, 3,000 gave
  // 0.35, 8,000 0.36 (one run each); a peer of a real run is past that within its first minutes.
  const warmName = `${name}-warm`;
  const rc0 = cpu(c);
  let warmSent = 0;
  const w0 = performance.now();
  for (;;) {
    await s.send({ cmd: 'events', count: 250, sleepMs: 1, study: warmName });
    warmSent += 250;
    const w = await r.send({ cmd: 'count' });
    if (cpu(w) - rc0 >= WARMUP_CPU_SECONDS * 1000 || performance.now() - w0 > WARMUP_MAX_SECONDS * 1000) break;
  }
  const warmDeadline = performance.now() + 60_000;
  for (let w = await r.send({ cmd: 'count' }); ((w['completeByName'] as Record<string, number>)[warmName] ?? 0) < warmSent; w = await r.send({ cmd: 'count' })) {
    if (performance.now() > warmDeadline) throw new Error(`the receiver holds ${(w['completeByName'] as Record<string, number>)[warmName] ?? 0} of the ${warmSent} warm-up trials after 60 s`);
    await sleep(100);
  }
  // Idle rate (heartbeats, timers) over 3 s.
  await sleep(1000);
  const i0 = await r.send({ cmd: 'count' });
  const it0 = performance.now();
  await sleep(3000);
  const i1 = await r.send({ cmd: 'count' });
  const idleCpuMsPerSec = (cpu(i1) - cpu(i0)) / ((performance.now() - it0) / 1000);
  const e0 = performance.now();
  await s.send({ cmd: 'events', count: k, sleepMs: 4 });
  let e = await r.send({ cmd: 'count' });
  while ((e['complete'] as number) < n + k) {
    await sleep(100);
    e = await r.send({ cmd: 'count' });
  }
  const secs = (performance.now() - e0) / 1000;
  const cpuMsPerEvent = Math.max(0, cpu(e) - cpu(i1) - idleCpuMsPerSec * secs) / (2 * k);
  const joinerRssMB = e['rssMB'] as number;
  await Promise.all([s.send({ cmd: 'quit' }), r.send({ cmd: 'quit' })]);
  return { trials: n, buildSec, joinSec, joinerRssMB, cpuMsPerEvent, events: 2 * k, idleCpuMsPerSec, counters: e['stats'] as Record<string, number> };
}

// ---------------------------------------------------------------- 64 in-process peers

async function scale(n: number, trials: number): Promise<{ p50: number; p95: number; msgsPerTrial: number }> {
  // One event loop runs all n peers here: slower heartbeats keep that CPU for the trials.
  // 64 peers on one event loop of a loaded 2-core machine can take more than a minute to all join.
  const peers = await swarm(n, `scale-${n}`, 2000, 180_000);
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

    // Throughput: peertune peers, and Optuna workers on PostgreSQL and on a journal file, same window.
    const secs = q ? 3 : 8;
    const counts = q ? [1, 2] : [1, 2, 4, 8, 16];
    const tp: [number, Awaited<ReturnType<typeof throughput>>][] = [];
    const opt = optunaAvailable();
    const pg = opt.ok ? await startPostgres() : { skip: opt.why! };
    const skips: string[] = [];
    if ('skip' in pg) skips.push(pg.skip);
    if (!opt.ok) skips.push(opt.why!);
    const optPg: [number, OptunaRun | string][] = [];
    const optJournal: [number, OptunaRun | string][] = [];
    // Each row is the median of `reps` windows, the three systems alternated within each repetition
    // (and their order reversed every other one): this machine's throughput drifts by tens of percent
    // from one minute to the next, and one window per system let the drift decide the ratios.
    const reps = q ? 1 : 3;
    const optunaRun = async (label: string, n: number, storage: OptunaStorage): Promise<OptunaRun | string> => {
      try {
        const r = await optunaThroughput(n, secs, storage, `tp-${label}-${n}-${Math.random().toString(36).slice(2, 8)}`);
        ctx.log(`Optuna ${opt.version} ${label}, ${n} workers: ${fmt(r.trialsPerSec)} trials/s (${r.total} complete, ${r.failed} failed, ${r.errors} storage errors${r.lastError ? `, last: ${r.lastError}` : ''})`);
        return r;
      } catch (e) {
        ctx.log(`Optuna ${label}, ${n} workers: failed: ${(e as Error).message}`);
        return `error: ${(e as Error).message.slice(0, 200)}`;
      }
    };
    /** The run of median trials/s (the lower middle one of an even count), or the last error. */
    const medianRun = <T extends { trialsPerSec: number }>(runs: (T | string)[]): T | string | undefined => {
      const ok = runs.filter((r): r is T => typeof r !== 'string').sort((a, b) => a.trialsPerSec - b.trialsPerSec);
      return ok.length ? ok[(ok.length - 1) >> 1] : runs[runs.length - 1];
    };
    const runsOf = new Map<string, number[]>(); // `${system}/${n}` -> trials/s of every window
    const keep = (system: string, n: number, r: { trialsPerSec: number } | string) => {
      if (typeof r === 'string') return;
      const k = `${system}/${n}`;
      runsOf.set(k, [...(runsOf.get(k) ?? []), r.trialsPerSec]);
    };
    try {
      for (const n of counts) {
        const mine: Awaited<ReturnType<typeof throughput>>[] = [];
        const pgRuns: (OptunaRun | string)[] = [];
        const jRuns: (OptunaRun | string)[] = [];
        for (let rep = 0; rep < reps; rep++) {
          const steps: (() => Promise<void>)[] = [
            async () => {
              try {
                const r = await throughput(n, secs);
                const c = r.counters;
                ctx.log(`throughput ${n} peer processes: ${fmt(r.trialsPerSec)} trials/s after a warm-up of ${fmt(r.warmup.seconds)} s at ${fmt(r.warmup.trialsPerSec)} trials/s (${fmt(r.warmup.minCpuSeconds)} CPU s in its least-fed process) (${r.total} trials, replicas agree: ${r.agreed}; swarm CPU ${fmt(r.cpuMsPerTrial)} ms per trial (idle ${fmt(r.idleCpuMsPerSec)} ms/s in all), ceiling with a core per peer ${fmt(r.ceiling)} trials/s; swarm: ${c['gossip:accepted'] ?? 0} gossip messages accepted, ${c['sync:sessions-started'] ?? 0} sync sessions, ${c['sync:accepted-changes'] ?? 0} sync messages with changes, ${c['numbers:moved-finished'] ?? 0} numbers of finished trials moved, summed over the replicas)`);
                mine.push(r);
                keep('peertune', n, r);
              } catch (e) {
                ctx.log(`throughput ${n} peer processes: failed: ${(e as Error).message}`);
              }
            },
            async () => {
              if (!opt.ok || 'skip' in pg) return;
              const r = await optunaRun('postgresql', n, { kind: 'rdb', url: pg.url });
              pgRuns.push(r);
              keep('postgresql', n, r);
            },
            async () => {
              if (!opt.ok) return;
              const r = await optunaRun('journal', n, { kind: 'journal', path: path.join(await tempDir(), 'journal.log') });
              jRuns.push(r);
              keep('journal', n, r);
            },
          ];
          if (rep % 2 === 1) steps.reverse();
          for (const step of steps) await step();
        }
        const m = medianRun(mine);
        if (m && typeof m !== 'string') tp.push([n, { ...m, agreed: mine.every((r) => r.agreed) }]);
        const mp = medianRun(pgRuns);
        if (mp !== undefined) optPg.push([n, mp]);
        const mj = medianRun(jRuns);
        if (mj !== undefined) optJournal.push([n, mj]);
      }
    } finally {
      if (!('skip' in pg)) await pg.stop();
    }
    for (const s of skips) ctx.log(s);
    const allRuns = Object.fromEntries(runsOf);
    data['throughput'] = Object.fromEntries(tp);
    data['throughputRuns'] = { repetitions: reps, trialsPerSec: allRuns };
    data['optunaThroughput'] = { version: opt.version ?? null, seconds: secs, postgresql: Object.fromEntries(optPg), journalFile: Object.fromEntries(optJournal), skipped: skips };
    const cell = (rows: [number, OptunaRun | string][], n: number): [string, string] => {
      const r = rows.find((x) => x[0] === n)?.[1];
      if (r === undefined) return ['skipped', ''];
      if (typeof r === 'string') return ['error', ''];
      return [fmt(r.trialsPerSec), `${r.failed} / ${r.errors}`];
    };
    const windows = (system: string, n: number) => (allRuns[`${system}/${n}`] ?? []).map((x) => fmt(x)).join(' / ');
    md.push(`### Throughput (median of ${reps} window(s) of ${secs} s per row, the three systems alternated; trivial objective \`(x - 2)^2\`, RandomSampler on both sides; peertune's window follows an untimed warm-up that lasts until every peer process has spent ${WARMUP_CPU_SECONDS} s of CPU, so that V8 has compiled its hot paths and gossip pacing has settled in every row alike; the warm-up's own rate is in the log)`, '');
    md.push(
      table(
        ['processes', 'peertune trials/s', 'replicas agree', 'swarm CPU ms per trial', 'ceiling with a core per peer, trials/s', `Optuna ${opt.version ?? ''} PostgreSQL trials/s`, 'failed / errors', `Optuna JournalFileStorage trials/s`, 'failed / errors', 'peertune / PostgreSQL', 'peertune / journal', 'x the row before', 'finished numbers moved (sum over replicas; per trial)', 'windows: peertune; PostgreSQL; journal'],
        tp.map(([n, r], i) => {
          const [pgTps, pgFail] = cell(optPg, n);
          const [jTps, jFail] = cell(optJournal, n);
          const ratio = (x: string) => (Number.isFinite(Number(x)) && Number(x) > 0 ? `x${fmt(r.trialsPerSec / Number(x))}` : '');
          const before = i > 0 ? `x${fmt(r.trialsPerSec / tp[i - 1]![1].trialsPerSec)}` : '';
          const moved = r.counters['numbers:moved-finished'] ?? 0;
          return [n, fmt(r.trialsPerSec), r.agreed ? 'yes' : 'NO', fmt(r.cpuMsPerTrial), fmt(r.ceiling), pgTps, pgFail, jTps, jFail, ratio(pgTps), ratio(jTps), before, `${moved}; ${fmt(moved / Math.max(1, r.total))}`, `${windows('peertune', n)}; ${windows('postgresql', n)}; ${windows('journal', n)}`];
        }),
      ),
      '',
    );
    md.push(
      'peertune: one peer process each (a PeerStorage on its own data dir, TCP loopback), every trial in level with a sync write before tell returns (trials finished during one write share the next: group commit). ' +
        '"swarm CPU ms per trial": CPU time of every peer process over the window (process.cpuUsage, all threads) over the trials of the window; on this 2-core host the swarm cannot pass 2,000 / that figure. ' +
        '"ceiling with a core per peer": each process\'s CPU over the window split into its idle rate (heartbeats, timers; measured for 2 s with no trials just before) and a part per swarm trial v_i; with a core of its own it would spend idle_i + v_i x ms per second at swarm throughput x, so the swarm cannot pass min_i (1,000 - idle_i) / v_i. A bound from measured costs, not a measurement: on one core per peer, waits and batching differ. ' +
        '"finished numbers moved": display numbers of finished trials that a merge changed (counter numbers:moved-finished), summed over every replica, and that sum per trial of the window (warm-up included in the sum). ' +
        'Optuna: one worker process each, all loading the study before the common start; PostgreSQL is a fresh cluster started by the bench on 127.0.0.1 (fsync on, default settings), the journal is one file on local disk. ' +
        '"failed / errors" = trials left FAIL or RUNNING in the storage + exceptions that escaped `optimize` (lock or serialization errors). All processes share the 2 cores.',
      '',
    );
    for (const s of skips) md.push(`Skipped: ${s}`, '');
    await save();

    // What a callback costs: it receives its trial once the trial's number is settled (study.ts
    // settledTrial), so a worker with callbacks waits for the other peers' later trials or heartbeats.
    // Not a target; the same 4 processes with and without one callback, alternated.
    const cbRuns: { callback: boolean; trialsPerSec: number }[] = [];
    for (let rep = 0; rep < reps; rep++) {
      for (const callback of rep % 2 ? [true, false] : [false, true]) {
        try {
          const r = await throughput(4, secs, 1000, callback);
          ctx.log(`throughput 4 peer processes ${callback ? 'with' : 'without'} a callback: ${fmt(r.trialsPerSec)} trials/s (replicas agree: ${r.agreed}; ${r.counters['numbers:settle-timeout'] ?? 0} settle timeouts)`);
          cbRuns.push({ callback, trialsPerSec: r.trialsPerSec });
        } catch (e) {
          ctx.log(`throughput 4 peer processes ${callback ? 'with' : 'without'} a callback: failed: ${(e as Error).message}`);
        }
      }
    }
    const med = (xs: number[]): number => {
      const v = [...xs].sort((a, b) => a - b);
      return v.length ? v[(v.length - 1) >> 1]! : NaN;
    };
    const withCb = med(cbRuns.filter((r) => r.callback).map((r) => r.trialsPerSec));
    const withoutCb = med(cbRuns.filter((r) => !r.callback).map((r) => r.trialsPerSec));
    data['callbackThroughput'] = { processes: 4, withCallback: withCb, without: withoutCb, runs: cbRuns };
    md.push(
      `A callback's wait for its trial's settled number (4 processes, median of ${reps} window(s) each, alternated): ${fmt(withCb)} trials/s with one callback per peer, ${fmt(withoutCb)} without (x${fmt(withCb / withoutCb)}). Not a target: a trivial objective is the worst case, since each trial waits for the other peers' next trials.`,
      '',
    );
    await save();

    // Receiving cost per remote trial event, and a joiner catching up, in processes.
    const maxN = Number(process.env['PEERTUNE_BENCH_MAX_TRIALS'] ?? (q ? 10_000 : 100_000));
    const recv: Receiving[] = [];
    for (const n of [1000, 10_000, 100_000].filter((x) => x <= maxN)) {
      try {
        const r = await receiving(n, q ? 50 : 1000);
        ctx.log(`receiving at ${n} trials: ${fmt(r.cpuMsPerEvent)} CPU ms per remote trial event (${r.events} events; idle ${fmt(r.idleCpuMsPerSec)} ms/s subtracted); joiner caught up ${n} in ${fmt(r.joinSec)} s, RSS ${fmt(r.joinerRssMB)} MB (built in ${fmt(r.buildSec)} s)`);
        recv.push(r);
      } catch (e) {
        ctx.log(`receiving at ${n} trials: failed: ${(e as Error).message}`);
      }
      data['receiving'] = recv;
      await save();
    }
    const base = recv.find((r) => r.trials === 1000)?.cpuMsPerEvent;
    md.push('### Receiving cost and joiner catch-up (a sender process and a receiver process, TCP loopback)', '');
    md.push(
      table(
        ['trials in the study', 'CPU ms per remote trial event', 'x the 1,000-trial cost', 'joiner catch-up s', 'joiner RSS MB', 'targets'],
        recv.map((r) => [r.trials, fmt(r.cpuMsPerEvent), base ? `x${fmt(r.cpuMsPerEvent / base)}` : '', fmt(r.joinSec), fmt(r.joinerRssMB), r.trials === 100_000 ? '<= 0.3 ms and <= 1.5x; catch-up < 10 s' : '']),
      ),
      '',
      'An event is one trial record (RUNNING, then COMPLETE) gossiped by the sender 4 ms apart, measured after the receiver has spent ' + WARMUP_CPU_SECONDS + ' s of CPU taking in the events of a second study (V8 compiles the hot paths in background threads that process.cpuUsage counts; the measured study keeps its n trials); the receiver\'s process.cpuUsage() over the events, minus its idle rate measured for 3 s just before, divided by the events. Trials have 2 params. The joiner figure runs from spawning the receiver process (Node start included) until it holds every trial.',
      '',
    );
    await save();

    // Partition heal.
    const perSide = q ? 1000 : 10_000;
    const heal = await partitionHeal(perSide);
    ctx.log(`partition heal 2 x ${heal.total / 2}: ${fmt(heal.ms)} ms`);
    data['partitionHeal'] = heal;
    md.push('### Partition heal', '', table(['trials per side', 'converged after ms', 'target'], [[heal.total / 2, fmt(heal.ms), '< 5000']]), '');
    await save();

    // Big replicas.
    const bigRows: (string | number)[][] = [];
    const replicas: Record<string, unknown> = {};
    for (const nBig of (q ? [1000] : [10_000, 100_000]).filter((x) => x <= maxN)) {
      const dir = await tempDir();
      const built = await buildReplica(dir, nBig);
      const loaded = await loadInChild(dir);
      ctx.log(`replica of ${nBig}: built in ${fmt(built.buildSec)} s (${fmt(built.msPerTrialAtEnd)} ms/trial at the end), ${fmt(built.sizeBytes / 2 ** 20)} MiB on disk, load ${fmt(loaded.loadMs)} ms, RSS ${fmt(loaded.rssMB)} MB`);
      replicas[String(nBig)] = { ...built, ...loaded };
      bigRows.push([loaded.trials, fmt(built.msPerTrialAtEnd), fmt(built.sizeBytes / 2 ** 20), fmt(loaded.loadMs), fmt(loaded.rssMB), fmt(loaded.baseRssMB), fmt(loaded.heapUsedMB), fmt(loaded.externalMB), nBig === 10_000 ? 'RSS < 150 MB, load < 1000 ms' : 'RSS < 600 MB, load < 6000 ms']);
      await rm(dir, { recursive: true, force: true });
      data['replica'] = replicas;
      await save();
      if (loaded.runtime !== 'dist') ctx.log('(loaded through tsx: dist/ is missing or older than src/)');
    }
    md.push('### Replicas (10 params, 20 intermediate values each; a RUNNING and a terminal record per trial)', '');
    md.push(table(['trials', 'write ms/trial (last 512, 256 in flight)', 'size on disk MiB', 'load ms', 'RSS after load MB', 'of which before opening MB', 'JS heap MB', 'external (Automerge wasm, buffers) MB', 'targets'], bigRows), '');
    await save();

    // Scale.
    const nScale = q ? 12 : Number(process.env['PEERTUNE_BENCH_SCALE_PEERS'] ?? 64);
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
