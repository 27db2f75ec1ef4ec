/**
 * CmaEsSampler: the covariance matrix adaptation evolution strategy (Hansen's (mu/mu_w, lambda)-CMA-ES,
 * "The CMA Evolution Strategy: A Tutorial", 2016) with IPOP restarts (Auger & Hansen 2005: each
 * restart doubles the population), after Optuna's CmaEsSampler.
 *
 * - The space: float and int parameters of the intersection search space, in the unit cube (log scale
 *   for log parameters; ints and stepped floats own equal shares of it and are rounded when the trial
 *   reads them). Categorical parameters, and parameters outside the space, are sampled independently
 *   at random. The first trial is random (the space is not known before it).
 * - Start: the mean at the centre of the cube, sigma 1/6 of it (Optuna's min range / 6); each restart
 *   starts from a random point with the population doubled.
 * - Generations without a coordinator: a trial records at ask() the restart and generation it was
 *   sampled for and its point in the cube (system attribute `cma`: { r, g, x }), and draws its own
 *   standard normal vector from (seed, trial id), so peers and workers sample the same distribution
 *   without ever drawing the same point. The state is a pure function of the history (restart means
 *   come from the study's id, not the seed): generation g is closed by the first lambda trials of g
 *   to COMPLETE (in trial id order), and every replica replays the same updates, whatever seed each
 *   peer was given.
 *   Trials of an older generation that finish late are ignored, as in Optuna. A generation whose trials
 *   fail keeps taking new trials until lambda of them complete.
 * - Restart when the step size collapses (sigma * max sqrt(C_ii) < 1e-10), the best values of the last
 *   10 + 30 n / lambda generations and of the current one are flat (range < 1e-12), or the covariance's
 *   condition number exceeds 1e14.
 */
import type { Distribution, ParamValue } from '../distributions.js';
import { checkOptions, OptionError, rules } from '../errors.js';
import { Rng, randomSeed } from '../rng.js';
import type { FrozenTrial } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Sampler, SearchSpace } from './base.js';
import { sampleUniform } from './random.js';
import { IntersectionSearchSpace } from './search-space.js';

export interface CmaEsSamplerOptions {
  seed?: number;
  /** Initial step size in the unit cube. Default 1/6. */
  sigma0?: number;
  /** Population of the first run; default 4 + floor(3 ln n). Restarts double it. */
  popsize?: number;
  /** IPOP restarts (default true). Without, a converged run keeps sampling its last distribution. */
  restarts?: boolean;
}

/** System attribute recording which restart and generation a trial was sampled for. */
export const CMA_KEY = 'cma';

type Numeric = Exclude<Distribution, { type: 'categorical' }>;

/** The unit-cube view of the numeric parameters (lo/hi in the transformed scale). */
class Cube {
  readonly lo: number[] = [];
  readonly hi: number[] = [];
  constructor(readonly names: string[], readonly dists: Numeric[]) {
    for (const d of dists) {
      const half = d.type === 'int' || d.step !== null ? 0.5 * (d.step ?? 1) : 0;
      const lo = d.low - half;
      const hi = d.high + half;
      this.lo.push(d.log ? Math.log(lo) : lo);
      this.hi.push(d.log ? Math.log(hi) : hi);
    }
  }

  decode(x: ArrayLike<number>): Record<string, ParamValue> {
    const out: Record<string, ParamValue> = {};
    this.dists.forEach((d, k) => {
      let t = this.lo[k]! + Math.min(1, Math.max(0, x[k]!)) * (this.hi[k]! - this.lo[k]!);
      if (d.log) t = Math.exp(t);
      const step = d.step;
      if (step !== null) t = d.low + Math.round((t - d.low) / step) * step;
      if (d.type === 'float' && step !== null) t = Number(t.toPrecision(15));
      out[this.names[k]!] = Math.min(d.high, Math.max(d.low, t));
    });
    return out;
  }
}

