/**
 * The public benchmark suite (bench/suite-data/suite.json), implemented once in TypeScript. Every
 * benchmark and the Optuna side-by-side evaluate through `evaluate()` (the Python driver sends its
 * points here), so both libraries optimize exactly the same functions. `suiteObjective()` turns a
 * suite function into a peertune objective that suggests the listed parameters in order, honouring
 * conditions, log, step and categoricals as the suite's conventions say.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Trial } from '../src/index.js';
import { SUITE_DIR } from './lib.js';

export type SuiteValue = number | string;

export interface SuiteParam {
  name: string;
  type: 'float' | 'int' | 'categorical';
  low: number | null;
  high: number | null;
  log: boolean;
  step: number | null;
  choices: string[] | null;
  condition: { param: string; equals: SuiteValue } | null;
}

export interface SuiteFunction {
  name: string;
  group: string;
  family: string;
  dim: number;
  params: SuiteParam[];
  constants: Record<string, unknown>;
  formula: string;
  optimum: { value: number; argmin: Record<string, SuiteValue>; other_argmins?: Record<string, SuiteValue>[] };
}

export interface Suite {
  name: string;
  groups: Record<string, string[]>;
  functions: SuiteFunction[];
}

export class SuiteError extends Error {
  override name = 'SuiteError';
}

let cached: Suite | null = null;

/** Reads suite.json once (from bench/suite-data, or `dir`). */
export function loadSuite(dir: string = SUITE_DIR): Suite {
  if (cached && dir === SUITE_DIR) return cached;
  const file = path.join(dir, 'suite.json');
  let suite: Suite;
  try {
    suite = JSON.parse(readFileSync(file, 'utf8')) as Suite;
  } catch (e) {
    throw new SuiteError(`cannot read the benchmark suite at ${file}: ${(e as Error).message}`);
  }
  if (!Array.isArray(suite.functions)) throw new SuiteError(`${file} has no "functions" array`);
  if (dir === SUITE_DIR) cached = suite;
  return suite;
}

export function getFunction(name: string, suite: Suite = loadSuite()): SuiteFunction {
  const f = suite.functions.find((x) => x.name === name);
  if (!f) throw new SuiteError(`no suite function named "${name}"; known: ${suite.functions.map((x) => x.name).join(', ')}`);
  return f;
}

/** The functions of a group ("public" by default), in the order the suite lists them. */
export function groupFunctions(group = 'public', suite: Suite = loadSuite()): SuiteFunction[] {
  const names = suite.groups[group];
  if (!names) throw new SuiteError(`no suite group named "${group}"; known: ${Object.keys(suite.groups).join(', ')}`);
  return names.map((n) => getFunction(n, suite));
}

// ---------------------------------------------------------------------------------------------
// Constants may be written as small expressions ("5.1/(4*pi^2)"): a tiny recursive-descent
// evaluator keeps the suite file the single source of truth instead of hard-coding their values.

export function evalConstant(expr: unknown): number {
  if (typeof expr === 'number') return expr;
  if (typeof expr !== 'string') throw new SuiteError(`constant ${JSON.stringify(expr)} is neither a number nor an expression string`);
  const src = expr.replace(/\s+/g, '');
  let i = 0;
  const fail = (why: string): never => {
    throw new SuiteError(`cannot parse constant "${expr}" at position ${i}: ${why}`);
  };
  const sum = (): number => {
    let v = product();
    while (src[i] === '+' || src[i] === '-') v = src[i++] === '+' ? v + product() : v - product();
    return v;
  };
  const product = (): number => {
    let v = power();
    while (src[i] === '*' || src[i] === '/') v = src[i++] === '*' ? v * power() : v / power();
    return v;
  };
  const power = (): number => {
    const base = unary();
    if (src[i] === '^') {
      i++;
      return base ** power();
    }
    return base;
  };
  const unary = (): number => {
    if (src[i] === '-') {
      i++;
      return -unary();
    }
    if (src[i] === '(') {
      i++;
      const v = sum();
      if (src[i] !== ')') fail('expected ")"');
      i++;
      return v;
    }
    const m = /^(pi|e(?![0-9])|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)/.exec(src.slice(i));
    if (!m) return fail('expected a number, pi or e');
    i += m[0].length;
    if (m[0] === 'pi') return Math.PI;
    if (m[0] === 'e') return Math.E;
    return Number(m[0]);
  };
  const v = sum();
  if (i !== src.length) fail('unexpected trailing text');
  return v;
}

function num(f: SuiteFunction, key: string): number {
  if (!(key in f.constants)) throw new SuiteError(`suite function "${f.name}" lacks constant "${key}"`);
  return evalConstant(f.constants[key]);
}

function matrix(f: SuiteFunction, key: string): number[][] {
  const m = f.constants[key];
  if (!Array.isArray(m)) throw new SuiteError(`suite function "${f.name}": constant "${key}" must be an array`);
  return m.map((row) => (Array.isArray(row) ? row.map(evalConstant) : [evalConstant(row)]));
}

function table(f: SuiteFunction, key: string): Record<string, number> {
  const t = f.constants[key];
  if (!t || typeof t !== 'object' || Array.isArray(t)) throw new SuiteError(`suite function "${f.name}": constant "${key}" must be an object`);
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, evalConstant(v)]));
}

/** x1..xd as numbers, checking each is present. */
function vector(f: SuiteFunction, p: Record<string, SuiteValue>): number[] {
  const x: number[] = [];
  for (let i = 1; i <= f.dim; i++) x.push(numberParam(f, p, `x${i}`));
  return x;
}

