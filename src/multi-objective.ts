/**
 * Pareto dominance and fronts: the one place that decides which trials are best when a study has
 * several directions (`study.bestTrials`, NSGA-II, MOTPE and the dashboard all call this).
 */
import type { FrozenTrial, StudyDirection } from './storage/storage.js';

/** Values turned so that smaller is better in every objective. */
export function toMinimize(values: readonly number[], directions: readonly StudyDirection[]): number[] {
  return values.map((v, i) => (directions[i] === 'maximize' ? -v : v));
}

/** a dominates b (both already in minimize form): no worse everywhere, strictly better somewhere. */
export function dominates(a: readonly number[], b: readonly number[]): boolean {
  let strictly = false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]! > b[i]!) return false;
    if (a[i]! < b[i]!) strictly = true;
  }
  return strictly;
}

/** The COMPLETE trials that no other COMPLETE trial dominates, in trial-number order. */
export function paretoFront(trials: readonly FrozenTrial[], directions: readonly StudyDirection[]): FrozenTrial[] {
  const done = trials.filter((t) => t.state === 'COMPLETE' && t.values !== null);
  const pts = done.map((t) => toMinimize(t.values!, directions));
  const front: FrozenTrial[] = [];
  for (let i = 0; i < done.length; i++) {
    let dominated = false;
    for (let j = 0; j < done.length && !dominated; j++) {
      if (j !== i && dominates(pts[j]!, pts[i]!)) dominated = true;
    }
    if (!dominated) front.push(done[i]!);
  }
  return front;
}

/**
 * Non-dominated sorting: ranks[i] = 0 for the first front, 1 for the next, ... (minimize form).
 * O(n^2 * m); fine for the history sizes HPO sees.
 */
export function nonDominatedRanks(points: readonly (readonly number[])[]): number[] {
  const n = points.length;
  const dominatedBy = new Array<number>(n).fill(0);
  const dominatesList: number[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (dominates(points[i]!, points[j]!)) {
        dominatesList[i]!.push(j);
        dominatedBy[j]!++;
      } else if (dominates(points[j]!, points[i]!)) {
        dominatesList[j]!.push(i);
        dominatedBy[i]!++;
      }
    }
  }
  const ranks = new Array<number>(n).fill(-1);
  let current = [];
  for (let i = 0; i < n; i++) if (dominatedBy[i] === 0) current.push(i);
  let rank = 0;
  while (current.length) {
    const next: number[] = [];
    for (const i of current) {
      ranks[i] = rank;
      for (const j of dominatesList[i]!) {
        if (--dominatedBy[j]! === 0) next.push(j);
      }
    }
    current = next;
    rank++;
  }
  return ranks;
}
