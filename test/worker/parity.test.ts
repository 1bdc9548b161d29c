/**
 * PyTorch parity inside workerd on the relaxed-SIMD build (relaxed_madd), the build the Worker
 * runs: every fixture case within SPEC section 4's tolerance, in-process and over HTTP (a sync
 * POST to the Worker gives the same weights, bit for bit, as the engine called directly).
 */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { encodeBase64 } from "../../src/formats/base64.js";
import type { FineTuneResult } from "../../src/schema/result.js";
import relaxed from "../../build/wasm/relaxed-simd.wasm";
import { createEngine } from "../../src/engine/train.js";
import { GROUPS, PRIVACY_GROUPS, replay, type ParityCase } from "../parity/compare.js";
import optimizers from "../parity/fixtures/optimizers.json";
import losses from "../parity/fixtures/losses.json";
import schedules from "../parity/fixtures/schedules.json";
import training from "../parity/fixtures/training.json";
import graph from "../parity/fixtures/graph.json";
import attention from "../parity/fixtures/attention.json";
import norm from "../parity/fixtures/norm.json";
import tokens from "../parity/fixtures/tokens.json";
import conv from "../parity/fixtures/conv.json";
import transformer from "../parity/fixtures/transformer.json";
import huggingface from "../parity/fixtures/huggingface.json";
import privacy from "../parity/fixtures/privacy.json";

const fixtures: Record<(typeof GROUPS)[number] | (typeof PRIVACY_GROUPS)[number], { cases: unknown[] }> = { optimizers, losses, schedules, training, graph, attention, norm, tokens, conv, transformer, huggingface, privacy };
/** As many keys as test/worker/vitest.config.ts configures (parity-key-0..5): a burst of 60 sync POSTs each. */
const PARITY_KEYS = 6;
const engine = createEngine({ module: relaxed, variant: "wasm-relaxed-simd", runtime: "workerd" });

describe("PyTorch parity in workerd (wasm-relaxed-simd)", () => {
  // several keys, so that every sync POST stays within its key's rate-limit burst
  let posts = 0;
  for (const group of [...GROUPS, ...PRIVACY_GROUPS]) {
    for (const c of fixtures[group].cases as ParityCase[]) {
      it(`${group}/${c.name}`, async () => {
        const { result, worst } = await replay(c, (request) => engine.train(request));
        expect(result.engine).toMatchObject({ kernel: "wasm-relaxed-simd", runtime: "workerd" });
        expect(result.metrics.steps).toBe(c.expected.steps);
        expect(result.metrics.best_epoch).toBe(c.expected.best_epoch);
        expect(worst).toBeLessThanOrEqual(1);

        // the same request over HTTP (weights as base64, mode sync): the same numbers
        const http = await replay(c, async (request) => {
          const weights = request.weights instanceof Uint8Array ? encodeBase64(request.weights) : request.weights;
          const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer parity-key-${posts++ % PARITY_KEYS}` },
            body: JSON.stringify({ ...request, weights, mode: "sync" }),
          });
          expect(res.status).toBe(200);
          return (await res.json()) as FineTuneResult;
        });
        expect(http.result.weights).toBe(result.weights);
        expect(http.result.metrics.history).toEqual(result.metrics.history);
      });
    }
  }
});
