/**
 * Shared machinery for the kernel tests (not a test file itself).
 *
 * `Pair` runs a WASM build of the kernel core and its plain-TypeScript reference twins over two
 * memories that the test owns, with every buffer at the same byte offset in both. Each buffer
 * is fenced by sentinel guard words on both sides, inputs are remembered and re-checked after
 * the run, and the module's static data (below heap_base) is snapshotted, so a kernel that
 * writes past the end of an output, writes to an input, or writes through a null pointer is
 * caught, as is one that reads past the end of an input (it reads a NaN sentinel).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { instantiateKernels, type Kernels, type Ptr } from "../../src/engine/kernels.js";
import { createReferenceKernels } from "../../src/engine/reference.js";
import { wasmDirectory } from "../../src/node/kernel-module.js";

/** The house-rule lengths: empty, shorter than a vector, around one vector, around 16 vectors. */
export const LENGTHS = [0, 1, 3, 4, 5, 63, 64, 65] as const;

// ------------------------------------------------------------------ the two builds

export type VariantName = "simd" | "relaxed-simd";

export interface Variant {
  readonly name: VariantName;
  readonly file: string;
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** WebAssembly.validate accepts the bytes in this process. */
  readonly valid: boolean;
  /** "" when valid; otherwise why the tests for this build are skipped (goes into test names). */
  readonly skipReason: string;
  /** relaxed_madd is fused: a*b+c rounds once, so GEMM and axpy differ from the unfused twin. */
  readonly fused: boolean;
}

export function loadVariant(name: VariantName): Variant {
  const file = join(wasmDirectory(), `${name}.wasm`);
  const bytes = new Uint8Array(readFileSync(file));
  const valid = WebAssembly.validate(bytes);
  const skipReason = valid
    ? ""
    : `[SKIPPED: WebAssembly.validate rejects ${name}.wasm in Node ${process.version}; ` +
      `cover it with: node --experimental-wasm-relaxed-simd node_modules/vitest/vitest.mjs run --project node --pool=threads test/kernels]`;
  return { name, file, bytes, valid, skipReason, fused: name === "relaxed-simd" };
}

const modules = new Map<VariantName, WebAssembly.Module>();

/** The compiled module of a variant (compiled once, lazily: never for a build that does not validate). */
export function moduleOf(variant: Variant): WebAssembly.Module {
  let m = modules.get(variant.name);
  if (!m) {
    m = new WebAssembly.Module(variant.bytes);
    modules.set(variant.name, m);
  }
  return m;
}

// ------------------------------------------------------------------ random inputs

/** mulberry32: small, seeded, reproducible. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** uniform in [0, 1) */
  next(): number {
    return this.u32() / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** n f32 values uniform in [lo, hi) */
  f32(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.uniform(lo, hi);
    return a;
  }
}

// ------------------------------------------------------------------ f32 comparisons

const f32Box = new Float32Array(1);
const u32Box = new Uint32Array(f32Box.buffer);

/** Bits of a number rounded to f32. */
export function f32Bits(x: number): number {
  f32Box[0] = x;
  return u32Box[0]!;
}

/** Ordered integer image of an f32 (adjacent floats differ by 1; +0 and -0 both map to 0). */
function ordered(x: number): number {
  const u = f32Bits(x);
  return u & 0x80000000 ? -(u & 0x7fffffff) : u;
}

/** Units in the last place between two f32 values; NaN equals NaN, NaN vs a number is Infinity. */
export function ulpDistance(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  return Math.abs(ordered(a) - ordered(b));
}

