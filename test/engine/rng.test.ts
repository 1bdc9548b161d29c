/**
 * The bulk paths of rng.ts against the per-element ones they replace: fillUniform (one inlined
 * loop over the generator's state) must give exactly what one rng.uniformF32 call per element
 * gives and leave the generator exactly where those calls leave it; the branchless twist must
 * match a textbook MT19937. torch itself is checked in init.test.ts.
 */
import { describe, expect, it } from "vitest";
import { MT19937, fillNormal, fillUniform } from "../../src/engine/rng.js";

/** std::mt19937 as the reference spells it: one state update per draw, modulo indices, a branch for MATRIX_A. */
class ReferenceMT {
  private readonly mt = new Uint32Array(624);
  private i = 624;
  constructor(seed: number) {
    this.mt[0] = seed >>> 0;
    for (let j = 1; j < 624; j++) this.mt[j] = (Math.imul(1812433253, this.mt[j - 1]! ^ (this.mt[j - 1]! >>> 30)) + j) >>> 0;
  }
  next(): number {
    if (this.i >= 624) {
      for (let j = 0; j < 624; j++) {
        const y = ((this.mt[j]! & 0x80000000) | (this.mt[(j + 1) % 624]! & 0x7fffffff)) >>> 0;
        let v = this.mt[(j + 397) % 624]! ^ (y >>> 1);
        if (y % 2 === 1) v ^= 0x9908b0df;
        this.mt[j] = v >>> 0;
      }
      this.i = 0;
    }
    let y = this.mt[this.i++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

const bits = (values: Float32Array) => new Uint32Array(values.buffer, values.byteOffset, values.length);

/** The per-element path fillUniform replaces. */
function perElement(rng: MT19937, length: number, from: number, to: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.uniformF32(from, to);
  return out;
}

const SEEDS = [0, 1, 42, 5489, 2 ** 32 - 1];
const LENGTHS = [0, 1, 623, 624, 625, 1247, 100_000];
const kaiming = (fanIn: number) => Math.sqrt(3.0) * (Math.sqrt(2.0 / (1 + Math.sqrt(5) ** 2)) / Math.sqrt(fanIn));
const RANGES: [number, number][] = [
  [-0.5, 0.5],
  [0, 1],
  [-kaiming(784), kaiming(784)],
  [-0.1, 0.7],
  [-3e-7, 1e-30],
  [1.5, 1.5],
  [-1e6, 1e6 + 0.1],
];

describe("MT19937 twist", () => {
  for (const seed of [0, 1, 5489, 12345, 2 ** 31 - 1, 2 ** 32 - 1]) {
    it(`matches a textbook mt19937 over 10 twists (seed ${seed})`, () => {
      const rng = new MT19937(seed);
      const reference = new ReferenceMT(seed);
      const ours = new Uint32Array(6240);
      const theirs = new Uint32Array(6240);
      for (let i = 0; i < ours.length; i++) {
        ours[i] = rng.nextU32();
        theirs[i] = reference.next();
      }
      expect(ours).toEqual(theirs);
    });
  }
});

describe("fillUniform = one rng.uniformF32 per element, bit for bit", () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: every length and range, then the same next draws`, () => {
      for (const length of LENGTHS) {
        for (const [from, to] of RANGES) {
          const fast = new MT19937(seed);
          const slow = new MT19937(seed);
          const out = new Float32Array(length);
          fillUniform(fast, out, from, to);
          const expected = perElement(slow, length, from, to);
          expect(bits(out), `length ${length}, [${from}, ${to})`).toEqual(bits(expected));
          // state continuity: both generators continue identically, through both paths
          expect([fast.nextU32(), fast.nextU32()]).toEqual([slow.nextU32(), slow.nextU32()]);
          const more = new Float32Array(700);
          fillUniform(fast, more, from, to);
          expect(bits(more)).toEqual(bits(perElement(slow, 700, from, to)));
          expect(fast.uniformF64()).toBe(slow.uniformF64());
        }
      }
    });
  }

  it("starts and stops anywhere in a block: draws before, fills of every size in a row, draws after", () => {
    for (const before of [0, 1, 300, 623, 624, 625]) {
      const fast = new MT19937(before + 7);
      const slow = new MT19937(before + 7);
      for (let k = 0; k < before; k++) expect(fast.nextU32()).toBe(slow.nextU32());
      for (const length of [0, 1, 622, 1, 624, 0, 625, 3, 1247, 1248, 16, 5000]) {
        const out = new Float32Array(length);
        fillUniform(fast, out, -0.25, 0.75);
        expect(bits(out), `after ${before} draws, length ${length}`).toEqual(bits(perElement(slow, length, -0.25, 0.75)));
      }
      for (let k = 0; k < 1300; k++) expect(fast.nextU32()).toBe(slow.nextU32());
    }
  });

  it("fills only the view it is given", () => {
    const backing = new Float32Array(1000).fill(9);
    fillUniform(new MT19937(3), backing.subarray(100, 900), -1, 1);
    expect(bits(backing.subarray(100, 900))).toEqual(bits(perElement(new MT19937(3), 800, -1, 1)));
    expect([...backing.subarray(0, 100), ...backing.subarray(900)].every((v) => v === 9)).toBe(true);
  });

  it("fillNormal's uniform passes take the same draws (its uniforms, then a redrawn last block)", () => {
    // fillNormal over n >= 16 consumes n uniforms, plus 16 more when n % 16 != 0: the generator
    // must end where that many uniformF32(0, 1) calls leave it
    for (const n of [16, 35, 624, 1000, 2048]) {
      const rng = new MT19937(n);
      fillNormal(rng, new Float32Array(n), 0, 1);
      const slow = new MT19937(n);
      perElement(slow, n + (n % 16 === 0 ? 0 : 16), 0, 1);
      expect(rng.nextU32(), `n ${n}`).toBe(slow.nextU32());
    }
  });
});
