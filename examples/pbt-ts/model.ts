/**
 * A small model for the PBT example, written out in full: a one-hidden-layer MLP (tanh, softmax) on a
 * seeded two-arm spiral, trained by full-batch gradient descent with momentum. Its whole training state
 * (weights and velocities) is plain JSON, so a checkpoint is one small file.
 */
import { Rng } from '../../src/index.js';

export interface Data {
  x: number[][];
  y: number[];
}

/** Two interleaved spirals with noise: `n` points per arm; train and validation come from different seeds. */
export function spiral(n: number, seed: number): Data {
  const rng = new Rng(seed);
  const x: number[][] = [];
  const y: number[] = [];
  for (let arm = 0; arm < 2; arm++) {
    for (let i = 0; i < n; i++) {
      const r = (i / n) * 5 + 0.3;
      const t = (i / n) * 2 * Math.PI + arm * Math.PI;
      x.push([r * Math.cos(t) / 5 + rng.normal() * 0.04, r * Math.sin(t) / 5 + rng.normal() * 0.04]);
      y.push(arm);
    }
  }
  return { x, y };
}

export interface State {
  w1: number[];
  b1: number[];
  w2: number[];
  b2: number[];
  v: number[][];
}

export const HIDDEN = 24;

export function initialState(seed: number): State {
  const rng = new Rng(seed);
  const init = (n: number, fanIn: number) => Array.from({ length: n }, () => rng.normal() * Math.sqrt(1 / fanIn));
  const s = { w1: init(2 * HIDDEN, 2), b1: new Array<number>(HIDDEN).fill(0), w2: init(HIDDEN * 2, HIDDEN), b2: [0, 0] };
  return { ...s, v: [s.w1, s.b1, s.w2, s.b2].map((p) => p.map(() => 0)) };
}

function forward(s: State, x: number[]): { h: number[]; p: number[] } {
  const h = Array.from({ length: HIDDEN }, (_, j) => Math.tanh(s.b1[j]! + x[0]! * s.w1[j]! + x[1]! * s.w1[HIDDEN + j]!));
  const z = [0, 1].map((k) => s.b2[k]! + h.reduce((a, hj, j) => a + hj * s.w2[j * 2 + k]!, 0));
  const m = Math.max(z[0]!, z[1]!);
  const e = z.map((v) => Math.exp(v - m));
  return { h, p: e.map((v) => v / (e[0]! + e[1]!)) };
}

/** Mean cross-entropy and accuracy on `d`. */
export function evaluate(s: State, d: Data): { loss: number; accuracy: number } {
  let loss = 0;
  let right = 0;
  d.x.forEach((x, i) => {
    const { p } = forward(s, x);
    loss -= Math.log(Math.max(p[d.y[i]!]!, 1e-12));
    if ((p[1]! > p[0]! ? 1 : 0) === d.y[i]) right++;
  });
  return { loss: loss / d.x.length, accuracy: right / d.x.length };
}

/** One full-batch step of gradient descent with momentum: v = momentum * v - lr * grad; w += v. */
export function trainStep(s: State, d: Data, lr: number, momentum: number): void {
  const params = [s.w1, s.b1, s.w2, s.b2];
  const grads = params.map((p) => p.map(() => 0));
  const [g1, gb1, g2, gb2] = grads as [number[], number[], number[], number[]];
  d.x.forEach((x, i) => {
    const { h, p } = forward(s, x);
    const dz = [p[0]! - (d.y[i] === 0 ? 1 : 0), p[1]! - (d.y[i] === 1 ? 1 : 0)];
    for (let k = 0; k < 2; k++) gb2[k]! += dz[k]!;
    for (let j = 0; j < HIDDEN; j++) {
      let dh = 0;
      for (let k = 0; k < 2; k++) {
        g2[j * 2 + k]! += h[j]! * dz[k]!;
        dh += s.w2[j * 2 + k]! * dz[k]!;
      }
      const da = dh * (1 - h[j]! * h[j]!);
      gb1[j]! += da;
      g1[j]! += x[0]! * da;
      g1[HIDDEN + j]! += x[1]! * da;
    }
  });
  params.forEach((p, a) => {
    for (let i = 0; i < p.length; i++) {
      const v = momentum * s.v[a]![i]! - (lr * grads[a]![i]!) / d.x.length;
      s.v[a]![i] = v;
      p[i]! += v;
    }
  });
}
