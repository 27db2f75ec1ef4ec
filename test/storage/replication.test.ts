/**
 * Replicated studies with real peer processes on 127.0.0.1 and real data dirs: convergence, a joiner
 * catching up, partition and heal, kill -9 mid-trial, and constant liar across peers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../fixtures/wait.js';
import { formatParams } from '../../src/logging.js';

const FIXTURE = path.join(import.meta.dirname, '..', 'fixtures', 'replication-peer.ts');

interface TrialDump {
  trialId: string;
  number: number;
  owner: string;
  state: string;
  params: Record<string, number>;
  values: number[] | null;
  start: number | null;
  end: number | null;
  failReason: string | null;
}

interface Reply {
  ev: string;
  id?: number;
  [k: string]: unknown;
}

const dirs: string[] = [];
const procs = new Set<ChildProcess>();

after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'peertune-rep-'));
  dirs.push(d);
  return d;
}

class Peer {
  peerId = '';
  addrs: string[] = [];
  loadedTrials = 0;
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  private readyResolve!: (r: Reply) => void;
  readonly ready: Promise<Reply>;
  readonly exited: Promise<number | null>;
  readonly proc: ChildProcess;

  constructor(cfg: Record<string, unknown>) {
    this.ready = new Promise((r) => (this.readyResolve = r));
    this.proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
    procs.add(this.proc);
    this.exited = new Promise((r) => this.proc.on('exit', (code) => {
      procs.delete(this.proc);
      r(code);
    }));
    const rl = readline.createInterface({ input: this.proc.stdout! });
    rl.on('line', (line) => {
      let msg: Reply;
      try {
        msg = JSON.parse(line) as Reply;
      } catch {
        return;
      }
      if (msg.ev === 'ready') {
        this.peerId = msg['peerId'] as string;
        this.addrs = msg['addrs'] as string[];
        this.loadedTrials = msg['trials'] as number;
        this.readyResolve(msg);
      } else if (msg.id !== undefined) this.waiting.get(msg.id)?.(msg);
    });
  }

  static async start(cfg: Record<string, unknown>): Promise<Peer> {
    const p = new Peer(cfg);
    await Promise.race([p.ready, p.exited.then((c) => Promise.reject(new Error(`peer exited with ${c} before ready`)))]);
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

  async trials(): Promise<TrialDump[]> {
    return (await this.send({ cmd: 'dump' }))['trials'] as TrialDump[];
  }

  async dump(): Promise<Reply> {
    return this.send({ cmd: 'dump' });
  }

  async quit(): Promise<void> {
    await this.send({ cmd: 'quit' });
    await this.exited;
  }
}

/** Polls until `pred` holds (or fails the test with `what` after `ms`). */
async function eventually<T>(what: string, ms: number, f: () => Promise<T>, pred: (x: T) => boolean): Promise<T> {
  // The one polling helper, keeping the last value for the failure message.
  let last: T | undefined;
  try {
    return (await waitFor(what, ms, async () => {
      last = await f();
      return pred(last) ? { v: last } : null;
    })).v;
  } catch {
    return assert.fail(`${what}: not reached within ${ms} ms; last: ${JSON.stringify(last).slice(0, 400)}`);
  }
}

const finished = (ts: TrialDump[]) => ts.filter((t) => t.state === 'COMPLETE' || t.state === 'PRUNED' || t.state === 'FAIL');
const summary = (ts: TrialDump[]) =>
  ts
    .map((t) => `${t.trialId} ${t.state} ${JSON.stringify(t.params)} ${JSON.stringify(t.values)}`)
    .sort()
    .join('\n');

