/**
 * The Parzen estimator behind TPE: a weighted mixture of kernels, one per observed trial plus an
 * optional prior kernel, over one parameter (univariate TPE) or a whole vector (multivariate TPE, where
 * each kernel is a product of per-dimension kernels). Numerical dimensions use normal kernels truncated
 * to the parameter's range, in log space for log parameters; stepped and int parameters get the mass of
 * their grid cell instead of a density. Categorical dimensions use a smoothed one-hot kernel.
 * Everything is laid out in typed arrays so scoring a batch of candidates is one tight loop.
 */
import { toExternal, toInternal, type Distribution, type ParamValue } from '../../distributions.js';
import type { Rng } from '../../rng.js';

/** How one parameter looks to the estimator: its range in model space (log-transformed, widened by half a step). */
export type ParamModel =
  | { readonly kind: 'numerical'; readonly distribution: Distribution; readonly log: boolean; readonly low: number; readonly high: number; readonly step: number | null }
  | { readonly kind: 'categorical'; readonly distribution: Distribution; readonly nChoices: number };

export function paramModel(d: Distribution): ParamModel {
  if (d.type === 'categorical') return { kind: 'categorical', distribution: d, nChoices: d.choices.length };
  const step = d.type === 'int' ? d.step : d.step;
  // A grid point owns the cell [v - step/2, v + step/2]; ints on a log scale own [v - 0.5, v + 0.5].
  let low = d.low;
  let high = d.high;
  if (step !== null) {
    low -= step / 2;
    high += step / 2;
  }
  if (d.log) {
    low = Math.log(low);
    high = Math.log(high);
  }
  return { kind: 'numerical', distribution: d, log: d.log, low, high, step };
}

/** External value -> model-space number (log for log params; index for categoricals). */
export function toModel(m: ParamModel, value: ParamValue): number {
  const v = toInternal(m.distribution, value);
  return m.kind === 'numerical' && m.log ? Math.log(v) : v;
}

/** Model-space number -> external value on the parameter's grid and inside its range. */
export function fromModel(m: ParamModel, x: number): ParamValue {
  if (m.kind === 'categorical') return m.distribution.type === 'categorical' ? m.distribution.choices[x]! : x;
  return toExternal(m.distribution, m.log ? Math.exp(x) : x);
}

export type BandwidthRule = 'optuna' | 'scott';

export interface ParzenOptions {
  /** Weight of the prior kernel (uniform-ish over the range); 0 leaves the prior out. */
  readonly priorWeight: number;
  /** Optuna's "magic clip": no bandwidth below range / min(100, 1 + kernels). */
  readonly considerMagicClip: boolean;
  /** Hyperopt rule: let the distance to the range ends widen the first and last kernels. */
  readonly considerEndpoints: boolean;
  /**
   * Rule for product kernels (several dimensions): 'optuna' takes 0.2 * n^(-1/(d+4)) * range (Optuna
   * 3.x); 'scott' takes Scott's rule on the observations' spread, 1.059 * sd * n^(-1/(d+4)) (Watanabe
   * 2023). Univariate kernels always take the larger gap to their sorted neighbours (hyperopt/Optuna),
   * which beat Scott's rule in one dimension on the benchmark suite.
   */
  readonly bandwidth: BandwidthRule;
  /** No bandwidth below this fraction of the range (Watanabe 2023's b_min); 0 to rely on the magic clip only. */
  readonly minBandwidthFactor: number;
  /**
   * 'exact': normal kernels are true densities. 'bandwidth': each continuous kernel also weighs in
   * proportion to its bandwidth, which is what Optuna 3.1's log-pdf computes (its truncated-normal
   * log-pdf leaves out -log(sigma)); it leans l(x) and g(x) towards their wide kernels, the prior
   * among them. It helps Optuna's own bandwidth rules, but with Scott's rule in many dimensions the
   * prior (range-wide) kernel then outweighs everything, so the exact density is the default.
   */
  readonly kernelWeighting: 'exact' | 'bandwidth';
}

