/**
 * The RDP accountant of the Sampled Gaussian Mechanism, as Opacus computes it, and Opacus's
 * search for the noise multiplier that meets a target epsilon. Runtime-agnostic (plain numbers).
 *
 * Reproduces (formulas, not code) opacus/accountants/analysis/rdp.py (`_compute_rdp`,
 * `_compute_log_a_for_int_alpha`, `_compute_log_a_for_frac_alpha`, `get_privacy_spent`),
 * opacus/accountants/rdp.py (`RDPAccountant.DEFAULT_ALPHAS`) and opacus/accountants/utils.py
 * (`get_noise_multiplier`), pytorch/opacus@4d0ebc8. The analysis is Mironov, Talwar and Zhang,
 * "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (arXiv:1908.10530, §3.3), and the
 * RDP -> (ε, δ) conversion is Balle et al. 2020, Theorem 21 (arXiv:1905.09982).
 */

/**
 * Opacus's RDP orders: 1 + x/10 for x in 1..99, then the integers 12..63 (151 orders).
 *
 * @example
 * ```ts
 * RDP_ORDERS.length; // 151
 * ```
 */
export const RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
]);

/**
 * opacus/accountants/utils.py MAX_SIGMA: the search gives up above this noise multiplier.
 *
 * @example
 * ```ts
 * noiseMultiplierFor({ targetEpsilon: 1e-9, delta: 1e-5, sampleRate: 0.4, steps: 30 }); // throws: σ would pass MAX_NOISE_MULTIPLIER
 * ```
 */
export const MAX_NOISE_MULTIPLIER = 1e6;

/** log(exp(x) + exp(y)) without overflow (`_log_add`). */
function logAdd(x: number, y: number): number {
  const a = Math.min(x, y);
  const b = Math.max(x, y);
  if (a === -Infinity) return b;
  return Math.log1p(Math.exp(a - b)) + b;
}

/** log(exp(x) - exp(y)) for x >= y (`_log_sub`); exp overflow keeps x, as Opacus does. */
function logSub(x: number, y: number): number {
  if (x < y) throw new Error("privacy accountant: a log-space difference would be negative");
  if (y === -Infinity) return x;
  if (x === y) return -Infinity;
  const d = Math.expm1(x - y);
  return Number.isFinite(d) ? Math.log(d) + y : x;
}

/** The generalised binomial coefficient C(alpha, i) for real alpha (scipy.special.binom). */
function binomial(alpha: number, i: number): number {
  let c = 1;
  for (let k = 0; k < i; k++) c *= (alpha - k) / (k + 1);
  return c;
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/**
 * log(erfc(x)) accurate for large x (Opacus's `_log_erfc`, which calls scipy's log_ndtr):
 * for x >= 2 the continued fraction erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
 * (Abramowitz & Stegun 7.1.14) evaluated in log space, so it never underflows; below 2 from
 * erf's everywhere-positive series erf(x) = 2/√π · exp(-x²) · Σ 2ⁿ x^(2n+1) / (1·3···(2n+1))
 * (A&S 7.1.6); for x < 0, erfc(x) = 1 + erf(-x).
 *
 * @example
 * ```ts
 * logErfc(0); // 0
 * logErfc(30); // -903.4...
 * ```
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x >= 2) return logErfcTail(x);
  // erfc(x) = 2 - erfc(-x): for x <= -2 the tail is below 0.005, so no cancellation
  if (x <= -2) return Math.LN2 + Math.log1p(-0.5 * Math.exp(logErfcTail(-x)));
  const ax = Math.abs(x);
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 200; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const erf = (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
  return x >= 0 ? Math.log1p(-erf) : Math.log1p(erf);
}

/** log(erfc(x)) for x >= 2 from the continued fraction (modified Lentz), a_k = k/2. */
function logErfcTail(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 10_000; k++) {
    const a = k / 2;
    d = x + a * d;
    d = d === 0 ? tiny : d;
    c = x + a / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return -x * x - LOG_SQRT_PI - Math.log(f);
}

/** log(A_α) for an integer order (`_compute_log_a_for_int_alpha`). */
function logAInteger(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  for (let i = 0; i <= alpha; i++) {
    const logCoef = Math.log(binomial(alpha, i)) + i * Math.log(q) + (alpha - i) * Math.log(1 - q);
    logA = logAdd(logA, logCoef + (i * i - i) / (2 * sigma * sigma));
  }
  return logA;
}

/** log(A_α) for a fractional order (`_compute_log_a_for_frac_alpha`): two series, summed until their terms fall below e^-30. */
function logAFractional(q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  for (let i = 0; ; i++) {
    const coef = binomial(alpha, i);
    const logCoef = Math.log(Math.abs(coef));
    const j = alpha - i;
    const logT0 = logCoef + i * Math.log(q) + j * Math.log(1 - q);
    const logT1 = logCoef + j * Math.log(q) + i * Math.log(1 - q);
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma));
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma));
    const logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1;
    if (coef > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
    // Opacus's loop has no bound; a NaN term would never end it
    if (Number.isNaN(logS0) || Number.isNaN(logS1) || i > 1_000_000) throw new RangeError(`privacy accountant: the series for order ${alpha} does not converge (q ${q}, σ ${sigma})`);
  }
  return logAdd(logA0, logA1);
}

