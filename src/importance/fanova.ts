/**
 * fANOVA on a fitted random forest (Hutter, Hoos and Leyton-Brown 2014, as Optuna's
 * FanovaImportanceEvaluator): a tree is a piecewise-constant function over the bounded search space;
 * a param's importance in that tree is the variance of the tree's marginal over the param (averaging
 * out every other column over its bounds) divided by the tree's total variance; the forest's is the
 * mean over trees whose variance is not zero.
 *
 * The marginal over a column group (a categorical param is a group of one-hot columns) is constant on
 * the cells of the grid its split thresholds cut, so each leaf adds its value times the fraction of
 * the other columns' space it covers to a box of cells: a difference array for one column, a walk over
 * the box for a group.
 */
import type { Tree } from './forest.js';

interface Leaf {
  lo: Float64Array;
  hi: Float64Array;
  value: number;
}

export class FanovaTree {
  private readonly leaves: Leaf[] = [];
  private readonly thresholds: number[][];
  readonly mean: number;
  readonly variance: number;

  constructor(
    tree: Tree,
    private readonly bounds: readonly (readonly [number, number])[],
  ) {
    const d = bounds.length;
    this.thresholds = bounds.map(() => []);
    const walk = (node: number, lo: Float64Array, hi: Float64Array): void => {
      const f = tree.feature[node]!;
      if (f < 0) {
        this.leaves.push({ lo, hi, value: tree.value[node]! });
        return;
      }
      const t = tree.threshold[node]!;
      if (t > bounds[f]![0] && t < bounds[f]![1]) this.thresholds[f]!.push(t);
      // A split outside the bounds (a trial outside the declared range) leaves one side empty.
      const lhi = hi.slice();
      lhi[f] = Math.min(hi[f]!, t);
      const rlo = lo.slice();
      rlo[f] = Math.max(lo[f]!, t);
      if (lhi[f]! > lo[f]!) walk(tree.left[node]!, lo, lhi);
      if (hi[f]! > rlo[f]!) walk(tree.right[node]!, rlo, hi);
    };
    const lo = Float64Array.from(bounds, (b) => b[0]);
    const hi = Float64Array.from(bounds, (b) => b[1]);
    if (tree.feature[0]! < 0) this.leaves.push({ lo, hi, value: tree.value[0]! });
    else walk(0, lo, hi);
    for (let f = 0; f < d; f++) this.thresholds[f] = [...new Set(this.thresholds[f])].sort((a, b) => a - b);
    let m = 0;
    const fr = this.leaves.map((l) => this.fraction(l, null));
    this.leaves.forEach((l, i) => (m += fr[i]! * l.value));
    let v = 0;
    this.leaves.forEach((l, i) => (v += fr[i]! * (l.value - m) ** 2));
    this.mean = m;
    this.variance = v;
  }

  private width(f: number): number {
    return this.bounds[f]![1] - this.bounds[f]![0];
  }

  /** Fraction of the space (outside `skip` columns) the leaf covers. */
  private fraction(l: Leaf, skip: ReadonlySet<number> | null): number {
    let p = 1;
    for (let f = 0; f < this.bounds.length; f++) {
      if (skip?.has(f)) continue;
      const w = this.width(f);
      if (w > 0) p *= (l.hi[f]! - l.lo[f]!) / w;
    }
    return p;
  }

  /** Variance of the marginal of the tree over the column group `features`. */
  marginalVariance(features: readonly number[]): number {
    const skip = new Set(features);
    // Cell edges per column of the group.
    const edges = features.map((f) => [this.bounds[f]![0], ...this.thresholds[f]!, this.bounds[f]![1]]);
    const dims = edges.map((e) => e.length - 1);
    const nCells = dims.reduce((a, b) => a * b, 1);
    const acc = new Float64Array(nCells + 1);
    const cellRange = (k: number, lo: number, hi: number): [number, number] => {
      const e = edges[k]!;
      return [lowerIndex(e, lo), lowerIndex(e, hi)];
    };
    for (const l of this.leaves) {
      const c = l.value * this.fraction(l, skip);
      if (features.length === 1) {
        const [a, b] = cellRange(0, l.lo[features[0]!]!, l.hi[features[0]!]!);
        acc[a]! += c;
        acc[b]! -= c;
        continue;
      }
      const ranges = features.map((f, k) => cellRange(k, l.lo[f]!, l.hi[f]!));
      const idx = ranges.map((r) => r[0]);
      for (;;) {
        let flat = 0;
        for (let k = 0; k < dims.length; k++) flat = flat * dims[k]! + idx[k]!;
        acc[flat]! += c;
        let k = dims.length - 1;
        while (k >= 0) {
          idx[k]!++;
          if (idx[k]! < ranges[k]![1]) break;
          idx[k] = ranges[k]![0];
          k--;
        }
        if (k < 0) break;
      }
    }
    if (features.length === 1) for (let i = 1; i <= nCells; i++) acc[i]! += acc[i - 1]!;
    // Weighted variance of the marginal over the cells (weights = cell volume fraction).
    let v = 0;
    const idx = new Array<number>(dims.length).fill(0);
    for (let flat = 0; flat < nCells; flat++) {
      let wgt = 1;
      for (let k = 0; k < dims.length; k++) {
        const w = this.width(features[k]!);
        if (w > 0) wgt *= (edges[k]![idx[k]! + 1]! - edges[k]![idx[k]!]!) / w;
      }
      v += wgt * (acc[flat]! - this.mean) ** 2;
      for (let k = dims.length - 1; k >= 0; k--) {
        idx[k]!++;
        if (idx[k]! < dims[k]!) break;
        idx[k] = 0;
      }
    }
    return v;
  }
}

/** Index of the cell edge equal to `x` (x is always an edge: a bound or a threshold). */
function lowerIndex(edges: readonly number[], x: number): number {
  let lo = 0;
  let hi = edges.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (edges[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Mean over trees of marginal variance / tree variance, per column group. */
export function fanovaImportances(trees: readonly Tree[], bounds: readonly (readonly [number, number])[], groups: readonly (readonly number[])[]): number[] {
  const sums = new Array<number>(groups.length).fill(0);
  let counted = 0;
  for (const t of trees) {
    const ft = new FanovaTree(t, bounds);
    if (!(ft.variance > 0)) continue;
    counted++;
    groups.forEach((g, i) => (sums[i]! += ft.marginalVariance(g) / ft.variance));
  }
  return sums.map((s) => (counted ? s / counted : 0));
}
