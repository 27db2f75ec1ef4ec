/**
 * A fast non-dominated filter over plain points (minimize form) for the Pareto-front plot, which
 * draws thousands of trials: sorted by the first objective, each point is checked against the front
 * kept so far instead of every other point. Dominance itself is decided by multi-objective.ts.
 */
import { dominates } from '../multi-objective.js';

/** Indices of the points no other point dominates (duplicates both kept). O(n * front). */
export function nonDominatedIndices(points: readonly (readonly number[])[]): number[] {
  const order = points.map((_, i) => i).sort((a, b) => points[a]![0]! - points[b]![0]! || lexi(points[a]!, points[b]!));
  const front: number[] = [];
  for (const i of order) {
    const p = points[i]!;
    if (p.some((x) => !Number.isFinite(x))) continue;
    // Sorted by the first objective, so a later point never dominates an earlier kept one unless equal there.
    let dominated = false;
    for (const j of front) {
      if (dominates(points[j]!, p)) {
        dominated = true;
        break;
      }
    }
    if (dominated) continue;
    for (let k = front.length - 1; k >= 0; k--) if (dominates(p, points[front[k]!]!)) front.splice(k, 1);
    front.push(i);
  }
  return front.sort((a, b) => a - b);
}

function lexi(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}
