/**
 * Hypervolume: the volume of objective space (minimize form) dominated by a set of points and bounded
 * by a reference point. The measure every multi-objective comparison here uses: MOTPE's subset
 * selection and below weights, the benchmarks, and `plotHypervolumeHistory` later.
 * Exact in every dimension: a sweep for 2 objectives (O(n log n)), slabs along the last objective for
 * 3 (O(n^2 log n)), and the WFG algorithm (While, Bradstreet & Barone 2012: exclusive volumes of
 * limit sets, recursing on non-dominated subsets) for 4 and more.
 */
import { PeertuneError } from './errors.js';
import { dominates } from './multi-objective.js';

export class HypervolumeError extends PeertuneError {
  override name = 'HypervolumeError';
}

/**
 * The hypervolume of `points` (every objective minimized) with respect to `reference`. Points that do
 * not strictly dominate the reference point in every objective add nothing. Maximized objectives must
 * be negated first (see `toMinimize`), and so must the reference point.
 */
export function hypervolume(points: readonly (readonly number[])[], reference: readonly number[]): number {
  const m = reference.length;
  if (m === 0) throw new HypervolumeError('hypervolume: the reference point has no coordinates');
  for (const r of reference) if (Number.isNaN(r)) throw new HypervolumeError('hypervolume: the reference point has a NaN coordinate');
  const inside: number[][] = [];
  for (const [i, p] of points.entries()) {
    if (p.length !== m) throw new HypervolumeError(`hypervolume: point ${i} has ${p.length} coordinates, the reference point ${m}`);
    let ok = true;
    for (let k = 0; k < m; k++) {
      if (Number.isNaN(p[k]!)) throw new HypervolumeError(`hypervolume: point ${i} has a NaN coordinate`);
      if (!(p[k]! < reference[k]!)) ok = false;
    }
    if (ok) inside.push([...p]);
  }
  if (inside.length === 0) return 0;
  return volume(inside, reference);
}

/** Volume of points that all strictly dominate `ref` (no filtering). */
function volume(pts: number[][], ref: readonly number[]): number {
  const m = ref.length;
  if (pts.length === 0) return 0;
  if (pts.length === 1) return box(pts[0]!, ref);
  if (m === 1) return ref[0]! - Math.min(...pts.map((p) => p[0]!));
  if (m === 2) return volume2d(pts, ref);
  if (m === 3) return volume3d(pts, ref);
  return wfg(nonDominated(pts), ref);
}

function box(p: readonly number[], ref: readonly number[]): number {
  let v = 1;
  for (let k = 0; k < ref.length; k++) v *= ref[k]! - p[k]!;
  return v;
}

function volume2d(pts: readonly (readonly number[])[], ref: readonly number[]): number {
  const s = [...pts].sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let v = 0;
  let yMin = ref[1]!;
  for (const p of s) {
    if (p[1]! < yMin) {
      v += (ref[0]! - p[0]!) * (yMin - p[1]!);
      yMin = p[1]!;
    }
  }
  return v;
}

/** Slabs between consecutive third coordinates, each the 2-D volume of the points below it. */
function volume3d(pts: readonly (readonly number[])[], ref: readonly number[]): number {
  const s = [...pts].sort((a, b) => a[2]! - b[2]!);
  const ref2 = [ref[0]!, ref[1]!];
  // Keep the 2-D staircase sorted by x as points arrive (insertion keeps it O(n) per point).
  const stair: number[][] = [];
  let v = 0;
  for (let i = 0; i < s.length; i++) {
    const p = s[i]!;
    insertStair(stair, p[0]!, p[1]!);
    const zNext = i + 1 < s.length ? s[i + 1]![2]! : ref[2]!;
    if (zNext > p[2]!) v += volume2dSorted(stair, ref2) * (zNext - p[2]!);
  }
  return v;
}

/** Adds (x, y) to a non-dominated staircase sorted by x ascending (y descending). */
function insertStair(stair: number[][], x: number, y: number): void {
  let lo = 0;
  let hi = stair.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (stair[mid]![0]! < x || (stair[mid]![0] === x && stair[mid]![1]! <= y)) lo = mid + 1;
    else hi = mid;
  }
  // Dominated by the point just before (smaller or equal x, and y no larger)?
  if (lo > 0 && stair[lo - 1]![1]! <= y) return;
  // Remove the points it dominates: from lo on, with y >= this y.
  let end = lo;
  while (end < stair.length && stair[end]![1]! >= y) end++;
  stair.splice(lo, end - lo, [x, y]);
}

