/**
 * Log expected improvement (Ament et al. 2023, "Unexpected Improvements to Expected Improvement"),
 * computed stably far below the incumbent where plain EI underflows to 0 and gives no gradient, and
 * its optimizer: random candidates in the unit cube, then a projected L-BFGS refinement of the best
 * few, alternating with an exhaustive pass over each categorical coordinate.
 */
import type { Rng } from '../../rng.js';
import type { GaussianProcess } from './gp.js';
import { lbfgs } from './lbfgs.js';

const LOG_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);
const SQRT_HALF = Math.SQRT1_2;

/** Mills ratio R(t) = (1 - Phi(t)) / phi(t) for t >= 3, by its continued fraction (evaluated backwards). */
function millsRatio(t: number): number {
  let f = t;
  for (let k = 80; k >= 1; k--) f = t + k / f;
  return 1 / f;
}

/** erf(x) by its Taylor series; accurate to ~1e-14 for |x| <= 3.6. */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  const x2 = x * x;
  for (let k = 1; k < 200; k++) {
    term *= -x2 / k;
    const add = term / (2 * k + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** log of the standard normal density. */
function logPdf(z: number): number {
  return -0.5 * z * z - LOG_SQRT_2PI;
}

/** log Phi(z), stable for very negative z. */
export function logCdf(z: number): number {
  if (z < -3) return logPdf(z) + Math.log(millsRatio(-z));
  if (z > 5) return Math.log1p(-Math.exp(logPdf(z)) * millsRatio(z));
  return Math.log(0.5 * (1 + erfSeries(z * SQRT_HALF)));
}

/** log h(z) with h(z) = phi(z) + z Phi(z) = E[max(0, Z + z)], Z standard normal. */
export function logH(z: number): number {
  if (z < -3) {
    const t = -z;
    if (t > 1e6) return logPdf(z) - 2 * Math.log(t);
    // h(z) / phi(z) = 1 - t R(t); R's continued fraction keeps the difference accurate.
    return logPdf(z) + Math.log(Math.max(1 - t * millsRatio(t), Number.MIN_VALUE));
  }
  const cdf = Math.exp(logCdf(z));
  return Math.log(Math.exp(logPdf(z)) + z * cdf);
}

/**
 * log EI at a posterior (mean, variance) against the incumbent f0 (maximization), and its partial
 * derivatives with respect to the mean and the standard deviation.
 */
export function logEI(mean: number, variance: number, f0: number): { value: number; dMean: number; dSigma: number } {
  const sigma = Math.sqrt(variance);
  const z = (mean - f0) / sigma;
  const lh = logH(z);
  // h'(z) = Phi(z), and d h / d sigma follows from z's dependence on sigma.
  const ratio = Math.exp(logCdf(z) - lh); // Phi(z) / h(z)
  return { value: Math.log(sigma) + lh, dMean: ratio / sigma, dSigma: (1 - z * ratio) / sigma };
}

/** Something to maximize over the unit cube: a value and (over continuous coordinates) its gradient. */
export interface Acquisition {
  evaluate(x: Float64Array, grad?: Float64Array): number;
  /**
   * `evaluate(x)` when it is at least `floor`; otherwise it may return any value below `floor` (an
   * upper bound found before the exact value was complete), which is cheaper.
   */
  evaluateAbove?(x: Float64Array, floor: number): number;
}

/** log EI of a GP, plus log P(feasible) of each constraint GP (Gardner et al. 2014), as Optuna's logCEI. */
export class LogEIAcquisition implements Acquisition {
  private readonly gm: Float64Array;
  private readonly gv: Float64Array;

  constructor(
    private readonly gp: GaussianProcess,
    private readonly threshold: number,
    private readonly constraints: readonly { gp: GaussianProcess; threshold: number }[] = [],
  ) {
    this.gm = new Float64Array(gp.dim);
    this.gv = new Float64Array(gp.dim);
  }

  /**
   * log EI grows with the posterior standard deviation, and log P(feasible) is at most 0: log EI at the
   * variance given the first inputs alone (GaussianProcess.posteriorOrBound) bounds the total, and a
   * candidate is dropped as soon as that bound falls below `floor`.
   */
  evaluateAbove(x: Float64Array, floor: number): number {
    if (!Number.isFinite(this.threshold) || !(floor > -Infinity)) return this.evaluate(x);
    // log P(feasible) <= 0, so log EI alone bounds the total.
    const f0 = this.threshold;
    const p = this.gp.posteriorOrBound(x, (mean, varianceUpper) => logEI(mean, varianceUpper * (1 + 1e-9) + 2e-12, f0).value < floor);
    if (!p.exact) return logEI(p.mean, p.variance * (1 + 1e-9) + 2e-12, f0).value;
    let total = logEI(p.mean, p.variance + 1e-12, f0).value;
    for (const c of this.constraints) {
      const q = c.gp.posterior(x);
      total += logCdf((q.mean - c.threshold) / Math.sqrt(q.variance + 1e-12));
    }
    return total;
  }

  evaluate(x: Float64Array, grad?: Float64Array): number {
    const g = grad ? { mean: this.gm, variance: this.gv } : undefined;
    let total = 0;
    if (grad) grad.fill(0);
    if (Number.isFinite(this.threshold)) {
      const p = this.gp.posterior(x, g);
      const variance = p.variance + 1e-12;
      const ei = logEI(p.mean, variance, this.threshold);
      total += ei.value;
      if (grad) {
        const sigma = Math.sqrt(variance);
        for (let d = 0; d < grad.length; d++) grad[d]! += ei.dMean * this.gm[d]! + (ei.dSigma * this.gv[d]!) / (2 * sigma);
      }
    }
    for (const c of this.constraints) {
      const p = c.gp.posterior(x, g);
      const sigma = Math.sqrt(p.variance + 1e-12);
      const z = (p.mean - c.threshold) / sigma;
      const lc = logCdf(z);
      total += lc;
      if (grad) {
        const dz = Math.exp(logPdf(z) - lc); // d log Phi / dz
        for (let d = 0; d < grad.length; d++) {
          grad[d]! += dz * (this.gm[d]! / sigma - (z * this.gv[d]!) / (2 * sigma * sigma));
        }
      }
    }
    return total;
  }
}

export interface CubeSpace {
  readonly dim: number;
  /** Number of choices of each categorical coordinate; 0 for numeric ones. */
  readonly nChoices: readonly number[];
  /** Snaps a numeric coordinate onto its grid (ints, steps), or returns it as is. */
  round(d: number, v: number): number;
}

export interface OptimizerOptions {
  nCandidates: number;
  nLocalSearch: number;
  maxIter: number;
  /**
   * Points not to return (trials observed or in flight). Once the GP has converged, EI is near zero
   * everywhere and the local search can end on its warm start or on a believed point, so two peers
   * would run the same trial; the best result away from every such point is taken instead.
   */
  avoid?: readonly Float64Array[];
}

/** Closer than this in the unit cube (max over coordinates) counts as the same point. */
const SAME_POINT = 1e-4;

function nearAny(x: Float64Array, pts: readonly Float64Array[] | undefined): boolean {
  if (!pts) return false;
  for (const p of pts) {
    let far = false;
    for (let d = 0; d < x.length && !far; d++) if (Math.abs(x[d]! - p[d]!) > SAME_POINT) far = true;
    if (!far) return true;
  }
  return false;
}

/** Draws a uniform point of the cube (categoricals: a uniform choice index; grids: snapped). */
export function randomPoint(space: CubeSpace, rng: Rng): Float64Array {
  const x = new Float64Array(space.dim);
  for (let d = 0; d < space.dim; d++) {
    const c = space.nChoices[d]!;
    x[d] = c > 0 ? rng.int(0, c - 1) : space.round(d, rng.random());
  }
  return x;
}

/** The maximizer found: random candidates, the best of them and the warm starts refined locally. */
export function maximizeAcquisition(acq: Acquisition, space: CubeSpace, rng: Rng, warmStarts: readonly Float64Array[], opts: OptimizerOptions): { x: Float64Array; value: number } {
  // Every candidate is scored, in the order drawn; once the shortlist is full, a candidate is only
  // scored as far as it takes to prove it falls below the shortlist's worst value (evaluateAbove),
  // which gives the same shortlist as scoring every candidate exactly.
  const need = Math.max(1, opts.nLocalSearch - warmStarts.length);
  const cands: { x: Float64Array; v: number }[] = [];
  for (let i = 0; i < opts.nCandidates; i++) {
    const x = randomPoint(space, rng);
    const v = acq.evaluateAbove && cands.length >= need ? acq.evaluateAbove(x, cands[need - 1]!.v) : acq.evaluate(x);
    // Keep only the shortlist, sorted best first (insertion: it is short; ties keep the earlier candidate).
    let at = cands.length;
    while (at > 0 && cands[at - 1]!.v < v) at--;
    if (at < need) {
      cands.splice(at, 0, { x, v });
      if (cands.length > need) cands.pop();
    }
  }
  const starts: Float64Array[] = [...warmStarts.map((w) => Float64Array.from(w))];
  for (const c of cands) {
    if (starts.length >= opts.nLocalSearch) break;
    starts.push(c.x);
  }
  // The best candidate away from the points to avoid (random candidates almost never hit one).
  const firstFree = cands.find((c) => !nearAny(c.x, opts.avoid)) ?? cands[0]!;
  let best = { x: firstFree.x, value: firstFree.v };
  const continuous = space.nChoices.map((c) => c === 0);
  const anyContinuous = continuous.some(Boolean);
  const lower = new Float64Array(space.dim);
  const upper = new Float64Array(space.dim).fill(1);
  for (let d = 0; d < space.dim; d++) if (!continuous[d]) upper[d] = lower[d] = 0; // placeholders, replaced per start
  // Rounds alternate the continuous search with a pass over each categorical coordinate; with no
  // categorical coordinate there is nothing to alternate with, and one L-BFGS run is the search.
  const rounds = continuous.every(Boolean) ? 1 : 3;
  for (const start of starts) {
    let x = start;
    let value = acq.evaluate(x);
    for (let round = 0; round < rounds; round++) {
      const before = value;
      if (anyContinuous) {
        // Categorical coordinates are held fixed by pinning their box to the current value.
        for (let d = 0; d < space.dim; d++) if (!continuous[d]) lower[d] = upper[d] = x[d]!;
        const res = lbfgs(
          (z, g) => {
            const v = acq.evaluate(z, g);
            for (let d = 0; d < space.dim; d++) g[d] = continuous[d] ? -g[d]! : 0;
            return Number.isFinite(v) ? -v : Infinity;
          },
          x,
          { maxIter: opts.maxIter, gtol: 1e-6, lower, upper },
        );
        x = res.x;
        value = -res.f;
      }
      for (let d = 0; d < space.dim; d++) {
        const c = space.nChoices[d]!;
        if (c === 0) continue;
        const keep = x[d]!;
        let bestChoice = keep;
        for (let k = 0; k < c; k++) {
          if (k === keep) continue;
          x[d] = k;
          const v = acq.evaluate(x);
          if (v > value) (value = v), (bestChoice = k);
        }
        x[d] = bestChoice;
      }
      if (!(value > before + 1e-9)) break;
    }
    // Grids: the continuous optimum snapped, which is what the trial will really evaluate.
    const snapped = Float64Array.from(x, (v, d) => (continuous[d] ? space.round(d, v) : v));
    const sv = acq.evaluate(snapped);
    if (sv > best.value && !nearAny(snapped, opts.avoid)) best = { x: snapped, value: sv };
  }
  return best;
}
