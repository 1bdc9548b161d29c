/**
 * Seeded randomness: PyTorch's CPU generator (mt19937, at::mt19937 in
 * aten/src/ATen/core/MT19937RNGEngine.h) and its float `uniform_`, so that default
 * initialisation from `training.seed` gives the same weights as
 * `torch.manual_seed(seed); nn.Sequential(...)`. Shuffling uses the same generator
 * (Fisher-Yates), which is reproducible but is not torch's DataLoader order.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER = 0x80000000;
const LOWER = 0x7fffffff;

/**
 * The 32-bit Mersenne Twister exactly as torch seeds it (`torch.manual_seed(seed)` keeps the low 32 bits).
 *
 * @example
 * ```ts
 * const rng = new MT19937(0);
 * rng.nextU32(); // 2357136044, as std::mt19937(0)
 * ```
 */
export class MT19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed: number) {
    const s = this.state;
    s[0] = Number(BigInt.asUintN(32, BigInt(Math.trunc(seed))));
    for (let j = 1; j < N; j++) {
      const prev = s[j - 1]! ^ (s[j - 1]! >>> 30);
      s[j] = (Math.imul(1812433253, prev) + j) >>> 0;
    }
  }

  private twist(): void {
    const s = this.state;
    // the same recurrence as one loop over j with (j + 1) % N and (j + M) % N, split where the
    // indices wrap so that the loops carry no modulo (init draws millions of these).
    // -(y & 1) & MATRIX_A is y & 1 ? MATRIX_A : 0 without a branch: the low bit is random, so
    // the branch mispredicted every other element and cost three quarters of the twist's time.
    let j = 0;
    for (; j < N - M; j++) {
      const y = (s[j]! & UPPER) | (s[j + 1]! & LOWER);
      s[j] = s[j + M]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
    }
    for (; j < N - 1; j++) {
      const y = (s[j]! & UPPER) | (s[j + 1]! & LOWER);
      s[j] = s[j + M - N]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
    }
    const y = (s[N - 1]! & UPPER) | (s[0]! & LOWER);
    s[N - 1] = s[M - 1]! ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
    this.index = 0;
  }

  /** The next raw 32-bit output (torch CPUGeneratorImpl::random()). */
  nextU32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * One float32 sample of `tensor.uniform_(from, to)` on CPU: 24 random bits scaled to [0,1),
   * then x * (to - from) + from evaluated in double with to - from rounded to float32, and the
   * sum rounded to float32 (verified against torch 1.13 on 200k samples per range).
   */
  uniformF32(from: number, to: number): number {
    const f = Math.fround;
    const lo = f(from);
    const x = (this.nextU32() & 0xffffff) * 2 ** -24;
    return f(x * f(f(to) - lo) + lo);
  }

  /**
   * Fills `out` with uniformF32(from, to) samples, exactly as calling it once per element does
   * (same values, same generator state afterwards), but with nextU32's tempering and
   * uniformF32's arithmetic inlined over the state array, one twist per 624 values, and the
   * range's float32 roundings done once: default initialisation draws every parameter of a
   * model through here (about 10% faster than the calls; the twist is the larger part). The
   * float32 store rounds the double x * (to - from) + from once, as Math.fround does.
   */
  fillUniformF32(out: Float32Array, from: number, to: number): void {
    const lo = Math.fround(from);
    const range = Math.fround(Math.fround(to) - lo);
    const s = this.state;
    const n = out.length;
    let index = this.index;
    let i = 0;
    while (i < n) {
      // twist only when a value is needed, as nextU32 does: a fill that ends on a block's last
      // value leaves index at N for the next draw, whoever makes it
      if (index >= N) {
        this.twist();
        index = 0;
      }
      const stop = Math.min(n, i + (N - index));
      for (; i < stop; i++) {
        let y = s[index++]!;
        y ^= y >>> 11;
        y ^= (y << 7) & 0x9d2c5680;
        y ^= (y << 15) & 0xefc60000;
        y ^= y >>> 18;
        // the low 24 bits (the sign of the int32 y does not reach them), scaled exactly to [0, 1)
        out[i] = ((y & 0xffffff) * 2 ** -24) * range + lo;
      }
    }
    this.index = index;
  }

  /** torch's cached second Box-Muller sample of normal_distribution<double> (reset by manual_seed). */
  nextDoubleNormal: number | null = null;

  /** One double in [0, 1): 53 bits of random64() (two draws, the first the high word), as at::uniform_real_distribution<double>. */
  uniformF64(): number {
    const hi = this.nextU32();
    const lo = this.nextU32();
    // (hi << 32 | lo) & (2^53 - 1), times 2^-53
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * 2 ** -53;
  }

  /** A uniform integer in [0, n) without modulo bias (rejection sampling). */
  nextBelow(n: number): number {
    if (n <= 1) return 0;
    const limit = Math.floor(0x100000000 / n) * n;
    let r: number;
    do r = this.nextU32();
    while (r >= limit);
    return r % n;
  }
}

