// Issue 8: gossip pacing (src/storage/replicated/pacing.ts). A saturated peer asks for a longer gap
// between other peers' gossip messages, a calm one for a shorter one, within bounds; a sender keeps
// the median of what its study's peers ask, so a minority of members cannot slow a study; the gap
// travels in heartbeats and malformed ones are refused. Past 4 live peers, heartbeats (and the gap's
// bound) stretch with the swarm's size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GOSSIP_SHARE, HEARTBEATS_PER_INTERVAL, MAX_HEARTBEAT_STRETCH, Pacer, gapFor, heartbeatEvery, MAX_OUTBOX_GAP_MS } from '../../src/storage/replicated/pacing.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { setVerbosity } from '../../src/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';
import { OUTBOX_GAP_MS } from '../../src/storage/replicated/options.js';
import { decodeHeartbeat, encodeHeartbeat } from '../../src/net/liveness.js';
import { pack } from '../../src/net/wire.js';

setVerbosity('error');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* keep the event loop busy */
  }
};

test('a loop saturated by other peers\' gossip asks for twice the gap each period, up to the bound; a calm one asks for less, down to the floor', async () => {
  const p = new Pacer();
  assert.equal(p.askMs, OUTBOX_GAP_MS);
  p.tick();
  const asked: number[] = [];
  for (let i = 0; i < 8; i++) {
    busy(120);
    p.noteGossipMs(60); // half of the busy time taking in gossip
    asked.push(p.tick());
  }
  assert.ok(p.lastGossipShare >= GOSSIP_SHARE, `gossip share: ${p.lastGossipShare}`);
  assert.ok(p.lastElu > 0.85, `ELU while busy: ${p.lastElu}`);
  assert.deepEqual(asked.slice(0, 3), [2 * OUTBOX_GAP_MS, 4 * OUTBOX_GAP_MS, 8 * OUTBOX_GAP_MS]);
  assert.equal(asked.at(-1), MAX_OUTBOX_GAP_MS, `never above the bound: ${asked.join(',')}`);
  const calm: number[] = [];
  for (let i = 0; i < 14; i++) {
    await sleep(80);
    p.noteGossipMs(1);
    calm.push(p.tick());
  }
  assert.ok(p.lastElu < 0.6, `ELU while idle: ${p.lastElu}`);
  assert.ok(calm[0]! < MAX_OUTBOX_GAP_MS, `shrinks when calm: ${calm.join(',')}`);
  assert.equal(calm.at(-1), OUTBOX_GAP_MS, `back to the floor: ${calm.join(',')}`);
});

test('a loop saturated by anything but other peers\' gossip (its own work, a loaded machine) keeps the floor: batching would only delay trials', () => {
  const p = new Pacer();
  p.tick();
  for (let i = 0; i < 5; i++) {
    busy(120);
    p.noteGossipMs(5); // 4% of the busy time
    assert.equal(p.tick(), OUTBOX_GAP_MS);
  }
  assert.ok(p.lastElu > 0.85);
});

test('several peers on one busy host: a loop past 0.6 on a host more than 90% busy counts as saturated; the same loop on a host with time left holds its gap', async () => {
  let host = 0.97;
  const p = new Pacer(() => host);
  p.tick();
  // Periods with the loop busy about 75% of the time (between CALM, 0.6, and BUSY, 0.85), most of it
  // taking in gossip. On a loaded machine a period can land outside that band: only those inside count.
  const inBand = async (want: number): Promise<[number, number][]> => {
    const seen: [number, number][] = [];
    for (let i = 0; i < 40 && seen.length < want; i++) {
      const before = p.askMs;
      busy(75);
      p.noteGossipMs(50);
      await sleep(20);
      const after = p.tick();
      if (p.lastElu > 0.62 && p.lastElu < 0.83) seen.push([before, after]);
    }
    return seen;
  };
  const grew = await inBand(3);
  assert.equal(grew.length, 3, 'three periods with the loop between 0.6 and 0.85');
  assert.equal(p.lastHostBusy, 0.97, 'the host share as measured');
  for (const [before, after] of grew) assert.equal(after, Math.min(MAX_OUTBOX_GAP_MS, 2 * before), `grows on a busy host: ${grew.join(' ')}`);
  host = 0.5;
  const held = await inBand(3);
  assert.equal(held.length, 3);
  for (const [before, after] of held) assert.equal(after, before, `a host with time left: neither grows nor shrinks: ${held.join(' ')}`);
});

test('a big swarm\'s peer asks for 2k times the gap each saturated period (k: heartbeatEvery)', () => {
  const p = new Pacer(() => 0);
  p.tick(4);
  const asked: number[] = [];
  for (let i = 0; i < 3; i++) {
    busy(120);
    p.noteGossipMs(60);
    asked.push(p.tick(4));
  }
  assert.deepEqual(asked, [8 * OUTBOX_GAP_MS, 64 * OUTBOX_GAP_MS, 4 * MAX_OUTBOX_GAP_MS]);
});

