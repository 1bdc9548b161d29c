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
    for (let j = 0; j < N; j++) {
      const y = (s[j]! & UPPER) | (s[(j + 1) % N]! & LOWER);
      s[j] = s[(j + M) % N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
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
 * Fills `out` with tensor.uniform_(from, to) samples in row-major order.
 *
 * @example
 * ```ts
 * fillUniform(new MT19937(42), weight, -0.5, 0.5);
 * ```
 */
export function fillUniform(rng: MT19937, out: Float32Array, from: number, to: number): void {
  for (let i = 0; i < out.length; i++) out[i] = rng.uniformF32(from, to);
}

/**
 * Fills `out` with tensor.normal_(mean, std) samples as torch 1.13 draws them on CPU: for 16 or
 * more contiguous floats, every element first gets a uniform float, then each block of 16 is
 * turned into 8 Box-Muller pairs (normal_fill_16; a partial last block is redrawn as the last 16
 * elements); below 16 elements, one normal_distribution<double> draw per element (with its
 * cached second sample). The stream consumed is torch's exactly, so draws after this one stay
 * bit-exact; the values differ from torch's in the last bit now and then, because torch
 * evaluates log/cos/sin in float (AVX2 builds with avx_mathfun) where this uses Math in double.
 *
 * @example
 * ```ts
 * fillNormal(new MT19937(0), embeddingWeight, 0, 1);
 * ```
 */
export function fillNormal(rng: MT19937, out: Float32Array, mean: number, std: number): void {
  const f = Math.fround;
  const size = out.length;
  if (size >= 16) {
    for (let i = 0; i < size; i++) out[i] = rng.uniformF32(0, 1);
    const block = (base: number) => {
      for (let j = 0; j < 8; j++) {
        const u1 = f(1 - out[base + j]!);
        const u2 = out[base + j + 8]!;
        const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
        const theta = f(2.0 * Math.PI * u2);
        out[base + j] = f(f(f(radius * f(Math.cos(theta))) * f(std)) + f(mean));
        out[base + j + 8] = f(f(f(radius * f(Math.sin(theta))) * f(std)) + f(mean));
      }
    };
    for (let i = 0; i + 16 <= size; i += 16) block(i);
    if (size % 16 !== 0) {
      for (let i = size - 16; i < size; i++) out[i] = rng.uniformF32(0, 1);
      block(size - 16);
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

/**
 * Shuffles `order` in place (Fisher-Yates, from the end).
 *
 * @example
 * ```ts
 * const order = Int32Array.from({ length: n }, (_, i) => i);
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