const LOG_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);
const SQRT1_2 = Math.SQRT1_2;
const NEG_BIG = -1e300;

/** log(erfc(x)) for x >= 0 without underflow (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7). */
function logErfc(x: number): number {
  const t = 1 / (1 + 0.5 * x);
  const poly =
    -1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return Math.log(t) - x * x + poly;
}

/** log P(Z > z) for a standard normal Z and z >= 0. */
function logUpperTail(z: number): number {
  return -Math.LN2 + logErfc(z * SQRT1_2);
}

/** log(Phi(b) - Phi(a)) for a <= b, accurate far into either tail. */
export function logNormalMass(a: number, b: number): number {
  if (!(b > a)) return NEG_BIG;
  if (a < -9 && b > 9) return 0; // both tails below 1e-19: the mass is 1 to double precision
  if (a >= 0) {
    const la = logUpperTail(a);
    const lb = b === Infinity ? -Infinity : logUpperTail(b);
    return la + Math.log1p(-Math.exp(lb - la));
  }
  if (b <= 0) return logNormalMass(-b, -a);
  const upper = b === Infinity ? 0 : Math.exp(logUpperTail(b));
  const lower = a === -Infinity ? 0 : Math.exp(logUpperTail(-a));
  return Math.log(Math.max(1 - upper - lower, 1e-300));
}

/** One weighted mixture. Build it with `ParzenEstimator.fit`; then `sample` from it and `logPdf` candidates. */
export class ParzenEstimator {
  /** Number of kernels (observations + prior). */
  readonly k: number;
  readonly dims: number;
  /** Kernel-major: value for kernel i, dimension j at [i * dims + j]. */
  private readonly mu: Float64Array;
  private readonly sigma: Float64Array;
  private readonly invSigma: Float64Array;
  /** log(weight) minus every per-dimension normaliser that does not depend on the point. */
  private readonly logConst: Float64Array;
  /** Mixture weights, normalised (sampling picks a kernel with these). */
  readonly weights: Float64Array;
  /** Categorical dims: observed index per kernel (-1 for the prior kernel). */
  private readonly catObs: Int32Array;
  /** Categorical dims: log P(choice) when it equals / differs from the kernel's choice, and under the prior. */
  private readonly catLogSame: Float64Array;
  private readonly catLogOther: Float64Array;
  private readonly catLogPrior: Float64Array;
  private readonly scratch: Float64Array;
  /** 1-D continuous: observation kernels are sorted by centre (the prior, if any, is last). */
  private sorted = false;
  /** A lone categorical dimension: log P(choice) for every choice. */
  private catTable: Float64Array | null = null;
  /** Kernels that come from observations (the prior, if used, is kernel nObs). */
  private nObs = 0;
  /** Over observation kernels: largest bandwidth and largest log-constant (bounds for logPdfWindow). */
  private maxSigma = 0;
  private maxLogConst = -Infinity;

  private constructor(readonly models: readonly ParamModel[], k: number) {
    const d = models.length;
    this.k = k;
    this.dims = d;
    this.mu = new Float64Array(k * d);
    this.sigma = new Float64Array(k * d);
    this.invSigma = new Float64Array(k * d);
    this.logConst = new Float64Array(k);
    this.weights = new Float64Array(k);
    this.catObs = new Int32Array(k * d);
    this.catLogSame = new Float64Array(d);
    this.catLogOther = new Float64Array(d);
    this.catLogPrior = new Float64Array(d);
    this.scratch = new Float64Array(k);
  }

