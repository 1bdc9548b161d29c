/**
 * The Explanations panel: a result's feature (or token) attributions (issue 18's
 * `result.explanations`) as a bar chart of feature importance and a per-row view: a heat map
 * of rows x features for tabular models, each row's tokens on a colour scale for text models.
 */

/**
 * `result.explanations` as the page reads it. A local type until the schema has one; the lead
 * switches it to the schema type on merge.
 *
 * @example
 * ```ts
 * const e: Explanations = { method: "integrated_gradients", target: 1, feature_names: ["x0", "x1"], attributions: [[0.3, -0.1]], feature_importance: [0.3, 0.1] };
 * ```
 */
export interface Explanations {
  method: string;
  /** The output explained (a class index, an output name). */
  target: unknown;
  feature_names: string[];
  /** rows x features (or x tokens for text models). */
  attributions: number[][];
  /** One value per feature, e.g. mean |attribution| over the rows. */
  feature_importance: number[];
  /** Integrated gradients' completeness error per row. */
  convergence_delta?: number[];
  /** Text models: each row's tokens, when the result names them (else `feature_names` label every row). */
  tokens?: string[][];
}

/**
 * Whether a value has the Explanations shape (checked before rendering anything from a result).
 *
 * @example
 * ```ts
 * isExplanations({ method: "kernel_shap", target: 0, feature_names: [], attributions: [], feature_importance: [] }); // true
 * ```
 */
export function isExplanations(value: unknown): value is Explanations {
  const e = value as Partial<Explanations> | null;
  return (
    !!e &&
    typeof e === "object" &&
    typeof e.method === "string" &&
    Array.isArray(e.feature_names) &&
    Array.isArray(e.attributions) &&
    e.attributions.every((row) => Array.isArray(row)) &&
    Array.isArray(e.feature_importance)
  );
}

/** Blue for negative attributions, orange for positive (the chart's series colours). */
const NEGATIVE = [31, 111, 235] as const;
const POSITIVE = [232, 89, 12] as const;

/**
 * A diverging colour for an attribution: white at 0, blue towards -maxAbs, orange towards +maxAbs.
 *
 * @example
 * ```ts
 * attributionColour(0, 1); // "rgb(255, 255, 255)"
 * attributionColour(1, 1); // "rgb(232, 89, 12)"
 * ```
 */
export function attributionColour(value: number, maxAbs: number): string {
  const t = maxAbs > 0 && Number.isFinite(value) ? Math.min(1, Math.abs(value) / maxAbs) : 0;
  const c = value < 0 ? NEGATIVE : POSITIVE;
  const mix = (k: number) => Math.round(255 + (c[k]! - 255) * t);
  return `rgb(${mix(0)}, ${mix(1)}, ${mix(2)})`;
}

/** Colours a cell or token by its attribution, with white text on the strongest colours so it stays readable. */
function paint(node: HTMLElement, value: number, maxAbs: number): void {
  node.style.backgroundColor = attributionColour(value, maxAbs);
  if (maxAbs > 0 && Math.abs(value) / maxAbs > 0.6) node.style.color = "#fff";
}

/** Rows and features shown at most (the rest are counted in a note). */
export const MAX_ROWS = 20;
export const MAX_BARS = 24;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = (v: number) => (Number.isFinite(v) ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : String(Number(v.toPrecision(3)))) : String(v));

/**
 * Fills `container` with the panel: a line naming the method and target, the importance bars
 * (largest first) and the per-row view. `text` picks the token view (each row's tokens coloured
 * by their attribution); otherwise rows x features as a heat map.
 *
 * @example
 * ```ts
 * renderExplanations(document.getElementById("explanations-body")!, result.explanations, { text: false });
 * ```
 */
export function renderExplanations(container: HTMLElement, e: Explanations, options: { text: boolean }): void {
  const names = e.feature_names;
  const label = (i: number) => names[i] ?? `feature ${i}`;
  const parts: HTMLElement[] = [];
  const delta = e.convergence_delta?.length ? Math.max(...e.convergence_delta.map(Math.abs)) : null;
  parts.push(el("p", "hint", `${e.method}, target ${JSON.stringify(e.target)}; ${e.attributions.length} row(s)${delta === null ? "" : `, max |convergence delta| ${fmt(delta)}`}`));

  // feature importance, largest first
  parts.push(el("h3", undefined, "Feature importance"));
  const order = e.feature_importance.map((v, i) => [v, i] as const).sort((a, b) => Math.abs(b[0]) - Math.abs(a[0]));
  const maxImportance = Math.max(0, ...order.map(([v]) => Math.abs(v)));
  const bars = el("div", "bars");
  bars.setAttribute("role", "list");
  for (const [v, i] of order.slice(0, MAX_BARS)) {
    const row = el("div", "bar-row");
    row.setAttribute("role", "listitem");
    const bar = el("span", `bar${v < 0 ? " negative" : ""}`);
    bar.style.width = `${maxImportance > 0 ? (Math.abs(v) / maxImportance) * 100 : 0}%`;
    const track = el("span", "bar-track");
    track.append(bar);
    row.append(el("span", "bar-name", label(i)), track, el("span", "bar-value", fmt(v)));
    bars.append(row);
  }
  parts.push(bars);
  if (order.length > MAX_BARS) parts.push(el("p", "hint", `… and ${order.length - MAX_BARS} more features`));

  // per row
  const rows = e.attributions.slice(0, MAX_ROWS);
  const maxAbs = Math.max(0, ...rows.flat().filter(Number.isFinite).map(Math.abs));
  parts.push(el("h3", undefined, options.text ? "Tokens by attribution" : "Attributions per row"));
  if (options.text) {
    const list = el("div", "token-rows");
    rows.forEach((values, r) => {
      const line = el("p", "token-row");
      const tokens = e.tokens?.[r] ?? names;
      values.forEach((v, i) => {
        const token = el("span", "token", tokens[i] ?? `#${i}`);
        paint(token, v, maxAbs);
        token.title = `${tokens[i] ?? `#${i}`}: ${fmt(v)}`;
        line.append(token);
      });
      list.append(line);
    });
    parts.push(list);
  } else {
    const wrap = el("div", "heat-wrap");
    const table = el("table", "heat");
    const head = el("tr");
    head.append(el("th", undefined, "row"), ...names.map((n) => el("th", undefined, n)));
    table.append(el("thead"), el("tbody"));
    table.tHead!.append(head);
    rows.forEach((values, r) => {
      const tr = el("tr");
      tr.append(el("th", undefined, String(r)));
      values.forEach((v) => {
        const td = el("td", undefined, fmt(v));
        paint(td, v, maxAbs);
        tr.append(td);
      });
      table.tBodies[0]!.append(tr);
    });
    wrap.append(table);
    parts.push(wrap);
  }
  if (e.attributions.length > MAX_ROWS) parts.push(el("p", "hint", `… and ${e.attributions.length - MAX_ROWS} more rows`));
  const legend = el("p", "hint scale");
  const neg = el("span", "swatch");
  neg.style.backgroundColor = attributionColour(-1, 1);
  const pos = el("span", "swatch");
  pos.style.backgroundColor = attributionColour(1, 1);
  legend.append(neg, "lowers the target's score", pos, `raises it (largest |attribution| ${fmt(maxAbs)})`);
  parts.push(legend);
  container.replaceChildren(...parts);
}