/**
 * Fills `out` with tensor.uniform_(from, to) samples in row-major order (MT19937.fillUniformF32:
 * the per-element uniformF32 without a call per element).
 *
 * @example
 * ```ts
 * fillUniform(new MT19937(42), weight, -0.5, 0.5);
 * ```
 */
export function fillUniform(rng: MT19937, out: Float32Array, from: number, to: number): void {
  rng.fillUniformF32(out, from, to);
}

/**
 * Fills `out` with tensor.normal_(mean, std) samples exactly as torch 1.13 draws them on an x86
 * CPU with AVX2 (CPU capability "AVX2", what torch picks on any AVX2 machine): for 16 or more
 * contiguous floats, every element first gets a uniform float, then each block of 16 becomes 8
 * Box-Muller pairs (normal_fill_16_AVX2; a partial last block is redrawn as the last 16
 * elements), with log and sin/cos from avx_mathfun (log256_ps, sincos256_ps) in float32, whose
 * multiply-adds GCC contracts into FMAs (reproduced by fmaf). Below 16 elements, one
 * normal_distribution<double> draw per element (with its cached second sample), in double.
 * Bit-exact against torch.randn on this machine for 2^20 samples (test/parity/generate.py's
 * init fixture checks embeddings of 12, 16 and 35 elements).
 *
 * @example
 * ```ts
 * fillNormal(new MT19937(0), embeddingWeight, 0, 1);
 * ```
 */
export function fillNormal(rng: MT19937, out: Float32Array, mean: number, std: number): void {
  const size = out.length;
  if (size >= 16) {
    rng.fillUniformF32(out, 0, 1);
    for (let i = 0; i + 16 <= size; i += 16) normalFill16(out, i, mean, std);
    if (size % 16 !== 0) {
      rng.fillUniformF32(out.subarray(size - 16), 0, 1);
      normalFill16(out, size - 16, mean, std);
    }
    return;
  }
  for (let i = 0; i < size; i++) {
    let z: number;
    if (rng.nextDoubleNormal !== null) {
      z = rng.nextDoubleNormal;
      rng.nextDoubleNormal = null;
    } else {
      const u1 = rng.uniformF64();
      const u2 = rng.uniformF64();
      const r = Math.sqrt(-2.0 * Math.log(1.0 - u2));
      const theta = 2.0 * Math.PI * u1;
      rng.nextDoubleNormal = r * Math.sin(theta);
      z = r * Math.cos(theta);
    }
    out[i] = z * std + mean;
  }
}

// ---------------------------------------------------------------- torch's AVX2 normal_ in float32
// aten/src/ATen/native/cpu/DistributionTemplates.h normal_fill_16_AVX2 and the avx_mathfun.h it
// includes (Cephes' logf and sincosf as 8-lane code). Every step is one float32 operation; the
// ones GCC fuses (a*b + c where the product has no other use) are fmaf.

const fr = Math.fround;

/** fl32(a * b + c) with one rounding (an FMA), for float32 a, b, c. */
function fmaf(a: number, b: number, c: number): number {
  const p = a * b; // exact: two 24-bit significands fit in 53 bits
  const s = p + c;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // s + err = p + c exactly (TwoSum)
  const r1 = fr(s);
  if (err !== 0 && r1 !== s) {
    // s may sit exactly between two floats only because it was rounded: err says which side the exact sum is on
    const r2 = 2 * s - r1;
    if (fr(r2) === r2 && (r1 + r2) / 2 === s) return err > 0 ? Math.max(r1, r2) : Math.min(r1, r2);
  }
  return r1;
}

const F32_BITS = new Float32Array(1);
const U32_BITS = new Uint32Array(F32_BITS.buffer);
const bitsOf = (x: number) => ((F32_BITS[0] = x), U32_BITS[0]!);
const fromBits = (b: number) => ((U32_BITS[0] = b), F32_BITS[0]!);

const LOG_P = [7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1].map(fr);
const SQRTHF = fr(0.707106781186547524);
const LOG_Q1 = fr(-2.12194440e-4);
const LOG_Q2 = fr(0.693359375);

