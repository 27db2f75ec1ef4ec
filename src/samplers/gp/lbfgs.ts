/**
 * Limited-memory BFGS with a backtracking (Armijo) line search, optionally inside a box: variables at
 * a bound whose gradient pushes outwards are held there, and every trial step is projected back into
 * the box. Enough for the GP's two smooth problems: its kernel hyperparameters (unbounded, in log
 * space) and the acquisition function's local refinement (inside the unit cube).
 */

export interface LbfgsOptions {
  maxIter?: number;
  /** Stop when the largest free gradient component is below this. */
  gtol?: number;
  memory?: number;
  lower?: ArrayLike<number>;
  upper?: ArrayLike<number>;
}

/** Minimizes f; `fg(x, grad)` returns f(x) and writes the gradient into `grad`. */
export function lbfgs(fg: (x: Float64Array, grad: Float64Array) => number, x0: ArrayLike<number>, opts: LbfgsOptions = {}): { x: Float64Array; f: number; iterations: number } {
  const n = x0.length;
  const maxIter = opts.maxIter ?? 100;
  const gtol = opts.gtol ?? 1e-5;
  const mem = opts.memory ?? 8;
  const lo = opts.lower;
  const hi = opts.upper;
  const project = (v: Float64Array): void => {
    if (!lo || !hi) return;
    for (let i = 0; i < n; i++) v[i] = Math.min(hi[i]!, Math.max(lo[i]!, v[i]!));
  };
  let x = Float64Array.from(x0);
  project(x);
  let g = new Float64Array(n);
  let f = fg(x, g);
  if (!Number.isFinite(f)) return { x, f, iterations: 0 };
  const S: Float64Array[] = [];
  const Y: Float64Array[] = [];
  const rho: number[] = [];
  const free = new Uint8Array(n);
  const dir = new Float64Array(n);
  const alpha = new Float64Array(mem);
  let it = 0;
  for (; it < maxIter; it++) {
    let gmax = 0;
    for (let i = 0; i < n; i++) {
      const atLo = lo && x[i]! <= lo[i]! && g[i]! > 0;
      const atHi = hi && x[i]! >= hi[i]! && g[i]! < 0;
      free[i] = atLo || atHi ? 0 : 1;
      if (free[i]) gmax = Math.max(gmax, Math.abs(g[i]!));
    }
    if (gmax < gtol) break;
    // Two-loop recursion on the free variables.
    for (let i = 0; i < n; i++) dir[i] = free[i] ? -g[i]! : 0;
    for (let k = S.length - 1; k >= 0; k--) {
      let a = 0;
      for (let i = 0; i < n; i++) if (free[i]) a += S[k]![i]! * dir[i]!;
      a *= rho[k]!;
      alpha[k] = a;
      for (let i = 0; i < n; i++) if (free[i]) dir[i]! -= a * Y[k]![i]!;
    }
    if (S.length) {
      const k = S.length - 1;
      let sy = 0, yy = 0;
      for (let i = 0; i < n; i++) (sy += S[k]![i]! * Y[k]![i]!), (yy += Y[k]![i]! * Y[k]![i]!);
      const gamma = yy > 0 ? sy / yy : 1;
      for (let i = 0; i < n; i++) dir[i]! *= gamma;
    } else {
      // First step: a unit-length move along the steepest descent.
      let norm = 0;
      for (let i = 0; i < n; i++) norm += dir[i]! * dir[i]!;
      norm = Math.sqrt(norm);
      if (norm > 0) for (let i = 0; i < n; i++) dir[i]! /= Math.max(1, norm);
    }
    for (let k = 0; k < S.length; k++) {
      let b = 0;
      for (let i = 0; i < n; i++) if (free[i]) b += Y[k]![i]! * dir[i]!;
      b *= rho[k]!;
      for (let i = 0; i < n; i++) if (free[i]) dir[i]! += S[k]![i]! * (alpha[k]! - b);
    }
    let slope = 0;
    for (let i = 0; i < n; i++) slope += g[i]! * dir[i]!;
    if (!(slope < 0)) {
      // Not a descent direction (curvature information went stale): restart from steepest descent.
      S.length = 0;
      Y.length = 0;
      rho.length = 0;
      for (let i = 0; i < n; i++) dir[i] = free[i] ? -g[i]! : 0;
      slope = 0;
      for (let i = 0; i < n; i++) slope += g[i]! * dir[i]!;
      if (!(slope < 0)) break;
    }
    let step = 1;
    const xn = new Float64Array(n);
    const gn = new Float64Array(n);
    let fn = Infinity;
    let accepted = false;
    for (let ls = 0; ls < 30; ls++) {
      for (let i = 0; i < n; i++) xn[i] = x[i]! + step * dir[i]!;
      project(xn);
      fn = fg(xn, gn);
      let actual = 0;
      for (let i = 0; i < n; i++) actual += g[i]! * (xn[i]! - x[i]!);
      if (Number.isFinite(fn) && fn <= f + 1e-4 * Math.min(actual, 0)) {
        accepted = true;
        break;
      }
      step *= 0.5;
    }
    if (!accepted) break;
    const s = new Float64Array(n);
    const y = new Float64Array(n);
    let sy = 0;
    for (let i = 0; i < n; i++) {
      s[i] = xn[i]! - x[i]!;
      y[i] = gn[i]! - g[i]!;
      sy += s[i]! * y[i]!;
    }
    const improvement = f - fn;
    x = xn;
    g = gn;
    f = fn;
    if (sy > 1e-12) {
      S.push(s);
      Y.push(y);
      rho.push(1 / sy);
      if (S.length > mem) (S.shift(), Y.shift(), rho.shift());
    }
    if (improvement <= 1e-12 * Math.max(1, Math.abs(f))) break;
  }
  return { x, f, iterations: it };
}
