/**
 * The trials of a hyperparameter search (issue 15, item 4; docs/strategy.md, "Searches"): the
 * values each trial gives the searched fields (seeded random draws, or a grid), and each trial's
 * request, validated with the one request schema. Runtime-agnostic: the API plans a search with
 * it, whatever runs the trials.
 */
import { UnprocessableError, type FieldIssue } from "../errors.js";
import { FineTuneRequest } from "../schema/request.js";
import { zodIssues } from "../schema/issues.js";
import { MAX_TRIALS, type Distribution, type SearchSpec } from "../schema/search.js";
import { MT19937 } from "./rng.js";

/** A trial's values of the searched fields, by dotted path. */
export type TrialParams = Record<string, number | string | boolean | null>;

/** The trials random search runs when `trials` is not given. */
export const DEFAULT_RANDOM_TRIALS = 10;

/**
 * Which way the metric ranks: the spec's `mode`, else max for val_accuracy and min otherwise.
 *
 * @example
 * ```ts
 * searchMode({ metric: "val_accuracy" }); // "max"
 * ```
 */
export function searchMode(spec: Pick<SearchSpec, "metric" | "mode">): "min" | "max" {
  return spec.mode ?? (spec.metric === "val_accuracy" ? "max" : "min");
}

const issueAt = (path: string, message: string): FieldIssue => ({ path: `search.space.${path}`, message });

/** Refusals of the distributions themselves: a bound pair out of order, a log range through 0. */
function distributionIssues(space: SearchSpec["space"]): FieldIssue[] {
  const issues: FieldIssue[] = [];
  for (const [path, d] of Object.entries(space)) {
    const [kind, range] = Object.entries(d)[0] as [string, unknown[]];
    if (kind === "choice") continue;
    const [a, b] = range as [number, number];
    if (!Number.isFinite(a) || !Number.isFinite(b)) issues.push(issueAt(path, `${kind} bounds must be finite`));
    else if (a > b) issues.push(issueAt(path, `${kind} bounds [${a}, ${b}] are out of order: give [low, high]`));
    else if (kind === "log_uniform" && a <= 0) issues.push(issueAt(path, `log_uniform needs bounds above 0; got [${a}, ${b}]`));
  }
  return issues;
}

/** One draw of `d` (docs/strategy.md, "Searches": exp(U(ln a, ln b)), U(a, b), a + ⌊U·(b−a+1)⌋, a uniform pick). */
function draw(d: Distribution, rng: MT19937): number | string | boolean | null {
  if ("log_uniform" in d) {
    const [a, b] = d.log_uniform;
    return Math.exp(Math.log(a) + rng.uniformF64() * (Math.log(b) - Math.log(a)));
  }
  if ("uniform" in d) {
    const [a, b] = d.uniform;
    return a + rng.uniformF64() * (b - a);
  }
  if ("int_uniform" in d) {
    const [a, b] = d.int_uniform;
    return a + rng.nextBelow(b - a + 1);
  }
  return d.choice[rng.nextBelow(d.choice.length)]!;
}

/** A field's grid values: choices as given, every integer of int_uniform, `points` spaced points of a range (ends included). */
function gridValues(d: Distribution, points: number): (number | string | boolean | null)[] {
  if ("choice" in d) return d.choice;
  if ("int_uniform" in d) {
    const [a, b] = d.int_uniform;
    return Array.from({ length: Math.min(b - a + 1, MAX_TRIALS + 1) }, (_, i) => a + i);
  }
  const log = "log_uniform" in d;
  const [a, b] = log ? d.log_uniform : d.uniform;
  if (a === b) return [a];
  const [lo, hi] = log ? [Math.log(a), Math.log(b)] : [a, b];
  return Array.from({ length: points }, (_, i) => {
    if (i === points - 1) return b; // exactly the bound, not exp(ln b)
    if (i === 0) return a;
    const t = lo + ((hi - lo) * i) / (points - 1);
    return log ? Math.exp(t) : t;
  });
}