describe('replicated studies', { concurrency: 1 }, () => {
  test('3 peer processes x 30 trials: every replica ends with the same 90 trials', async () => {
    const a = await Peer.start({ dataDir: await tempDir(), create: true, studyName: 'three', seed: 1 });
    const [b, c] = await Promise.all([
      Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'three', seed: 2 }),
      Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'three', seed: 3 }),
    ]);
    await Promise.all([a, b, c].map((p) => p.send({ cmd: 'run', n: 30 })));
    const all = await eventually('all replicas have 90 finished trials', 15_000, () => Promise.all([a, b, c].map((p) => p.trials())), (rs) => rs.every((r) => finished(r).length === 90));
    const [ta, tb, tc] = all;
    assert.equal(ta!.length, 90);
    assert.equal(summary(ta!), summary(tb!));
    assert.equal(summary(ta!), summary(tc!));
    assert.equal(new Set(ta!.map((t) => t.trialId)).size, 90, 'trial ids are unique');
    for (const r of all) assert.equal(new Set(r.map((t) => t.number)).size, 90, 'display numbers are unique on each replica');
    for (const p of [a, b, c]) assert.equal(ta!.filter((t) => t.owner === p.peerId).length, 30);
    await Promise.all([a, b, c].map((p) => p.quit()));
  });

  test('a joiner catches up a 200-trial study before its first suggestion', async () => {
    const a = await Peer.start({ dataDir: await tempDir(), create: true, studyName: 'joiner', seed: 1 });
    await a.send({ cmd: 'run', n: 200 });
    const j = await Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'joiner', seed: 9 });
    assert.equal(j.loadedTrials, 200, 'loadStudy returned with the whole history');
    const ran = await j.send({ cmd: 'run', n: 1 });
    assert.equal(ran['seenAtFirst'], 200, 'the first objective call saw all 200 completed trials');
    await Promise.all([a.quit(), j.quit()]);
  });

  test('partition then heal: counts add up, ids unique, and every replica shows the same numbers', async () => {
    const a = await Peer.start({ dataDir: await tempDir(), create: true, studyName: 'split', seed: 1 });
    const b = await Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'split', seed: 2 });
    const c = await Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'split', seed: 3 });
    await Promise.all([a, b, c].map((p) => p.send({ cmd: 'run', n: 5 })));
    const shared = await eventually('15 shared trials before the split', 10_000, () => Promise.all([a, b, c].map((p) => p.trials())), (rs) => rs.every((r) => finished(r).length === 15));
    // Split {a, b} | {c}.
    await Promise.all([a.send({ cmd: 'block', peers: [c.peerId] }), b.send({ cmd: 'block', peers: [c.peerId] }), c.send({ cmd: 'block', peers: [a.peerId, b.peerId] })]);
    await Promise.all([a.send({ cmd: 'run', n: 10 }), b.send({ cmd: 'run', n: 10 }), c.send({ cmd: 'run', n: 12 })]);
    await eventually('each side sees its own trials', 10_000, () => Promise.all([a, b, c].map((p) => p.trials())), (rs) => finished(rs[0]!).length === 35 && finished(rs[1]!).length === 35 && finished(rs[2]!).length === 27);
    // Heal.
    await Promise.all([a.send({ cmd: 'unblock', peers: [c.peerId] }), b.send({ cmd: 'unblock', peers: [c.peerId] }), c.send({ cmd: 'unblock', peers: [a.peerId, b.peerId] })]);
    const healed = await eventually('every replica has 15 + 20 + 12 = 47 trials', 15_000, () => Promise.all([a, b, c].map((p) => p.trials())), (rs) => rs.every((r) => finished(r).length === 47));
    const numbering = (r: TrialDump[]) => r.map((t) => `${t.number} ${t.trialId}`).sort().join('\n');
    for (let i = 0; i < 3; i++) {
      const r = healed[i]!;
      assert.equal(r.length, 47, 'no duplicates');
      assert.equal(new Set(r.map((t) => t.trialId)).size, 47, 'trial ids unique');
      assert.deepEqual(r.map((t) => t.number).sort((x, y) => x - y), [...Array(47).keys()], 'numbers are 0..46, each once');
      assert.equal(numbering(r), numbering(healed[0]!), 'the same trial has the same number on every replica');
      // Trials from before the split were shown everywhere and sort first: they keep their numbers.
      const now = new Map(r.map((t) => [t.trialId, t.number]));
      for (const t of shared[i]!) assert.equal(now.get(t.trialId), t.number, `shared trial ${t.trialId} kept its number ${t.number}`);
    }
    assert.equal(summary(healed[0]!), summary(healed[2]!));
    // The side whose trials moved says so in its log (counted as numbers:changed).
    const counts = await Promise.all([a, b, c].map(async (p) => ((await p.dump())['stats'] as Record<string, number>)['numbers:changed'] ?? 0));
    assert.ok(counts.some((n) => n > 0), `a replica logged the renumbering: ${JSON.stringify(counts)}`);
    // The trials that moved were finished ones (each side ran its trials to the end before the heal).
    const movedFinished = await Promise.all([a, b, c].map(async (p) => ((await p.dump())['stats'] as Record<string, number>)['numbers:moved-finished'] ?? 0));
    assert.ok(movedFinished.some((n) => n > 0), `a replica counted the finished trials that moved: ${JSON.stringify(movedFinished)}`);
    await Promise.all([a, b, c].map((p) => p.quit()));
  });

  test('connected run of 3 peers x 200 trials: the numbers callbacks and log lines show are final, and all replicas agree', async (ctx) => {
    const a = await Peer.start({ dataDir: await tempDir(), create: true, studyName: 'stable', seed: 1 });
    const [b, c] = await Promise.all([
      Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'stable', seed: 2 }),
      Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'stable', seed: 3 }),
    ]);
    await waitFor('a full mesh', 10_000, async () => (await Promise.all([a, b, c].map((p) => p.dump()))).every((d) => (d['peers'] as string[]).length === 2));
    // Each peer records the number its callback saw, and the number its log line printed.
    const runs = await Promise.all([a, b, c].map((p) => p.send({ cmd: 'run', n: 200, sleepMs: 100, logged: true })));
    const all = await eventually('all replicas have 600 finished trials', 20_000, () => Promise.all([a, b, c].map((p) => p.trials())), (rs) => rs.every((r) => finished(r).length === 600));
    const numbering = (r: TrialDump[]) => r.map((t) => `${t.number} ${t.trialId}`).sort().join('\n');
    for (const r of all) assert.equal(numbering(r), numbering(all[0]!), 'same numbers on every replica');
    const final = new Map(all[0]!.map((t) => [t.trialId, t]));
    // Callbacks receive the trial once its number is settled (study.ts settledTrial, as its log line):
    // every live peer has shown that none of its trials still on the way sorts before it. A number a
    // callback saw may differ from the final one only where that wait timed out (counted). Without the
    // wait (the trial as of its tell), numbers moved whenever gossip took longer than a trial's 100 ms:
    // none on an idle machine, 9 of 600 beside six busy loops, 44 of 600 at load average 15.
    const moved: string[] = [];
    for (const run of runs) {
      for (const [id, n] of run['told'] as [string, number][]) {
        const t = final.get(id)!;
        if (t.number !== n) moved.push(`${id.slice(-10)} told #${n}, final #${t.number}`);
      }
    }
    const settleTimeouts = (await Promise.all([a, b, c].map(async (p) => ((await p.dump())['stats'] as Record<string, number>)['numbers:settle-timeout'] ?? 0))).reduce((x, y) => x + y, 0);
    ctx.diagnostic(`numbers callbacks saw that moved: ${moved.length} of 600; settle waits timed out: ${settleTimeouts}`);
    assert.equal(runs.reduce((k, run) => k + (run['told'] as unknown[]).length, 0), 600, 'a callback for each trial');
    assert.ok(moved.length <= settleTimeouts, `${moved.length} numbers callbacks saw are not the final ones, ${settleTimeouts} settle waits timed out: ${moved.slice(0, 10).join('; ')}`);
    // The log lines wait until their numbers settle (PeerStorage.whenNumbersSettled): the trial a line
    // names by number is, in the end, the trial it describes, on every replica. A line may show a number
    // that moved only if its wait timed out (counted); on this machine none should.
    const byNumber = new Map(all[0]!.map((t) => [t.number, t]));
    let wrong = 0;
    const wrongLines: string[] = [];
    for (const [k, run] of runs.entries()) {
      const logged = run['logged'] as [number, string][];
      assert.equal(logged.length, 200, `peer ${k} logged a line for each of its 200 trials`);
      for (const [n, params] of logged) {
        const t = byNumber.get(n);
        if (t && formatParams(t.params) === params) continue;
        wrong++;
        wrongLines.push(`#${n} ${params}, final #${n} is ${t ? formatParams(t.params) : 'absent'}`);
      }
    }
    ctx.diagnostic(`log lines whose number moved: ${wrong} of 600`);
    assert.ok(wrong <= settleTimeouts, `${wrong} log lines show a number that is not the final one, ${settleTimeouts} settle waits timed out: ${wrongLines.slice(0, 10).join('; ')}`);
    await Promise.all([a, b, c].map((p) => p.quit()));
  });

  test('a peer offline while the others run 5,000 trials catches up all of them by sync when it returns', async () => {
    const a = await Peer.start({ dataDir: await tempDir(), create: true, studyName: 'away', seed: 1 });
    const cDir = await tempDir();
    const c = await Peer.start({ dataDir: cDir, join: a.addrs, studyName: 'away', seed: 3 });
    await c.send({ cmd: 'run', n: 5 });
    await eventually('a has c\'s 5 trials', 10_000, () => a.trials(), (ts) => finished(ts).length === 5);
    await c.quit();
    const b = await Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: 'away', seed: 2 });
    await Promise.all([a.send({ cmd: 'run', n: 2500 }), b.send({ cmd: 'run', n: 2500 })]);
    await eventually('a holds 5,005 trials', 30_000, () => a.trials(), (ts) => finished(ts).length === 5005);
    const c2 = await Peer.start({ dataDir: cDir, join: a.addrs, studyName: 'away', seed: 4 });
    const back = await eventually('the returning peer holds all 5,005 trials', 60_000, () => c2.dump(), (d) => finished(d['trials'] as TrialDump[]).length === 5005);
    const stats = back['stats'] as Record<string, number>;
    assert.ok((stats['sync:accepted-changes'] ?? 0) > 0, `caught up by sync: ${JSON.stringify(stats)}`);
    assert.ok(!Object.keys(stats).some((k) => /^sync:(rejected|too-large|missing-deps|idle-timeout|timeout)/.test(k)), `no catch-up piece was refused: ${JSON.stringify(stats)}`);
    const ta = await a.trials();
    assert.equal(summary(finished(back['trials'] as TrialDump[])), summary(finished(ta)));
    await Promise.all([a.quit(), b.quit(), c2.quit()]);
  });

  test('kill -9 mid-trial: others see FAIL within the grace period; restart keeps completed trials', async () => {
    const staleAfterMs = 1500;
    const a = await Peer.start({ dataDir: await tempDir(), create: true, studyName: 'crash', seed: 1, staleAfterMs });
    const kDir = await tempDir();
    const k = await Peer.start({ dataDir: kDir, join: a.addrs, studyName: 'crash', seed: 2, staleAfterMs });
    await k.send({ cmd: 'run', n: 5 });
    const { trialId } = (await k.send({ cmd: 'hang' })) as unknown as { trialId: string };
    await eventually('a sees the RUNNING trial', 5000, () => a.trials(), (ts) => ts.some((t) => t.trialId === trialId && t.state === 'RUNNING'));
    const killedAt = Date.now();
    k.proc.kill('SIGKILL');
    await k.exited;
    const ts = await eventually('a sees the trial FAIL', staleAfterMs + 3000, () => a.trials(), (x) => x.some((t) => t.trialId === trialId && t.state === 'FAIL'));
    const failedAfter = Date.now() - killedAt;
    assert.ok(failedAfter <= staleAfterMs + 2500, `FAIL seen ${failedAfter} ms after the kill`);
    assert.match(ts.find((t) => t.trialId === trialId)!.failReason ?? '', /silent/);
    assert.equal(ts.filter((t) => t.state === 'COMPLETE').length, 5);
    // Meanwhile a runs more; the restarted peer keeps its 5 and catches up.
    await a.send({ cmd: 'run', n: 3 });
    const k2 = await Peer.start({ dataDir: kDir, join: a.addrs, studyName: 'crash', seed: 3, staleAfterMs });
    assert.equal(k2.peerId, k.peerId, 'same identity after restart');
    const mine = await eventually('restarted peer caught up', 10_000, () => k2.trials(), (x) => finished(x).length === 9);
    assert.equal(mine.filter((t) => t.owner === k.peerId && t.state === 'COMPLETE').length, 5, 'no completed trial lost');
    const hung = mine.find((t) => t.trialId === trialId)!;
    assert.equal(hung.state, 'FAIL', "the restarted peer failed its own interrupted trial");
    await eventually('a sees the written FAIL', 5000, () => a.trials(), (x) => x.find((t) => t.trialId === trialId)?.failReason?.includes('crashed') ?? false);
    await Promise.all([a.quit(), k2.quit()]);
  });

  test('constant liar across 4 peers: near-duplicate proposals much rarer with it on', async (t) => {
    // A proposal is a near-duplicate if it lands within 2.5% of the range of another peer's trial
    // that was in flight and visible in the replica when it was asked (what the liar can act on).
    const nearDuplicates = async (sampler: string): Promise<{ dups: number; asks: number }> => {
      const name = `liar-${sampler}`;
      const a = await Peer.start({ dataDir: await tempDir(), create: true, studyName: name, sampler, seed: 11 });
      const others = await Promise.all([2, 3, 4].map(async (s) => Peer.start({ dataDir: await tempDir(), join: a.addrs, studyName: name, sampler, seed: s * 7 })));
      const peers = [a, ...others];
      // The gossip mesh must be formed so RUNNING trials propagate. 25 trials a peer (about 92 asks
      // with trials in flight): with 15 (52 asks), a CI run under load once saw the liar's rate 0.25
      // against 0.48 without; here with two cores busy, 0.18 against 0.62.
      await waitFor('a full mesh of 4', 10_000, async () => (await Promise.all(peers.map((p) => p.dump()))).every((d) => (d['peers'] as string[]).length === 3));
      const ran = await Promise.all(peers.map((p) => p.send({ cmd: 'run', n: 25, sleepMs: 200 })));
      await Promise.all(peers.map((p) => p.quit()));
      let dups = 0;
      let asks = 0;
      for (const r of ran) {
        for (const e of r['inFlight'] as { finished: number; running: number[]; x: number }[]) {
          if (e.finished < 4 || e.running.length === 0) continue; // random startup, or nothing to avoid
          asks++;
          if (e.running.some((x) => Math.abs(x - e.x) < 0.5)) dups++;
        }
      }
      return { dups, asks };
    };
    const off = await nearDuplicates('tpe-noliar');
    const on = await nearDuplicates('tpe');
    assert.ok(off.asks >= 15 && on.asks >= 15, `enough asks with trials in flight (off ${off.asks}, on ${on.asks})`);
    const rateOff = off.dups / off.asks;
    const rateOn = on.dups / on.asks;
    t.diagnostic(`near-duplicate rate: liar on ${rateOn.toFixed(3)} (${on.dups}/${on.asks}), off ${rateOff.toFixed(3)} (${off.dups}/${off.asks})`);
    assert.ok(rateOn * 2 < rateOff, `near-duplicate rate with liar ${rateOn.toFixed(3)} (${on.dups}/${on.asks}) vs without ${rateOff.toFixed(3)} (${off.dups}/${off.asks})`);
  });
});
