/**
 * Gaussian-process regression with a Matern-5/2 ARD kernel, the model half of GPSampler (the policy
 * lives in sampler.ts). Inputs are normalized to the unit cube; categorical coordinates hold a choice
 * index and contribute their Hamming distance (0 or 1) instead of a squared difference, as Optuna 4's
 * GP does. Outputs are standardized by the caller and maximized.
 *
 * k(x, x') = scale * m(r^2), r^2 = sum_d lambda_d * dist_d(x, x')^2, m(r^2) = (1 + s + s^2/3) e^-s with
 * s = sqrt(5 r^2). Hyperparameters (lambda = inverse squared lengthscales, scale, noise) maximize the
 * log marginal likelihood plus Optuna's priors: -(0.1/lambda + 0.1 lambda) on each lambda, Gamma(2, 1)
 * on the scale and Gamma(1.1, 30) on the noise, which is kept above 1e-6 (fixed there for a
 * deterministic objective). Fitted in log space by L-BFGS, warm-started from the previous fit.
 */
import { cholesky, inverseFromCholesky, NotPositiveDefiniteError, solveLower, solveUpperT } from './linalg.js';
import { lbfgs } from './lbfgs.js';

export const MIN_NOISE = 1e-6;

export interface KernelParams {
  /** One per input dimension. */
  readonly inverseSquaredLengthscales: Float64Array;
  readonly scale: number;
  readonly noise: number;
}

export function defaultKernelParams(dim: number): KernelParams {
  return { inverseSquaredLengthscales: new Float64Array(dim).fill(1), scale: 1, noise: 1 };
}

/** m(r^2) and its derivative with respect to r^2. */
function matern(r2: number): number {
  const s = Math.sqrt(5 * r2);
  return (1 + s + (5 / 3) * r2) * Math.exp(-s);
}

function maternDeriv(r2: number): number {
  const s = Math.sqrt(5 * r2);
  return (-5 / 6) * (1 + s) * Math.exp(-s);
}

/** Per-dimension distance term: squared difference, or 0/1 for a categorical coordinate. */
function sqd(a: number, b: number, categorical: boolean): number {
  if (categorical) return a === b ? 0 : 1;
  const d = a - b;
  return d * d;
}

export class GaussianProcess {
  readonly n: number;
  readonly dim: number;
  /** K + noise I = L L^T over every input (observed, then believed). */
  private readonly chol: Float64Array;
  /** (K + noise I)^-1 y */
  private readonly alpha: Float64Array;
  /** The inputs row by row in one array, and 1 for categorical coordinates (the hot loops read these). */
  private readonly flat: Float64Array;
  private readonly cat: Uint8Array;
  private readonly anyCategorical: boolean;
  private readonly bufK: Float64Array;
  private readonly bufDk: Float64Array;

  /** Inputs 0..nObserved-1 are observations (with the kernel's noise); the rest are fantasies (see withObservations). */
  readonly nObserved: number;
  private readonly fantasyJitter: number;

  private constructor(
    readonly X: readonly Float64Array[],
    readonly y: Float64Array,
    readonly isCategorical: readonly boolean[],
    readonly params: KernelParams,
    nObserved = X.length,
    fantasyJitter = 0,
  ) {
    this.nObserved = nObserved;
    this.fantasyJitter = fantasyJitter;
    this.n = X.length;
    this.dim = isCategorical.length;
    this.flat = new Float64Array(this.n * this.dim);
    X.forEach((x, i) => this.flat.set(x.subarray(0, this.dim), i * this.dim));
    this.cat = Uint8Array.from(isCategorical, (c) => (c ? 1 : 0));
    this.anyCategorical = isCategorical.some(Boolean);
    this.bufK = new Float64Array(this.n);
    this.bufDk = new Float64Array(this.n);
    const K = this.gram();
    this.chol = cholesky(K, this.n);
    this.alpha = solveUpperT(this.chol, this.n, solveLower(this.chol, this.n, Float64Array.from(y)));
  }

  static withParams(X: readonly Float64Array[], y: Float64Array, isCategorical: readonly boolean[], params: KernelParams): GaussianProcess {
    return new GaussianProcess(X, y, isCategorical, params);
  }