function numberParam(f: SuiteFunction, p: Record<string, SuiteValue>, name: string): number {
  const v = p[name];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new SuiteError(`suite function "${f.name}": parameter "${name}" must be a finite number, got ${JSON.stringify(v)}`);
  }
  return v;
}

type Family = (f: SuiteFunction, p: Record<string, SuiteValue>) => number;

const FAMILIES: Record<string, Family> = {
  branin(f, p) {
    const [a, b, c, r, s, t] = ['a', 'b', 'c', 'r', 's', 't'].map((k) => num(f, k)) as [number, number, number, number, number, number];
    const [x1, x2] = vector(f, p) as [number, number];
    return a * (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * Math.cos(x1) + s;
  },
  hartmann(f, p) {
    const alpha = matrix(f, 'alpha').flat();
    const A = matrix(f, 'A');
    const P = matrix(f, 'P');
    const x = vector(f, p);
    let outer = 0;
    for (let i = 0; i < alpha.length; i++) {
      let inner = 0;
      for (let j = 0; j < x.length; j++) inner += A[i]![j]! * (x[j]! - P[i]![j]!) ** 2;
      outer += alpha[i]! * Math.exp(-inner);
    }
    return -outer;
  },
  rosenbrock(f, p) {
    const x = vector(f, p);
    let s = 0;
    for (let i = 0; i < x.length - 1; i++) s += 100 * (x[i + 1]! - x[i]! ** 2) ** 2 + (1 - x[i]!) ** 2;
    return s;
  },
  ackley(f, p) {
    const a = num(f, 'a');
    const b = num(f, 'b');
    const c = num(f, 'c');
    const x = vector(f, p);
    const d = x.length;
    let sq = 0;
    let cs = 0;
    for (const xi of x) {
      sq += xi * xi;
      cs += Math.cos(c * xi);
    }
    return -a * Math.exp(-b * Math.sqrt(sq / d)) - Math.exp(cs / d) + a + Math.E;
  },
  mlp_surrogate(f, p) {
    const C = table(f, 'lr_center_log10');
    const O = table(f, 'optimizer_offset');
    const opt = p['optimizer'];
    if (typeof opt !== 'string' || !(opt in C)) {
      throw new SuiteError(`suite function "${f.name}": parameter "optimizer" must be one of ${Object.keys(C).join(', ')}, got ${JSON.stringify(opt)}`);
    }
    const u = Math.log10(numberParam(f, p, 'lr'));
    const h = Math.log2(numberParam(f, p, 'hidden'));
    const layers = numberParam(f, p, 'n_layers');
    const dropout = numberParam(f, p, 'dropout');
    const hc = num(f, 'hidden_center_log2');
    const dc = num(f, 'dropout_center');
    let v =
      num(f, 'base') +
      num(f, 'w_lr') * (u - C[opt]!) ** 2 +
      num(f, 'w_layers') * (layers - num(f, 'layers_center')) ** 2 +
      num(f, 'w_hidden') * (h - hc) ** 2 +
      num(f, 'w_dropout') * (dropout - dc) ** 2 -
      num(f, 'w_hidden_dropout') * (h - hc) * (dropout - dc) +
      O[opt]!;
    if (opt === 'sgd') v += num(f, 'w_momentum') * (numberParam(f, p, 'momentum') - num(f, 'momentum_center')) ** 2;
    return v;
  },
};

/** f(params) for a suite function (minimized). Parameters that are inactive by condition are ignored. */
export function evaluate(f: SuiteFunction | string, params: Record<string, SuiteValue>): number {
  const fn = typeof f === 'string' ? getFunction(f) : f;
  const family = FAMILIES[fn.family];
  if (!family) throw new SuiteError(`suite function "${fn.name}" has family "${fn.family}", which is not implemented; known: ${Object.keys(FAMILIES).join(', ')}`);
  return family(fn, params);
}

/** Whether a parameter is active given the values suggested before it. */
export function isActive(param: SuiteParam, sofar: Record<string, SuiteValue>): boolean {
  return param.condition === null || sofar[param.condition.param] === param.condition.equals;
}

/** Suggests the suite function's parameters on a peertune trial, in listed order, honouring conditions. */
export function suggestSuiteParams(trial: Trial, f: SuiteFunction): Record<string, SuiteValue> {
  const out: Record<string, SuiteValue> = {};
  for (const p of f.params) {
    if (!isActive(p, out)) continue;
    switch (p.type) {
      case 'float':
        out[p.name] = trial.suggestFloat(p.name, p.low!, p.high!, { log: p.log, step: p.step });
        break;
      case 'int':
        out[p.name] = trial.suggestInt(p.name, p.low!, p.high!, { log: p.log, step: p.step ?? 1 });
        break;
      case 'categorical':
        out[p.name] = trial.suggestCategorical(p.name, p.choices!);
        break;
      default:
        throw new SuiteError(`suite function "${f.name}": parameter "${(p as SuiteParam).name}" has unknown type "${(p as SuiteParam).type}"`);
    }
  }
  return out;
}

/** A peertune objective for a suite function. */
export function suiteObjective(f: SuiteFunction | string): (trial: Trial) => number {
  const fn = typeof f === 'string' ? getFunction(f) : f;
  return (trial) => evaluate(fn, suggestSuiteParams(trial, fn));
}
