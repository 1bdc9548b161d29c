/**
 * KernelSHAP as shap's KernelExplainer computes it (shap/explainers/_kernel.py, `explain` and
 * `solve`), with its coalition sampling driven by the engine's seeded MT19937 instead of numpy's
 * global generator, and without the optional l1 feature selection:
 *
 *   kernel weight of a coalition of size s among M features: (M - 1) / (C(M, s) s (M - s))
 *   subset sizes s and M - s are paired; sizes are enumerated in full (both halves) while the
 *   budget covers them, the rest are sampled by their share of the kernel weight, each sampled
 *   coalition with its complement, repeats adding weight; with 2^M - 2 <= samples every coalition
 *   is enumerated and the solution is the exact Shapley value.
 *   constraint sum(phi) = f(x) - E[f(background)], eliminated through the last feature, then
 *   weighted least squares: phi[:-1] = (E' W E)^-1 E' W y, phi[-1] = (f(x) - fnull) - sum(phi[:-1])
 */
import { identityOrder, MT19937 } from "../rng.js";

/** Coalitions of M features: masks [count, M] (1 = the feature comes from x) and their kernel weights. */
export interface Coalitions {
  readonly features: number;
  readonly count: number;
  readonly masks: Uint8Array;
  readonly weights: Float64Array;
}

/**
 * The coalitions KernelExplainer evaluates for M features and a budget of `samples`.
 *
 * @example
 * ```ts
 * const c = shapCoalitions(6, 2048, new MT19937(0)); // c.count === 62: every coalition but the empty and the full one
 * ```
 */
export function shapCoalitions(M: number, samples: number, rng: MT19937): Coalitions {
  const nsamples = M <= 30 ? Math.min(samples, 2 ** M - 2) : samples;
  const masks: number[][] = [];
  const weights: number[] = [];
  const add = (mask: number[], w: number) => {
    masks.push(mask.slice());
    weights.push(w);
  };
  const numSubsetSizes = Math.ceil((M - 1) / 2);
  const numPairedSubsetSizes = Math.floor((M - 1) / 2);
  const weightVector = Array.from({ length: numSubsetSizes }, (_, i) => (M - 1) / ((i + 1) * (M - (i + 1))));
  for (let i = 0; i < numPairedSubsetSizes; i++) weightVector[i]! *= 2;
  normalise(weightVector);
  let numFullSubsets = 0;
  let samplesLeft = nsamples;
  const remaining = weightVector.slice();
  for (let size = 1; size <= numSubsetSizes; size++) {
    let nsubsets = binomial(M, size);
    if (size <= numPairedSubsetSizes) nsubsets *= 2;
    if ((samplesLeft * remaining[size - 1]!) / nsubsets < 1 - 1e-8) break;
    numFullSubsets += 1;
    samplesLeft -= nsubsets;
    if (remaining[size - 1]! < 1) {
      const scale = 1 - remaining[size - 1]!;
      for (let i = 0; i < remaining.length; i++) remaining[i] = remaining[i]! / scale;
    }
    let w = weightVector[size - 1]! / binomial(M, size);
    if (size <= numPairedSubsetSizes) w /= 2;
    forEachCombination(M, size, (inds) => {
      const mask = new Array<number>(M).fill(0);
      for (const i of inds) mask[i] = 1;
      add(mask, w);
      if (size <= numPairedSubsetSizes) add(mask.map((v) => 1 - v), w);
    });
  }
  const fixed = masks.length;
  samplesLeft = nsamples - fixed;
  if (numFullSubsets !== numSubsetSizes && samplesLeft > 0) {
    const left = weightVector.slice();
    for (let i = 0; i < numPairedSubsetSizes; i++) left[i]! /= 2; // two samples drawn each below
    const sizes = left.slice(numFullSubsets);
    normalise(sizes);
    const used = new Map<string, number>();
    const order = identityOrder(M);
    let draws = 4 * samplesLeft;
    while (samplesLeft > 0 && draws-- > 0) {
      const size = pick(sizes, rng.uniformF64()) + numFullSubsets + 1;
      // the first `size` entries of a random permutation (a partial Fisher-Yates shuffle)
      for (let i = 0; i < size; i++) {
        const j = i + rng.nextBelow(M - i);
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
      }
      const mask = new Array<number>(M).fill(0);
      for (let i = 0; i < size; i++) mask[order[i]!] = 1;
      const key = mask.join("");
      const seen = used.get(key);
      if (seen === undefined) {
        used.set(key, masks.length);
        samplesLeft -= 1;
        add(mask, 1);
      } else {
        weights[seen]! += 1;
      }
      if (samplesLeft > 0 && size <= numPairedSubsetSizes) {
        if (seen === undefined) {
          samplesLeft -= 1;
          add(mask.map((v) => 1 - v), 1);
        } else {
          weights[seen + 1]! += 1;
        }
      }
    }
    // the sampled coalitions share the weight of the sizes not enumerated
    const weightLeft = weightVector.slice(numFullSubsets).reduce((a, b) => a + b, 0);
    const sampled = weights.slice(fixed).reduce((a, b) => a + b, 0);
    for (let i = fixed; i < weights.length; i++) weights[i] = (weights[i]! * weightLeft) / sampled;
  }
  const flat = new Uint8Array(masks.length * M);
  masks.forEach((m, i) => flat.set(m, i * M));
  return { features: M, count: masks.length, masks: flat, weights: Float64Array.from(weights) };
}