  /**
   * Fits the mixture to `n` observations: `obs[j][i]` is observation i's model-space value in dimension j,
   * `weights[i]` its (unnormalised) weight. A single-dimension fit is univariate TPE.
   */
  static fit(models: readonly ParamModel[], obs: readonly Float64Array[], weights: ArrayLike<number>, opts: ParzenOptions): ParzenEstimator {
    const n = weights.length;
    const d = models.length;
    const usePrior = opts.priorWeight > 0 || n === 0;
    const k = n + (usePrior ? 1 : 0);
    const pe = new ParzenEstimator(models, k);
    pe.nObs = n;
    const m0 = models[0]!;
    if (d === 1 && m0.kind === 'numerical' && m0.step === null) {
      // A mixture does not care about kernel order: keep 1-D kernels sorted by centre so logPdf can
      // skip the ones too far away to matter (see logPdfWindow).
      [obs, weights] = sortByValue(obs[0]!, weights);
      pe.sorted = true;
    }

    let total = 0;
    for (let i = 0; i < n; i++) total += weights[i]!;
    const priorW = n === 0 ? 1 : opts.priorWeight;
    total += usePrior ? priorW : 0;
    for (let i = 0; i < n; i++) pe.weights[i] = weights[i]! / total;
    if (usePrior) pe.weights[n] = priorW / total;
    for (let i = 0; i < k; i++) pe.logConst[i] = Math.log(pe.weights[i]!);

    for (let j = 0; j < d; j++) {
      const m = models[j]!;
      const x = obs[j]!;
      if (m.kind === 'categorical') {
        // Optuna's smoothing: each observed one-hot gets priorWeight / (n + 1) added to every choice.
        const c = m.nChoices;
        const eps = usePrior ? priorW / (n + 1) : 0;
        pe.catLogSame[j] = Math.log((1 + eps) / (1 + c * eps));
        pe.catLogOther[j] = eps > 0 ? Math.log(eps / (1 + c * eps)) : NEG_BIG;
        pe.catLogPrior[j] = -Math.log(c);
        for (let i = 0; i < n; i++) pe.catObs[i * d + j] = x[i]!;
        if (usePrior) pe.catObs[n * d + j] = -1;
        if (d === 1) {
          // One categorical: the mixture collapses to a table of C probabilities.
          const same = Math.exp(pe.catLogSame[j]!), other = eps > 0 ? Math.exp(pe.catLogOther[j]!) : 0;
          const p = new Float64Array(c);
          for (let i = 0; i < n; i++) {
            const w = pe.weights[i]!;
            for (let q = 0; q < c; q++) p[q] += w * other;
            p[x[i]!] += w * (same - other);
          }
          if (usePrior) for (let q = 0; q < c; q++) p[q] += pe.weights[n]! / c;
          pe.catTable = p.map((v) => (v > 0 ? Math.log(v) : NEG_BIG));
        }
        continue;
      }
      const sig = bandwidths(m, x, n, d, usePrior, opts, pe.sorted);
      for (let i = 0; i < k; i++) {
        const mu = i < n ? x[i]! : 0.5 * (m.low + m.high);
        const s = sig[i]!;
        const at = i * d + j;
        pe.mu[at] = mu;
        pe.sigma[at] = s;
        pe.invSigma[at] = 1 / s;
        // Truncation to the range: each kernel is renormalised by its mass inside [low, high].
        let c = -logNormalMass((m.low - mu) / s, (m.high - mu) / s);
        if (m.step === null) c -= (opts.kernelWeighting === 'exact' ? Math.log(s) : 0) + LOG_SQRT_2PI;
        pe.logConst[i] += c;
      }
    }
    if (pe.sorted) {
      for (let i = 0; i < n; i++) {
        if (pe.sigma[i]! > pe.maxSigma) pe.maxSigma = pe.sigma[i]!;
        if (pe.logConst[i]! > pe.maxLogConst) pe.maxLogConst = pe.logConst[i]!;
      }
    }
    return pe;
  }

