/**
 * Number formatting shared by the chart, the epoch table and the summary.
 */

/**
 * A metric for people: 4 significant digits, exponent form below 1e-3 and from 1e4; empty for
 * missing values.
 *
 * @example
 * ```ts
 * formatNumber(0.123456); // "0.1235"
 * formatNumber(0.00001234); // "1.23e-5"
 * ```
 */
export function formatNumber(v: number | null | undefined): string {
  if (v === undefined || v === null) return "";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
