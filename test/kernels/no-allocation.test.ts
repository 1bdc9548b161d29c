/**
 * Kernels never allocate: the module imports only env.memory, exports no allocator, and no
 * kernel grows (or detaches) the memory when it runs. And the arena, the one owner of that
 * memory, re-derives its views after growth.
 */
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Arena } from "../../src/engine/arena.js";
import { KERNEL_NAMES, instantiateKernels, type Kernels } from "../../src/engine/kernels.js";
import { Rng, loadVariant, moduleOf } from "./harness.js";
import { CONTROL_WORDS, FAULT, ProgramWriter } from "../../src/engine/program.js";

type KernelName = (typeof KERNEL_NAMES)[number];

const VARIANTS = [loadVariant("simd"), loadVariant("relaxed-simd")];

/** The AssemblyScript runtime's allocator / GC exports (any runtime other than "stub" brings some). */
const ALLOCATOR_EXPORTS = ["__new", "__alloc", "__pin", "__unpin", "__collect", "__renew", "__free", "__realloc", "__retain", "__release", "__rtti_base"];

// ------------------------------------------------------------------ a minimal reader of the import and export sections
// (reads the bytes directly, so the relaxed-SIMD build is checked even where this V8 cannot compile it)

interface WasmImport { module: string; name: string; kind: string; limits?: { min: number; max?: number } }
interface WasmExport { name: string; kind: string }

function readSections(bytes: Uint8Array): { imports: WasmImport[]; exports: WasmExport[] } {
  let p = 8; // magic + version
  const u32 = (): number => {
    let result = 0, shift = 0, b: number;
    do {
      b = bytes[p++]!;
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return result;
  };
  const name = (): string => {
    const len = u32();
    const s = new TextDecoder().decode(bytes.subarray(p, p + len));
    p += len;
    return s;
  };
  const limits = () => {
    const flag = bytes[p++]!;
    const min = u32();
    return flag & 1 ? { min, max: u32() } : { min };
  };
  const KINDS = ["function", "table", "memory", "global", "tag"];
  const imports: WasmImport[] = [];
  const exports: WasmExport[] = [];
  while (p < bytes.length) {
    const id = bytes[p++]!;
    const size = u32();
    const end = p + size;
    if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const module = name(), field = name(), kind = bytes[p++]!;
        const entry: WasmImport = { module, name: field, kind: KINDS[kind] ?? `kind ${kind}` };
        if (kind === 0) u32();
        else if (kind === 1) (p++, limits());
        else if (kind === 2) entry.limits = limits();
        else if (kind === 3) p += 2;
        else if (kind === 4) (p++, u32());
        imports.push(entry);
      }
    } else if (id === 7) {
      for (let n = u32(); n > 0; n--) {
        const field = name(), kind = bytes[p++]!;
        u32();
        exports.push({ name: field, kind: KINDS[kind] ?? `kind ${kind}` });
      }
    }
    p = end;
  }
  return { imports, exports };
}

// ------------------------------------------------------------------ one valid call of every kernel

const n = 65;
const [M, N, K] = [9, 13, 7];

/** Buffers for every call, laid out from the arena base; indices are i32. */
function layout(memory: WebAssembly.Memory, base: number) {
  const arena = new Arena(memory, base);
  const rng = new Rng(5);
  const buf = (len: number, lo = -1, hi = 1) => {
    const r = arena.alloc(len);
    arena.f32(r).set(rng.f32(len, lo, hi));
    return r.ptr;
  };
  const classes = (rows: number, C: number) => {
    const r = arena.alloc(rows);
    arena.f32(r).set(Float32Array.from({ length: rows }, (_, i) => i % C));
    return r.ptr;
  };
  const idx = arena.alloc(n);
  arena.i32(idx).set(Int32Array.from({ length: n }, (_, i) => (i * 7) % 5));
  return {
    arena,
    x: buf(n), y: buf(n), z: buf(n), w: buf(n), pos: buf(n, 0, 1), pos2: buf(n, 0, 1), pos3: buf(n, 0, 1),
    a: buf(M * K), b: buf(K * N), bias: buf(N), out: buf(M * N), scratch: buf(K * N),
    src: buf(5 * n), idx: idx.ptr, rows: buf(n * 4), labels: classes(n, 4), cw: buf(4, 0.5, 2), binary: classes(n, 2),
    col: buf(9 * n), pooled: arena.alloc(n).ptr, program: program(arena),
  };
}

