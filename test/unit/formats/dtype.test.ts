import { describe, it, expect } from "vitest";
import {
  bf16BitsToF32,
  clampToHalfRange,
  firstHalfOverflow,
  HALF_MAX,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToF32,
  f32Bits,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  f32FromBits,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "../../../src/formats/dtype.js";

const hex = (n: number) => `0x${n.toString(16).padStart(4, "0")}`;

/**
 * c10's fp16_ieee_from_fp32_value (PyTorch's scalar float -> Half), transcribed with float32
 * arithmetic emulated by Math.fround: an independent oracle built on float tricks, not bit rounding.
 */
function c10Half(bits: number): number {
  const f = f32FromBits(bits);
  const scaleToInf = f32FromBits(0x77800000);
  const scaleToZero = f32FromBits(0x08800000);
  let base = Math.fround(Math.fround(Math.abs(f) * scaleToInf) * scaleToZero);
  const w = bits >>> 0;
  const shl1 = (w << 1) >>> 0;
  const sign = (w & 0x80000000) >>> 0;
  let bias = (shl1 & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  base = Math.fround(f32FromBits((bias >>> 1) + 0x07800000) + base);
  const out = f32Bits(base);
  const nonsign = ((out >>> 13) & 0x7c00) + (out & 0x0fff);
  return ((sign >>> 16) | (shl1 > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}

/** Round-to-nearest-even to bfloat16 decided by exact distances (doubles hold float32 differences exactly). */
function exactBf16(bits: number): number {
  const value = f32FromBits(bits);
  const lower = bits & 0xffff0000;
  const upper = (lower + 0x10000) >>> 0;
  const lowerValue = f32FromBits(lower);
  // The next bfloat16 above the largest finite one is Inf; treat it as 2^128 for the distance.
  const upperValue = (upper & 0x7fffffff) === 0x7f800000 ? Math.sign(value) * 2 ** 128 : f32FromBits(upper);
  const toLower = Math.abs(value - lowerValue);
  const toUpper = Math.abs(upperValue - value);
  if (toLower < toUpper) return lower >>> 16;
  if (toUpper < toLower) return upper >>> 16;
  return ((lower >>> 16) & 1) === 0 ? lower >>> 16 : upper >>> 16;
}

describe("float16", () => {
  const cases: [string, number, number][] = [
    ["1", 1, 0x3c00],
    ["-2", -2, 0xc000],
    ["0", 0, 0x0000],
    ["-0", -0, 0x8000],
    ["0.1", 0.1, 0x2e66],
    ["1/3", 1 / 3, 0x3555],
    ["65504 (max)", 65504, 0x7bff],
    ["65519 rounds down to max", 65519, 0x7bff],
    ["65520 rounds to Inf", 65520, 0x7c00],
    ["-65520 rounds to -Inf", -65520, 0xfc00],
    ["1e10 overflows", 1e10, 0x7c00],
    ["Infinity", Infinity, 0x7c00],
    ["-Infinity", -Infinity, 0xfc00],
    ["smallest normal 2^-14", 2 ** -14, 0x0400],
    ["largest subnormal", 1023 * 2 ** -24, 0x03ff],
    ["smallest subnormal 2^-24", 2 ** -24, 0x0001],
    ["2^-25 ties to even zero", 2 ** -25, 0x0000],
    ["just above 2^-25 rounds up", Math.fround(2 ** -25 * (1 + 2 ** -23)), 0x0001],
    ["3 * 2^-25 ties to even 2", 3 * 2 ** -25, 0x0002],
    ["5 * 2^-25 ties to even 2", 5 * 2 ** -25, 0x0002],
    ["1 + 2^-11 ties to even 1", 1 + 2 ** -11, 0x3c00],
    ["1 + 3 * 2^-11 ties to even 0x3c02", 1 + 3 * 2 ** -11, 0x3c02],
    ["just above the tie rounds up", 1 + 2 ** -11 + 2 ** -23, 0x3c01],
    ["largest subnormal + half ulp rounds to smallest normal", 1023.5 * 2 ** -24, 0x0400],
    ["1e-10 underflows", 1e-10, 0x0000],
  ];
  for (const [label, value, bits] of cases) {
    it(`encodes ${label} as ${hex(bits)}`, () => {
      expect(hex(f32ToF16Bits(value))).toBe(hex(bits));
    });
  }

  it("turns NaN into the quiet NaN 0x7e00 (sign kept)", () => {
    expect(f32ToF16Bits(NaN) & 0x7fff).toBe(0x7e00);
    expect(f32BitsToF16Bits(0xffc00000)).toBe(0xfe00);
    expect(f32BitsToF16Bits(0x7f800001)).toBe(0x7e00); // signalling NaN becomes quiet
    expect(Number.isNaN(f16BitsToF32(0x7e00))).toBe(true);
    expect(Number.isNaN(f16BitsToF32(0x7c01))).toBe(true);
  });

  it("rounds to float32 first, as .half() of a float32 tensor does", () => {
    // 1 + 2^-11 + 2^-30 is above the half tie as a double but rounds to the tie (1 + 2^-11) in float32.
    expect(f32ToF16Bits(1 + 2 ** -11 + 2 ** -30)).toBe(0x3c00);
  });

  it("widens every float16 exactly and round-trips it", () => {
    for (let h = 0; h < 0x10000; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >>> 10) & 0x1f;
      const mantissa = h & 0x3ff;
      if (exponent === 0x1f) {
        expect(mantissa === 0 ? f16BitsToF32(h) === sign * Infinity : Number.isNaN(f16BitsToF32(h))).toBe(true);
        continue;
      }
      const expected = exponent === 0 ? sign * mantissa * 2 ** -24 : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
      const got = f16BitsToF32(h);
      if (!Object.is(got, expected)) throw new Error(`${hex(h)}: ${got} != ${expected}`);
      if (f32ToF16Bits(got) !== h) throw new Error(`${hex(h)} does not round-trip`);
    }
  });

  it("matches PyTorch's c10 conversion on every float32 near a rounding boundary", () => {
    let checked = 0;
    for (let exponent = 0; exponent < 256; exponent++) {
      for (let top = 0; top < 1024; top += 3) {
        for (const low of [0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff]) {
          for (const sign of [0, 0x80000000]) {
            const bits = (sign | (exponent << 23) | (top << 13) | low) >>> 0;
            const ours = f32BitsToF16Bits(bits);
            const theirs = c10Half(bits);
            if (ours !== theirs) throw new Error(`f32 0x${bits.toString(16)}: ${hex(ours)} != c10 ${hex(theirs)}`);
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(1_000_000);
  });

  it("matches c10 on random float32 bit patterns", () => {
    let state = 12345;
    for (let i = 0; i < 300_000; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      const bits = state;
      if (f32BitsToF16Bits(bits) !== c10Half(bits)) throw new Error(`0x${bits.toString(16)}`);
    }
  });

  it("bulk encode/decode agrees with the scalar functions", () => {
    const src = new Float32Array([1, -2, 65520, 2 ** -24, NaN, 0.1, -0]);
    const halves = new Uint16Array(src.length);
    encodeF16(src, halves);
    expect([...halves].map(hex)).toEqual([...src].map((v) => hex(f32ToF16Bits(v))));
    const back = new Float32Array(src.length);
    decodeF16(halves, back);
    expect([...back]).toEqual([...halves].map((h) => f16BitsToF32(h)));
    expect(() => encodeF16(src, new Uint16Array(1))).toThrow(RangeError);
  });
});

describe("bfloat16", () => {
  const cases: [string, number, number][] = [
    ["1", 1, 0x3f80],
    ["-2", -2, 0xc000],
    ["0.1", 0.1, 0x3dcd],
    ["-0", -0, 0x8000],
    ["65504", 65504, 0x4780],
    ["1 + 2^-8 ties to even 1", 1 + 2 ** -8, 0x3f80],
    ["1 + 3 * 2^-8 ties to even 0x3f82", 1 + 3 * 2 ** -8, 0x3f82],
    ["just above the tie rounds up", 1 + 2 ** -8 + 2 ** -23, 0x3f81],
    ["float32 max rounds to Inf", f32FromBits(0x7f7fffff), 0x7f80],
    ["Infinity", Infinity, 0x7f80],
    ["-Infinity", -Infinity, 0xff80],
    ["smallest float32 subnormal rounds to 0", f32FromBits(0x00000001), 0x0000],
    ["subnormal tie goes to even", f32FromBits(0x00018000), 0x0002],
    ["smallest bf16 subnormal", f32FromBits(0x00010000), 0x0001],
  ];
  for (const [label, value, bits] of cases) {
    it(`encodes ${label} as ${hex(bits)}`, () => {
      expect(hex(f32ToBf16Bits(value))).toBe(hex(bits));
    });
  }

  it("turns every NaN into 0x7fc0, as c10 does", () => {
    expect(f32ToBf16Bits(NaN)).toBe(0x7fc0);
    expect(f32BitsToBf16Bits(0xffc00001)).toBe(0x7fc0);
    expect(f32BitsToBf16Bits(0x7f800001)).toBe(0x7fc0);
    expect(Number.isNaN(bf16BitsToF32(0x7fc0))).toBe(true);
  });

  it("rounds to nearest even on random float32 (exact-distance oracle)", () => {
    let state = 777;
    for (let i = 0; i < 300_000; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      // Force half of them onto a tie to exercise ties-to-even.
      const bits = i % 2 === 0 ? state : ((state & 0xffff0000) | 0x8000) >>> 0;
      if ((bits & 0x7fffffff) > 0x7f800000) continue;
      if (f32BitsToBf16Bits(bits) !== exactBf16(bits)) throw new Error(`0x${bits.toString(16)}`);
    }
  });

  it("widens exactly and bulk functions agree", () => {
    for (let h = 0; h < 0x10000; h += 7) {
      const value = bf16BitsToF32(h);
      if (!Number.isNaN(value) && f32ToBf16Bits(value) !== h) throw new Error(hex(h));
    }
    const src = new Float32Array([1, 0.1, NaN, -Infinity]);
    const halves = new Uint16Array(4);
    encodeBf16(src, halves);
    expect([...halves].map(hex)).toEqual(["0x3f80", "0x3dcd", "0x7fc0", "0xff80"]);
    const back = new Float32Array(4);
    decodeBf16(halves, back);
    expect(back[0]).toBe(1);
    expect(back[1]).toBe(bf16BitsToF32(0x3dcd));
    expect(Number.isNaN(back[2])).toBe(true);
    expect(back[3]).toBe(-Infinity);
  });
});

describe("half-precision range (issue 20, finding 7)", () => {
  it("firstHalfOverflow finds the first finite value that rounds to Inf; NaN and Inf are not overflow", () => {
    expect(firstHalfOverflow(new Float32Array([]), "float16")).toBe(-1);
    expect(firstHalfOverflow(new Float32Array([NaN, Infinity, -Infinity, 65504, 65519.996, -65519]), "float16")).toBe(-1);
    expect(firstHalfOverflow(new Float32Array([1, -65520]), "float16")).toBe(1);
    // the same boundary as the encoder's: everything it maps to Inf, and nothing else
    for (const v of [65504, 65519, 65519.99, 65520, 65536, 1e6, HALF_MAX.bfloat16, 3.3961e38, 3.4e38]) {
      for (const dtype of ["float16", "bfloat16"] as const) {
        const inf = dtype === "float16" ? (f32ToF16Bits(v) & 0x7fff) === 0x7c00 : (f32ToBf16Bits(v) & 0x7fff) === 0x7f80;
        expect(firstHalfOverflow(new Float32Array([v]), dtype), `${v} ${dtype}`).toBe(inf ? 0 : -1);
      }
    }
  });

  it("clampToHalfRange puts overflowing values at the largest finite value of their sign, in place", () => {
    const data = new Float32Array([70000, -1e6, 2, NaN, Infinity, 65504]);
    expect(clampToHalfRange(data, "float16")).toBe(2);
    expect([...data.slice(0, 3)]).toEqual([65504, -65504, 2]);
    expect(Number.isNaN(data[3])).toBe(true);
    expect(data[4]).toBe(Infinity);
    expect(f32ToF16Bits(data[0]!)).toBe(0x7bff);
    const b = new Float32Array([3.4e38, -3.4e38]);
    expect(clampToHalfRange(b, "bfloat16")).toBe(2);
    expect([f32ToBf16Bits(b[0]!), f32ToBf16Bits(b[1]!)]).toEqual([0x7f7f, 0xff7f]);
  });
});