test('a sender keeps the median gap of its study\'s peers: a minority asking for the longest gap changes nothing', () => {
  assert.equal(gapFor(20, []), 20);
  assert.equal(gapFor(20, [20, 20, 60_000, 60_000]), 20, 'two members of five ask for 60 s');
  assert.equal(gapFor(320, [320, 20]), 320);
  assert.equal(gapFor(20, [60_000, 60_000, 60_000]), MAX_OUTBOX_GAP_MS, 'a majority can slow gossip, but only to the bound');
  assert.equal(gapFor(0, [-5, NaN]), OUTBOX_GAP_MS, 'never below the floor');
});

test('the gap travels in heartbeats; malformed gaps are refused with the reason', () => {
  const hb = { ts: Date.now(), addrs: [], studies: [] as [string, string, string][], gap: 640 };
  assert.equal(decodeHeartbeat(encodeHeartbeat(hb)).gap, 640);
  assert.equal(decodeHeartbeat(encodeHeartbeat({ ...hb, gap: undefined })).gap, undefined, 'older peers send none');
  for (const g of [-1, 1.5, 'x', 1e9, null]) {
    assert.throws(() => decodeHeartbeat(pack({ ts: Date.now(), a: [], s: [], g })), /heartbeat gap is not a whole number/, `gap ${String(g)}`);
  }
});

test('big swarms: past 4 live peers a peer heartbeats every k-th interval (at most 4, and three heartbeats within the stale grace), and gaps may grow as many times', () => {
  for (const [live, k] of [[0, 1], [1, 1], [4, 1], [5, 2], [8, 2], [9, 3], [15, 4], [1000, MAX_HEARTBEAT_STRETCH]] as const) {
    assert.equal(heartbeatEvery(live), k, `${live} live peers`);
  }
  assert.equal(MAX_HEARTBEAT_STRETCH, 4);
  assert.equal(HEARTBEATS_PER_INTERVAL, 4);
  assert.equal(heartbeatEvery(15, 1000, 10_000), 3, 'the default grace (10 s, 1 s heartbeats) fits three heartbeats of every 3rd interval');
  assert.equal(heartbeatEvery(15, 1000, 2500), 1, 'a grace shorter than three intervals keeps every interval');
  assert.equal(heartbeatEvery(15, 250, 60_000), 4);
  assert.equal(gapFor(20, [60_000, 60_000, 60_000], 2), 2 * MAX_OUTBOX_GAP_MS, 'the bound stretches with the heartbeats');
  const p = new Pacer();
  p.tick(2);
  const asked: number[] = [];
  for (let i = 0; i < 9; i++) {
    busy(120);
    p.noteGossipMs(60);
    asked.push(p.tick(2));
  }
  assert.equal(asked.at(-1), 2 * MAX_OUTBOX_GAP_MS, `up to twice the bound: ${asked.join(',')}`);
  busy(120);
  p.noteGossipMs(60);
  assert.equal(p.tick(1), MAX_OUTBOX_GAP_MS, 'the swarm shrank: back within the plain bound at once');
});

test('six in-process peers: each sees five live ones and heartbeats every other interval; a trial still reaches every replica', async () => {
  const peer = inProcessPeers('peertune-hbstretch-', { heartbeatIntervalMs: 250, staleAfterMs: 60_000 });
  const first = await peer();
  const info = await first.createStudy({ studyName: 'stretch', directions: ['minimize'] });
  const rest: PeerStorage[] = [];
  for (let i = 0; i < 5; i++) rest.push(await peer(first.multiaddrs()));
  const all = [first, ...rest];
  await waitFor('the study on every peer', 20_000, () => rest.every((s) => s.getStudy('stretch')));
  await waitFor('every peer heartbeating every other interval', 30_000, () => all.every((s) => s.stats().pacing.heartbeatEvery === 2));
  // Heartbeats one peer sends over a window: one per interval would be 12 in 3 s; every other interval, about 6.
  const probe = rest[0]!;
  const h0 = probe.stats().pacing.heartbeatsSent;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 3000));
  const intervals = (performance.now() - t0) / 250;
  const sent = probe.stats().pacing.heartbeatsSent - h0;
  assert.ok(sent <= 0.75 * intervals, `heartbeats sent: ${sent} in ${intervals.toFixed(1)} intervals (every other one)`);
  assert.ok(sent >= 0.25 * intervals, `heartbeats still go out: ${sent} in ${intervals.toFixed(1)} intervals`);
  const writer = rest[4]!;
  const t = writer.createTrial(info.studyId);
  await writer.finishTrial(info.studyId, t.trialId, 'COMPLETE', [0.5]);
  await waitFor('the trial on every replica', 20_000, () => all.every((s) => s.getAllTrials(info.studyId).some((x) => x.trialId === t.trialId && x.state === 'COMPLETE')));
});