/** Largest observed differences per kernel family, printed by each test file at the end. */
export class Stats {
  private readonly rows = new Map<string, { ulps?: number; abs?: number; ratio?: number; n: number }>();
  record(family: string, d: { ulps?: number; abs?: number; ratio?: number }): void {
    const row = this.rows.get(family) ?? { n: 0 };
    for (const key of ["ulps", "abs", "ratio"] as const) {
      const v = d[key];
      if (v !== undefined) row[key] = Math.max(row[key] ?? 0, v);
    }
    row.n++;
    this.rows.set(family, row);
  }
  report(title: string): string {
    const lines = [...this.rows.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, r]) => {
        const parts = [`  ${k.padEnd(40)}`];
        if (r.ulps !== undefined) parts.push(`max ulps ${String(r.ulps).padStart(7)}`);
        if (r.abs !== undefined) parts.push(`max |diff| ${r.abs.toExponential(2)}`);
        if (r.ratio !== undefined) parts.push(`max |diff|/scale ${r.ratio.toExponential(2)}`);
        return `${parts.join("  ")}  (${r.n} comparisons)`;
      });
    return `${title}\n${lines.join("\n")}`;
  }
}

// ------------------------------------------------------------------ the pair of memories

/** A signalling-NaN bit pattern: any arithmetic on it gives NaN, so reading it shows. */
export const SENTINEL = 0x7fa5a5a5;
/** 64 bytes of guard on each side: more than one v128 store past either end. */
const GUARD_WORDS = 16;

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

interface Span {
  ptr: number;
  words: number;
}
interface Saved {
  ptr: number;
  bits: Uint32Array;
  label: string;
}

export class Pair {
  /** Failures recorded so far (each names the context, the buffer, the index and both values). */
  readonly failures: string[] = [];
  /** Describes the case being run; prefixed to failures. */
  context = "";
  private top: number;
  private guards: Span[] = [];
  private inputs: Saved[] = [];
  private readonly staticData: Uint32Array;

  private constructor(
    readonly memW: WebAssembly.Memory,
    readonly memR: WebAssembly.Memory,
    readonly wasm: Kernels,
    readonly ref: Kernels,
    readonly base: number,
    readonly stats: Stats,
  ) {
    this.top = base;
    this.staticData = new Uint32Array(memW.buffer.slice(0, base));
  }

  /** Instantiates `module` over a fresh memory; the twins get a second memory with identical contents. */
  static async create(module: WebAssembly.Module, stats: Stats, pages = 16): Promise<Pair> {
    const memW = new WebAssembly.Memory({ initial: pages, maximum: 65536 });
    const wasm = await instantiateKernels(module, memW);
    const memR = new WebAssembly.Memory({ initial: pages, maximum: 65536 });
    new Uint8Array(memR.buffer).set(new Uint8Array(memW.buffer)); // static data included
    const base = alignUp(wasm.heap_base(), 16);
    return new Pair(memW, memR, wasm, createReferenceKernels(memR, base), base, stats);
  }

  /** Starts a new case: frees every buffer. */
  reset(context: string): void {
    this.top = this.base;
    this.guards = [];
    this.inputs = [];
    this.context = context;
  }

  /** Runs one case: reset, body, then the guard / input / static-data checks. */
  run(context: string, body: () => void): void {
    this.reset(context);
    body();
    this.check();
  }

  private fence(ptr: number, words: number): void {
    if (words <= 0) return;
    this.guards.push({ ptr, words });
    for (const mem of [this.memW, this.memR]) new Uint32Array(mem.buffer, ptr, words).fill(SENTINEL);
  }

  /** n f32 slots at a 16-byte aligned offset, the same in both memories, fenced by sentinels on both sides. */
  alloc(n: number): Ptr {
    const lead = this.top;
    const ptr = lead + GUARD_WORDS * 4;
    const end = ptr + n * 4;
    const next = alignUp(end + GUARD_WORDS * 4, 16);
    for (const mem of [this.memW, this.memR]) {
      const have = mem.buffer.byteLength;
      if (next > have) mem.grow(Math.ceil((next - have) / 65536));
    }
    this.fence(lead, GUARD_WORDS);
    this.fence(end, (next - end) / 4);
    this.top = next;
    return ptr;
  }

  /** Writes the same f32 values at ptr in both memories. */
  write(ptr: Ptr, data: ArrayLike<number>): void {
    for (const mem of [this.memW, this.memR]) new Float32Array(mem.buffer, ptr, data.length).set(data);
  }

  /** A buffer holding `data` (f32) in both memories. */
  buffer(data: ArrayLike<number>): Ptr {
    const ptr = this.alloc(data.length);
    this.write(ptr, data);
    return ptr;
  }