/**
 * The trials' values of the searched fields. random: `trials` (default DEFAULT_RANDOM_TRIALS)
 * draws from MT19937(seed), trial by trial, each field in the order `space` lists them. grid:
 * every combination, the last field varying fastest; `trials`, when given, must be the grid's
 * size. Refused with a 422 naming the field: bounds out of order, a log range through 0, a grid
 * larger than MAX_TRIALS.
 *
 * @example
 * ```ts
 * trialParams({ space: { "training.optimizer.lr": { log_uniform: [1e-4, 1e-1] } }, trials: 2, algorithm: "random", seed: 0, grid_points: 3 });
 * // [{ "training.optimizer.lr": 0.0093... }, { "training.optimizer.lr": 0.00041... }]
 * ```
 */
export function trialParams(spec: Pick<SearchSpec, "space" | "trials" | "algorithm" | "seed" | "grid_points">): TrialParams[] {
  const issues = distributionIssues(spec.space);
  if (issues.length > 0) throw new UnprocessableError("invalid_search", issues);
  const fields = Object.entries(spec.space);
  if (spec.algorithm === "random") {
    const rng = new MT19937(spec.seed);
    return Array.from({ length: spec.trials ?? DEFAULT_RANDOM_TRIALS }, () => Object.fromEntries(fields.map(([path, d]) => [path, draw(d, rng)])));
  }
  let grid: TrialParams[] = [{}];
  for (const [path, d] of fields) {
    const values = gridValues(d, spec.grid_points);
    grid = grid.flatMap((point) => values.map((v) => ({ ...point, [path]: v })));
    if (grid.length > MAX_TRIALS) {
      throw new UnprocessableError("invalid_search", [{ path: "search.space", message: `the grid has more than ${MAX_TRIALS} points (at ${path}); search fewer values` }]);
    }
  }
  if (spec.trials !== undefined && spec.trials !== grid.length) {
    throw new UnprocessableError("invalid_search", [{ path: "search.trials", message: `a grid search runs every point of its grid: ${grid.length} here; give ${grid.length} or leave trials out` }]);
  }
  return grid;
}

/**
 * A dotted path's segments, or null when it is not one.
 *
 * @example
 * ```ts
 * pathSegments("model.layers[0].out_features"); // ["model", "layers", 0, "out_features"]
 * ```
 */
export function pathSegments(path: string): (string | number)[] | null {
  const segments: (string | number)[] = [];
  const re = /([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]/gy;
  let last = 0;
  for (let m = re.exec(path); m !== null; m = re.exec(path)) {
    segments.push(m[1] !== undefined ? m[1] : Number(m[2]));
    last = re.lastIndex;
    if (path[last] === ".") re.lastIndex = ++last;
  }
  return last === path.length && segments.length > 0 && typeof segments[0] === "string" ? segments : null;
}

const isObject = (v: unknown): v is Record<string | number, unknown> => typeof v === "object" && v !== null && !(v instanceof Uint8Array);

/**
 * The request with the trial's values written in. Objects on each path are copied, not mutated
 * (so trials share the rest: data, weights); an object missing on the way is created. `created`:
 * the paths of the objects it created, whose issues are the searched field's.
 *
 * @example
 * ```ts
 * withParams({ training: { epochs: 2 } }, { "training.optimizer.lr": 0.01 }).request;
 * // { training: { epochs: 2, optimizer: { lr: 0.01 } } }
 * ```
 */
export function withParams<T extends Record<string, unknown>>(request: T, params: TrialParams): { request: T; created: Map<string, string> } {
  const created = new Map<string, string>();
  let out: Record<string | number, unknown> = { ...request };
  delete out.search;
  for (const [path, value] of Object.entries(params)) {
    const segments = pathSegments(path);
    if (!segments) throw new UnprocessableError("invalid_search", [issueAt(path, 'is not a request path: dotted field names, with [n] for list items ("model.layers[2].p")')]);
    const root = out;
    let node = root;
    for (let i = 0; i < segments.length - 1; i++) {
      const key = segments[i]!;
      const child = node[key];
      if (child === undefined || child === null) {
        created.set(formatSegments(segments.slice(0, i + 1)), path);
        node[key] = {};
      } else if (!isObject(child)) {
        throw new UnprocessableError("invalid_search", [issueAt(path, `${formatSegments(segments.slice(0, i + 1))} is not an object in the request`)]);
      } else {
        node[key] = Array.isArray(child) ? [...child] : { ...child };
      }
      node = node[key] as Record<string | number, unknown>;
    }
    node[segments.at(-1)!] = value;
    out = root;
  }
  return { request: out as T, created };
}

function formatSegments(segments: readonly (string | number)[]): string {
  return segments.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? s : `.${s}`)).join("");
}