/**
 * shap's KernelExplainer.solve without l1 selection: the constrained weighted least squares over
 * the coalitions' values `ey` (v(S) for each mask), with fx = f(x) and fnull = E[f(background)].
 *
 * @example
 * ```ts
 * const phi = solveShap(coalitions, ey, fx, fnull); // sum(phi) === fx - fnull
 * ```
 */
export function solveShap(c: Coalitions, ey: Float64Array, fx: number, fnull: number): Float64Array {
  const M = c.features;
  const phi = new Float64Array(M);
  if (M === 0) return phi;
  if (M === 1) {
    phi[0] = fx - fnull;
    return phi;
  }
  const K = M - 1;
  const total = fx - fnull;
  // E[:, j] = mask[:, j] - mask[:, last]; y = ey - fnull - mask[:, last] * (fx - fnull)
  const A = new Float64Array(K * K);
  const b = new Float64Array(K);
  const e = new Float64Array(K);
  for (let r = 0; r < c.count; r++) {
    const row = r * M;
    const last = c.masks[row + K]!;
    for (let j = 0; j < K; j++) e[j] = c.masks[row + j]! - last;
    const y = ey[r]! - fnull - last * total;
    const w = c.weights[r]!;
    for (let i = 0; i < K; i++) {
      const wi = w * e[i]!;
      if (wi === 0) continue;
      b[i] = b[i]! + wi * y;
      for (let j = 0; j < K; j++) A[i * K + j] = A[i * K + j]! + wi * e[j]!;
    }
  }
  const w = solveLinear(A, b, K);
  let sum = 0;
  for (let j = 0; j < K; j++) (phi[j] = w[j]!), (sum += w[j]!);
  phi[K] = total - sum;
  return phi;
}

/** Solves A x = b (n x n, row-major) by Gaussian elimination with partial pivoting; a singular column gives 0. */
function solveLinear(A: Float64Array, b: Float64Array, n: number): Float64Array {
  const a = A.slice();
  const x = b.slice();
  for (let col = 0; col < n; col++) {
    let p = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r * n + col]!) > Math.abs(a[p * n + col]!)) p = r;
    if (a[p * n + col] === 0) continue;
    if (p !== col) {
      for (let j = 0; j < n; j++) [a[p * n + j], a[col * n + j]] = [a[col * n + j]!, a[p * n + j]!];
      [x[p], x[col]] = [x[col]!, x[p]!];
    }
    const d = a[col * n + col]!;
    for (let r = col + 1; r < n; r++) {
      const f = a[r * n + col]! / d;
      if (f === 0) continue;
      for (let j = col; j < n; j++) a[r * n + j] = a[r * n + j]! - f * a[col * n + j]!;
      x[r] = x[r]! - f * x[col]!;
    }
  }
  for (let col = n - 1; col >= 0; col--) {
    let s = x[col]!;
    for (let j = col + 1; j < n; j++) s -= a[col * n + j]! * x[j]!;
    const d = a[col * n + col]!;
    x[col] = d === 0 ? 0 : s / d;
  }
  return x;
}

/**
 * Exact Shapley values by enumeration, for tests and references: phi_i = sum over S without i of
 * |S|! (M - |S| - 1)! / M! (v(S + i) - v(S)), with v given per mask (bit i: feature i from x).
 *
 * @example
 * ```ts
 * exactShapley(2, (mask) => (mask & 1 ? 1 : 0) + (mask & 2 ? 2 : 0)); // [1, 2]
 * ```
 */
export function exactShapley(M: number, v: (mask: number) => number): Float64Array {
  const values = Float64Array.from({ length: 2 ** M }, (_, m) => v(m));
  const fact = [1];
  for (let i = 1; i <= M; i++) fact.push(fact[i - 1]! * i);
  const phi = new Float64Array(M);
  for (let m = 0; m < 2 ** M; m++) {
    const s = popcount(m);
    for (let i = 0; i < M; i++) {
      if (m & (1 << i)) continue;
      phi[i] = phi[i]! + ((fact[s]! * fact[M - s - 1]!) / fact[M]!) * (values[m | (1 << i)]! - values[m]!);
    }
  }
  return phi;
}

function popcount(m: number): number {
  let c = 0;
  for (; m; m &= m - 1) c++;
  return c;
}

function normalise(v: number[]): void {
  const s = v.reduce((a, b) => a + b, 0);
  for (let i = 0; i < v.length; i++) v[i] = v[i]! / s;
}

/** The index a uniform u in [0, 1) falls on in the cumulative distribution p. */
function pick(p: readonly number[], u: number): number {
  let acc = 0;
  for (let i = 0; i < p.length; i++) {
    acc += p[i]!;
    if (u < acc) return i;
  }
  return p.length - 1;
}

/** C(n, k) as a double (exact for the sizes used here). */
export function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return Math.round(r);
}

/** Calls `visit` with every k-subset of 0..n-1 in lexicographic order (itertools.combinations). */
function forEachCombination(n: number, k: number, visit: (indices: readonly number[]) => void): void {
  const idx = Array.from({ length: k }, (_, i) => i);
  for (;;) {
    visit(idx);
    let i = k - 1;
    while (i >= 0 && idx[i] === n - k + i) i--;
    if (i < 0) return;
    idx[i]! += 1;
    for (let j = i + 1; j < k; j++) idx[j] = idx[j - 1]! + 1;
  }
}
