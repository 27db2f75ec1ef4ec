/**
 * Pacing of gossip under load (issue 8). A gossip message costs each receiving process a roughly
 * fixed amount of CPU whatever it carries: measured on the 2-core bench machine, 2 to 3 ms per message
 * for the JS libp2p stack alone (a receiver that dropped every study message unread still spent it:
 * noise, yamux, gossipsub bookkeeping, and as much again in V8's background threads), against about
 * 0.5 ms for each record in it. Busy peers that each send a message per trial make every receiver pay
 * that fixed cost once per trial of every other peer, and a saturated swarm spends its CPU on message
 * overhead instead of trials.
 *
 * The rule: each peer measures its own event-loop utilisation (ELU) over every heartbeat period and
 * asks for a gap between other peers' messages: twice as long (2k times in a big swarm, below) while
 * it is saturated (ELU above 0.85, or above 0.6 on a host whose CPU is more than 90% busy) and at
 * least a fifth of its busy time goes to taking in other peers' study gossip (what batching can save;
 * the transport's share comes on top), a third shorter while it is not (ELU below 0.6, or under a
 * tenth), from `OUTBOX_GAP_MS` (20 ms) to `MAX_OUTBOX_GAP_MS`.
 * Its heartbeat carries the gap it asks for. A sender spaces its messages of a study by the median of
 * the gaps asked by itself and the live peers that announce the study; what it writes meanwhile
 * leaves together in the next message (writer.ts). An idle or lightly loaded swarm keeps 20 ms, so
 * its latency is unchanged; a saturated one trades propagation delay (at most the gap) for messages
 * carrying many trials each. Against members: the median means a minority asking for the longest gap
 * changes nothing, and the gap is bounded, so at worst a study's gossip waits `MAX_OUTBOX_GAP_MS`,
 * never stops (anti-entropy waits four times this peer's asked gap longer before it calls a gap
 * missing). Whatever a peer's outbox holds leaves right before each of its heartbeats, so a heartbeat
 * never announces changes that gossip has not carried yet (otherwise receivers would start a catch-up
 * for them, and a relay that took them by catch-up would not pass their gossip on).
 * First measured (2 cores, trivial objective, peer processes, 10 s): 4 peers 127 -> 299 trials/s,
 * 8 peers 37 -> 122; 2 peers unchanged (their loops are not saturated, so they keep 20 ms). Later
 * figures are in bench/RESULTS.md. Growing 2k times a period and the host rule (session 7, 20 s runs
 * alternated, load 11 to 31): 16 peers 26.7 / 41.5 / 31.7 -> 57.1 / 64.7 / 47.4 trials/s (growth
 * alone); 8 peers 199 / 286 / 312 -> 249 / 384 / 447 (the host rule on top of the growth).
 */
import os from 'node:os';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { OUTBOX_GAP_MS } from './options.js';

/** Longest gap a peer asks for, or applies, between two gossip messages of one study. */
export const MAX_OUTBOX_GAP_MS = 1000;

const BUSY = 0.85;
/** Share of the loop's busy time in the study gossip handler from which a saturated peer asks for batching. */
export const GOSSIP_SHARE = 0.2;
const CALM = 0.6;

/** Share of a host's CPU time spent busy since the last call, over all its cores (from `os.cpus()`). */
export function hostCpuMeter(): () => number {
  let last = os.cpus().map((c) => c.times);
  return () => {
    const now = os.cpus().map((c) => c.times);
    let busy = 0;
    let all = 0;
    now.forEach((t, i) => {
      const p = last[i];
      if (!p) return;
      const idle = t.idle - p.idle;
      const total = t.user - p.user + (t.nice - p.nice) + (t.sys - p.sys) + (t.irq - p.irq) + idle;
      busy += total - idle;
      all += total;
    });
    last = now;
    return all > 0 ? busy / all : 0;
  };
}

/** Host CPU busy share from which a peer whose loop is past `CALM` counts as saturated. */
export const HOST_BUSY = 0.9;

export class Pacer {
  /** The gap this peer asks others to keep (announced in its heartbeats). */
  askMs = OUTBOX_GAP_MS;
  #last: EventLoopUtilization = performance.eventLoopUtilization();
  #gossipMs = 0;
  /** ELU, the share of the loop's busy time spent taking in study gossip, and the host's CPU busy share, over the last period (for stats). */
  lastElu = 0;
  lastGossipShare = 0;
  lastHostBusy = 0;

  /** `hostBusy`: the host's CPU busy share since its last call (tests pass their own). */
  constructor(private readonly hostBusy: () => number = hostCpuMeter()) {}

  /** Time spent in this peer's study gossip handler (decoding, checking and merging other peers' changes). */
  noteGossipMs(ms: number): void {
    this.#gossipMs += ms;
  }