/** Whether issue path `a` is `b` or inside it. */
const within = (a: string, b: string) => a === b || a.startsWith(`${b}.`) || a.startsWith(`${b}[`);

/**
 * The issues of a trial's request that are the search's: those at a searched field, above it
 * (an unknown key at its parent), or inside an object the search created. They are moved to
 * `search.space.<path>` (with the trial's value in the message); the rest are the request's own.
 *
 * @example
 * ```ts
 * searchIssues([{ path: "training.optimizer.lr", message: "Too big" }], { "training.optimizer.lr": 20 }, new Map());
 * // { search: [{ path: "search.space.training.optimizer.lr", message: "20: Too big" }], other: [] }
 * ```
 */
export function searchIssues(issues: readonly FieldIssue[], params: TrialParams, created: ReadonlyMap<string, string>): { search: FieldIssue[]; other: FieldIssue[] } {
  const search: FieldIssue[] = [];
  const other: FieldIssue[] = [];
  for (const issue of issues) {
    const field =
      Object.keys(params).find((p) => within(issue.path, p) || within(p, issue.path)) ??
      [...created].find(([object]) => within(issue.path, object))?.[1];
    if (field === undefined) other.push(issue);
    else search.push({ path: `search.space.${field}`, message: `${JSON.stringify(params[field])}: ${issue.path === field ? "" : `${issue.path} `}${issue.message}` });
  }
  return { search, other };
}

/**
 * Checks every value the space can give each field (both bounds of a range, each choice) with
 * the request schema, one field at a time, so that a field that does not exist or a range that
 * leaves the field's allowed values is refused before any trial runs (a 422 naming
 * `search.space.<path>`), whichever values the draws would have hit.
 *
 * @example
 * ```ts
 * checkSpace(request, { "training.optimizer.lr": { log_uniform: [1e-4, 20] } }); // ok: lr has no upper bound
 * checkSpace(request, { "training.optimizer.momentum": { uniform: [0, 2] } }); // throws: momentum is at most 1
 * ```
 */
export function checkSpace(request: Record<string, unknown>, space: SearchSpec["space"]): void {
  const issues: FieldIssue[] = [];
  for (const [path, d] of Object.entries(space)) {
    const values = "choice" in d ? d.choice : Object.values(d)[0]!;
    for (const value of new Set(values)) {
      const { request: probe, created } = withParams(request, { [path]: value });
      const parsed = FineTuneRequest.safeParse(schemaView(probe));
      if (parsed.success) continue;
      const { search } = searchIssues(zodIssues(parsed.error), { [path]: value }, created);
      if (search.length > 0) {
        issues.push(...search);
        break;
      }
    }
  }
  if (issues.length > 0) throw new UnprocessableError("invalid_search", issues);
}

/**
 * The request as the schema sees it: weights given as bytes (multipart parts) and the rows of
 * data.train / data.validation left out (prepareRun reads those itself, as here).
 */
function schemaView(request: Record<string, unknown>): Record<string, unknown> {
  const data = isObject(request.data) ? { ...request.data, train: undefined, validation: undefined } : request.data;
  return {
    ...request,
    weights: request.weights instanceof Uint8Array ? null : request.weights,
    adapter_weights: request.adapter_weights instanceof Uint8Array ? null : request.adapter_weights,
    data,
  };
}
