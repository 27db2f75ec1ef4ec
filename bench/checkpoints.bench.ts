/**
 * Checkpoint transfer between two peer processes on loopback (issue 9's benchmark): 1 MiB, 100 MiB and
 * 1 GiB blobs over /peertune/blob/1.0.0, MiB/s and each side's peak RSS above its start. Each size is
 * run `reps` times and the median is reported. Target: at least 100 MiB/s for 1 GiB, RSS growth under
 * 100 MB on both sides.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { BENCH_DIR, machineInfo, type BenchContext } from './lib.js';

const PEER = path.join(BENCH_DIR, 'fixtures', 'blob-peer.ts');
const REPLICA_PEER = path.join(BENCH_DIR, 'fixtures', 'replica-checkpoint-peer.ts');

function start(args: string[], script = PEER) {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next();
    if (r.done) throw new Error(`blob-peer ${args[0]} ended without output`);
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  const exited = new Promise<number>((res) => child.on('exit', (c) => res(c ?? -1)));
  return { child, next, exited };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export default async function (ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [1, 100] : [1, 100, 1024];
  const reps = ctx.quick ? 1 : 3;
  const rows: { sizeMiB: number; mibPerS: number; seconds: number; senderRssGrowthMiB: number; receiverRssGrowthMiB: number; runs: number }[] = [];
  for (const sizeMiB of sizes) {
    const speeds: number[] = [];
    const secs: number[] = [];
    const sendGrowth: number[] = [];
    const recvGrowth: number[] = [];
    for (let r = 0; r < reps; r++) {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-bench-blob-'));
      const server = start(['serve', path.join(dir, 's'), String(sizeMiB * 2 ** 20)]);
      const info = await server.next();
      const client = start(['fetch', path.join(dir, 'c'), String(info['addr']), String(info['hash']), String(info['size'])]);
      const got = await client.next();
      await client.exited;
      server.child.stdin!.write('stop\n');
      const srv = await server.next();
      await server.exited;
      await rm(dir, { recursive: true, force: true });
      const s = Number(got['seconds']);
      secs.push(s);
      speeds.push(sizeMiB / s);
      recvGrowth.push(Number(got['maxRssMiB']) - Number(got['baseRssMiB']));
      sendGrowth.push(Number(srv['maxRssMiB']) - Number(srv['baseRssMiB']));
      ctx.log(`${sizeMiB} MiB run ${r + 1}: ${(sizeMiB / s).toFixed(1)} MiB/s, receiver RSS +${recvGrowth.at(-1)!.toFixed(1)} MiB, sender +${sendGrowth.at(-1)!.toFixed(1)} MiB`);
    }
    rows.push({ sizeMiB, mibPerS: median(speeds), seconds: median(secs), senderRssGrowthMiB: median(sendGrowth), receiverRssGrowthMiB: median(recvGrowth), runs: reps });
  }
  // Time from saveCheckpoint returning to the first confirmed copy on another peer (PeerStorage on both
  // sides: the copy request, the pull over the blob protocol, the hash check, the confirmation).
  const replicaMiB = 100;
  const toReplica: number[] = [];
  const saves: number[] = [];
  for (let r = 0; r < reps; r++) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-bench-ckrep-'));
    const owner = start(['owner', path.join(dir, 'o'), String(replicaMiB * 2 ** 20)], REPLICA_PEER);
    const ready = await owner.next();
    const holder = start(['holder', path.join(dir, 'h'), String(ready['addr'])], REPLICA_PEER);
    await holder.next();
    owner.child.stdin!.write('go\n');
    const done = await owner.next();
    await owner.exited;
    holder.child.stdin!.write('stop\n');
    await holder.exited;
    await rm(dir, { recursive: true, force: true });
    toReplica.push(Number(done['toReplicaSeconds']));
    saves.push(Number(done['saveSeconds']));
    ctx.log(`${replicaMiB} MiB to the first confirmed replica, run ${r + 1}: ${toReplica.at(-1)!.toFixed(2)} s after saveCheckpoint returned (the save itself ${saves.at(-1)!.toFixed(2)} s)`);
  }
  const replica = { sizeMiB: replicaMiB, toFirstReplicaSeconds: median(toReplica), saveSeconds: median(saves), runs: reps };
  const big = rows.find((r) => r.sizeMiB === 1024);
  const md = [
    '| size | MiB/s (median) | seconds | sender peak RSS growth | receiver peak RSS growth | runs |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.sizeMiB} MiB | ${r.mibPerS.toFixed(1)} | ${r.seconds.toFixed(2)} | ${r.senderRssGrowthMiB.toFixed(1)} MiB | ${r.receiverRssGrowthMiB.toFixed(1)} MiB | ${r.runs} |`),
    '',
    big
      ? `Target 1 GiB >= 100 MiB/s: ${big.mibPerS >= 100 ? 'met' : 'NOT met'} (${big.mibPerS.toFixed(1)}); RSS growth < 100 MB on both sides: ${Math.max(big.senderRssGrowthMiB, big.receiverRssGrowthMiB) * 1.048576 < 100 ? 'met' : 'NOT met'}.`
      : 'Quick run: the 1 GiB target was not measured.',
    'Peak RSS is the process maximum (getrusage) minus its RSS at start; growth includes libp2p and noise buffers.',
    '',
    `Time from saveCheckpoint returning to the first confirmed replica (PeerStorage on both sides), ${replica.sizeMiB} MiB: **${replica.toFirstReplicaSeconds.toFixed(2)} s** median of ${replica.runs} (the save into the owner's store took ${replica.saveSeconds.toFixed(2)} s).`,
  ].join('\n');
  await ctx.writeResult(ctx.quick ? 'checkpoints-quick' : 'checkpoints', { machine: machineInfo(), rows, replica }, md);
}