  /**
   * Called once per heartbeat period: updates the gap asked for from the ELU since the last call, and
   * only while taking in other peers' gossip is at least `GOSSIP_SHARE` of the loop's busy time (the
   * transport's cost per message comes on top of it): a loop saturated by anything else (its own
   * sampling, a machine shared with other work) gains nothing from batching, and would only delay
   * trials' propagation and widen the numbering race.
   * Saturated: the loop busy past `BUSY`, or past `CALM` on a host whose CPU is busy past `HOST_BUSY`.
   * Several peers on one host (a lab machine running a worker per core, the bench's peer processes)
   * share its cores: each loop then waits for the CPU as much as it runs, and reads 0.6 to 0.8 while
   * the host has no time left (measured with 8 peer processes on 2 cores).
   * The gap grows `2 * stretch` times a period (`stretch`: heartbeatEvery): a big swarm, whose every
   * message costs more peers, reaches its bound in as few periods as a small one.
   */
  tick(stretch = 1): number {
    const now = performance.eventLoopUtilization();
    const d = performance.eventLoopUtilization(now, this.#last);
    // Too short a period says nothing (a timer fired twice in a row).
    if (d.idle + d.active < 50) return this.askMs;
    this.#last = now;
    this.lastElu = d.utilization;
    this.lastGossipShare = d.active > 0 ? Math.min(1, this.#gossipMs / d.active) : 0;
    this.lastHostBusy = this.hostBusy();
    this.#gossipMs = 0;
    const bound = MAX_OUTBOX_GAP_MS * stretch;
    const saturated = d.utilization > BUSY || (d.utilization > CALM && this.lastHostBusy > HOST_BUSY);
    if (saturated && this.lastGossipShare >= GOSSIP_SHARE) this.askMs = Math.min(bound, this.askMs * 2 * stretch);
    else if (this.askMs > bound) this.askMs = bound;
    else if (d.utilization < CALM || this.lastGossipShare < GOSSIP_SHARE / 2) this.askMs = Math.max(OUTBOX_GAP_MS, Math.round(this.askMs / 1.5));
    return this.askMs;
  }
}

/**
 * The gap a sender keeps: the median of what it and its study's live peers ask for, within bounds
 * (the upper one `stretch` times `MAX_OUTBOX_GAP_MS` in a big swarm: `heartbeatEvery` below).
 */
export function gapFor(own: number, asked: readonly number[], stretch = 1): number {
  const all = [own, ...asked].map((g) => Math.min(MAX_OUTBOX_GAP_MS * stretch, Math.max(OUTBOX_GAP_MS, Number.isFinite(g) ? g : OUTBOX_GAP_MS))).sort((a, b) => a - b);
  const m = all.length >> 1;
  return all.length % 2 ? all[m]! : Math.round((all[m - 1]! + all[m]!) / 2);
}

/**
 * Big swarms (issue 8). Every live peer's messages reach every peer, and each costs its receiver about
 * the same whatever it carries (the transport's 2 to 3 ms), so N peers each sending m messages a
 * second cost the swarm N(N-1)m of them. Measured with 16 peer processes on one 2-core host: idle,
 * heartbeats alone took about a core; saturated, each peer ran 2 trials a second, so every message
 * carried about one trial and message overhead was nearly all the work (30 trials/s in all).
 * Past `HEARTBEATS_PER_INTERVAL` live peers, a peer heartbeats only every k-th interval (k at most
 * `MAX_HEARTBEAT_STRETCH`, and less if `staleAfterMs` is short: `heartbeatEvery`), so each receives
 * about that many heartbeats per interval whatever the swarm's size, and the longest gap between its
 * gossip messages is k times `MAX_OUTBOX_GAP_MS`; the windows that wait for heartbeats (pacing's
 * freshness, anti-entropy's grace) stretch by the same k. Swarms of up to 4 live peers are unchanged.
 * Measured with 16 peer processes (20 s runs side by side, load 22 to 34 from other work): 4 per
 * interval (k = 4 at 16 peers) gave 70 / 14 / 90 / 34 trials/s against 26 / 29 / 28 / 25 with 8 per
 * interval (k = 2); 8 peers 257 against 227 (k = 2 against 1). Sybils that inflate the live count
 * stretch it at most k-fold: liveness verdicts (stale trials) run on `staleAfterMs`, far longer.
 */
export const HEARTBEATS_PER_INTERVAL = 4;
export const MAX_HEARTBEAT_STRETCH = 4;

/**
 * Every how many heartbeat intervals a peer that sees `livePeers` other live peers sends its heartbeat.
 * Never so rarely that fewer than three heartbeats fit in the grace after which a silent owner's
 * trials go stale (`staleMs`; with the defaults, 10 s and 1 s heartbeats, at most every 3rd interval).
 */
export function heartbeatEvery(livePeers: number, heartbeatMs = 1000, staleMs = Number.POSITIVE_INFINITY): number {
  const fit = Math.max(1, Math.floor(staleMs / (3 * heartbeatMs)));
  return Math.min(MAX_HEARTBEAT_STRETCH, fit, Math.max(1, Math.ceil(livePeers / HEARTBEATS_PER_INTERVAL)));
}