  /**
   * Fits the hyperparameters to (X, y), starting from `init` (the previous fit) and falling back to
   * the defaults, then to the unfitted defaults if both optimizations fail.
   */
  static fit(X: readonly Float64Array[], y: Float64Array, isCategorical: readonly boolean[], opts: { deterministic: boolean; init?: KernelParams | null }): GaussianProcess {
    const dim = isCategorical.length;
    const starts = [opts.init, defaultKernelParams(dim)].filter((p): p is KernelParams => !!p && p.inverseSquaredLengthscales.length === dim);
    for (const start of starts) {
      try {
        const params = fitParams(X, y, isCategorical, start, opts.deterministic);
        return new GaussianProcess(X, y, isCategorical, params);
      } catch (e) {
        if (!(e instanceof NotPositiveDefiniteError)) throw e;
      }
    }
    const fallback = defaultKernelParams(dim);
    return new GaussianProcess(X, y, isCategorical, opts.deterministic ? { ...fallback, noise: MIN_NOISE } : fallback);
  }

  /**
   * The same hyperparameters conditioned on the latent function taking the values `yextra` at
   * `Xextra` (the kriging believer's fantasies of trials in flight). A fantasy is a value of f itself,
   * not a noisy observation of it: the trial in flight will reveal f there, so after conditioning no
   * uncertainty is left at that point and little around it. Conditioning on a noisy observation
   * instead barely moves a posterior whose variance is already below the noise (dense data near an
   * optimum, noise at its floor), and the acquisition would stay maximal at the point in flight.
   * The diagonal of a fantasy gets only a jitter of 1e-12 x scale (the posterior variance near dense
   * data can be 1e-8 x scale, so a larger jitter would be a noisy observation again), raised by 100x
   * steps up to the noise when the Cholesky factorization fails (fantasies at coinciding points).
   */
  withObservations(Xextra: readonly Float64Array[], yextra: ArrayLike<number>): GaussianProcess {
    if (Xextra.length === 0) return this;
    const y = new Float64Array(this.n + Xextra.length);
    y.set(this.y);
    y.set(Array.from(yextra), this.n);
    const X = [...this.X, ...Xextra];
    const noise = this.params.noise;
    const jitters = [1e-12, 1e-10, 1e-8, 1e-6].map((j) => j * this.params.scale).filter((j) => j >= this.fantasyJitter && j < noise);
    for (const jitter of jitters) {
      try {
        return new GaussianProcess(X, y, this.isCategorical, this.params, this.nObserved, jitter);
      } catch (e) {
        if (!(e instanceof NotPositiveDefiniteError)) throw e;
      }
    }
    // Last resort: fantasies as noisy observations, which factorizes whenever the observations do.
    return new GaussianProcess(X, y, this.isCategorical, this.params, this.nObserved, Math.max(noise, this.fantasyJitter));
  }