  /**
   * Univariate log density over kernels sorted by centre. Start from the nearest kernels for a lower
   * bound M on the maximum term; any kernel farther than maxSigma * sqrt(2 (maxLogConst - M + 40))
   * then lies e^-40 below M, so only a window of kernels is evaluated. Exact to that tolerance.
   */
  private logPdfWindow(x: number): number {
    const { mu, invSigma, logConst } = this;
    const n = this.nObs;
    let max = -Infinity;
    let z = 0;
    const pos = lowerBound(mu, 0, n, x);
    for (const i of [pos - 1, pos, n]) {
      if (i < 0 || i >= this.k || (i === pos && pos >= n)) continue;
      z = (x - mu[i]!) * invSigma[i]!;
      max = Math.max(max, logConst[i]! - 0.5 * z * z);
    }
    const radius = this.maxSigma * Math.sqrt(2 * Math.max(0, this.maxLogConst - max + 40));
    const lo = lowerBound(mu, 0, n, x - radius);
    const hi = upperBound(mu, lo, n, x + radius);
    // The radius only needs a lower bound on the maximum; the sum itself is a running log-sum-exp, since a
    // wide kernel inside the window may beat the nearest ones.
    let sum = 0;
    let top = -Infinity;
    // Window kernels, then the prior (index nObs onwards); kept inline: this is the hottest loop.
    for (let pass = 0; pass < 2; pass++) {
      const from = pass === 0 ? lo : n;
      const to = pass === 0 ? hi : this.k;
      for (let i = from; i < to; i++) {
        z = (x - mu[i]!) * invSigma[i]!;
        const t = logConst[i]! - 0.5 * z * z;
        if (t > top) {
          sum = sum * Math.exp(top - t) + 1;
          top = t;
        } else if (t > top - 40) {
          sum += Math.exp(t - top);
        }
      }
    }
    return top + Math.log(sum);
  }

  /** Draws `count` points; result[j][i] is point i's model-space value in dimension j. */
  sample(rng: Rng, count: number): Float64Array[] {
    const d = this.dims;
    const out = this.models.map(() => new Float64Array(count));
    const cdf = new Float64Array(this.k);
    let acc = 0;
    for (let i = 0; i < this.k; i++) cdf[i] = acc += this.weights[i]!;
    for (let c = 0; c < count; c++) {
      const r = rng.random() * acc;
      let lo = 0, hi = this.k - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid]! > r) hi = mid;
        else lo = mid + 1;
      }
      const kern = lo;
      for (let j = 0; j < d; j++) {
        const m = this.models[j]!;
        const at = kern * d + j;
        if (m.kind === 'categorical') {
          out[j]![c] = this.sampleCategorical(rng, j, this.catObs[at]!, m.nChoices);
        } else {
          const x = truncatedNormal(rng, this.mu[at]!, this.sigma[at]!, m.low, m.high);
          out[j]![c] = snap(m, x);
        }
      }
    }
    return out;
  }

  private sampleCategorical(rng: Rng, j: number, observed: number, nChoices: number): number {
    if (observed < 0) return Math.min(nChoices - 1, Math.floor(rng.random() * nChoices));
    const pSame = Math.exp(this.catLogSame[j]!);
    if (rng.random() < pSame) return observed;
    const other = Math.min(nChoices - 2, Math.floor(rng.random() * (nChoices - 1)));
    return other >= observed ? other + 1 : other;
  }

  /** log density (mass for stepped dims) of `count` points given as xs[j][i]. */
  logPdf(xs: readonly Float64Array[], count: number): Float64Array {
    const out = new Float64Array(count);
    const d = this.dims;
    const k = this.k;
    const terms = this.scratch;
    const { mu, invSigma, logConst, catObs } = this;
    const kinds = this.models.map((m) => (m.kind === 'categorical' ? 2 : m.step === null ? 0 : 1));
    const allContinuous = kinds.every((t) => t === 0);
    if (this.sorted) {
      for (let c = 0; c < count; c++) out[c] = this.logPdfWindow(xs[0]![c]!);
      return out;
    }
    if (this.catTable) {
      for (let c = 0; c < count; c++) out[c] = this.catTable[xs[0]![c]!]!;
      return out;
    }
    for (let c = 0; c < count; c++) {
      let max = -Infinity;
      if (allContinuous) {
        // The hot path (every float space): one fused loop over kernels and dimensions.
        for (let i = 0; i < k; i++) {
          let q = 0;
          const base = i * d;
          for (let j = 0; j < d; j++) {
            const z = (xs[j]![c]! - mu[base + j]!) * invSigma[base + j]!;
            q += z * z;
          }
          const t = logConst[i]! - 0.5 * q;
          terms[i] = t;
          if (t > max) max = t;
        }
      } else {
        for (let i = 0; i < k; i++) {
          let t = logConst[i]!;
          const base = i * d;
          for (let j = 0; j < d; j++) {
            const x = xs[j]![c]!;
            const kind = kinds[j]!;
            if (kind === 0) {
              const z = (x - mu[base + j]!) * invSigma[base + j]!;
              t -= 0.5 * z * z;
            } else if (kind === 1) {
              t += this.cellLogMass(j, base + j, x);
            } else {
              const o = catObs[base + j]!;
              t += o < 0 ? this.catLogPrior[j]! : o === x ? this.catLogSame[j]! : this.catLogOther[j]!;
            }
          }
          terms[i] = t;
          if (t > max) max = t;
        }
      }
      // Kernels more than e^-40 below the largest cannot move the sum: skip their exp (most of them, far from x).
      const floor = max - 40;
      let s = 0;
      for (let i = 0; i < k; i++) {
        const t = terms[i]!;
        if (t > floor) s += Math.exp(t - max);
      }
      out[c] = max + Math.log(s);
    }
    return out;
  }

  /** log of one kernel's mass on the grid cell around x (stepped dims). */
  private cellLogMass(j: number, at: number, x: number): number {
    const m = this.models[j]! as Extract<ParamModel, { kind: 'numerical' }>;
    let lo: number, hi: number;
    if (m.log) {
      const v = Math.exp(x);
      lo = Math.log(Math.max(v - m.step! / 2, 1e-300));
      hi = Math.log(v + m.step! / 2);
    } else {
      lo = x - m.step! / 2;
      hi = x + m.step! / 2;
    }
    lo = Math.max(lo, m.low);
    hi = Math.min(hi, m.high);
    const mu = this.mu[at]!;
    const inv = this.invSigma[at]!;
    return logNormalMass((lo - mu) * inv, (hi - mu) * inv);
  }
}

