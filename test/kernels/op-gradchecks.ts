/**
 * The op kinds whose whole op (the OpDef's forward and backward over a KernelOpContext, not only
 * its kernels) test/kernels/gradcheck.test.ts checks against a float64 formula, on each WASM
 * build and the reference twins. gradcheck.test.ts's coverage test holds it to this list, and
 * test/engine/registry.test.ts accepts an op kind listed here as exercised when no parity
 * fixture emits it yet (rope and mul until the Hugging Face architectures' fixtures do).
 */
import type { OpKind } from "../../src/engine/ops/types.js";

export const OP_GRADCHECKS = ["attention", "conv", "max_pool", "avg_pool", "rope", "mul"] as const satisfies readonly OpKind[];