/** A fused program of one step (program.ts): y = relu(x), its mse against z; its control block's pointer. */
function program(arena: Arena): number {
  const [x, y, z, g, losses] = [arena.alloc(n), arena.alloc(n), arena.alloc(n), arena.alloc(n), arena.alloc(2)];
  const w = new ProgramWriter();
  w.call("activation_forward", [y.ptr, x.ptr, 0, 0, n]);
  w.call("mse_loss", [g.ptr, y.ptr, z.ptr, n]);
  w.loss(losses.ptr);
  w.check(g.ptr, n, FAULT.GRADIENT);
  const code = arena.alloc(w.words.length);
  arena.i32(code).set(w.words);
  const ctl = arena.alloc(CONTROL_WORDS);
  arena.i32(ctl).set([code.ptr, w.words.length, code.ptr, w.words.length, -1, 0, 1]);
  return ctl.ptr;
}

function callsFor(L: ReturnType<typeof layout>): Record<KernelName, (k: Kernels) => unknown> {
  const { x, y, z, w, pos, pos2, pos3, a, b, bias, out, scratch, src, idx, rows, labels, cw, binary, col, pooled } = L;
  // x as an image [1, 5, 13]: a 3x3 convolution with padding 1 keeps 5 x 13; 2x2 pooling gives 2 x 6
  const conv = [1, 5, 13, 3, 3, 1, 1, 1, 1, 1, 1, 13, 0, 5] as const;
  return {
    matmul_nt: (k) => k.matmul_nt(out, a, b, bias, scratch, M, N, K),
    matmul_nn: (k) => k.matmul_nn(out, a, b, M, N, K, 1),
    matmul_tn: (k) => k.matmul_tn(out, a, b, M, N, K, 0),
    matmul_strided: (k) => k.matmul_strided(out, a, b, M, N, K, K, 1, N, N, 1),
    transpose: (k) => k.transpose(scratch, b, N, K),
    // b [K, N] read as K rows of a strided view (ld N), transposed into scratch [N, K]
    transpose_strided: (k) => k.transpose_strided(scratch, b, N, K, N, 0.5),
    attention_softmax: (k) => k.attention_softmax(out, a, pos, M, K, 1),
    attention_softmax_backward: (k) => k.attention_softmax_backward(out, a, pos2, 0.5, M, K),
    // a table of 5 positions x 7 angles into col and scratch; x [4 tokens, 2 heads, 8] rotated by its first rows
    rope_table: (k) => k.rope_table(col, scratch, 5, 7, 10000),
    rope: (k) => k.rope(y, x, col, scratch, -1, 4, 2, 8),
    bias_grad: (k) => k.bias_grad(bias, out, M, N),
    activation_forward: (k) => k.activation_forward(y, x, 2, 0, n),
    activation_backward: (k) => k.activation_backward(z, w, x, y, 2, 0, n),
    dropout_forward: (k) => k.dropout_forward(y, z, x, 0.3, 17, n),
    mul: (k) => k.mul(y, x, w, n),
    add: (k) => k.add(y, x, w, n),
    scale: (k) => k.scale(y, 0.5, n),
    fill: (k) => k.fill(y, 1.5, n),
    copy: (k) => k.copy(y, x, n),
    axpy: (k) => k.axpy(y, x, 0.25, n),
    gather_rows: (k) => k.gather_rows(rows, src, idx, n, 4),
    all_finite: (k) => k.all_finite(x, n),
    mse_loss: (k) => k.mse_loss(z, x, w, n),
    l1_loss: (k) => k.l1_loss(z, x, w, n),
    huber_loss: (k) => k.huber_loss(z, x, w, 1, n),
    smooth_l1_loss: (k) => k.smooth_l1_loss(z, x, w, 0.5, n),
    cross_entropy_loss: (k) => k.cross_entropy_loss(rows, src, labels, cw, n, 4, -100, 0.1),
    bce_with_logits_loss: (k) => k.bce_with_logits_loss(z, x, binary, 0, n, 1),
    hinge_loss: (k) => k.hinge_loss(z, x, binary, n),
    multi_margin_loss: (k) => k.multi_margin_loss(rows, src, labels, cw, n, 4, 2, 1),
    sgd_step: (k) => k.sgd_step(x, w, y, n, 0.1, 0.9, 1, 0.01, 1, 0, 0),
    adam_step: (k) => k.adam_step(x, w, y, pos, pos2, n, 1e-3, 0.9, 0.1, 0.999, 0.001, 0.03, 1e-8, 0.01, 1, 1, 0, 0),
    rmsprop_step: (k) => k.rmsprop_step(x, w, pos3, z, y, n, 0.01, 0.99, 0.01, 1e-8, 0, 0.9, 0, 0),
    adagrad_step: (k) => k.adagrad_step(x, w, pos, n, 0.01, 1e-10, 0, 0),
    embedding_forward: (k) => k.embedding_forward(rows, src, labels, n, 4),
    embedding_backward: (k) => k.embedding_backward(src, rows, labels, n, 4, 2),
    // src's bytes read as 16-bit values: a [5, 4] table of halves, and 2n halves
    embedding_forward_half: (k) => k.embedding_forward_half(rows, src, labels, n, 4, 0),
    widen_f16: (k) => k.widen_f16(y, x, n),
    widen_bf16: (k) => k.widen_bf16(y, x, n),
    add_broadcast: (k) => k.add_broadcast(y, x, w, 5, 13),
    token_pool_forward: (k) => k.token_pool_forward(out, scratch, a, binary, 1, 3, 3, 7),
    token_pool_backward: (k) => k.token_pool_backward(a, out, scratch, binary, 1, 3, 3, 7),
    sum_squares: (k) => k.sum_squares(x, n),
    sum_abs_pow: (k) => k.sum_abs_pow(x, 3, n),
    max_abs: (k) => k.max_abs(x, n),
    run_program: (k) => k.run_program(L.program),
    // x as [5 rows, 13] (layer norm) and as [N 5, C 13, L 1] or [N 1, C 5, L 13] (batch norm)
    layer_norm_forward: (k) => k.layer_norm_forward(y, pos, pos2, x, w, z, 5, 13, 1e-5, 1),
    layer_norm_backward: (k) => k.layer_norm_backward(z, pos3, bias, w, x, w, pos, pos2, 5, 13, 1),
    batch_norm_stats: (k) => k.batch_norm_stats(pos, pos2, x, 5, 13, 1),
    batch_norm_update: (k) => k.batch_norm_update(z, w, pos3, pos, pos2, 13, -1, 65),
    batch_norm_forward: (k) => k.batch_norm_forward(y, x, pos, pos2, w, bias, 1, 5, 13, 1e-5),
    batch_norm_backward: (k) => k.batch_norm_backward(z, y, bias, scratch, w, x, pos, pos2, w, 1, 5, 13, 1e-5),
    conv_im2col: (k) => k.conv_im2col(col, x, ...conv),
    conv_im2col_t: (k) => k.conv_im2col_t(col, x, ...conv),
    conv_col2im: (k) => k.conv_col2im(y, col, ...conv),
    conv_bias_forward: (k) => k.conv_bias_forward(col, bias, 3, 3, 65),
    conv_bias_backward: (k) => k.conv_bias_backward(bias, col, 3, 3, 65),
    max_pool_forward: (k) => k.max_pool_forward(z, pooled, x, 1, 5, 13, 2, 2, 2, 2, 0, 0, 1, 1, 2, 6),
    max_pool_backward: (k) => k.max_pool_backward(y, z, pooled, 1, 5, 13, 2, 6),
    avg_pool_forward: (k) => k.avg_pool_forward(z, x, 1, 5, 13, 3, 3, 2, 2, 1, 1, 3, 7, 0, 0),
    avg_pool_backward: (k) => k.avg_pool_backward(y, z, 1, 5, 13, 3, 3, 2, 2, 1, 1, 3, 7, 1, 0),
    adaptive_avg_pool_forward: (k) => k.adaptive_avg_pool_forward(z, x, 1, 5, 13, 3, 4),
    adaptive_avg_pool_backward: (k) => k.adaptive_avg_pool_backward(y, z, 1, 5, 13, 3, 4),
    heap_base: (k) => k.heap_base(),
  };
}

