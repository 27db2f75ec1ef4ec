/**
 * QMCSampler and CmaEsSampler with two real peer processes on 127.0.0.1 (PeerStorage, real data dirs,
 * test/fixtures/sampler-peer.ts) running one study at once. QMC: the peers walk one Sobol sequence
 * (each trial claims the smallest index no known trial holds), so they do not draw the same points,
 * as two unconnected QMC samplers would (both would take indices 0, 1, 2, ...). CMA-ES: both peers
 * sample the same generations of one run (the state is replayed from the shared history) and never
 * draw the same point.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../fixtures/wait.js';

const WORKER = path.join(import.meta.dirname, '..', 'fixtures', 'sampler-peer.ts');
const dirs: string[] = [];
const procs = new Set<ChildProcess>();
after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

type Reply = Record<string, unknown> & { ev: string; id?: number };
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
  systemAttrs: Record<string, unknown>;
}

class Peer {
  addrs: string[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcess;

  private constructor(cfg: Record<string, unknown>) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
    procs.add(this.proc);
    this.exited = new Promise((r) => this.proc.on('exit', (code) => (procs.delete(this.proc), r(code))));
    let ready!: () => void;
    this.ready = new Promise((r) => (ready = r));
    readline.createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      let msg: Reply;
      try {
        msg = JSON.parse(line) as Reply;
      } catch {
        return;
      }
      if (msg.ev === 'ready') {
        this.addrs = msg['addrs'] as string[];
        ready();
      } else if (msg.id !== undefined) this.waiting.get(msg.id)?.(msg);
    });
  }

  static async start(cfg: Record<string, unknown>): Promise<Peer> {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'peertune-qmc-cma-'));
    dirs.push(dataDir);
    const p = new Peer({ ...cfg, dataDir });
    await Promise.race([p.ready, p.exited.then((c) => Promise.reject(new Error(`peer exited with ${c} before it was ready`)))]);
    return p;
  }

  send(cmd: Record<string, unknown>): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (r) => {
        this.waiting.delete(id);
        if (r.ev === 'error') reject(new Error(String(r['message'])));
        else resolve(r);
      });
      this.proc.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n');
    });
  }

  async dump(): Promise<{ owner: string; trials: TrialDump[] }> {
    const r = await this.send({ cmd: 'dump' });
    return { owner: r['owner'] as string, trials: r['trials'] as TrialDump[] };
  }

  async quit(): Promise<void> {
    await this.send({ cmd: 'quit' });
    await this.exited;
  }
}

async function allComplete(p: Peer, n: number): Promise<TrialDump[]> {
  return waitFor(`the replica to hold ${n} finished trials`, 30_000, async () => {
    const { trials } = await p.dump();
    const done = trials.filter((t) => t.state === 'COMPLETE');
    return done.length === n ? done : null;
  });
}

test('QMCSampler on two peers: one shared Sobol sequence, no repeated points (but for a same-moment race)', { timeout: 120_000 }, async () => {
  const a = await Peer.start({ create: true, studyName: 'qmc-peers', sampler: 'qmc', seed: 0 });
  const b = await Peer.start({ join: a.addrs, studyName: 'qmc-peers', sampler: 'qmc', seed: 0 });
  const n = 12;
  await Promise.all([a.send({ cmd: 'run', n, sleepMs: 120 }), b.send({ cmd: 'run', n, sleepMs: 120 })]);
  const owners = new Set([(await a.dump()).owner, (await b.dump()).owner]);
  for (const p of [a, b]) {
    const trials = await allComplete(p, 2 * n);
    const indexed = trials.filter((t) => typeof t.systemAttrs['qmc:index'] === 'number');
    const idx = indexed.map((t) => t.systemAttrs['qmc:index'] as number);
    assert.ok(indexed.length >= 2 * n - 2, `only ${indexed.length} of ${2 * n} trials were QMC points`);
    // Both peers drew from the sequence, interleaved in one index range.
    assert.deepEqual(new Set(indexed.map((t) => t.owner)), owners);
    const repeats = idx.length - new Set(idx).size;
    assert.ok(repeats <= 2, `${repeats} indices were claimed twice (${idx.join(',')}); unconnected samplers would repeat ${n - 1}`);
    assert.ok(Math.max(...idx) < idx.length + 2, `indices ${idx.join(',')} leave holes: the claims were not shared`);
    const keys = indexed.map((t) => JSON.stringify(t.params));
    assert.equal(keys.length - new Set(keys).size, repeats, 'only a repeated index repeats a point');
  }
  await Promise.all([a.quit(), b.quit()]);
});

test('CmaEsSampler on two peers: one run, shared generations, no repeated points', { timeout: 120_000 }, async () => {
  const a = await Peer.start({ create: true, studyName: 'cma-peers', sampler: 'cmaes', seed: 1 });
  const b = await Peer.start({ join: a.addrs, studyName: 'cma-peers', sampler: 'cmaes', seed: 2 });
  const n = 18;
  await Promise.all([a.send({ cmd: 'run', n, sleepMs: 40 }), b.send({ cmd: 'run', n, sleepMs: 40 })]);
  const owners = new Set([(await a.dump()).owner, (await b.dump()).owner]);
  for (const p of [a, b]) {
    const trials = await allComplete(p, 2 * n);
    const keys = trials.map((t) => JSON.stringify(t.params));
    assert.equal(new Set(keys).size, keys.length, 'two trials ran the same point');
    const byGen = new Map<string, Set<string>>();
    for (const t of trials) {
      const tag = t.systemAttrs['cma'] as { r: number; g: number } | undefined;
      if (!tag) continue;
      const k = `${tag.r}/${tag.g}`;
      if (!byGen.has(k)) byGen.set(k, new Set());
      byGen.get(k)!.add(t.owner);
    }
    const shared = [...byGen.values()].filter((s) => s.size === 2).length;
    assert.ok(shared >= 2, `generations with trials of both peers: ${shared} (of ${byGen.size}); the peers ran separate CMA-ES runs`);
    // 36 trials at a population of 6: the run moved through several generations.
    assert.ok(byGen.size >= 4, `only ${byGen.size} generations`);
    assert.deepEqual(new Set(trials.map((t) => t.owner)), owners);
  }
  await Promise.all([a.quit(), b.quit()]);
});