/** First index in [from, to) whose value is >= x (sorted a). */
function lowerBound(a: Float64Array, from: number, to: number, x: number): number {
  let lo = from, hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index in [from, to) whose value is > x (sorted a). */
function upperBound(a: Float64Array, from: number, to: number, x: number): number {
  let lo = from, hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Values sorted ascending with their weights carried along. */
function sortByValue(x: Float64Array, w: ArrayLike<number>): [Float64Array[], Float64Array] {
  const n = w.length;
  const sx = x.slice(0, n);
  const sw = new Float64Array(n);
  for (let i = 0; i < n; i++) sw[i] = w[i]!;
  sortPairs(sx, sw, 0, n - 1);
  return [[sx], sw];
}

/**
 * In-place quicksort of keys with a payload moved alongside (median-of-three, insertion sort for short
 * runs). A JIT-compiled loop like this is several times faster than TypedArray#sort plus a rank search.
 * Deterministic (same input order, same output), which is what peers need; not stable.
 */
export function sortPairs(a: Float64Array, b: Float64Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < a[lo]!) swap(a, b, mid, lo);
    if (a[hi]! < a[lo]!) swap(a, b, hi, lo);
    if (a[hi]! < a[mid]!) swap(a, b, hi, mid);
    const pivot = a[mid]!;
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) swap(a, b, i++, j--);
    }
    // Recurse into the smaller side, loop on the larger: stack depth stays O(log n).
    if (j - lo < hi - i) {
      sortPairs(a, b, lo, j);
      lo = i;
    } else {
      sortPairs(a, b, i, hi);
      hi = j;
    }
  }
  for (let i = lo + 1; i <= hi; i++) {
    const ka = a[i]!, kb = b[i]!;
    let j = i - 1;
    while (j >= lo && a[j]! > ka) {
      a[j + 1] = a[j]!;
      b[j + 1] = b[j]!;
      j--;
    }
    a[j + 1] = ka;
    b[j + 1] = kb;
  }
}

function swap(a: Float64Array, b: Float64Array, i: number, j: number): void {
  const ta = a[i]!;
  a[i] = a[j]!;
  a[j] = ta;
  const tb = b[i]!;
  b[i] = b[j]!;
  b[j] = tb;
}