function volume2dSorted(stair: readonly number[][], ref: readonly number[]): number {
  let v = 0;
  let yMin = ref[1]!;
  for (const p of stair) {
    v += (ref[0]! - p[0]!) * (yMin - p[1]!);
    yMin = p[1]!;
  }
  return v;
}

/** The points no other point dominates (duplicates kept once). */
function nonDominated(pts: number[][]): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < pts.length; i++) {
    let keep = true;
    for (let j = 0; j < pts.length && keep; j++) {
      if (j === i) continue;
      if (dominates(pts[j]!, pts[i]!)) keep = false;
      else if (j < i && pts[j]!.every((v, k) => v === pts[i]![k])) keep = false;
    }
    if (keep) out.push(pts[i]!);
  }
  return out;
}

/** WFG: the volume is the sum over points of each one's volume not covered by the points after it. */
function wfg(pts: number[][], ref: readonly number[]): number {
  if (pts.length === 0) return 0;
  if (pts.length === 1) return box(pts[0]!, ref);
  if (ref.length <= 3) return volume(pts, ref);
  // Sorting by the first objective keeps the limit sets small.
  pts.sort((a, b) => b[0]! - a[0]!);
  let v = 0;
  for (let i = 0; i < pts.length; i++) {
    const p = pts[i]!;
    const limited: number[][] = [];
    for (let j = i + 1; j < pts.length; j++) limited.push(pts[j]!.map((q, k) => Math.max(q, p[k]!)));
    v += box(p, ref) - wfg(nonDominated(limited), ref);
  }
  return v;
}

/**
 * The reference point Optuna's multi-objective TPE uses for a set of loss vectors: 1.1 times the worst
 * value of each objective (0.9 times when it is negative), and a tiny positive number where that is 0.
 */
export function optunaReferencePoint(points: readonly (readonly number[])[]): number[] {
  const m = points[0]!.length;
  const ref: number[] = [];
  for (let k = 0; k < m; k++) {
    let worst = -Infinity;
    for (const p of points) worst = Math.max(worst, p[k]!);
    const r = Math.max(1.1 * worst, 0.9 * worst);
    ref.push(r === 0 ? 1e-12 : r);
  }
  return ref;
}

/**
 * Greedy hypervolume subset selection: the order in which points would be picked, each time the one
 * adding the most volume to those already picked (at most `k` picks). The greedy choice of k points is
 * a prefix of the choice of k + 1, so one order serves every subset size up to k.
 */
export function greedyHypervolumeOrder(points: readonly (readonly number[])[], reference: readonly number[], k = points.length): number[] {
  const n = points.length;
  const picked: number[] = [];
  const chosen: number[][] = [];
  const left = new Set<number>(Array.from({ length: n }, (_, i) => i));
  // Upper bounds on each point's gain (gains only shrink as the set grows: submodularity).
  const bound = points.map((p) => boxClamped(p, reference));
  let current = 0;
  while (picked.length < Math.min(k, n)) {
    let best = -1;
    let bestGain = -Infinity;
    const order = [...left].sort((a, b) => bound[b]! - bound[a]! || a - b);
    for (const i of order) {
      if (bound[i]! < bestGain) break;
      const gain = chosen.length === 0 ? bound[i]! : hypervolume([...chosen, points[i]!], reference) - current;
      bound[i] = gain;
      if (gain > bestGain || (gain === bestGain && i < best)) {
        bestGain = gain;
        best = i;
      }
    }
    picked.push(best);
    chosen.push([...points[best]!]);
    left.delete(best);
    current += bestGain;
  }
  return picked;
}

function boxClamped(p: readonly number[], ref: readonly number[]): number {
  let v = 1;
  for (let k = 0; k < ref.length; k++) v *= Math.max(0, ref[k]! - p[k]!);
  return v;
}

/** Each point's exclusive contribution: the volume lost if it alone were removed. */
export function hypervolumeContributions(points: readonly (readonly number[])[], reference: readonly number[]): number[] {
  const total = hypervolume(points, reference);
  return points.map((_, i) => total - hypervolume(points.filter((__, j) => j !== i), reference));
}
