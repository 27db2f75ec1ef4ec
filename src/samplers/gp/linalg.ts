/**
 * The small dense linear algebra a Gaussian process needs: Cholesky factors of symmetric positive
 * definite matrices, triangular solves and the inverse from a factor. Matrices are row-major
 * Float64Arrays of n*n; the sizes here (a few hundred trials) never need blocking or BLAS.
 */
import { PeertuneError } from '../../errors.js';

export class NotPositiveDefiniteError extends PeertuneError {
  override name = 'NotPositiveDefiniteError';
  /** A numerical failure inside the GP, not a user mistake. */
  override readonly userFacing = false;
}

/** Lower-triangular L with A = L L^T (A is read, not changed; only its lower triangle is used). */
export function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j]!;
    for (let k = 0; k < j; k++) d -= l[rj + k]! * l[rj + k]!;
    if (!(d > 0)) throw new NotPositiveDefiniteError(`matrix is not positive definite (pivot ${j}: ${d})`);
    const djj = Math.sqrt(d);
    l[rj + j] = djj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j]!;
      for (let k = 0; k < j; k++) s -= l[ri + k]! * l[rj + k]!;
      l[ri + j] = s / djj;
    }
  }
  return l;
}

/** Solves L x = b in place (b becomes x). Four partial sums break the dependency chain of the dot product. */
export function solveLower(l: Float64Array, n: number, b: Float64Array): Float64Array {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    let s0 = b[i]!, s1 = 0, s2 = 0, s3 = 0;
    let k = 0;
    for (; k + 3 < i; k += 4) {
      s0 -= l[ri + k]! * b[k]!;
      s1 -= l[ri + k + 1]! * b[k + 1]!;
      s2 -= l[ri + k + 2]! * b[k + 2]!;
      s3 -= l[ri + k + 3]! * b[k + 3]!;
    }
    for (; k < i; k++) s0 -= l[ri + k]! * b[k]!;
    b[i] = (s0 + s1 + s2 + s3) / l[ri + i]!;
  }
  return b;
}

/** Solves L^T x = b in place (column-oriented, so rows of L are read contiguously). */
export function solveUpperT(l: Float64Array, n: number, b: Float64Array): Float64Array {
  for (let i = n - 1; i >= 0; i--) {
    const ri = i * n;
    const xi = b[i]! / l[ri + i]!;
    b[i] = xi;
    for (let k = 0; k < i; k++) b[k]! -= l[ri + k]! * xi;
  }
  return b;
}

/** A^-1 from A's Cholesky factor (full symmetric matrix). */
export function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  // M = L^-1 row by row (row i = (e_i - sum_k L_ik M_k) / L_ii), then A^-1 = M^T M as a sum of rank-one
  // updates, one per row of M: every inner loop walks a row.
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const a = l[ri + k]!;
      if (a === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) m[ri + j]! -= a * m[rk + j]!;
    }
    m[ri + i]! += 1;
    const d = 1 / l[ri + i]!;
    for (let j = 0; j <= i; j++) m[ri + j]! *= d;
  }
  const inv = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const rk = k * n;
    for (let i = 0; i <= k; i++) {
      const a = m[rk + i]!;
      if (a === 0) continue;
      const ri = i * n;
      for (let j = 0; j <= i; j++) inv[ri + j]! += a * m[rk + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) inv[j * n + i] = inv[i * n + j]!;
  return inv;
}