  /** An input: a buffer that must come back unchanged (checked bit for bit in both memories). */
  input(data: ArrayLike<number>, label = "input"): Ptr {
    const ptr = this.buffer(data);
    this.inputs.push({ ptr, bits: new Uint32Array(new Float32Array(this.memW.buffer, ptr, data.length).slice().buffer), label });
    return ptr;
  }

  /** A 16-bit input (float16 / bfloat16 bits), packed two to an f32 slot; checked unchanged like `input`. */
  inputU16(data: ArrayLike<number>, label = "input"): Ptr {
    const words = Math.ceil(data.length / 2);
    const ptr = this.alloc(words);
    for (const mem of [this.memW, this.memR]) {
      new Uint32Array(mem.buffer, ptr, words).fill(0);
      new Uint16Array(mem.buffer, ptr, data.length).set(data);
    }
    this.inputs.push({ ptr, bits: new Uint32Array(this.memW.buffer, ptr, words).slice(), label });
    return ptr;
  }

  /** An i32 input (gather_rows indices). */
  inputI32(data: ArrayLike<number>, label = "indices"): Ptr {
    const ptr = this.alloc(data.length);
    for (const mem of [this.memW, this.memR]) new Int32Array(mem.buffer, ptr, data.length).set(data);
    this.inputs.push({ ptr, bits: new Uint32Array(new Int32Array(this.memW.buffer, ptr, data.length).slice().buffer), label });
    return ptr;
  }

  /** An output pre-filled with the same junk in both memories (an element the kernel skips shows up). */
  output(n: number, init?: ArrayLike<number>): Ptr {
    const ptr = this.alloc(n);
    this.write(ptr, init ?? Float32Array.from({ length: n }, (_, i) => -1234.5 - i));
    return ptr;
  }

  readW(ptr: Ptr, n: number): Float32Array {
    return new Float32Array(this.memW.buffer, ptr, n).slice();
  }
  readR(ptr: Ptr, n: number): Float32Array {
    return new Float32Array(this.memR.buffer, ptr, n).slice();
  }
  bitsW(ptr: Ptr, n: number): Uint32Array {
    return new Uint32Array(this.memW.buffer, ptr, n).slice();
  }
  bitsR(ptr: Ptr, n: number): Uint32Array {
    return new Uint32Array(this.memR.buffer, ptr, n).slice();
  }

  /** Calls `fn` with the WASM kernels, then with the twins; also fails if the WASM call grew memory. */
  both<T>(fn: (k: Kernels) => T): [T, T] {
    const before = this.memW.buffer.byteLength;
    const w = fn(this.wasm);
    if (this.memW.buffer.byteLength !== before) this.fail(`WASM kernel grew memory ${before} -> ${this.memW.buffer.byteLength}`);
    const r = fn(this.ref);
    return [w, r];
  }

  fail(msg: string): void {
    this.failures.push(`${this.context}: ${msg}`);
  }

  /** Guards intact and inputs unchanged in both memories; static data (below heap_base) unchanged in WASM memory. */
  check(): void {
    for (const [side, mem] of [["wasm", this.memW], ["ref", this.memR]] as const) {
      for (const g of this.guards) {
        const u = new Uint32Array(mem.buffer, g.ptr, g.words);
        for (let i = 0; i < g.words; i++) {
          if (u[i] !== SENTINEL) {
            this.fail(`${side}: guard word at byte ${g.ptr + 4 * i} overwritten (0x${u[i]!.toString(16)})`);
            break;
          }
        }
      }
      for (const s of this.inputs) {
        const u = new Uint32Array(mem.buffer, s.ptr, s.bits.length);
        for (let i = 0; i < s.bits.length; i++) {
          if (u[i] !== s.bits[i]) {
            this.fail(`${side}: ${s.label}[${i}] changed`);
            break;
          }
        }
      }
    }
    const now = new Uint32Array(this.memW.buffer, 0, this.staticData.length);
    for (let i = 0; i < now.length; i++) {
      if (now[i] !== this.staticData[i]) {
        this.fail(`wasm: static data word at byte ${4 * i} changed (a write through a null pointer?)`);
        break;
      }
    }
  }