  private gram(): Float64Array {
    const { n, dim, X } = this;
    const lam = this.params.inverseSquaredLengthscales;
    const K = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      K[i * n + i] = this.params.scale + (i < this.nObserved ? this.params.noise : this.fantasyJitter);
      for (let j = 0; j < i; j++) {
        let r2 = 0;
        for (let d = 0; d < dim; d++) r2 += lam[d]! * sqd(X[i]![d]!, X[j]![d]!, this.isCategorical[d]!);
        const k = this.params.scale * matern(r2);
        K[i * n + j] = k;
        K[j * n + i] = k;
      }
    }
    return K;
  }

  /**
   * Writes k(x, X_i) into bufK (and scale * m'(r^2) into bufDk when `withDeriv`); returns the
   * posterior mean k^T alpha.
   */
  private kernelVector(x: ArrayLike<number>, withDeriv: boolean): number {
    const { n, dim, flat, cat, alpha } = this;
    const lam = this.params.inverseSquaredLengthscales;
    const scale = this.params.scale;
    const anyCat = this.anyCategorical;
    const v = this.bufK;
    const dk = this.bufDk;
    let mean = 0;
    for (let i = 0, o = 0; i < n; i++, o += dim) {
      let r2 = 0;
      if (anyCat) {
        for (let d = 0; d < dim; d++) {
          const diff = x[d]! - flat[o + d]!;
          r2 += lam[d]! * (cat[d] ? (diff === 0 ? 0 : 1) : diff * diff);
        }
      } else {
        for (let d = 0; d < dim; d++) {
          const diff = x[d]! - flat[o + d]!;
          r2 += lam[d]! * diff * diff;
        }
      }
      const s5 = Math.sqrt(5 * r2);
      const e = Math.exp(-s5);
      const ki = scale * (1 + s5 + (5 / 3) * r2) * e;
      v[i] = ki;
      if (withDeriv) dk[i] = scale * (-5 / 6) * (1 + s5) * e;
      mean += ki * alpha[i]!;
    }
    return mean;
  }

  /**
   * The posterior mean and variance at x, unless `stop` says the point is of no interest first. The
   * forward substitution v = L^-1 k runs row by row, and after the first j rows
   * scale - sum_{i<j} v_i^2 is the variance given the first j inputs alone: an upper bound on the
   * variance that tightens as j grows. At a few checkpoints `stop(mean, varianceUpperBound)` is asked;
   * when it returns true the result is that bound, flagged `exact: false`. Otherwise the result is
   * exactly posterior(x).
   */
  posteriorOrBound(x: ArrayLike<number>, stop: (mean: number, varianceUpperBound: number) => boolean): { mean: number; variance: number; exact: boolean } {
    const n = this.n;
    const L = this.chol;
    const scale = this.params.scale;
    const mean = this.kernelVector(x, false);
    const b = this.bufK;
    let vv = 0;
    let next = n >= 32 ? n >> 3 : n; // checkpoints at n/8, n/4, n/2, 3n/4
    for (let i = 0; i < n; i++) {
      if (i === next) {
        if (stop(mean, Math.max(0, scale - vv))) return { mean, variance: Math.max(0, scale - vv), exact: false };
        next = next === n >> 3 ? n >> 2 : next === n >> 2 ? n >> 1 : next === n >> 1 ? (3 * n) >> 2 : n;
      }
      const ri = i * n;
      let s0 = b[i]!, s1 = 0, s2 = 0, s3 = 0;
      let k = 0;
      for (; k + 3 < i; k += 4) {
        s0 -= L[ri + k]! * b[k]!;
        s1 -= L[ri + k + 1]! * b[k + 1]!;
        s2 -= L[ri + k + 2]! * b[k + 2]!;
        s3 -= L[ri + k + 3]! * b[k + 3]!;
      }
      for (; k < i; k++) s0 -= L[ri + k]! * b[k]!;
      const bi = (s0 + s1 + s2 + s3) / L[ri + i]!;
      b[i] = bi;
      vv += bi * bi;
    }
    return { mean, variance: Math.max(0, scale - vv), exact: true };
  }

  /** Posterior mean and variance at x; with `grad`, also their gradients over the continuous coordinates. */
  posterior(x: ArrayLike<number>, grad?: { mean: Float64Array; variance: Float64Array }): { mean: number; variance: number } {
    const { n, dim, flat, cat, alpha } = this;
    const lam = this.params.inverseSquaredLengthscales;
    const scale = this.params.scale;
    const mean = this.kernelVector(x, !!grad);
    const v = this.bufK; // k, then L^-1 k in place
    const dk = this.bufDk;
    solveLower(this.chol, n, v);
    let vv = 0;
    for (let i = 0; i < n; i++) vv += v[i]! * v[i]!;
    const variance = Math.max(0, scale - vv);
    if (grad) {
      const w = solveUpperT(this.chol, n, v); // (K + noise I)^-1 k, in place
      const gm = grad.mean;
      const gv = grad.variance;
      gm.fill(0);
      gv.fill(0);
      // d k_i / d x_d = m'(r_i^2) * scale * lambda_d * 2 (x_d - X_id)
      for (let i = 0, o = 0; i < n; i++, o += dim) {
        const a = dk[i]! * alpha[i]!;
        const b = dk[i]! * w[i]!;
        if (a === 0 && b === 0) continue;
        for (let d = 0; d < dim; d++) {
          const diff = x[d]! - flat[o + d]!;
          gm[d]! += a * diff;
          gv[d]! += b * diff;
        }
      }
      for (let d = 0; d < dim; d++) {
        const f = cat[d] ? 0 : 2 * lam[d]!;
        gm[d] = f * gm[d]!;
        gv[d] = variance > 0 ? -2 * f * gv[d]! : 0;
      }
    }
    return { mean, variance };
  }
}

