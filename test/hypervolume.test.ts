/**
 * hypervolume(): hand-computed cases in 2 and 3 dimensions, inclusion-exclusion over every subset on
 * random sets (2 to 5 objectives), and parity with Optuna 3.1's WFG where /usr/bin/python3 has Optuna.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { greedyHypervolumeOrder, hypervolume, hypervolumeContributions, Rng } from '../src/index.js';

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} != ${b}`);

test('2-D: hand-computed staircase, dominated and outside points add nothing', () => {
  // (1,3), (2,2), (3,1) against (4,4): 3*1 + 2*1 + 1*1 strips = 3 + 2 + 1 = 6.
  close(hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]), 6);
  close(hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0], [2, 2]], [4, 4]), 6);
  assert.equal(hypervolume([], [1, 1]), 0);
  assert.equal(hypervolume([[1, 1]], [1, 2]), 0, 'a point on the reference boundary adds nothing');
});

test('3-D: hand-computed cases', () => {
  close(hypervolume([[0, 0, 0]], [1, 2, 3]), 6);
  // Two unit-offset boxes: [0,2]x[0,2]x[1,2] (vol 4) and [1,2]x[1,2]x[0,2]... union by inclusion-exclusion.
  // A=(0,0,1): box 2*2*1 = 4; B=(1,1,0): box 1*1*2 = 2; A∩B = (1,1,1): 1. Union 5.
  close(hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]), 5);
  // Three axis points of a cube of side 2 at depth 1: each box 1*2*2=4... A=(1,0,0),B=(0,1,0),C=(0,0,1):
  // pairs intersect in (1,1,0) etc.: 2 each; all three in (1,1,1): 1. 3*4 - 3*2 + 1 = 7.
  close(hypervolume([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [2, 2, 2]), 7);
});

/** Inclusion-exclusion over all non-empty subsets: exact, exponential, for small sets only. */
function bruteForce(points: number[][], ref: number[]): number {
  const inside = points.filter((p) => p.every((v, k) => v < ref[k]!));
  let total = 0;
  for (let mask = 1; mask < 1 << inside.length; mask++) {
    const corner = ref.map(() => -Infinity);
    let bits = 0;
    for (let i = 0; i < inside.length; i++) {
      if (!(mask & (1 << i))) continue;
      bits++;
      inside[i]!.forEach((v, k) => (corner[k] = Math.max(corner[k]!, v)));
    }
    const vol = corner.reduce((acc, c, k) => acc * (ref[k]! - c), 1);
    total += bits % 2 ? vol : -vol;
  }
  return total;
}

function randomSet(rng: Rng, n: number, m: number, front: boolean): number[][] {
  return Array.from({ length: n }, () => {
    const p = Array.from({ length: m }, () => rng.random());
    if (!front) return p;
    const norm = Math.hypot(...p); // points on a sphere: mostly mutually non-dominated
    return p.map((v) => 1 - v / norm);
  });
}

test('random sets in 2 to 5 objectives match inclusion-exclusion', () => {
  const rng = new Rng('hv-random');
  for (const m of [2, 3, 4, 5]) {
    for (let rep = 0; rep < 15; rep++) {
      const pts = randomSet(rng, 3 + (rep % 9), m, rep % 2 === 0);
      const ref = Array.from({ length: m }, () => 1.05);
      close(hypervolume(pts, ref), bruteForce(pts, ref), 1e-9);
    }
  }
});

test('contributions and greedy subset order agree with their definitions', () => {
  const pts = [[1, 3], [2, 2], [3, 1]];
  assert.deepEqual(hypervolumeContributions(pts, [4, 4]).map((v) => Math.round(v * 1e9) / 1e9), [1, 1, 1]);
  const rng = new Rng('hssp');
  for (let rep = 0; rep < 10; rep++) {
    const m = 2 + (rep % 3);
    const cand = randomSet(rng, 9, m, true);
    const ref = Array.from({ length: m }, () => 1.1);
    const order = greedyHypervolumeOrder(cand, ref, 4);
    const chosen: number[][] = [];
    for (const i of order) {
      const gains = cand.map((p, j) => (order.slice(0, chosen.length).includes(j) ? -1 : hypervolume([...chosen, p], ref)));
      close(hypervolume([...chosen, cand[i]!], ref), Math.max(...gains), 1e-12);
      chosen.push(cand[i]!);
    }
  }
});

function optunaHypervolumes(sets: { points: number[][]; ref: number[] }[]): number[] | null {
  const script = [
    'import json, sys, numpy as np',
    'from optuna._hypervolume import WFG',
    'sets = json.load(sys.stdin)',
    'print(json.dumps([float(WFG().compute(np.array(s["points"], dtype=float), np.array(s["ref"], dtype=float))) for s in sets]))',
  ].join('\n');
  try {
    return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(sets), encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] })) as number[];
  } catch {
    return null;
  }
}

test('parity with Optuna 3.1 WFG on random sets (2 to 5 objectives, up to 60 points)', (t) => {
  const rng = new Rng('hv-optuna');
  const sets: { points: number[][]; ref: number[] }[] = [];
  for (const m of [2, 3, 4, 5]) {
    for (const n of [5, 20, m <= 3 ? 60 : 25]) {
      // Optuna's WFG expects every point to dominate the reference point.
      sets.push({ points: randomSet(rng, n, m, true), ref: Array.from({ length: m }, () => 1.2) });
    }
  }
  const theirs = optunaHypervolumes(sets);
  if (!theirs) {
    t.skip('/usr/bin/python3 with optuna._hypervolume.WFG is not available here');
    return;
  }
  sets.forEach((s, i) => close(hypervolume(s.points, s.ref), theirs[i]!, 1e-9));
});