/** Eigen-decomposition of a symmetric n x n matrix (row-major) by cyclic Jacobi rotations. */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let total = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const sq = A[i * n + j]! ** 2;
        total += sq;
        if (i !== j) off += sq;
      }
    }
    if (off <= 1e-30 * total) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q]!;
        if (apq === 0) continue;
        const theta = (A[q * n + q]! - A[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p]!, akq = A[k * n + q]!;
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k]!, aqk = A[q * n + k]!;
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p]!, vkq = V[k * n + q]!;
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = A[i * n + i]!;
  return { values, vectors: V };
}

/** One CMA-ES run's state (Hansen's tutorial notation). */
class CmaState {
  readonly n: number;
  readonly lambda: number;
  readonly mu: number;
  readonly weights: Float64Array;
  readonly muEff: number;
  readonly cSigma: number;
  readonly dSigma: number;
  readonly cc: number;
  readonly c1: number;
  readonly cMu: number;
  readonly chiN: number;
  mean: Float64Array;
  sigma: number;
  C: Float64Array;
  pSigma: Float64Array;
  pc: Float64Array;
  B: Float64Array;
  D: Float64Array;
  generation = 0;
  /** Best value of each finished generation (for the flat-fitness restart test). */
  readonly bests: number[] = [];
  lastRange = Infinity;

