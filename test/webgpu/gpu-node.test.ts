/**
 * GPU nodes and WebGPU: a claimed job trains on the node's device when its steps are large
 * enough (the job's engine says "webgpu"), on WASM otherwise or without a device; the node
 * logs which adapter it found and refuses a software one unless EDGETUNE_WEBGPU=software.
 */
import { describe, expect, it } from "vitest";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { optionsFromEnv, runGpuNode } from "../../src/node/gpu-node.js";
import { seedRequest } from "../helpers.js";
import { NODE_TOKEN, testApp } from "../api/app.js";
import { SKIP_REASON, device, software } from "./device.js";
import { runClaimedExplanation } from "../../src/jobs/explain-runner.js";
import { worstRatio } from "../parity/compare.js";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function oneJob(options: Parameters<typeof runClaimedJob>[3]) {
  const t = await testApp();
  const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
  const res = await t.app.request("/v1/fine-tunes", json({ ...seedRequest(96, { training: { epochs: 2, batch_size: 32 } }), mode: "async", placement: "gpu-node" }));
  const { id } = (await res.json()) as { id: string };
  const lines: string[] = [];
  expect(await runClaimedJob(node, (await node.claim("node-a"))!, t.runtime, { ...options, log: (l) => lines.push(l) })).toBe("completed");
  const job = (await (await t.app.request(`/v1/fine-tunes/${id}`)).json()) as { status: string; engine: { kernel: string } };
  return { job, lines, variant: t.runtime.variant };
}

/** Runs a node against an edge that is not there, until it has said what it will train on. */
async function nodeLog(webgpu: "auto" | "off" | "software"): Promise<string[]> {
  const lines: string[] = [];
  const controller = new AbortController();
  await runGpuNode({
    url: "http://127.0.0.1:9", token: "t", nodeId: "n", pollMs: 10, waitMs: 10, threads: 1, webgpu, signal: controller.signal,
    log: (line) => {
      lines.push(line);
      if (line.startsWith("pulling jobs")) controller.abort();
    },
  });
  return lines;
}

describe("GPU node settings", () => {
  it("EDGETUNE_WEBGPU: unset is auto, 0 or off turns WebGPU off, software accepts SwiftShader", () => {
    expect(optionsFromEnv({}).webgpu).toBe("auto");
    expect(optionsFromEnv({ EDGETUNE_WEBGPU: "0" }).webgpu).toBe("off");
    expect(optionsFromEnv({ EDGETUNE_WEBGPU: "off" }).webgpu).toBe("off");
    expect(optionsFromEnv({ EDGETUNE_WEBGPU: "software" }).webgpu).toBe("software");
    expect(optionsFromEnv({ EDGETUNE_WEBGPU_MIN_FLOPS_PER_STEP: "5e8" }).gpuMinFlopsPerStep).toBe(5e8);
  });

  it("with WebGPU off the node says so and trains on WASM", async () => {
    const lines = await nodeLog("off");
    expect(lines[0]).toMatch(/^WebGPU: off/);
    expect(lines[1]).not.toMatch(/webgpu/);
  });
});

describe.skipIf(!device)(`GPU nodes on WebGPU (${SKIP_REASON})`, () => {
  it("a job with large enough steps trains on the node's device; the job's engine says webgpu", async () => {
    const { job, lines } = await oneJob({ placement: "gpu-node", gpu: device, gpuMinFlopsPerStep: 0 });
    expect(job).toMatchObject({ status: "succeeded", engine: { kernel: "webgpu" } });
    expect(lines.join("\n")).toMatch(/training \(attempt 1\) on webgpu/);
  });

  it("smaller jobs, or no device, fall back to WASM", async () => {
    const small = await oneJob({ placement: "gpu-node", gpu: device });
    expect(small.job).toMatchObject({ status: "succeeded", engine: { kernel: small.variant } });
    const none = await oneJob({ placement: "gpu-node" });
    expect(none.job.engine.kernel).toBe(none.variant);
  });

  it.skipIf(!software)("a node refuses a software adapter unless EDGETUNE_WEBGPU=software, and logs what it found", async () => {
    const auto = await nodeLog("auto");
    expect(auto[0]).toMatch(/^WebGPU: not used \(only a software adapter: .*swiftshader/i);
    const soft = await nodeLog("software");
    expect(soft[0]).toMatch(/^WebGPU: .*swiftshader.*software adapter: for testing, never for speed/i);
    expect(soft[1]).toMatch(/webgpu\)$/);
  });
});

describe.skipIf(!device)(`explanation tasks on a GPU node's WebGPU device (${SKIP_REASON})`, () => {
  it("a node with a device explains on it (engine webgpu), with the numbers the Worker's WASM gives", async () => {
    const t = await testApp();
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
    const { id } = (await (await t.app.request("/v1/fine-tunes", json(seedRequest(64, { training: { epochs: 2 } })))).json()) as { id: string };
    const spec = { method: "integrated_gradients", steps: 32, target: 0 };
    const inWorker = (await (await t.app.request(`/v1/fine-tunes/${id}/explain`, json(spec))).json()) as { attributions: number[][] };
    const res = await t.app.request(`/v1/fine-tunes/${id}/explain`, json({ ...spec, placement: "gpu-node" }));
    expect(res.status).toBe(202);
    // the device does the work: its queue gets the explanation's dispatches
    let submits = 0;
    const submit = device!.queue.submit.bind(device!.queue);
    device!.queue.submit = (buffers) => {
      submits++;
      return submit(buffers);
    };
    try {
      expect(await runClaimedExplanation(node, (await node.claim("gpu-node-a"))!, t.runtime, { gpu: device })).toBe("completed");
    } finally {
      device!.queue.submit = submit;
    }
    expect(submits).toBeGreaterThan(0);
    const done = (await (await t.app.request(res.headers.get("location")!)).json()) as { status: string; engine: { kernel: string }; result: { attributions: number[][] } };
    expect(done.status).toBe("succeeded");
    expect(done.engine.kernel).toBe("webgpu");
    const worst = worstRatio(done.result.attributions.flat(), inWorker.attributions.flat());
    console.log(`explanation task on WebGPU${software ? " (SwiftShader)" : ""} vs WASM: largest |difference| ${worst.abs.toExponential(2)}`);
    expect(worst.ratio).toBeLessThanOrEqual(1);
  });
});