for (const variant of VARIANTS) {
  const suffix = variant.skipReason ? ` ${variant.skipReason}` : "";
  describe(`${variant.name}.wasm never allocates`, () => {
    it("imports only env.memory and exports no allocator (read from the binary)", () => {
      const { imports, exports } = readSections(variant.bytes);
      expect(imports.map(({ module, name, kind }) => ({ module, name, kind }))).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
      const names = exports.map((e) => e.name);
      for (const a of ALLOCATOR_EXPORTS) expect(names, `exports ${a}`).not.toContain(a);
      // the exported functions are exactly the kernels (plus the memory, re-exported)
      expect(exports.filter((e) => e.kind === "function").map((e) => e.name).sort()).toEqual([...KERNEL_NAMES].sort());
      expect(exports.filter((e) => e.kind !== "function")).toEqual([{ name: "memory", kind: "memory" }]);
    });

    it.skipIf(!variant.valid)(`WebAssembly.Module.imports/exports agree${suffix}`, () => {
      const module = moduleOf(variant);
      expect(WebAssembly.Module.imports(module)).toEqual([{ module: "env", name: "memory", kind: "memory" }]);
      const names = WebAssembly.Module.exports(module).map((e) => e.name);
      for (const a of ALLOCATOR_EXPORTS) expect(names).not.toContain(a);
    });

    const wat = variant.file.replace(/\.wasm$/, ".wat");
    it.skipIf(!existsSync(wat))(`contains no memory.grow instruction (${variant.name}.wat)${existsSync(wat) ? "" : " [SKIPPED: no .wat next to the .wasm]"}`, () => {
      const text = readFileSync(wat, "utf8");
      expect(text).toContain("(func"); // it is the disassembly
      expect(text.match(/memory\.grow/g) ?? []).toEqual([]);
    });

    it.skipIf(!variant.valid)(`no kernel grows or detaches the memory when called on valid inputs${suffix}`, async () => {
      const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536 });
      const kernels = await instantiateKernels(moduleOf(variant), memory);
      const L = layout(memory, kernels.heap_base());
      const bytes = memory.buffer.byteLength;
      expect(L.arena.used).toBeLessThanOrEqual(bytes); // everything fits: a grow could only come from a kernel
      const buffer = memory.buffer;
      const calls = callsFor(L);
      const grew: string[] = [];
      for (const name of KERNEL_NAMES) {
        calls[name](kernels);
        // growth detaches the old ArrayBuffer, so identity is checked as well as length
        if (memory.buffer !== buffer || memory.buffer.byteLength !== bytes) grew.push(`${name}: ${bytes} -> ${memory.buffer.byteLength}`);
      }
      expect(grew).toEqual([]);
      expect(Object.keys(calls).sort()).toEqual([...KERNEL_NAMES].sort());
    });
  });
}