  constructor(n: number, lambda: number, mean: Float64Array, sigma: number) {
    this.n = n;
    this.lambda = lambda;
    this.mu = Math.floor(lambda / 2);
    const w = Array.from({ length: this.mu }, (_, i) => Math.log((lambda + 1) / 2) - Math.log(i + 1));
    const sw = w.reduce((a, b) => a + b, 0);
    this.weights = Float64Array.from(w, (v) => v / sw);
    this.muEff = 1 / this.weights.reduce((a, b) => a + b * b, 0);
    const me = this.muEff;
    this.cSigma = (me + 2) / (n + me + 5);
    this.dSigma = 1 + 2 * Math.max(0, Math.sqrt((me - 1) / (n + 1)) - 1) + this.cSigma;
    this.cc = (4 + me / n) / (n + 4 + (2 * me) / n);
    this.c1 = 2 / ((n + 1.3) ** 2 + me);
    this.cMu = Math.min(1 - this.c1, (2 * (me - 2 + 1 / me)) / ((n + 2) ** 2 + me));
    this.chiN = Math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n));
    this.mean = mean;
    this.sigma = sigma;
    this.C = new Float64Array(n * n);
    this.B = new Float64Array(n * n);
    for (let i = 0; i < n; i++) (this.C[i * n + i] = 1), (this.B[i * n + i] = 1);
    this.D = new Float64Array(n).fill(1);
    this.pSigma = new Float64Array(n);
    this.pc = new Float64Array(n);
  }

  /** x = mean + sigma B D z for a standard normal z, redrawn (up to 100 times) until inside the cube, then clipped. */
  sample(rng: Rng): Float64Array {
    const { n } = this;
    const x = new Float64Array(n);
    for (let attempt = 0; attempt < 100; attempt++) {
      const z = Float64Array.from({ length: n }, () => rng.normal());
      let inside = true;
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += this.B[i * n + j]! * this.D[j]! * z[j]!;
        x[i] = this.mean[i]! + this.sigma * s;
        if (x[i]! < 0 || x[i]! > 1) inside = false;
      }
      if (inside) return x;
    }
    for (let i = 0; i < n; i++) x[i] = Math.min(1, Math.max(0, x[i]!));
    return x;
  }

  /** One generation's update from its lambda (point, value) pairs, minimizing. */
  tell(solutions: { x: Float64Array; value: number }[]): void {
    const { n, mu, weights } = this;
    const sorted = [...solutions].sort((a, b) => a.value - b.value);
    const ys = sorted.slice(0, mu).map((s) => Float64Array.from(s.x, (v, i) => (v - this.mean[i]!) / this.sigma));
    const yw = new Float64Array(n);
    for (let k = 0; k < mu; k++) for (let i = 0; i < n; i++) yw[i]! += weights[k]! * ys[k]![i]!;
    for (let i = 0; i < n; i++) this.mean[i]! += this.sigma * yw[i]!;
    // C^-1/2 y_w = B D^-1 B^T y_w
    const bty = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += this.B[i * n + j]! * yw[i]!;
      bty[j] = s / this.D[j]!;
    }
    const cs = this.cSigma;
    const fs = Math.sqrt(cs * (2 - cs) * this.muEff);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += this.B[i * n + j]! * bty[j]!;
      this.pSigma[i] = (1 - cs) * this.pSigma[i]! + fs * s;
    }
    const psNorm = Math.hypot(...this.pSigma);
    this.generation++;
    const hSigma = psNorm / Math.sqrt(1 - (1 - cs) ** (2 * this.generation)) < (1.4 + 2 / (n + 1)) * this.chiN ? 1 : 0;
    const fc = Math.sqrt(this.cc * (2 - this.cc) * this.muEff);
    for (let i = 0; i < n; i++) this.pc[i] = (1 - this.cc) * this.pc[i]! + hSigma * fc * yw[i]!;
    const decay = 1 - this.c1 - this.cMu + (1 - hSigma) * this.c1 * this.cc * (2 - this.cc);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let rankMu = 0;
        for (let k = 0; k < mu; k++) rankMu += weights[k]! * ys[k]![i]! * ys[k]![j]!;
        const v = decay * this.C[i * n + j]! + this.c1 * this.pc[i]! * this.pc[j]! + this.cMu * rankMu;
        this.C[i * n + j] = v;
        this.C[j * n + i] = v;
      }
    }
    this.sigma *= Math.exp((cs / this.dSigma) * (psNorm / this.chiN - 1));
    this.sigma = Math.min(this.sigma, 1e3);
    const { values, vectors } = symmetricEigen(this.C, n);
    this.B = vectors;
    this.D = Float64Array.from(values, (v) => Math.sqrt(Math.max(v, 1e-300)));
    this.bests.push(sorted[0]!.value);
    this.lastRange = sorted[sorted.length - 1]!.value - sorted[0]!.value;
  }

  /** The restart criteria of the file comment. */
  shouldStop(): boolean {
    const { n } = this;
    let maxStd = 0;
    for (let i = 0; i < n; i++) maxStd = Math.max(maxStd, Math.sqrt(this.C[i * n + i]!));
    if (this.sigma * maxStd < 1e-10) return true;
    const window = 10 + Math.ceil((30 * n) / this.lambda);
    if (this.bests.length >= window) {
      const recent = this.bests.slice(-window);
      if (Math.max(...recent) - Math.min(...recent) < 1e-12 && this.lastRange < 1e-12) return true;
    }
    const dMax = Math.max(...this.D);
    const dMin = Math.min(...this.D);
    return (dMax / dMin) ** 2 > 1e14;
  }
}

interface Tag {
  r: number;
  g: number;
  x: number[];
}

interface Run {
  key: string;
  restart: number;
  state: CmaState;
  /** Trials already used by a closed generation or ignored. */
  done: Set<string>;
}

export class CmaEsSampler implements Sampler {
  readonly seed: number;
  private readonly sigma0: number;
  private readonly popsize: number | null;
  private readonly restarts: boolean;
  private readonly space = new Map<string, IntersectionSearchSpace>();
  private readonly runs = new Map<string, Run>();

  constructor(opts: CmaEsSamplerOptions = {}) {
    checkOptions(
      'CmaEsSampler',
      opts as Record<string, unknown>,
      { seed: rules.finite(), sigma0: { valid: 'a number in (0, 1]', test: (v) => typeof v === 'number' && v > 0 && v <= 1 }, popsize: rules.integer(2), restarts: rules.boolean() },
      { rejectUnknown: true },
    );
    this.seed = opts.seed ?? randomSeed();
    this.sigma0 = opts.sigma0 ?? 1 / 6;
    this.popsize = opts.popsize ?? null;
    this.restarts = opts.restarts ?? true;
  }