/** Negative (log marginal likelihood + log prior) and its gradient over the log parameters. */
function fitParams(X: readonly Float64Array[], y: Float64Array, isCat: readonly boolean[], init: KernelParams, deterministic: boolean): KernelParams {
  const n = X.length;
  const dim = isCat.length;
  // Squared distances per pair and dimension, computed once for the whole fit.
  const npairs = (n * (n - 1)) / 2;
  const D = new Float64Array(npairs * dim);
  for (let i = 0, p = 0; i < n; i++) {
    for (let j = 0; j < i; j++, p++) for (let d = 0; d < dim; d++) D[p * dim + d] = sqd(X[i]![d]!, X[j]![d]!, isCat[d]!);
  }
  const K = new Float64Array(n * n);
  const Md = new Float64Array(npairs); // scale * m'(r^2) per pair
  const loss = (theta: Float64Array, grad: Float64Array): number => {
    const lam = theta.subarray(0, dim).map(Math.exp);
    const scale = Math.exp(theta[dim]!);
    const noiseRaw = deterministic ? 0 : Math.exp(theta[dim + 1]!);
    const noise = MIN_NOISE + noiseRaw;
    for (let i = 0, p = 0; i < n; i++) {
      K[i * n + i] = scale + noise;
      for (let j = 0; j < i; j++, p++) {
        let r2 = 0;
        for (let d = 0; d < dim; d++) r2 += lam[d]! * D[p * dim + d]!;
        const k = scale * matern(r2);
        Md[p] = scale * maternDeriv(r2);
        K[i * n + j] = k;
        K[j * n + i] = k;
      }
    }
    let L: Float64Array;
    try {
      L = cholesky(K, n);
    } catch {
      grad.fill(0);
      return Infinity;
    }
    const alpha = solveUpperT(L, n, solveLower(L, n, Float64Array.from(y)));
    let logdet = 0;
    for (let i = 0; i < n; i++) logdet += Math.log(L[i * n + i]!);
    let quad = 0;
    for (let i = 0; i < n; i++) quad += y[i]! * alpha[i]!;
    const mll = -logdet - 0.5 * quad;
    let prior = 0;
    for (let d = 0; d < dim; d++) prior -= 0.1 / lam[d]! + 0.1 * lam[d]!;
    prior += Math.log(scale) - scale;
    prior += 0.1 * Math.log(noise) - 30 * noise;
    // d mll / d theta = 0.5 * sum_ij W_ij dK_ij / d theta, W = alpha alpha^T - K^-1.
    const Kinv = inverseFromCholesky(L, n);
    grad.fill(0);
    let gScale = 0;
    let gDiag = 0;
    for (let i = 0, p = 0; i < n; i++) {
      const wii = alpha[i]! * alpha[i]! - Kinv[i * n + i]!;
      gScale += 0.5 * wii * scale;
      gDiag += 0.5 * wii;
      for (let j = 0; j < i; j++, p++) {
        const wij = alpha[i]! * alpha[j]! - Kinv[i * n + j]!; // counted twice: W symmetric
        gScale += wij * K[i * n + j]!;
        const c = wij * Md[p]!;
        for (let d = 0; d < dim; d++) grad[d]! += c * lam[d]! * D[p * dim + d]!;
      }
    }
    for (let d = 0; d < dim; d++) grad[d] = -(grad[d]! + 0.1 / lam[d]! - 0.1 * lam[d]!);
    grad[dim] = -(gScale + 1 - scale);
    grad[dim + 1] = deterministic ? 0 : -(gDiag * noiseRaw + (0.1 / noise - 30) * noiseRaw);
    return -(mll + prior);
  };
  const theta0 = new Float64Array(dim + 2);
  for (let d = 0; d < dim; d++) theta0[d] = Math.log(init.inverseSquaredLengthscales[d]!);
  theta0[dim] = Math.log(init.scale);
  theta0[dim + 1] = Math.log(Math.max(1e-12, init.noise - 0.99 * MIN_NOISE));
  // Keep the search in a range where the kernel stays representable.
  const lower = new Float64Array(dim + 2).fill(-20);
  const upper = new Float64Array(dim + 2).fill(20);
  const res = lbfgs(loss, theta0, { maxIter: 200, gtol: 1e-2, lower, upper });
  if (!Number.isFinite(res.f)) throw new NotPositiveDefiniteError('kernel fit left the positive definite region');
  const t = res.x;
  return {
    inverseSquaredLengthscales: t.subarray(0, dim).map(Math.exp),
    scale: Math.exp(t[dim]!),
    noise: deterministic ? MIN_NOISE : MIN_NOISE + Math.exp(t[dim + 1]!),
  };
}
