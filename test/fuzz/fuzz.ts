/**
 * Shared machinery of the property tests and fuzzers (test/fuzz/*.test.ts).
 *
 * - Seeds: fixed by default so CI is reproducible; `FUZZ_SEED=<n>` replays a run (every failure
 *   prints its seed and counterexample path), `FUZZ_SEED=random` explores new inputs.
 * - Budget: `FUZZ_SCALE=<x>` multiplies every property's number of runs (default 1: the whole
 *   suite stays well under 30 s in CI); `FUZZ_SCALE=20` is a longer local fuzzing session.
 * - Each property prints `[fuzz] <name>: <runs> runs in <ms> ms (seed <seed>)`.
 * - `meterAllocations` counts the bytes of every typed array and ArrayBuffer the code under test
 *   asks for (even one so large that it would throw or exhaust memory), so "memory bounded by
 *   the input size" is asserted exactly rather than through a noisy RSS reading.
 */
import fc from "fast-check";
import { DEFAULT_EDGE_BUDGET, type EdgeBudget } from "../../src/api/budget.js";
import { EdgetuneError } from "../../src/errors.js";

const seedVariable = process.env.FUZZ_SEED;
/** The seed of every property in this run. */
export const SEED = seedVariable === "random" ? Date.now() ^ (Math.random() * 2 ** 31) : seedVariable ? Number(seedVariable) : 0x5eed_7e57;
/** Multiplies each property's number of runs. */
export const SCALE = Math.max(0.01, Number(process.env.FUZZ_SCALE ?? "1") || 1);

export interface PropertyReport {
  name: string;
  runs: number;
  ms: number;
  seed: number;
}

/** Every property checked by this test file, in order (printed by `printReports`). */
export const reports: PropertyReport[] = [];

/**
 * Checks a property with the run's seed and `runs * SCALE` runs; prints its run count and time,
 * and on failure throws fast-check's report (counterexample, seed, path) plus a replay hint.
 */
export async function checkProperty<Ts>(name: string, property: fc.IRawProperty<Ts>, runs: number, params: fc.Parameters<Ts> = {}): Promise<PropertyReport> {
  const numRuns = Math.max(1, Math.round(runs * SCALE));
  const started = performance.now();
  const details = await fc.check(property, { seed: SEED, numRuns, ...params });
  const report = { name, runs: details.numRuns, ms: Math.round(performance.now() - started), seed: details.seed };
  reports.push(report);
  console.log(`[fuzz] ${name}: ${report.runs} runs in ${report.ms} ms (seed ${report.seed})`);
  if (details.failed) {
    const message = (await fc.asyncDefaultReportMessage(details)) ?? "property failed";
    const cause = details.errorInstance;
    throw new Error(`${name}\n${message}\nFailure: ${describeThrown(cause)}\nReplay: FUZZ_SEED=${details.seed} npx vitest run --project node test/fuzz`, { cause });
  }
  return report;
}

/** Prints the file's properties as one table (called from afterAll). */
export function printReports(file: string): void {
  const total = reports.reduce((s, r) => s + r.runs, 0);
  const ms = reports.reduce((s, r) => s + r.ms, 0);
  const lines = reports.map((r) => `  ${String(r.runs).padStart(6)} runs ${String(r.ms).padStart(6)} ms  ${r.name}`);
  console.log(`[fuzz] ${file}: ${reports.length} properties, ${total} runs, ${ms} ms, seed ${SEED}\n${lines.join("\n")}`);
}

// ---------------------------------------------------------------- what may be thrown

/** Describes a thrown value for assertion messages. */
export function describeThrown(error: unknown): string {
  if (error instanceof Error) return `${error.constructor.name}: ${error.message.slice(0, 300)}`;
  return `non-Error ${typeof error}: ${String(error).slice(0, 300)}`;
}

/**
 * Asserts that `error` is an instance of one of `allowed` (all EdgetuneError subclasses) and
 * that it names at least one field with a non-empty path and a message. Returns it, typed.
 */
export function expectTyped<E extends EdgetuneError>(error: unknown, allowed: readonly (abstract new (...args: never[]) => E)[]): E {
  if (!allowed.some((kind) => error instanceof kind)) {
    throw new Error(`threw ${describeThrown(error)}; only ${allowed.map((k) => k.name).join(" | ")} may be thrown`);
  }
  const typed = error as E;
  if (typed.errors.length === 0) throw new Error(`${typed.name} (${typed.code}) names no field: ${typed.message}`);
  for (const issue of typed.errors) {
    if (typeof issue.path !== "string" || issue.path.length === 0) throw new Error(`${typed.name} has an issue without a path: ${JSON.stringify(issue)}`);
    if (typeof issue.message !== "string" || issue.message.length === 0) throw new Error(`${typed.name} has an issue without a message: ${JSON.stringify(issue)}`);
  }
  return typed;
}

/** Runs `fn`; returns its value or the typed error it threw (anything else fails the property). */
export function outcome<T, E extends EdgetuneError>(fn: () => T, allowed: readonly (abstract new (...args: never[]) => E)[]): { ok: true; value: T } | { ok: false; error: E } {
  try {
    return { ok: true, value: fn() };
  } catch (error) {
    return { ok: false, error: expectTyped(error, allowed) };
  }
}