  inferRelativeSearchSpace(study: Study): SearchSpace {
    let s = this.space.get(study.studyId);
    if (!s) this.space.set(study.studyId, (s = new IntersectionSearchSpace(false)));
    const all = s.calculate(study.getTrials({ states: ['COMPLETE'] }));
    const out: SearchSpace = {};
    for (const name of Object.keys(all).sort()) if (all[name]!.type !== 'categorical') out[name] = all[name]!;
    return out;
  }

  sampleRelative(study: Study, trial: FrozenTrial, searchSpace: SearchSpace): Record<string, ParamValue> {
    const names = Object.keys(searchSpace).sort();
    if (names.length === 0) return {};
    if (study.isMultiObjective) {
      throw new OptionError('CmaEsSampler handles single-objective studies only; use NSGAIISampler, TPESampler or GPSampler for several objectives', 'directions', study.directions);
    }
    const cube = new Cube(names, names.map((n) => searchSpace[n]! as Numeric));
    const run = this.advance(study, cube);
    const x = run.state.sample(Rng.from(this.seed, trial.trialId, 'cma'));
    study.storage.setTrialSystemAttr(study.studyId, trial.trialId, CMA_KEY, { r: run.restart, g: run.state.generation, x: Array.from(x) });
    return cube.decode(x);
  }

  sampleIndependent(_study: Study, trial: FrozenTrial, paramName: string, distribution: Distribution): ParamValue {
    return sampleUniform(Rng.from(this.seed, trial.trialId, paramName), distribution);
  }

  private lambdaFor(n: number, restart: number): number {
    return (this.popsize ?? 4 + Math.floor(3 * Math.log(n))) * 2 ** restart;
  }

  private fresh(key: string, studyId: string, n: number, restart: number): Run {
    const rng = Rng.from(studyId, 'cma-restart', restart);
    const mean = restart === 0 ? new Float64Array(n).fill(0.5) : Float64Array.from({ length: n }, () => rng.random());
    return { key, restart, state: new CmaState(n, this.lambdaFor(n, restart), mean, this.sigma0), done: new Set() };
  }

  /** Replays every generation the history has closed since the cached state (see the file comment). */
  private advance(study: Study, cube: Cube): Run {
    const key = `${study.studyId}\u0000${cube.names.join('\u0000')}`;
    let run = this.runs.get(key);
    if (!run) run = this.fresh(key, study.studyId, cube.names.length, 0);
    const sign = study.direction === 'maximize' ? -1 : 1;
    const trials = study.getTrials({ states: ['COMPLETE'] }).filter((t) => t.values && cube.names.every((n) => typeof t.params[n] === 'number'));
    for (;;) {
      const { state } = run;
      const members = trials
        .filter((t) => {
          const tag = t.systemAttrs[CMA_KEY] as Tag | undefined;
          return tag && tag.r === run!.restart && tag.g === state.generation && Array.isArray(tag.x) && tag.x.length === cube.names.length && !run!.done.has(t.trialId);
        })
        .sort((a, b) => (a.trialId < b.trialId ? -1 : a.trialId > b.trialId ? 1 : 0));
      if (members.length < state.lambda) break;
      const used = members.slice(0, state.lambda);
      state.tell(used.map((t) => ({ x: Float64Array.from((t.systemAttrs[CMA_KEY] as Tag).x, (v) => Math.min(1, Math.max(0, Number(v) || 0))), value: sign * t.values![0]! })));
      for (const t of members) run.done.add(t.trialId);
      if (this.restarts && state.shouldStop()) run = this.fresh(key, study.studyId, cube.names.length, run.restart + 1);
    }
    this.runs.set(key, run);
    return run;
  }
}