/** Puts a continuous model-space draw onto the parameter's grid (int and stepped params). */
function snap(m: Extract<ParamModel, { kind: 'numerical' }>, x: number): number {
  if (m.step === null) return Math.min(m.high, Math.max(m.low, x));
  const d = m.distribution as Exclude<Distribution, { type: 'categorical' }>;
  const v = toExternal(d, m.log ? Math.exp(x) : x) as number;
  return m.log ? Math.log(v) : v;
}

function truncatedNormal(rng: Rng, mu: number, sigma: number, low: number, high: number): number {
  // mu lies inside [low, high], so at least ~38% of draws land inside even for the widest kernel.
  for (let tries = 0; tries < 64; tries++) {
    const x = mu + sigma * rng.normal();
    if (x >= low && x <= high) return x;
  }
  return Math.min(high, Math.max(low, mu));
}

/** Per-kernel bandwidths for one numerical dimension (last entry: the prior kernel, if any). */
function bandwidths(
  m: Extract<ParamModel, { kind: 'numerical' }>,
  x: Float64Array,
  n: number,
  dims: number,
  usePrior: boolean,
  opts: ParzenOptions,
  sortedInput: boolean,
): Float64Array {
  const k = n + (usePrior ? 1 : 0);
  const range = m.high - m.low;
  const sig = new Float64Array(k);
  if (opts.bandwidth === 'scott' && dims > 1) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[i]!;
    mean /= Math.max(n, 1);
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[i]! - mean) ** 2;
    const sd = n > 1 ? Math.sqrt(v / (n - 1)) : range;
    const h = 1.059 * Math.min(sd, range) * Math.pow(Math.max(n, 1), -1 / (dims + 4));
    sig.fill(h, 0, n);
  } else if (dims > 1) {
    sig.fill(0.2 * Math.pow(Math.max(n, 1), -1 / (dims + 4)) * range, 0, n);
  } else if (n > 0) {
    // Hyperopt's rule: each kernel is as wide as the larger gap to its sorted neighbours, with the prior
    // centre taking part in the ordering when it is used.
    const centre = 0.5 * (m.low + m.high);
    let sorted: Float64Array;
    let rankOf: (i: number) => number;
    if (sortedInput) {
      const p = usePrior ? lowerBound(x, 0, n, centre) : n;
      sorted = new Float64Array(k);
      sorted.set(x.subarray(0, p));
      if (usePrior) {
        sorted[p] = centre;
        sorted.set(x.subarray(p, n), p + 1);
      }
      rankOf = (i) => (i === n ? p : i < p ? i : i + 1);
    } else {
      sorted = new Float64Array(k);
      sorted.set(x.subarray(0, n));
      if (usePrior) sorted[n] = centre;
      sorted.sort();
      // Ties (int parameters repeat values) take consecutive ranks, as an argsort would give them, so
      // inner duplicates see zero gaps and fall to the minimum bandwidth.
      const taken = new Int32Array(k);
      rankOf = (i) => {
        const r = lowerBound(sorted, 0, k, i < n ? x[i]! : centre);
        return r + taken[r]!++;
      };
    }
    for (let i = 0; i < k; i++) {
      const v = i < n ? x[i]! : centre;
      const r = rankOf(i);
      const left = r > 0 ? v - sorted[r - 1]! : v - m.low;
      const right = r < k - 1 ? sorted[r + 1]! - v : m.high - v;
      let s = Math.max(left, right);
      if (!opts.considerEndpoints && k >= 2) {
        if (r === 0) s = right;
        else if (r === k - 1) s = left;
      }
      sig[i] = s;
    }
  }
  if (usePrior) sig[n] = range;
  const minBy = (opts.considerMagicClip ? range / Math.min(100, 1 + k) : 0);
  const lower = Math.max(minBy, opts.minBandwidthFactor * range, range * 1e-12);
  for (let i = 0; i < k; i++) sig[i] = Math.min(range, Math.max(lower, sig[i]!));
  return sig;
}