describe("the arena re-derives views after memory growth", () => {
  it("values written through arena.f32 / arena.i32 read back through new views after a growing alloc; old views are detached", () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
    const arena = new Arena(memory, 11520);
    const r = arena.alloc(100);
    const ri = arena.alloc(7);
    expect(r.ptr % 16).toBe(0);
    expect(ri.ptr % 16).toBe(0);
    expect(r.ptr).toBeGreaterThanOrEqual(11520);
    const values = Float32Array.from({ length: 100 }, (_, i) => i * 0.5 - 7.25);
    const old = arena.f32(r);
    old.set(values);
    arena.i32(ri).set([1, -2, 3, -4, 5, -6, 7]);
    const oldBuffer = memory.buffer;

    const big = arena.alloc(300_000); // 1.2 MB: the memory must grow
    expect(memory.buffer).not.toBe(oldBuffer);
    expect(memory.buffer.byteLength).toBeGreaterThanOrEqual(big.ptr + 4 * big.length);
    expect(oldBuffer.byteLength).toBe(0); // detached
    expect(old.length).toBe(0); // so is every view over it

    expect(Array.from(arena.f32(r))).toEqual(Array.from(values));
    expect(Array.from(arena.f32(r.ptr, r.length))).toEqual(Array.from(values));
    expect(Array.from(arena.i32(ri))).toEqual([1, -2, 3, -4, 5, -6, 7]);
    expect(big.ptr).toBeGreaterThanOrEqual(ri.ptr + 4 * ri.length);
    expect(arena.f32(big).every((v) => v === 0)).toBe(true); // zero on first use
  });

  it("a kernel instantiated before the growth works on the grown memory through the same pointers", async () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
    const kernels = await instantiateKernels(moduleOf(VARIANTS[0]!), memory);
    const arena = new Arena(memory, kernels.heap_base());
    const r = arena.alloc(65);
    const values = Float32Array.from({ length: 65 }, (_, i) => i - 30);
    arena.f32(r).set(values);
    const before = memory.buffer.byteLength;
    const big = arena.alloc(200_000);
    const grown = memory.buffer.byteLength;
    expect(grown).toBeGreaterThan(before);
    kernels.fill(big.ptr + 4 * (big.length - 65), 3, 65); // the newly grown pages are addressable
    kernels.scale(r.ptr, 2, 65);
    expect(Array.from(arena.f32(r))).toEqual(Array.from(values, (v) => 2 * v));
    expect(arena.f32(big.ptr + 4 * (big.length - 65), 65).every((v) => v === 3)).toBe(true);
    expect(memory.buffer.byteLength).toBe(grown); // unchanged by the kernels
  });
});
