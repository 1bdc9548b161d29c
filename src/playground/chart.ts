/**
 * The loss chart on a <canvas>: train_loss and val_loss per epoch, on a linear or a log axis.
 *
 * The layout is computed from the tick labels' measured widths (`chartLayout`), so the rotated
 * axis title always sits left of the widest tick label: on a log axis the labels (0.002, 5e-4)
 * are wider than on a linear one, and a fixed margin let the title run into them.
 */
import { formatNumber } from "./format.js";

/** One plotted epoch. */
export interface ChartPoint {
  epoch: number;
  train: number;
  val?: number | undefined;
  acc?: number | undefined;
  lr?: number | undefined;
  attempt?: number | undefined;
}

/** Series colours (the legend's swatches use the same, in style.css). */
export const SERIES_COLOURS = { train: "#1f6feb", val: "#e8590c" } as const;

/** A tick: where it sits on the axis (log10 of the value on a log axis) and its label. */
export interface Tick {
  at: number;
  label: string;
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/**
 * Linear ticks at 1-2-5 steps covering [lo, hi].
 *
 * @example
 * ```ts
 * linearTicks(0, 1, 5); // [0, 0.2, 0.4, 0.6, 0.8, 1]
 * ```
 */
export function linearTicks(lo: number, hi: number, count: number): number[] {
  const step = niceStep(hi - lo || 1, count);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/**
 * Ticks of a log axis given in log10 units [lo, hi]: the powers of ten inside, then 2x and 5x of
 * them when fewer than three fit, else linear 1-2-5 values (a range within one decade).
 * Labels are the values, not their logs.
 *
 * @example
 * ```ts
 * logTicks(-3, 0).map((t) => t.label); // ["0.001", "0.01", "0.1", "1"]
 * ```
 */
export function logTicks(lo: number, hi: number): Tick[] {
  const inside = (v: number) => {
    const l = Math.log10(v);
    return l >= lo - 1e-9 && l <= hi + 1e-9;
  };
  const decades: number[] = [];
  for (let e = Math.ceil(lo - 1e-9); e <= Math.floor(hi + 1e-9); e++) decades.push(10 ** e);
  let values = decades;
  if (values.length > 7) values = values.filter((_, i) => i % Math.ceil(values.length / 6) === 0);
  if (values.length < 3) {
    const more: number[] = [];
    for (let e = Math.floor(lo) - 1; e <= Math.ceil(hi); e++) for (const m of [1, 2, 5]) more.push(Number((m * 10 ** e).toPrecision(12)));
    values = more.filter(inside);
  }
  if (values.length < 3) values = linearTicks(10 ** lo, 10 ** hi, 4).filter((v) => v > 0 && inside(v));
  return values.map((v) => ({ at: Math.log10(v), label: formatNumber(v) }));
}

/**
 * Margins and label positions of the plot area. `measure` gives a label's width in px.
 *
 * @example
 * ```ts
 * const layout = chartLayout(600, 320, ["0.001", "0.1"], (s) => s.length * 6);
 * layout.titleX + layout.fontSize / 2 < layout.left - layout.tickGap - 30; // true: the title clears the labels
 * ```
 */
export function chartLayout(width: number, height: number, yLabels: readonly string[], measure: (text: string) => number) {
  const fontSize = 11;
  const tickGap = 6; // tick label to the axis
  const titleGap = 8; // axis title to the widest tick label
  const edge = 4; // canvas edge to the axis title
  const widest = Math.max(0, ...yLabels.map(measure));
  const titleX = edge + fontSize / 2; // the rotated title's centre line
  const left = Math.ceil(edge + fontSize + titleGap + widest + tickGap);
  const right = 16;
  const top = 12;
  const bottom = 38;
  return { fontSize, tickGap, titleX, left, right, top, bottom, plotWidth: Math.max(10, width - left - right), plotHeight: Math.max(10, height - top - bottom) };
}

/**
 * What `drawChart` needs besides the points.
 *
 * @example
 * ```ts
 * const options: ChartOptions = { plannedEpochs: 30, logY: false, emptyText: "the loss curve appears here" };
 * ```
 */
export interface ChartOptions {
  plannedEpochs: number;
  logY: boolean;
  /** Shown in the plot area while there are no points. */
  emptyText: string;
}

/**
 * Draws the chart at the canvas's CSS size (times devicePixelRatio). Returns whether the log
 * axis was used (it is not when a value is <= 0).
 *
 * @example
 * ```ts
 * drawChart(canvas, [{ epoch: 1, train: 0.7, val: 0.69 }], { plannedEpochs: 30, logY: true, emptyText: "" });
 * ```
 */
export function drawChart(canvas: HTMLCanvasElement, points: readonly ChartPoint[], options: ChartOptions): boolean {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600;
  const h = canvas.clientHeight || 320;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  if (!ctx) return false;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);

  const values: number[] = [];
  for (const p of points) for (const v of [p.train, p.val]) if (typeof v === "number" && Number.isFinite(v)) values.push(v);
  const logY = options.logY && values.length > 0 && values.every((v) => v > 0);
  const tr = logY ? Math.log10 : (v: number) => v;
  let lo = 0;
  let hi = 1;
  if (values.length) {
    lo = Math.min(...values.map(tr));
    hi = Math.max(...values.map(tr));
    const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.1 || 1;
    lo -= pad;
    hi += pad;
    if (!logY && lo < 0 && Math.min(...values) >= 0) lo = 0;
  }
  const yTicks: Tick[] = logY ? logTicks(lo, hi) : linearTicks(lo, hi, 5).map((t) => ({ at: t, label: formatNumber(t) }));
  ctx.font = "11px system-ui,sans-serif";
  const L = chartLayout(w, h, yTicks.map((t) => t.label), (s) => ctx.measureText(s).width);
  const { left, top, plotWidth: pw, plotHeight: ph } = L;
  const xmin = 1;
  const xmax = Math.max(2, options.plannedEpochs || 0, points.length ? points[points.length - 1]!.epoch : 0);
  const X = (e: number) => left + ((e - xmin) / (xmax - xmin)) * pw;
  const Y = (at: number) => top + ph - ((at - lo) / (hi - lo)) * ph;

  // grid, tick labels and axes
  ctx.lineWidth = 1;
  ctx.strokeStyle = "#e5e8ec";
  ctx.fillStyle = "#4b5563";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of yTicks) {
    const y = Y(t.at);
    ctx.beginPath();
    ctx.moveTo(left, y + 0.5);
    ctx.lineTo(left + pw, y + 0.5);
    ctx.stroke();
    ctx.fillText(t.label, left - L.tickGap, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const maxXTicks = Math.max(2, Math.min(10, Math.floor(pw / 40), xmax - xmin));
  const xTicks = linearTicks(xmin, xmax, maxXTicks).filter(Number.isInteger);
  if (xTicks[0] !== xmin && (xTicks.length === 0 || X(xTicks[0]!) - X(xmin) >= 24)) xTicks.unshift(xmin); // the first epoch, when its label fits
  for (const t of xTicks) {
    const x = X(t);
    ctx.beginPath();
    ctx.moveTo(x + 0.5, top);
    ctx.lineTo(x + 0.5, top + ph);
    ctx.stroke();
    ctx.fillText(String(t), x, top + ph + 5);
  }
  ctx.strokeStyle = "#6b7280";
  ctx.beginPath();
  ctx.moveTo(left + 0.5, top);
  ctx.lineTo(left + 0.5, top + ph + 0.5);
  ctx.lineTo(left + pw, top + ph + 0.5);
  ctx.stroke();
  ctx.fillText("epoch", left + pw / 2, top + ph + 21);
  ctx.save();
  ctx.translate(L.titleX, top + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(logY ? "loss (log scale)" : "loss", 0, 0);
  ctx.restore();

  if (!points.length) {
    ctx.fillStyle = "#9ca3af";
    ctx.textBaseline = "middle";
    // a narrow plot gets the text on as many lines as it needs
    const lines: string[] = [];
    for (const word of options.emptyText.split(" ")) {
      const line = lines.length ? `${lines[lines.length - 1]} ${word}` : word;
      if (lines.length && ctx.measureText(line).width <= pw - 16) lines[lines.length - 1] = line;
      else lines.push(word);
    }
    lines.forEach((line, i) => ctx.fillText(line, left + pw / 2, top + ph / 2 + (i - (lines.length - 1) / 2) * 15));
    return logY;
  }
  for (const key of ["train", "val"] as const) {
    const series = points.filter((p) => {
      const v = p[key];
      return typeof v === "number" && Number.isFinite(v) && (!logY || v > 0);
    });
    if (!series.length) continue;
    ctx.strokeStyle = SERIES_COLOURS[key];
    ctx.fillStyle = SERIES_COLOURS[key];
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    series.forEach((p, i) => {
      const x = X(p.epoch);
      const y = Y(tr(p[key]!));
      if (i) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
    });
    ctx.stroke();
    if (series.length <= 60) {
      for (const p of series) {
        ctx.beginPath();
        ctx.arc(X(p.epoch), Y(tr(p[key]!)), 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  return logY;
}

/** The range test of lr "auto" (metrics.lr_finder): each step's rate and smoothed loss, and the suggestion. */
export interface LrFinderCurve {
  lr: number;
  lrs: readonly number[];
  losses: readonly number[];
  method: string;
}

/**
 * Draws the learning-rate range test (docs/strategy.md): the smoothed loss against the rate on a
 * log axis, the suggested rate marked. The point marked is the recorded rate nearest the
 * suggestion (for "minimum" the suggestion is a tenth of a recorded rate and may lie left of them all).
 *
 * @example
 * ```ts
 * drawLrFinder(canvas, job.metrics.lr_finder);
 * ```
 */
export function drawLrFinder(canvas: HTMLCanvasElement, curve: LrFinderCurve): void {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600;
  const h = canvas.clientHeight || 240;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  const xs = curve.lrs.map(Math.log10);
  const points = xs.length > 0;
  const xlo = points ? Math.min(...xs, Math.log10(curve.lr)) : -7;
  const xhi = points ? Math.max(...xs) : 1;
  const ylo = points ? Math.min(...curve.losses) : 0;
  const yhi = points ? Math.max(...curve.losses) : 1;
  const pad = (yhi - ylo) * 0.06 || 0.1;
  const yTicks = linearTicks(ylo - pad, yhi + pad, 4).map((t) => ({ at: t, label: formatNumber(t) }));
  ctx.font = "11px system-ui,sans-serif";
  const L = chartLayout(w, h, yTicks.map((t) => t.label), (s) => ctx.measureText(s).width);
  const X = (v: number) => L.left + ((v - xlo) / (xhi - xlo || 1)) * L.plotWidth;
  const Y = (v: number) => L.top + L.plotHeight - ((v - (ylo - pad)) / (yhi - ylo + 2 * pad)) * L.plotHeight;
  ctx.strokeStyle = "#e5e8ec";
  ctx.fillStyle = "#4b5563";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of yTicks) {
    ctx.beginPath();
    ctx.moveTo(L.left, Y(t.at) + 0.5);
    ctx.lineTo(L.left + L.plotWidth, Y(t.at) + 0.5);
    ctx.stroke();
    ctx.fillText(t.label, L.left - L.tickGap, Y(t.at));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of logTicks(xlo, xhi)) ctx.fillText(t.label, X(t.at), L.top + L.plotHeight + 5);
  ctx.fillText("learning rate (log scale)", L.left + L.plotWidth / 2, L.top + L.plotHeight + 21);
  ctx.save();
  ctx.translate(L.titleX, L.top + L.plotHeight / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText("smoothed loss", 0, 0);
  ctx.restore();
  if (!points) return;
  ctx.strokeStyle = SERIES_COLOURS.train;
  ctx.lineWidth = 2;
  ctx.beginPath();
  xs.forEach((x, i) => (i ? ctx.lineTo(X(x), Y(curve.losses[i]!)) : ctx.moveTo(X(x), Y(curve.losses[i]!))));
  ctx.stroke();
  let at = 0;
  xs.forEach((x, i) => {
    if (Math.abs(x - Math.log10(curve.lr)) < Math.abs(xs[at]! - Math.log10(curve.lr))) at = i;
  });
  ctx.fillStyle = SERIES_COLOURS.val;
  ctx.beginPath();
  ctx.arc(X(Math.log10(curve.lr)), Y(curve.losses[at]!), 4, 0, 2 * Math.PI);
  ctx.fill();
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText(`${curve.method}: ${formatNumber(curve.lr)}`, X(Math.log10(curve.lr)) + 6, Y(curve.losses[at]!) - 4);
}