/**
 * The RDP of one step of the Sampled Gaussian Mechanism at order `alpha` (`_compute_rdp`):
 * 0 when nothing is sampled, ∞ without noise, α/(2σ²) without subsampling, else log(A_α)/(α-1).
 *
 * @example
 * ```ts
 * stepRdp(1, 5, 2); // 0.04
 * ```
 */
export function stepRdp(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  if (sigma === 0) return Infinity;
  if (q === 1) return alpha / (2 * sigma * sigma);
  if (!Number.isFinite(alpha)) return Infinity;
  const logA = Number.isInteger(alpha) ? logAInteger(q, sigma, alpha) : logAFractional(q, sigma, alpha);
  return logA / (alpha - 1);
}

/** One stretch of training at a fixed noise multiplier and sample rate (an RDPAccountant history entry). */
export interface PrivacyStretch {
  noiseMultiplier: number;
  sampleRate: number;
  steps: number;
}

/**
 * (ε, best order) spent by `history` at `delta` (RDPAccountant.get_privacy_spent with the
 * default orders): the RDP of each stretch summed per order, then
 * ε(α) = rdp(α) - (log δ + log α)/(α - 1) + log((α - 1)/α), minimised over α (NaNs ignored).
 * An empty history has spent nothing.
 *
 * @example
 * ```ts
 * privacySpent([{ noiseMultiplier: 1, sampleRate: 0.01, steps: 1000 }], 1e-5); // { epsilon: 2.10136527..., order: 7.8 }
 * ```
 */
export function privacySpent(history: readonly PrivacyStretch[], delta: number, orders: readonly number[] = RDP_ORDERS): { epsilon: number; order: number } {
  if (history.length === 0) return { epsilon: 0, order: 0 };
  let best = { epsilon: Infinity, order: NaN };
  let found = false;
  for (const alpha of orders) {
    let rdp = 0;
    for (const h of history) rdp += stepRdp(h.sampleRate, h.noiseMultiplier, alpha) * h.steps;
    const eps = rdp - (Math.log(delta) + Math.log(alpha)) / (alpha - 1) + Math.log((alpha - 1) / alpha);
    if (Number.isNaN(eps)) continue;
    // np.nanargmin: the first minimum (an all-infinite row gives the first order's ∞)
    if (!found || eps < best.epsilon) best = { epsilon: eps, order: alpha };
    found = true;
  }
  return best;
}

/**
 * ε after `steps` steps at noise multiplier `sigma` and sample rate `q` (RDPAccountant.get_epsilon).
 *
 * @example
 * ```ts
 * rdpEpsilon({ sampleRate: 0.1, noiseMultiplier: 2, steps: 100 }, 1e-5); // 2.58056880...
 * ```
 */
export function rdpEpsilon(stretch: PrivacyStretch, delta: number): number {
  return privacySpent([stretch], delta).epsilon;
}

/**
 * The noise multiplier σ that spends at most `targetEpsilon` (within `epsilonTolerance`) over
 * `steps` steps at sample rate `sampleRate` (opacus.accountants.utils.get_noise_multiplier with
 * the RDP accountant): σ doubles from 20 until ε falls below the target, then bisects from
 * [0, σ_high] until the target minus ε_high is within the tolerance, and returns σ_high.
 * Throws when σ would exceed MAX_NOISE_MULTIPLIER ("the privacy budget is too low").
 * Opacus's `epochs` argument is `steps = int(epochs / sampleRate)`.
 *
 * @example
 * ```ts
 * noiseMultiplierFor({ targetEpsilon: 8, delta: 1e-5, sampleRate: 0.01, steps: 1000 }); // 0.6158447265625
 * ```
 */
export function noiseMultiplierFor(args: { targetEpsilon: number; delta: number; sampleRate: number; steps: number; epsilonTolerance?: number }): number {
  const { targetEpsilon, delta, sampleRate, steps } = args;
  const tolerance = args.epsilonTolerance ?? 0.01;
  const eps = (sigma: number) => rdpEpsilon({ noiseMultiplier: sigma, sampleRate, steps }, delta);
  let epsHigh = Infinity;
  let sigmaLow = 0;
  let sigmaHigh = 10;
  while (epsHigh > targetEpsilon) {
    sigmaHigh = 2 * sigmaHigh;
    epsHigh = eps(sigmaHigh);
    if (sigmaHigh > MAX_NOISE_MULTIPLIER) throw new RangeError("the privacy budget is too low: no noise multiplier up to 1e6 reaches target_epsilon");
  }
  while (targetEpsilon - epsHigh > tolerance) {
    const sigma = (sigmaLow + sigmaHigh) / 2;
    const e = eps(sigma);
    if (e < targetEpsilon) {
      sigmaHigh = sigma;
      epsHigh = e;
    } else sigmaLow = sigma;
  }
  return sigmaHigh;
}

/**
 * The default δ: 1/N rounded down to a power of ten (N = 60000 gives 1e-5), so δ < 1/N.
 *
 * @example
 * ```ts
 * defaultDelta(60000); // 1e-5
 * ```
 */
export function defaultDelta(rows: number): number {
  const exponent = Math.ceil(Math.log10(Math.max(1, rows)));
  // 10^-k as a literal ("1e-5"), not 1/10^k's float
  return Number(`1e-${exponent}`);
}
