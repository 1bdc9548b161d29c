/**
 * The integration points of integrated gradients, as Captum defines them
 * (captum/attr/_utils/approximation_methods.py):
 *
 *   gausslegendre:     alphas = 0.5 (1 + x_k), weights = 0.5 w_k, with (x, w) =
 *                      numpy.polynomial.legendre.leggauss(n) (ascending nodes on [-1, 1])
 *   riemann_trapezoid: alphas = torch.linspace(0, 1, n), weights = 1/n each, halved at both ends
 *                      (Captum's step sizes: they sum to (n - 1)/n, not 1)
 */

/**
 * Gauss-Legendre nodes and weights on [-1, 1], ascending, as numpy.polynomial.legendre.leggauss:
 * the roots of P_n (Newton's method from Chebyshev guesses, to double precision), weights
 * 2 / ((1 - x^2) P_n'(x)^2), made symmetric and scaled to sum to 2 as numpy does.
 *
 * @example
 * ```ts
 * legendreGauss(2); // { nodes: [-0.5773502691896257, 0.5773502691896257], weights: [1, 1] }
 * ```
 */
export function legendreGauss(n: number): { nodes: Float64Array; weights: Float64Array } {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`legendreGauss: n must be a positive integer, not ${n}`);
  const nodes = new Float64Array(n);
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    // i-th root counted from +1, guessed by Chebyshev's cos(pi (i + 0.75) / (n + 0.5))
    let x = Math.cos((Math.PI * (i + 0.75)) / (n + 0.5));
    let dp = 1;
    for (let iter = 0; iter < 100; iter++) {
      const [p, d] = legendre(n, x);
      dp = d;
      const dx = p / d;
      x -= dx;
      if (Math.abs(dx) < 1e-16) break;
    }
    dp = legendre(n, x)[1];
    nodes[n - 1 - i] = x;
    weights[n - 1 - i] = 2 / ((1 - x * x) * dp * dp);
  }
  // numpy: x = (x - x[::-1]) / 2, w = (w + w[::-1]) / 2, w *= 2 / w.sum()
  const sx = Float64Array.from(nodes, (v, i) => (v - nodes[n - 1 - i]!) / 2);
  const sw = Float64Array.from(weights, (v, i) => (v + weights[n - 1 - i]!) / 2);
  const total = sw.reduce((a, b) => a + b, 0);
  for (let i = 0; i < n; i++) sw[i] = sw[i]! * (2 / total);
  return { nodes: sx, weights: sw };
}

/** P_n(x) and P_n'(x) by the three-term recurrence. */
function legendre(n: number, x: number): [number, number] {
  let p0 = 1;
  let p1 = x;
  if (n === 0) return [1, 0];
  for (let k = 2; k <= n; k++) {
    const p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
    p0 = p1;
    p1 = p2;
  }
  return [p1, (n * (x * p1 - p0)) / (x * x - 1)];
}

/**
 * The points alpha_k on the path from the baseline (0) to the input (1) and their weights, as
 * Captum's approximation_parameters(method)(n).
 *
 * @example
 * ```ts
 * integrationPoints("riemann_trapezoid", 3); // { alphas: [0, 0.5, 1], weights: [1/6, 1/3, 1/6] }
 * ```
 */
export function integrationPoints(method: "gausslegendre" | "riemann_trapezoid", n: number): { alphas: Float64Array; weights: Float64Array } {
  if (method === "gausslegendre") {
    const { nodes, weights } = legendreGauss(n);
    return { alphas: nodes.map((x) => 0.5 * (1 + x)), weights: weights.map((w) => 0.5 * w) };
  }
  if (n < 2) throw new RangeError("riemann_trapezoid needs at least 2 steps");
  // torch.linspace(0, 1, n) in float32, then .tolist() (doubles of the float32 values)
  const alphas = Float64Array.from({ length: n }, (_, i) => Math.fround(linspace(i, n)));
  const weights = new Float64Array(n).fill(1 / n);
  weights[0] = weights[0]! / 2;
  weights[n - 1] = weights[n - 1]! / 2;
  return { alphas, weights };
}

/** torch.linspace(0, 1, n)[i]: start + i * step for the first half, end - (n - 1 - i) * step for the rest. */
function linspace(i: number, n: number): number {
  const step = Math.fround(1 / (n - 1));
  const half = Math.floor(n / 2);
  return i < half ? Math.fround(i * step) : Math.fround(1 - Math.fround((n - 1 - i) * step));
}
