/**
 * `npm start`: three peers on 127.0.0.1, each a separate `peertune worker` process, tune the iris MLP
 * of examples/iris-ts together for about 30 s (PEERTUNE_DEMO_SECONDS to change it), with TPE and the
 * median pruner. Their Optuna-style logs scroll above a progress bar; at the end a summary shows the
 * best trial, the trials each peer ran, how many were pruned, and the commands to do the same on
 * several machines.
 *
 * The demo process itself is a fourth, replica-only peer: it joins the swarm to count trials for the
 * progress bar and to read the final history, so the summary covers every peer's trials.
 */
import '../cli/polyfills.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { formatParams, setVerbosity } from '../logging.js';
import type { FrozenTrial } from '../storage/storage.js';
import { loadStudy } from '../study.js';
import { openStorage, type OpenedStorage } from '../cli/storage.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = join(repo, 'dist', 'cli', 'main.js');
const objectiveFile = join(repo, 'examples', 'iris-ts', 'objective.ts');
const STUDY = 'demo-iris';
const PEERS = 3;
const COLORS = ['\x1b[36m', '\x1b[35m', '\x1b[33m'];
const RESET = '\x1b[0m';

function demoSeconds(): number {
  const raw = process.env['PEERTUNE_DEMO_SECONDS'];
  if (raw === undefined || raw === '') return 30;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`peertune demo: PEERTUNE_DEMO_SECONDS must be a positive number of seconds, got ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return n;
}

/** Runs the CLI to completion (create-study). */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Peer {
  index: number;
  name: string;
  child: ChildProcess;
  peerId: string | null;
  joinAddr: string | null;
  ran: number | null;
  exited: Promise<number | null>;
  stderrTail: string[];
}

function startPeer(index: number, args: string[], onLine: (peer: Peer, line: string) => void): Peer {
  const child = spawn(process.execPath, [cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PEERTUNE_LOG_LEVEL: 'info' },
  });
  const peer: Peer = {
    index,
    name: `peer${index + 1}`,
    child,
    peerId: null,
    joinAddr: null,
    ran: null,
    exited: new Promise((resolve) => child.on('close', (code) => resolve(code))),
    stderrTail: [],
  };
  let buf = '';
  const feed = (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      peer.stderrTail.push(line);
      if (peer.stderrTail.length > 20) peer.stderrTail.shift();
      const started = line.match(/Peer (\S+) started/);
      if (started) peer.peerId = started[1]!;
      const addr = line.match(/--join (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\S+)/);
      if (addr && !peer.joinAddr) peer.joinAddr = addr[1]!;
      const ran = line.match(/Worker finished: ran (\d+) trials/);
      if (ran) peer.ran = Number(ran[1]);
      onLine(peer, line);
    }
  };
  child.stdout!.on('data', feed);
  child.stderr!.on('data', feed);
  return peer;
}

async function waitFor<T>(what: string, get: () => T | null | undefined, peer: Peer, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== null && v !== undefined) return v;
    if (peer.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`${peer.name} did not report ${what}; its last output:\n${peer.stderrTail.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A TCP port free right now on 127.0.0.1 (the OS picks it; we release it for peer1 to take). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function shortId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

async function main(): Promise<number> {
  const seconds = demoSeconds();
  if (!existsSync(cli)) {
    process.stderr.write('peertune demo: dist/cli/main.js is missing; run `npm run build` first (npm start does it for you)\n');
    return 2;
  }
  // The demo's own replica stays quiet: the peers' logs are the show.
  setVerbosity('error');
  const work = await mkdtemp(join(tmpdir(), 'peertune-demo-'));
  const peers: Peer[] = [];
  let observer: OpenedStorage | null = null;
  const interactive = process.stderr.isTTY === true;
  const multibar = new cliProgress.MultiBar(
    {
      format: ' {bar} {percentage}% | {value}/{total} s | trials: {trials} ({pruned} pruned) | best: {best}',
      hideCursor: true,
      clearOnComplete: false,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const log = (line: string) => (interactive ? multibar.log(line + '\n') : process.stderr.write(line + '\n'));
  const onLine = (peer: Peer, line: string) => {
    // Show the lines a user of Optuna would look for; keep the rest out of the way.
    if (!/Trial \d+ (finished|pruned|failed)|Joined study|Worker finished|other peer|peertune: error/.test(line)) return;
    const tag = interactive ? `${COLORS[peer.index % COLORS.length]}[${peer.name}]${RESET}` : `[${peer.name}]`;
    log(`${tag} ${line}`);
  };

  let stopping = false;
  let failure: string | null = null;
  const stopAll = () => {
    if (stopping) return;
    stopping = true;
    for (const p of peers) if (p.child.exitCode === null) p.child.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);

  try {
    process.stderr.write(
      `peertune demo: ${PEERS} peers on 127.0.0.1 tune a small neural network on the iris data set for ${seconds} s.\n` +
        `Each peer is a separate \`peertune worker\` process with its own replica of the study; they share trials over libp2p.\n\n`,
    );
    const loopback = ['--listen', '/ip4/127.0.0.1/tcp/0'];
    const created = await runCli([
      'create-study', '--study-name', STUDY, '--direction', 'minimize',
      '--sampler', 'tpe', '--sampler-options', '{"nStartupTrials":8}',
      '--pruner', 'median', '--pruner-options', '{"nStartupTrials":5,"nWarmupSteps":10}',
      '--data-dir', join(work, 'peer1'), ...loopback,
    ]);
    if (created.code !== 0) throw new Error(`create-study failed: ${created.stderr.trim()}`);
    process.stderr.write(created.stdout.split('\n').filter((l) => /^study|^directions/.test(l)).map((l) => `  ${l}\n`).join('') + '\n');

    const workerArgs = (i: number, listen: string[], join: string[]) => [
      'worker', '--study-name', STUDY, '--data-dir', `${work}/peer${i + 1}`, ...listen, ...join.flatMap((a) => ['--join', a]),
      '--timeout', String(seconds), '--wait-for-peers', String(PEERS - 1), '--no-progress-bar', objectiveFile,
    ];
    // Ports are picked here so every peer (and the demo's own replica) can be told where the others
    // are before any of them is up; joining retries until the other side listens, and a multiaddr
    // without /p2p/<id> is fine for a first dial.
    const ports = await Promise.all(Array.from({ length: PEERS }, () => freePort()));
    const addrOf = (i: number) => `/ip4/127.0.0.1/tcp/${ports[i]}`;
    observer = await openStorage({ dataDir: join(work, 'observer'), join: ports.map((_, i) => addrOf(i)) }, 'query');
    const t0 = Date.now();
    for (let i = 0; i < PEERS; i++) {
      const others = ports.map((_, j) => j).filter((j) => j !== i).map(addrOf);
      peers.push(startPeer(i, workerArgs(i, ['--listen', addrOf(i)], i === 0 ? [] : others), onLine));
    }
    for (const p of peers) {
      void p.exited.then((code) => {
        // One peer failing (a port taken, a broken objective) ends the demo instead of leaving the others waiting.
        if (code !== 0 && !stopping) {
          failure ??= `${p.name} exited with code ${code}; its last output:\n${p.stderrTail.join('\n')}`;
          stopAll();
        }
      });
    }
    const obs = observer;
    const info = await waitFor('the study to the demo\'s replica', () => obs.storage.getStudy(STUDY), peers[0]!, 60_000);
    const all = () => obs.storage.getAllTrials(info.studyId);
    // The study decides what "best" means (direction, ties); the demo only asks it.
    const study = await loadStudy({ studyName: STUDY, storage: obs.storage });
    const bestOf = (): FrozenTrial | null => (study.getTrials({ states: ['COMPLETE'] }).length ? study.bestTrial : null);

    const bar = interactive ? multibar.create(Math.ceil(seconds), 0, { trials: 0, pruned: 0, best: '-' }) : null;
    const tick = setInterval(() => {
      const trials = all();
      const best = bestOf();
      bar?.update(Math.min(Math.ceil(seconds), Math.floor((Date.now() - t0) / 1000)), {
        trials: trials.filter((t) => t.state !== 'RUNNING').length,
        pruned: trials.filter((t) => t.state === 'PRUNED').length,
        best: best ? `${best.value!.toFixed(4)} (trial ${best.number})` : '-',
      });
    }, 250);
    const codes = await Promise.all(peers.map((p) => p.exited));
    clearInterval(tick);
    bar?.update(Math.ceil(seconds));
    multibar.stop();
    if (failure) throw new Error(failure);
    if (stopping) throw new Error('interrupted');
    codes.forEach((c, i) => {
      if (c !== 0) throw new Error(`${peers[i]!.name} exited with code ${c}; its last output:\n${peers[i]!.stderrTail.join('\n')}`);
    });

    // Every worker's last trials reach the observer shortly after it exits; wait for all of them.
    const deadline = Date.now() + 10_000;
    const mineDone = (p: Peer) => all().filter((t) => t.owner === p.peerId && t.state !== 'RUNNING').length;
    while (Date.now() < deadline && peers.some((p) => p.ran !== null && mineDone(p) < p.ran)) await new Promise((r) => setTimeout(r, 100));

    const trials = all();
    const best = bestOf();
    const count = (ts: readonly FrozenTrial[], s: string) => ts.filter((t) => t.state === s).length;
    const elapsed = ((Date.now() - t0) / 1000).toFixed(1);
    const lines: string[] = [];
    lines.push('');
    lines.push('=== peertune demo: summary ===');
    lines.push(
      `Study "${STUDY}": ${trials.length} trials in ${elapsed} s (wall clock, start-up included) on ${PEERS} peers (${count(trials, 'COMPLETE')} complete, ${count(trials, 'PRUNED')} pruned, ${count(trials, 'FAIL')} failed).`,
    );
    if (best) {
      const acc = best.userAttrs['valid_accuracy'];
      lines.push(
        `Best is trial ${best.number} (run by ${peers.find((p) => p.peerId === best.owner)?.name ?? shortId(best.owner)}) with validation loss ${best.value!.toFixed(4)}` +
          `${typeof acc === 'number' ? ` and accuracy ${(acc * 100).toFixed(1)}%` : ''}, parameters: ${formatParams(best.params)}`,
      );
    } else {
      lines.push('No trial completed (the run was too short?).');
    }
    lines.push('Trials per peer:');
    for (const p of peers) {
      const mine = trials.filter((t) => t.owner === p.peerId);
      lines.push(
        `  ${p.name} ${shortId(p.peerId ?? '?')}: ${String(mine.length).padStart(4)} trials (${count(mine, 'COMPLETE')} complete, ${count(mine, 'PRUNED')} pruned, ${count(mine, 'FAIL')} failed)`,
      );
    }
    const rel = relative(process.cwd(), objectiveFile) || objectiveFile;
    lines.push('');
    lines.push('To do the same on several machines (run from this repository on each, after npm install && npm run build):');
    lines.push('  # machine A (say 192.168.1.10): create the study, then start a worker on the same data dir');
    lines.push(`  node dist/cli/main.js create-study --study-name iris --direction minimize --sampler tpe --pruner median --data-dir ./peer-a`);
    lines.push(`  node dist/cli/main.js worker --study-name iris --data-dir ./peer-a --timeout 600 ${rel}`);
    lines.push('  # it prints: --join /ip4/192.168.1.10/tcp/7171/p2p/12D3KooW...   then on machines B, C, ...:');
    lines.push(`  node dist/cli/main.js worker --study-name iris --data-dir ./peer-b --join /ip4/192.168.1.10/tcp/7171/p2p/<peer id of A> --timeout 600 ${rel}`);
    lines.push('  # any program can be the objective: ... worker --study-name digits -- python3 examples/pytorch-digits/train.py');
    lines.push('  # afterwards, from any machine:');
    lines.push('  node dist/cli/main.js best-trial --study-name iris --join /ip4/192.168.1.10/tcp/7171/p2p/<peer id of A>');
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  } catch (err) {
    multibar.stop();
    stopAll();
    process.stderr.write(`peertune demo: error: ${failure ?? (err instanceof Error ? err.message : String(err))}\n`);
    return 1;
  } finally {
    stopAll();
    await Promise.all(peers.map((p) => p.exited));
    if (observer) await observer.close();
    await rm(work, { recursive: true, force: true });
  }
}

const code = await main();
process.stdout.write('', () => process.exit(code));
