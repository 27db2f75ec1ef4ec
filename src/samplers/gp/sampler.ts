/**
 * GPSampler: Gaussian-process Bayesian optimization for small budgets (the policy half; the model is
 * gp.ts, the acquisition acquisition.ts), after Optuna 4's GPSampler. At `ask()` it fits a Matern-5/2
 * ARD GP to the COMPLETE trials of the intersection search space (inputs in the unit cube, log scale
 * for log parameters; outputs standardized) and returns the maximizer of log expected improvement.
 * Trials in flight anywhere in the swarm (RUNNING, with these parameters already chosen) join the GP
 * as kriging believers: the latent function is taken to equal the GP's own mean there (a value of f,
 * not a noisy observation; see GaussianProcess.withObservations), which removes the variance, and so
 * the improvement, at and around them; parallel workers and peers therefore spread out. Parameters outside the
 * space, and every parameter of the first `nStartupTrials` trials, are sampled uniformly at random.
 * With `constraintsFunc`, each constraint gets its own GP and the acquisition adds log P(feasible).
 *
 * The ask race: a peer's new trial reaches the others only once its params are chosen. `ask()` creates
 * the trial, fits the GP and maximizes EI in one synchronous step, and the trial (RUNNING, with its
 * params) is gossiped right after it, so another peer sees it after that ask's duration plus the
 * gossip delay (a few ms on a formed swarm; more under load). Two asks that start within that window
 * of each other see nothing of each other in flight: both condition on the same history, and both
 * return the maximizer of the same EI surface, found from different random candidates (the seed and
 * the trial id differ), so near a converged optimum they can land close together (10 of 30 two-peer
 * runs in one session had such a pair). Nothing is lost but one evaluation's worth of exploration; the
 * next asks of both see both points. Optuna's GPSampler has the same race on a shared database (a
 * trial's params are written after sampling). Peers that have not yet exchanged gossip at all (a swarm
 * still forming) are blind to each other for longer; see test/storage/sampling-across-peers.test.ts.
 *
 * Several objectives (ParEGO, Knowles 2006): each trial draws its own weight vector uniformly from the
 * simplex (from the seed and the trial's id, so peers and workers draw different ones), scales every
 * objective to [0, 1] by the range observed so far, and models the augmented Chebyshev scalarisation
 * max_j w_j f_j + 0.05 sum_j w_j f_j with the one GP. Every minimizer of such a scalarisation is Pareto
 * optimal, and over random weights they cover the whole front, convex or not.
 */
import type { Distribution, ParamValue } from '../../distributions.js';
import { checkOptions, rules } from '../../errors.js';
import { Rng, randomSeed } from '../../rng.js';
import type { FrozenTrial, TrialState } from '../../storage/storage.js';
import type { Study } from '../../study.js';
import type { Sampler, SearchSpace } from '../base.js';
import { checkConstraintsFunc, constraintValues, isFeasible, recordConstraints, type ConstraintsFunc } from '../constraints.js';
import { toMinimize } from '../../multi-objective.js';
import { sampleUniform } from '../random.js';
import { IntersectionSearchSpace } from '../search-space.js';
import { LogEIAcquisition, maximizeAcquisition, type CubeSpace } from './acquisition.js';
import { GaussianProcess, type KernelParams } from './gp.js';

export interface GPSamplerOptions {
  seed?: number;
  /** Trials sampled at random before the GP starts (counted over COMPLETE trials). Default 10. */
  nStartupTrials?: number;
  /** Fix the GP's noise at its minimum (1e-6): for objectives that return the same value for the same point. Default false. */
  deterministicObjective?: boolean;
  /** Constraint values of a finished trial; feasible when all are <= 0 (see constraints.ts). */
  constraintsFunc?: ConstraintsFunc;
  /** Random candidates scored before the local search. Default 1024. */
  nCandidates?: number;
  /** Starting points of the local search (the best trial and the best candidates). Default 8. */
  nLocalSearch?: number;
}

