// Issue 8: gossip pacing (src/storage/replicated/pacing.ts). A saturated peer asks for a longer gap
// between other peers' gossip messages, a calm one for a shorter one, within bounds; a sender keeps
// the median of what its study's peers ask, so a minority of members cannot slow a study; the gap
// travels in heartbeats and malformed ones are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GOSSIP_SHARE, Pacer, gapFor, MAX_OUTBOX_GAP_MS } from '../../src/storage/replicated/pacing.js';
import { OUTBOX_GAP_MS } from '../../src/storage/replicated/options.js';
import { decodeHeartbeat, encodeHeartbeat } from '../../src/net/liveness.js';
import { pack } from '../../src/net/wire.js';

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
