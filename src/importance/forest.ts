/**
 * A random forest regressor with scikit-learn's RandomForestRegressor semantics where the importance
 * evaluators depend on them: bootstrap samples, CART splits minimising squared error over every
 * feature (max_features = 1.0), thresholds halfway between neighbouring distinct values,
 * min_samples_split 2, min_samples_leaf 1, a max depth. Trees are flat arrays so fANOVA can walk them.
 */
import { Rng } from '../rng.js';

export interface ForestOptions {
  nTrees: number;
  maxDepth: number;
  seed?: number;
  minSamplesSplit?: number;
  minSamplesLeaf?: number;
}

/** One fitted tree. Node 0 is the root; leaves have feature -1. */
export interface Tree {
  feature: Int32Array;
  threshold: Float64Array;
  left: Int32Array;
  right: Int32Array;
  /** Weighted mean of y in the node (the prediction at a leaf). */
  value: Float64Array;
  /** Weighted squared-error impurity decrease the split at this node achieved (0 at leaves). */
  gain: Float64Array;
  size: number;
}

export function fitForest(X: readonly Float64Array[], y: Float64Array, opts: ForestOptions): Tree[] {
  const n = y.length;
  const rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 31));
  const trees: Tree[] = [];
  for (let t = 0; t < opts.nTrees; t++) {
    // Bootstrap as sample weights (counts), as sklearn does.
    const w = new Float64Array(n);
    for (let i = 0; i < n; i++) w[rng.int(0, n - 1)]! += 1;
    trees.push(fitTree(X, y, w, opts, rng));
  }
  return trees;
}

class Builder {
  feature: number[] = [];
  threshold: number[] = [];
  left: number[] = [];
  right: number[] = [];
  value: number[] = [];
  gain: number[] = [];
  add(value: number): number {
    this.feature.push(-1);
    this.threshold.push(0);
    this.left.push(-1);
    this.right.push(-1);
    this.value.push(value);
    this.gain.push(0);
    return this.value.length - 1;
  }
}

function fitTree(X: readonly Float64Array[], y: Float64Array, w: Float64Array, opts: ForestOptions, rng: Rng): Tree {
  const nFeatures = X.length;
  const minSplit = opts.minSamplesSplit ?? 2;
  const minLeaf = opts.minSamplesLeaf ?? 1;
  const b = new Builder();
  const rootIdx: number[] = [];
  for (let i = 0; i < y.length; i++) if (w[i]! > 0) rootIdx.push(i);
  const stack: { idx: number[]; node: number; depth: number }[] = [];
  const root = b.add(mean(rootIdx, y, w));
  stack.push({ idx: rootIdx, node: root, depth: 0 });
  // Features are visited in a random order per node, as sklearn does, so ties between equally good
  // splits go to a random feature rather than always the first column.
  const order = Array.from({ length: nFeatures }, (_, i) => i);
  while (stack.length) {
    const { idx, node, depth } = stack.pop()!;
    let wsum = 0;
    let s = 0;
    let s2 = 0;
    for (const i of idx) {
      wsum += w[i]!;
      s += w[i]! * y[i]!;
      s2 += w[i]! * y[i]! * y[i]!;
    }
    const impurity = s2 / wsum - (s / wsum) ** 2;
    if (depth >= opts.maxDepth || wsum < minSplit || impurity <= 1e-7 * Math.max(1, (s / wsum) ** 2) || idx.length < 2) continue;
    for (let k = nFeatures - 1; k > 0; k--) {
      const j = rng.int(0, k);
      [order[k], order[j]] = [order[j]!, order[k]!];
    }
    let bestGain = 0;
    let bestF = -1;
    let bestT = 0;
    for (const f of order) {
      const col = X[f]!;
      const sorted = idx.slice().sort((a, c) => col[a]! - col[c]!);
      let lw = 0;
      let ls = 0;
      for (let k = 0; k < sorted.length - 1; k++) {
        const i = sorted[k]!;
        lw += w[i]!;
        ls += w[i]! * y[i]!;
        const xv = col[i]!;
        const xn = col[sorted[k + 1]!]!;
        if (xn <= xv + 1e-12 * Math.max(1, Math.abs(xv))) continue;
        const rw = wsum - lw;
        if (lw < minLeaf || rw < minLeaf) continue;
        const rs = s - ls;
        // Impurity decrease (weighted): sum of squares explained by the two means.
        const gain = (ls * ls) / lw + (rs * rs) / rw - (s * s) / wsum;
        if (gain > bestGain + 1e-12 * Math.abs(bestGain)) {
          bestGain = gain;
          bestF = f;
          bestT = xv / 2 + xn / 2;
        }
      }
    }
    if (bestF < 0) continue;
    const col = X[bestF]!;
    const li: number[] = [];
    const ri: number[] = [];
    for (const i of idx) (col[i]! <= bestT ? li : ri).push(i);
    const l = b.add(mean(li, y, w));
    const r = b.add(mean(ri, y, w));
    b.feature[node] = bestF;
    b.threshold[node] = bestT;
    b.left[node] = l;
    b.right[node] = r;
    b.gain[node] = bestGain;
    stack.push({ idx: li, node: l, depth: depth + 1 }, { idx: ri, node: r, depth: depth + 1 });
  }
  return {
    feature: Int32Array.from(b.feature),
    threshold: Float64Array.from(b.threshold),
    left: Int32Array.from(b.left),
    right: Int32Array.from(b.right),
    value: Float64Array.from(b.value),
    gain: Float64Array.from(b.gain),
    size: b.value.length,
  };
}

function mean(idx: number[], y: Float64Array, w: Float64Array): number {
  let s = 0;
  let ws = 0;
  for (const i of idx) {
    s += w[i]! * y[i]!;
    ws += w[i]!;
  }
  return ws > 0 ? s / ws : 0;
}

export function predict(tree: Tree, x: ArrayLike<number>): number {
  let n = 0;
  while (tree.feature[n]! >= 0) n = x[tree.feature[n]!]! <= tree.threshold[n]! ? tree.left[n]! : tree.right[n]!;
  return tree.value[n]!;
}