/** The unit-cube view of a search space: how each parameter maps in and out. */
class CubeMap implements CubeSpace {
  readonly names: string[];
  readonly dists: Distribution[];
  readonly dim: number;
  readonly nChoices: number[];
  readonly isCategorical: boolean[];
  private readonly lo: number[] = [];
  private readonly hi: number[] = [];

  constructor(space: SearchSpace) {
    this.names = Object.keys(space).sort();
    this.dists = this.names.map((n) => space[n]!);
    this.dim = this.names.length;
    this.nChoices = this.dists.map((d) => (d.type === 'categorical' ? d.choices.length : 0));
    this.isCategorical = this.dists.map((d) => d.type === 'categorical');
    for (const d of this.dists) {
      if (d.type === 'categorical') {
        this.lo.push(0);
        this.hi.push(1);
        continue;
      }
      // A grid of width `step` owns half a step on either side of each point (Optuna's convention),
      // so every grid point gets the same share of the cube.
      const half = d.type === 'int' || d.step !== null ? 0.5 * (d.step ?? 1) : 0;
      const lo = d.low - half;
      const hi = d.high + half;
      this.lo.push(d.log ? Math.log(lo) : lo);
      this.hi.push(d.log ? Math.log(hi) : hi);
    }
  }

  private step(k: number): number | null {
    const d = this.dists[k]!;
    return d.type === 'int' ? d.step : d.type === 'float' ? d.step : null;
  }

  /** A trial's parameters in the cube, or null when one is missing or outside its distribution. */
  encode(params: Readonly<Record<string, ParamValue>>): Float64Array | null {
    const x = new Float64Array(this.dim);
    for (let k = 0; k < this.dim; k++) {
      const d = this.dists[k]!;
      const v = params[this.names[k]!];
      if (v === undefined) return null;
      if (d.type === 'categorical') {
        const i = d.choices.findIndex((c) => c === v);
        if (i < 0) return null;
        x[k] = i;
        continue;
      }
      if (typeof v !== 'number' || v < d.low || v > d.high) return null;
      const t = d.log ? Math.log(v) : v;
      x[k] = this.hi[k] === this.lo[k] ? 0.5 : (t - this.lo[k]!) / (this.hi[k]! - this.lo[k]!);
    }
    return x;
  }

  /** The parameter value of cube coordinate `v` of numeric parameter k, snapped onto its grid. */
  private numericValue(k: number, v: number): number {
    const d = this.dists[k]! as Exclude<Distribution, { type: 'categorical' }>;
    let t = this.lo[k]! + Math.min(1, Math.max(0, v)) * (this.hi[k]! - this.lo[k]!);
    if (d.log) t = Math.exp(t);
    const step = this.step(k);
    if (step !== null) t = d.low + Math.round((t - d.low) / step) * step;
    if (d.type === 'float' && step !== null) t = Number(t.toPrecision(15));
    return Math.min(d.high, Math.max(d.low, t));
  }

  decode(x: ArrayLike<number>): Record<string, ParamValue> {
    const out: Record<string, ParamValue> = {};
    for (let k = 0; k < this.dim; k++) {
      const d = this.dists[k]!;
      out[this.names[k]!] =
        d.type === 'categorical' ? d.choices[Math.min(d.choices.length - 1, Math.max(0, Math.round(x[k]!)))]! : this.numericValue(k, x[k]!);
    }
    return out;
  }

  round(k: number, v: number): number {
    if (this.step(k) === null) return v;
    const d = this.dists[k]! as Exclude<Distribution, { type: 'categorical' }>;
    const val = this.numericValue(k, v);
    const t = d.log ? Math.log(val) : val;
    return this.hi[k] === this.lo[k] ? 0.5 : (t - this.lo[k]!) / (this.hi[k]! - this.lo[k]!);
  }
}

/** Up to this many observations the kernel is refitted at every ask. */
const REFIT_ALWAYS = 100;

function standardize(values: readonly number[]): { y: Float64Array; mean: number; std: number } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
  const std = Math.max(1e-10, Math.sqrt(variance));
  return { y: Float64Array.from(values, (v) => (v - mean) / std), mean, std };
}