// ---------------------------------------------------------------- allocation meter

/** Thrown by the meter when one allocation asks for more than the cap: it never happens for real. */
export class AllocationCapExceeded extends Error {
  constructor(
    readonly kind: string,
    readonly bytes: number,
  ) {
    super(`allocation of ${bytes} bytes (${kind}) exceeds the test's cap`);
  }
}

export interface AllocationReport {
  /** Bytes of all typed arrays and ArrayBuffers asked for, whether or not they could be made. */
  totalBytes: number;
  /** The largest single request. */
  largestBytes: number;
  largestKind: string;
}

const METERED = ["ArrayBuffer", "Uint8Array", "Int8Array", "Uint16Array", "Int16Array", "Uint32Array", "Int32Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"] as const;

/** Bytes a `new Kind(...args)` call asks for: a length (or array-like) times the element size; views of a buffer ask for nothing. */
function requestedBytes(kind: (typeof METERED)[number], target: { BYTES_PER_ELEMENT?: number }, args: unknown[]): number {
  const first = args[0];
  const elementSize = kind === "ArrayBuffer" ? 1 : (target.BYTES_PER_ELEMENT ?? 1);
  if (typeof first === "number") return Math.max(0, first) * elementSize;
  if (first === undefined) return 0;
  if (first instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && first instanceof SharedArrayBuffer)) return 0;
  if (ArrayBuffer.isView(first)) return (first as unknown as { length: number }).length * elementSize;
  if (Array.isArray(first)) return first.length * elementSize;
  const length = (first as { length?: unknown } | null)?.length;
  return typeof length === "number" ? Math.max(0, length) * elementSize : 0;
}

/**
 * Runs synchronous `fn` with the global typed-array constructors (and ArrayBuffer) wrapped so
 * that each construction is counted before it happens; one asking for more than `capBytes`
 * throws AllocationCapExceeded instead of allocating. Only synchronous code: an await inside
 * would let unrelated code be counted (or escape the wrapper).
 *
 * @example
 * ```ts
 * const { report } = meterAllocations(() => parseCsv(text, options), { capBytes: 1 << 28 });
 * expect(report.totalBytes).toBeLessThan(16 * text.length + 65536);
 * ```
 */
export function meterAllocations<T>(fn: () => T, options: { capBytes?: number } = {}): { report: AllocationReport; value?: T; error?: unknown } {
  const cap = options.capBytes ?? 1 << 28;
  const report: AllocationReport = { totalBytes: 0, largestBytes: 0, largestKind: "" };
  const g = globalThis as unknown as Record<string, unknown>;
  const originals = METERED.map((kind) => [kind, g[kind]] as const);
  for (const [kind, original] of originals) {
    g[kind] = new Proxy(original as new (...args: unknown[]) => object, {
      construct(target, args, newTarget) {
        const bytes = requestedBytes(kind, target as { BYTES_PER_ELEMENT?: number }, args);
        report.totalBytes += bytes;
        if (bytes > report.largestBytes) {
          report.largestBytes = bytes;
          report.largestKind = kind;
        }
        if (bytes > cap) throw new AllocationCapExceeded(kind, bytes);
        // Constructing through the proxy keeps subclasses and `new this(n)` in static methods working.
        return Reflect.construct(target, args, newTarget === g[kind] ? target : newTarget);
      },
    });
  }
  try {
    return { report, value: fn() };
  } catch (error) {
    return { report, error };
  } finally {
    for (const [kind, original] of originals) g[kind] = original;
  }
}

/** Milliseconds `fn` takes. */
export function timed<T>(fn: () => T): { ms: number; value: T } {
  const started = performance.now();
  const value = fn();
  return { ms: performance.now() - started, value };
}

// ---------------------------------------------------------------- shared arbitraries

/** Strings made of the given tokens (better at reaching parser corners than uniform text). */
export function tokenString(tokens: readonly string[], maxTokens = 60): fc.Arbitrary<string> {
  return fc.array(fc.constantFrom(...tokens), { maxLength: maxTokens }).map((parts) => parts.join(""));
}

/** Any string: ASCII-heavy, full Unicode, lone surrogates. */
export const anyString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
);

/** Numbers a JSON document or a fuzzer would throw at a numeric field. */
export const nastyNumber: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: -5, max: 40 }),
  fc.constantFrom(0, -0, 0.5, -1, 1.5, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e21, 1e308, -1e308, 5e-324, 3.4028235677973366e38, 1e39),
  fc.double(),
);

// ---------------------------------------------------------------- app budget

/**
 * A small in-Worker budget for the fuzzed app: a valid generated job trains in milliseconds,
 * bigger ones go async (202) or are refused (422). Built from DEFAULT_EDGE_BUDGET so that it
 * follows the budget's shape (a FLOP cap, or a CPU-time cap with its cost model).
 */
export function smallBudget(): EdgeBudget {
  const budget: Record<string, number> = { ...(DEFAULT_EDGE_BUDGET as unknown as Record<string, number>), maxMemoryBytes: 16 << 20 };
  if ("maxCpuMs" in budget) budget.maxCpuMs = 50;
  if ("maxFlops" in budget) budget.maxFlops = 5e7;
  return budget as unknown as EdgeBudget;
}
