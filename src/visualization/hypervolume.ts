/**
 * Hypervolume and a fast non-dominated filter over plain points (minimize form), for the Pareto-front
 * and hypervolume-history plots. Written here because no src/hypervolume.ts existed when the plots
 * needed one; dominance itself is decided by multi-objective.ts.
 *
 * hypervolume: exact, by slicing along the last objective (2-D is a sort and a sweep; m-D recurses
 * on m-1 dimensions), fine for the front sizes a study has.
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

/** Volume dominated by `points` and bounded by `reference` (all minimize form). Points not better than the reference in every objective add nothing. */
export function hypervolume(points: readonly (readonly number[])[], reference: readonly number[]): number {
  const m = reference.length;
  const inside = points.filter((p) => p.length === m && p.every((x, i) => x < reference[i]!));
  if (inside.length === 0) return 0;
  return hv(inside.map((p) => [...p]), [...reference], m);
}

function hv(points: number[][], ref: number[], m: number): number {
  if (m === 1) {
    let best = Infinity;
    for (const p of points) if (p[0]! < best) best = p[0]!;
    return Math.max(0, ref[0]! - best);
  }
  if (m === 2) {
    const ps = points.slice().sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
    let area = 0;
    let lastY = ref[1]!;
    for (const p of ps) {
      if (p[1]! < lastY) {
        area += (ref[0]! - p[0]!) * (lastY - p[1]!);
        lastY = p[1]!;
      }
    }
    return area;
  }
  const d = m - 1;
  const ps = points.slice().sort((a, b) => a[d]! - b[d]!);
  let volume = 0;
  const slab: number[][] = [];
  for (let i = 0; i < ps.length; i++) {
    slab.push(ps[i]!);
    const top = i + 1 < ps.length ? ps[i + 1]![d]! : ref[d]!;
    const height = top - ps[i]![d]!;
    if (height > 0) {
      const kept = nonDominatedIndices(slab.map((p) => p.slice(0, d))).map((k) => slab[k]!.slice(0, d));
      volume += height * hv(kept, ref.slice(0, d), d);
    }
  }
  return volume;
}