/** ParEGO's augmentation: a small weighted sum keeps weakly dominated points from tying the Chebyshev max. */
const PAREGO_RHO = 0.05;

/**
 * The augmented Chebyshev scalarisation of each loss vector (minimize form) under one weight vector
 * drawn uniformly from the simplex; objectives are scaled to [0, 1] by their observed range first.
 */
export function parego(losses: readonly (readonly number[])[], rng: Rng): number[] {
  const m = losses[0]!.length;
  const lo = new Array<number>(m).fill(Infinity);
  const hi = new Array<number>(m).fill(-Infinity);
  for (const l of losses) for (let j = 0; j < m; j++) (lo[j] = Math.min(lo[j]!, l[j]!)), (hi[j] = Math.max(hi[j]!, l[j]!));
  // Uniform on the simplex: normalized standard exponentials.
  const w = Array.from({ length: m }, () => -Math.log(1 - rng.random()));
  const total = w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < m; j++) w[j] = total > 0 ? w[j]! / total : 1 / m;
  return losses.map((l) => {
    let max = -Infinity;
    let sum = 0;
    for (let j = 0; j < m; j++) {
      const f = hi[j]! > lo[j]! ? (l[j]! - lo[j]!) / (hi[j]! - lo[j]!) : 0;
      max = Math.max(max, w[j]! * f);
      sum += w[j]! * f;
    }
    return max + PAREGO_RHO * sum;
  });
}

interface StudyState {
  readonly space: IntersectionSearchSpace;
  /**
   * Last fitted kernel parameters (objective first, then each constraint), keyed by the space's names,
   * with the number of observations they were fitted to.
   */
  cache: { key: string; params: (KernelParams | null)[]; n: number } | null;
}

export class GPSampler implements Sampler {
  readonly seed: number;
  private readonly nStartupTrials: number;
  private readonly deterministic: boolean;
  private readonly constraintsFunc: ConstraintsFunc | null;
  private readonly nCandidates: number;
  private readonly nLocalSearch: number;
  private readonly studies = new Map<string, StudyState>();

  constructor(opts: GPSamplerOptions = {}) {
    checkOptions(
      'GPSampler',
      opts as Record<string, unknown>,
      {
        seed: rules.finite(),
        nStartupTrials: rules.integer(0),
        deterministicObjective: rules.boolean(),
        constraintsFunc: { valid: 'a function of a trial returning numbers', test: (v) => typeof v === 'function' },
        nCandidates: rules.integer(1),
        nLocalSearch: rules.integer(0),
      },
      { rejectUnknown: true },
    );
    this.seed = opts.seed ?? randomSeed();
    this.nStartupTrials = opts.nStartupTrials ?? 10;
    this.deterministic = opts.deterministicObjective ?? false;
    this.constraintsFunc = checkConstraintsFunc('GPSampler', opts.constraintsFunc);
    this.nCandidates = opts.nCandidates ?? 1024;
    this.nLocalSearch = opts.nLocalSearch ?? 8;
  }

  private state(study: Study): StudyState {
    let st = this.studies.get(study.studyId);
    if (!st) {
      st = { space: new IntersectionSearchSpace(false), cache: null };
      this.studies.set(study.studyId, st);
    }
    return st;
  }

  inferRelativeSearchSpace(study: Study): SearchSpace {
    return this.state(study).space.calculate(study.getTrials({ states: ['COMPLETE'] }));
  }