/** avx_mathfun log256_ps for x in (0, 1] (Box-Muller's 1 - u). */
function log256f(x0: number): number {
  let x = Math.max(x0, fromBits(0x00800000));
  const exponent = bitsOf(x) >>> 23;
  x = fromBits((bitsOf(x) & ~0x7f800000) | 0x3f000000); // the mantissa in [0.5, 1)
  let e = fr(fr(exponent - 127) + 1);
  const small = x < SQRTHF;
  x = fr(fr(x - 1) + (small ? x : 0));
  if (small) e = fr(e - 1);
  const z = fr(x * x);
  let y = LOG_P[0]!;
  for (let i = 1; i < LOG_P.length; i++) y = fmaf(y, x, LOG_P[i]!);
  y = fr(y * x);
  y = fmaf(y, z, fr(e * LOG_Q1));
  y = fmaf(-z, 0.5, y);
  return fmaf(e, LOG_Q2, fr(x + y));
}

const FOPI = fr(1.27323954473516);
const DP1 = fr(-0.78515625);
const DP2 = fr(-2.4187564849853515625e-4);
const DP3 = fr(-3.77489497744594108e-8);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(fr);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(fr);

/** sincos256f's results (module scratch: a tuple per call would be garbage per normal pair). */
let sinOut = 0;
let cosOut = 0;

/** avx_mathfun sincos256_ps for theta >= 0: sets sinOut and cosOut. */
function sincos256f(theta: number): void {
  let x = theta;
  let j = Math.trunc(fr(x * FOPI));
  j = (j + 1) & ~1;
  const y = fr(j);
  x = fmaf(y, DP1, x);
  x = fmaf(y, DP2, x);
  x = fmaf(y, DP3, x);
  const z = fr(x * x);
  let c = fmaf(COS_P[0]!, z, COS_P[1]!);
  c = fmaf(c, z, COS_P[2]!);
  c = fr(c * z);
  c = fmaf(c, z, -fr(z * 0.5));
  c = fr(c + 1);
  let s = fmaf(SIN_P[0]!, z, SIN_P[1]!);
  s = fmaf(s, z, SIN_P[2]!);
  s = fr(s * z);
  s = fmaf(s, x, x);
  const sinPoly = (j & 2) === 0;
  const sin = sinPoly ? s : c;
  const cos = sinPoly ? c : s;
  sinOut = (j & 4) !== 0 ? -sin : sin;
  cosOut = (~(j - 2) & 4) !== 0 ? -cos : cos;
}

const TWO_PI_F32 = fr(2 * Math.PI);

/** normal_fill_16_AVX2: out[base + j], out[base + j + 8] (uniforms) -> a Box-Muller pair, j < 8. */
function normalFill16(out: Float32Array, base: number, mean: number, std: number): void {
  const m = fr(mean);
  const sd = fr(std);
  for (let j = 0; j < 8; j++) {
    const u1 = fr(1 - out[base + j]!);
    const radius = fr(Math.sqrt(fr(-2 * log256f(u1))));
    sincos256f(fr(TWO_PI_F32 * out[base + j + 8]!));
    out[base + j] = fmaf(fr(radius * cosOut), sd, m);
    out[base + j + 8] = fmaf(fr(radius * sinOut), sd, m);
  }
}

/**
 * The rows 0, 1, ..., n - 1 in order: an epoch's order before it is shuffled. (A plain loop:
 * `Int32Array.from({ length: n }, f)` iterates an array-like generically, about 5 ns a row.)
 *
 * @example
 * ```ts
 * identityOrder(4); // Int32Array [0, 1, 2, 3]
 * ```
 */
export function identityOrder(n: number): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return order;
}

/**
 * Shuffles `order` in place (Fisher-Yates, from the end).
 *
 * @example
 * ```ts
 * const order = identityOrder(n);
 * shuffleInPlace(new MT19937(seed), order);
 * ```
 */
export function shuffleInPlace(rng: MT19937, order: Int32Array): void {
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.nextBelow(i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
}

/**
 * Mixes two 32-bit words into one (per-step dropout seeds, derived RNG streams).
 *
 * @example
 * ```ts
 * mixSeed(seed, step); // a well-mixed u32
 * ```
 */
export function mixSeed(a: number, b: number): number {
  let h = 0x811c9dc5;
  h = Math.imul(h ^ (a >>> 0), 0x01000193) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  h ^= h >>> 12;
  h = Math.imul(h ^ (b >>> 0), 0x01000193) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  h ^= h >>> 12;
  return h >>> 0;
}
