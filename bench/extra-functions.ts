/**
 * Benchmark functions outside the public suite, so that defaults are not judged only on the functions
 * they were tuned on: Styblinski-Tang (5-D), Levy (6-D) and a shifted, rotated Rosenbrock (4-D, a
 * fixed random rotation: no axis-aligned structure for a sampler to exploit). They have the suite's
 * shape (`SuiteFunction`), so the Optuna driver (bench/optuna/suite_worker.py) suggests their
 * parameters unchanged, and they are evaluated here, in TypeScript, for both libraries.
 */
import { Rng } from '../src/index.js';
import type { Trial } from '../src/index.js';
import { evaluate, suggestSuiteParams, type SuiteFunction, type SuiteValue } from './suite.js';

function floats(name: string, family: string, dim: number, low: number, high: number, optimum: number): SuiteFunction {
  return {
    name,
    group: 'extra',
    family,
    dim,
    params: Array.from({ length: dim }, (_, i) => ({ name: `x${i + 1}`, type: 'float' as const, low, high, log: false, step: null, choices: null, condition: null })),
    constants: {},
    formula: '',
    optimum: { value: optimum, argmin: {} },
  };
}

const vec = (f: SuiteFunction, p: Record<string, SuiteValue>): number[] => f.params.map((q) => p[q.name] as number);

/** A fixed orthogonal matrix (Gram-Schmidt on seeded normal vectors) and shift for the rotated function. */
const ROT_DIM = 4;
const rotation: number[][] = (() => {
  const rng = new Rng('extra-functions-rotation');
  const rows: number[][] = [];
  while (rows.length < ROT_DIM) {
    const v = Array.from({ length: ROT_DIM }, () => rng.normal());
    for (const r of rows) {
      const dot = r.reduce((a, x, i) => a + x * v[i]!, 0);
      r.forEach((x, i) => (v[i]! -= dot * x));
    }
    const norm = Math.hypot(...v);
    if (norm > 1e-6) rows.push(v.map((x) => x / norm));
  }
  return rows;
})();
const SHIFT = [1.3, -2.1, 0.7, 2.4];

const FAMILIES: Partial<Record<string, (f: SuiteFunction, p: Record<string, SuiteValue>) => number>> = {
  'styblinski-tang'(f, p) {
    return vec(f, p).reduce((a, x) => a + 0.5 * (x ** 4 - 16 * x ** 2 + 5 * x), 0);
  },
  levy(f, p) {
    const w = vec(f, p).map((x) => 1 + (x - 1) / 4);
    const d = w.length;
    let s = Math.sin(Math.PI * w[0]!) ** 2;
    for (let i = 0; i < d - 1; i++) s += (w[i]! - 1) ** 2 * (1 + 10 * Math.sin(Math.PI * w[i]! + 1) ** 2);
    s += (w[d - 1]! - 1) ** 2 * (1 + Math.sin(2 * Math.PI * w[d - 1]!) ** 2);
    return s;
  },
  'rotated-rosenbrock'(f, p) {
    const x = vec(f, p).map((v, i) => v - SHIFT[i]!);
    // z = R (x - shift) + 1: the minimum (0) sits at x = shift.
    const z = rotation.map((r) => 1 + r.reduce((a, c, i) => a + c * x[i]!, 0));
    let s = 0;
    for (let i = 0; i < z.length - 1; i++) s += 100 * (z[i + 1]! - z[i]! ** 2) ** 2 + (1 - z[i]!) ** 2;
    return s;
  },
};

export const EXTRA_FUNCTIONS: SuiteFunction[] = [
  floats('styblinski_tang5', 'styblinski-tang', 5, -5, 5, -39.16616570377142 * 5),
  floats('levy6', 'levy', 6, -10, 10, 0),
  floats('rotated_rosenbrock4', 'rotated-rosenbrock', ROT_DIM, -5, 5, 0),
];

/** f(params) for a suite function or one of the extra ones. */
export function evaluateAny(f: SuiteFunction, params: Record<string, SuiteValue>): number {
  const extra = FAMILIES[f.family];
  return extra && f.group === 'extra' ? extra(f, params) : evaluate(f, params);
}

export function objectiveAny(f: SuiteFunction): (trial: Trial) => number {
  return (trial) => evaluateAny(f, suggestSuiteParams(trial, f));
}