  sampleRelative(study: Study, trial: FrozenTrial, searchSpace: SearchSpace): Record<string, ParamValue> {
    if (Object.keys(searchSpace).length === 0) return {};
    const cube = new CubeMap(searchSpace);
    const X: Float64Array[] = [];
    const losses: number[][] = [];
    const obs: FrozenTrial[] = [];
    const running: Float64Array[] = [];
    for (const t of study.getTrials({ states: ['COMPLETE', 'RUNNING'] })) {
      if (t.trialId === trial.trialId) continue;
      const x = cube.encode(t.params);
      if (!x) continue;
      if (t.state === 'RUNNING') running.push(x);
      else if (t.values && t.values.length === study.directions.length) {
        X.push(x);
        losses.push(toMinimize(t.values, study.directions));
        obs.push(t);
      }
    }
    // The GP maximizes: minus the loss, or minus the trial's scalarisation of several losses.
    const raw = losses.length > 0 && study.isMultiObjective ? parego(losses, Rng.from(this.seed, trial.trialId, 'parego')).map((v) => -v) : losses.map((l) => -l[0]!);
    if (X.length < this.nStartupTrials || X.length === 0) return {};
    const st = this.state(study);
    const key = cube.names.join('\u0000');
    const cached = st.cache?.key === key ? st.cache.params : [];
    // Past REFIT_ALWAYS observations the kernel is refitted once the history has grown by 5% since the
    // last fit (every 10 trials at 200), and reused in between: one more trial barely moves it, and a
    // fit costs O(n^3) per likelihood evaluation.
    const reuse = st.cache?.key === key && X.length > REFIT_ALWAYS && X.length < st.cache.n * 1.05;
    const fitOrReuse = (Xs: Float64Array[], ys: Float64Array, init: KernelParams | null | undefined): GaussianProcess =>
      reuse && init ? GaussianProcess.withParams(Xs, ys, cube.isCategorical, init) : GaussianProcess.fit(Xs, ys, cube.isCategorical, { deterministic: this.deterministic, init: init ?? null });
    const { y } = standardize(raw);
    let gp = fitOrReuse(X, y, cached[0]);
    const fitted: (KernelParams | null)[] = [gp.params];

    // Constraints: a GP per constraint over trials that have values; feasibility is P(c <= 0).
    const constraintGps: { gp: GaussianProcess; threshold: number }[] = [];
    let feasible = obs.map(() => true);
    if (this.constraintsFunc) {
      const cs = obs.map(constraintValues);
      feasible = obs.map((t, i) => cs[i] !== null && isFeasible(t));
      const m = cs.find((c) => c !== null)?.length ?? 0;
      for (let j = 0; j < m; j++) {
        const idx = cs.map((c, i) => (c && c.length === m ? i : -1)).filter((i) => i >= 0);
        if (idx.length === 0) continue;
        const s = standardize(idx.map((i) => -cs[i]![j]!)); // the GP maximizes: feasible is -c >= 0
        const cgp = fitOrReuse(idx.map((i) => X[i]!), s.y, cached[j + 1]);
        fitted.push(cgp.params);
        constraintGps.push({ gp: cgp, threshold: -s.mean / s.std });
      }
    }
    st.cache = { key, params: fitted, n: reuse ? st.cache!.n : X.length };

    let threshold = -Infinity;
    let bestIndex = -1;
    for (let i = 0; i < y.length; i++) {
      if (feasible[i] && y[i]! > threshold) (threshold = y[i]!), (bestIndex = i);
    }
    // Kriging believer: the latent function at the in-flight points is fixed to the posterior mean, jointly.
    if (running.length > 0) {
      const believed = running.map((x) => gp.posterior(x).mean);
      gp = gp.withObservations(running, believed);
      if (Number.isFinite(threshold)) for (const b of believed) threshold = Math.max(threshold, b);
    }
    const acq = new LogEIAcquisition(gp, threshold, constraintGps);
    const rng = Rng.from(this.seed, trial.trialId, 'gp');
    const warm = bestIndex >= 0 ? [X[bestIndex]!] : [];
    const best = maximizeAcquisition(acq, cube, rng, warm, { nCandidates: this.nCandidates, nLocalSearch: this.nLocalSearch, maxIter: 50, avoid: [...X, ...running] });
    return cube.decode(best.x);
  }

  sampleIndependent(_study: Study, trial: FrozenTrial, paramName: string, distribution: Distribution): ParamValue {
    return sampleUniform(Rng.from(this.seed, trial.trialId, paramName), distribution);
  }

  afterTrial(study: Study, trial: FrozenTrial, state: TrialState, values: readonly number[] | null): void {
    if (this.constraintsFunc) recordConstraints(this.constraintsFunc, study, trial, state, values);
  }
}