  // ---------------------------------------------------------------- comparisons (record stats and failures)

  private limitFailures(what: string, bad: string[], total: number): void {
    if (bad.length) this.fail(`${what}: ${total} element(s) out of tolerance, e.g. ${bad.join("; ")}`);
  }

  /** Every element within `maxUlps` ulps, or within `atol` absolutely (for results near a root). */
  ulps(family: string, what: string, ptr: Ptr, n: number, maxUlps: number, atol = 0): void {
    const w = this.readW(ptr, n);
    const r = this.readR(ptr, n);
    const bad: string[] = [];
    let count = 0;
    let worst = 0;
    let worstAbs = 0;
    for (let i = 0; i < n; i++) {
      const u = ulpDistance(w[i]!, r[i]!);
      const d = Math.abs(w[i]! - r[i]!);
      if (u > worst) worst = u;
      if (d > worstAbs && Number.isFinite(d)) worstAbs = d;
      if (u > maxUlps && !(d <= atol)) {
        count++;
        if (bad.length < 3) bad.push(`[${i}] wasm ${w[i]} ref ${r[i]} (${u} ulps)`);
      }
    }
    this.stats.record(family, { ulps: worst, abs: worstAbs });
    this.limitFailures(what, bad, count);
  }

  /** Bit-exact (including NaN payloads and the sign of zero). */
  exact(family: string, what: string, ptr: Ptr, n: number): void {
    const w = this.bitsW(ptr, n);
    const r = this.bitsR(ptr, n);
    const bad: string[] = [];
    let count = 0;
    for (let i = 0; i < n; i++) {
      if (w[i] !== r[i]) {
        count++;
        if (bad.length < 3) bad.push(`[${i}] wasm 0x${w[i]!.toString(16)} ref 0x${r[i]!.toString(16)}`);
      }
    }
    this.stats.record(family, { ulps: count ? Infinity : 0, abs: 0 });
    this.limitFailures(`${what} (bit-exact)`, bad, count);
  }

  /** |wasm - ref| <= rtol * scale[i] for every element (NaN matches NaN). */
  scaled(family: string, what: string, ptr: Ptr, n: number, scale: ArrayLike<number>, rtol: number): void {
    const w = this.readW(ptr, n);
    const r = this.readR(ptr, n);
    const bad: string[] = [];
    let count = 0;
    let worstRatio = 0;
    let worstAbs = 0;
    let worstUlps = 0;
    for (let i = 0; i < n; i++) {
      const bothNaN = Number.isNaN(w[i]!) && Number.isNaN(r[i]!);
      const d = bothNaN ? 0 : Math.abs(w[i]! - r[i]!);
      const s = scale[i]!;
      const ratio = d === 0 ? 0 : d / s;
      if (ratio > worstRatio) worstRatio = ratio;
      if (d > worstAbs) worstAbs = d;
      worstUlps = Math.max(worstUlps, ulpDistance(w[i]!, r[i]!));
      if (!bothNaN && !(d <= rtol * s)) {
        count++;
        if (bad.length < 3) bad.push(`[${i}] wasm ${w[i]} ref ${r[i]} |diff| ${d.toExponential(2)} > ${rtol} * ${s.toExponential(2)}`);
      }
    }
    this.stats.record(family, { ulps: worstUlps, abs: worstAbs, ratio: worstRatio });
    this.limitFailures(what, bad, count);
  }

  /** A returned scalar: |wasm - ref| <= rtol * scale (NaN matches NaN). */
  scalar(family: string, what: string, w: number, r: number, rtol: number, scale = Math.abs(r)): void {
    const bothNaN = Number.isNaN(w) && Number.isNaN(r);
    const d = bothNaN ? 0 : Math.abs(w - r);
    const ratio = d === 0 ? 0 : d / scale;
    this.stats.record(family, { abs: d, ratio });
    if (!bothNaN && !(d <= rtol * scale)) this.fail(`${what}: wasm ${w} ref ${r} |diff| ${d.toExponential(3)} > ${rtol} * ${scale.toExponential(3)}`);
  }
}
