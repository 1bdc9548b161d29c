/**
 * A GPU node holding a valid token cannot poison a job (issue 20, finding 3): with a real
 * `wrangler dev`, a hand-driven node (plain HTTP with the node token, as a hostile node would
 * send) uploads wrong weights, completes a cancelled job as succeeded, sends an oversized body
 * and a 10,000-epoch progress report. Each is answered 4xx naming what is wrong, never applied,
 * never a 5xx. docs/security.md states the trust model these enforce.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_NODE_TOKEN } from "../../src/api/auth.js";
import { NODE_JSON_BODY_MAX_BYTES } from "../../src/schema/node.js";
import { parseSafetensors, writeSafetensors, type WritableTensor } from "../../src/formats/safetensors.js";
import { classificationData } from "../helpers.js";
import { eventually, freePort, pastWranglerProxy503, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-node-trust-e2e-"));
const persist = join(work, "state");

/** 4 -> 8 -> 3: the node must upload fc1.weight [8, 4], fc1.bias [8], fc2.weight [3, 8], fc2.bias [3]. */
function job(epochs = 3, dtype: "float32" | "float16" = "float32") {
  return {
    mode: "async",
    placement: "gpu-node",
    model: { layers: [{ type: "linear", name: "fc1", in_features: 4, out_features: 8 }, { type: "relu" }, { type: "linear", name: "fc2", in_features: 8, out_features: 3 }] },
    data: { train: classificationData(64) },
    training: { epochs, batch_size: 16, loss: { type: "cross_entropy" } },
    output: { dtype },
  };
}

/** The file this model's run produces, with `fill` as every value. */
function weightsFile(fill: number, options: { dtype?: "float32" | "float16"; change?: (t: WritableTensor[]) => WritableTensor[] } = {}) {
  const shapes: [string, number[]][] = [["fc1.weight", [8, 4]], ["fc1.bias", [8]], ["fc2.weight", [3, 8]], ["fc2.bias", [3]]];
  const tensors = shapes.map(([name, shape]) => ({ name, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill) }));
  return writeSafetensors(options.change ? options.change(tensors) : tensors, { dtype: options.dtype ?? "float32", metadata: { format: "pt" } });
}

function outcome(status: "succeeded" | "cancelled", epochs = 1) {
  return {
    status,
    metrics: { history: Array.from({ length: epochs }, (_, i) => ({ epoch: i + 1, train_loss: 1, lr: 0.001 })), best_epoch: 1, steps: 4 * epochs, samples_per_second: 1, duration_ms: 1 },
    plan: { params: 67, trainable_params: 67, flops: 1, memory_bytes: 1, steps: 4 * epochs, placement: "gpu-node" },
    engine: { kernel: "js-reference", threads: 1, runtime: "node" },
  };
}

describe("a GPU node cannot poison results (issue 20, finding 3)", () => {
  let edge: Proc | undefined;
  let base = "";
  const auth = { authorization: `Bearer ${DEV_NODE_TOKEN}` };

  const submit = async (body: unknown): Promise<string> => {
    const res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const getJob = async (id: string) => (await (await fetch(`${base}/v1/fine-tunes/${id}`)).json()) as Record<string, any>;
  const node = (path: string, body: unknown) =>
    fetch(`${base}/v1/nodes${path}`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  /** Claims until `id` is claimed; another job (one an earlier test left running, back after its lease) is failed. */
  const claim = (id: string) =>
    eventually(`a claim of ${id}`, 20_000, async () => {
      const res = await node("/claim", { node: "hostile-node", wait_ms: 1000 });
      if (res.status !== 200) return undefined;
      const body = (await res.json()) as { job: { id: string }; lease_id: string };
      if (body.job.id === id) return body.lease_id;
      await node(`/jobs/${body.job.id}/complete`, { lease_id: body.lease_id, weights_key: null, outcome: { failure: "not this test's job" } });
      return undefined;
    });
  const upload = (id: string, leaseId: string, bytes: Uint8Array) =>
    fetch(`${base}/v1/nodes/jobs/${id}/weights?lease_id=${leaseId}`, { method: "PUT", headers: { ...auth, "content-type": "application/octet-stream" }, body: bytes as BodyInit });

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    edge = await startWranglerDev(port, persist);
  });
  afterAll(async () => {
    await stop(edge);
    rmSync(work, { recursive: true, force: true });
  });

  it("refuses weights of the wrong shape, names, dtype or with non-finite values (422 naming the tensor); the job never serves them", async () => {
    const id = await submit(job());
    const leaseId = await claim(id);
    const refused = async (bytes: Uint8Array, tensor: RegExp) => {
      const res = await upload(id, leaseId, bytes);
      expect(res.status).toBe(422);
      const problem = (await res.json()) as { errors: { path: string; message: string }[] };
      expect(problem.errors.map((e) => `${e.path}: ${e.message}`).join("\n")).toMatch(tensor);
    };
    // the finding's file: a wrong shape, all NaN
    await refused(weightsFile(NaN, { change: (t) => [{ ...t[0]!, shape: [1, 32] }, ...t.slice(1)] }), /fc1\.weight/);
    await refused(weightsFile(NaN), /fc1\.weight.*(finite|NaN)/);
    await refused(weightsFile(Infinity), /fc1\.weight.*(finite|Inf)/);
    await refused(weightsFile(0.5, { change: (t) => t.slice(1) }), /fc1\.weight/); // one missing
    await refused(weightsFile(0.5, { change: (t) => [...t, { name: "extra", shape: [1], data: new Float32Array(1) }] }), /extra/);
    await refused(weightsFile(0.5, { dtype: "float16" }), /F16|float16|dtype/); // the job asked for float32

    // a completion naming weights that were never stored is refused, and the job goes on running
    const lost = await node(`/jobs/${id}/complete`, { lease_id: leaseId, weights_key: `weights/${id}/${leaseId}.safetensors`, outcome: outcome("succeeded") });
    expect(lost.status).toBe(422);
    expect(await lost.text()).toMatch(/weights_key/);
    expect((await getJob(id)).status).toBe("running");

    // the right file is taken, and is what the owner downloads
    const good = weightsFile(0.25);
    const stored = await upload(id, leaseId, good);
    expect(stored.status).toBe(200);
    const { weights_key } = (await stored.json()) as { weights_key: string };
    const done = await node(`/jobs/${id}/complete`, { lease_id: leaseId, weights_key, outcome: outcome("succeeded") });
    expect(done.status).toBe(200);
    expect(await done.json()).toEqual({ accepted: true });
    expect((await getJob(id)).status).toBe("succeeded");
    const downloaded = new Uint8Array(await (await fetch(`${base}/v1/fine-tunes/${id}/weights`)).arrayBuffer());
    expect([...parseSafetensors(downloaded).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    expect(Buffer.from(downloaded).equals(Buffer.from(good))).toBe(true);
  });

  it("a succeeded outcome without weights is refused, and a cancel-requested job that a node completes as succeeded ends cancelled", async () => {
    const id = await submit(job());
    const leaseId = await claim(id);
    const bare = await node(`/jobs/${id}/complete`, { lease_id: leaseId, weights_key: null, outcome: outcome("succeeded") });
    expect(bare.status).toBe(400);
    expect(await bare.text()).toMatch(/weights_key/);
    expect((await getJob(id)).status).toBe("running");

    expect((await fetch(`${base}/v1/fine-tunes/${id}/cancel`, { method: "POST" })).status).toBe(200);
    const beat = await node(`/jobs/${id}/heartbeat`, { lease_id: leaseId });
    expect(await beat.json()).toEqual({ ok: true, cancel: true });
    const stored = await upload(id, leaseId, weightsFile(0.25));
    const { weights_key } = (await stored.json()) as { weights_key: string };
    const done = await node(`/jobs/${id}/complete`, { lease_id: leaseId, weights_key, outcome: outcome("succeeded") });
    expect(await done.json()).toEqual({ accepted: true });
    const final = await getJob(id);
    expect(final.status).toBe("cancelled");
  });

  it(`answers 413 to a /v1/nodes body over ${NODE_JSON_BODY_MAX_BYTES} bytes, with or without a Content-Length`, async () => {
    const id = await submit(job());
    const leaseId = await claim(id);
    const padding = " ".repeat(NODE_JSON_BODY_MAX_BYTES);
    const big = await pastWranglerProxy503(() => node(`/jobs/${id}/progress`, `{"lease_id":${JSON.stringify(leaseId)},"epochs":[]${padding}}`));
    expect(big.status).toBe(413);
    // streamed: no Content-Length to trust, the reader counts
    const streamed = await pastWranglerProxy503(() => {
      const chunks = [new TextEncoder().encode(`{"lease_id":${JSON.stringify(leaseId)},"epochs":[]`), new TextEncoder().encode(padding), new TextEncoder().encode("}")];
      const stream = new ReadableStream<Uint8Array>({ pull: (c) => (chunks.length ? c.enqueue(chunks.shift()!) : c.close()) });
      return fetch(`${base}/v1/nodes/jobs/${id}/progress`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: stream, duplex: "half" } as RequestInit);
    });
    expect(streamed.status).toBe(413);
    // the job is untouched: a normal report still works
    const ok = await pastWranglerProxy503(() => node(`/jobs/${id}/progress`, { lease_id: leaseId, epochs: [{ epoch: 1, train_loss: 1, lr: 0.1 }] }));
    expect(ok.status, `${await ok.clone().text()}\n--- wrangler dev:\n${edge!.output().slice(-3000)}`).toBe(200);
    expect(await ok.json()).toEqual({ ok: true, cancel: false });
  });

  it("validates reported metrics: 10,000 epochs in sequence are taken; out of sequence, past the run's epochs or not finite is a 422 naming the entry", async () => {
    const id = await submit(job(20_000));
    const leaseId = await claim(id);
    const epochs = (from: number, count: number) => Array.from({ length: count }, (_, i) => ({ epoch: from + i, train_loss: 1 / (from + i), lr: 0.001 }));
    const report = (body: unknown) => node(`/jobs/${id}/progress`, body);

    const large = await report({ lease_id: leaseId, epochs: epochs(1, 10_000) });
    expect(large.status).toBe(200);
    expect(await large.json()).toEqual({ ok: true, cancel: false });
    expect((await getJob(id)).metrics.epochs).toBe(10_000);

    const expectRefused = async (body: unknown, path: RegExp) => {
      const res = await report(body);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      const problem = (await res.json()) as { errors: { path: string }[] };
      expect(problem.errors.map((e) => e.path).join(" ")).toMatch(path);
    };
    await expectRefused({ lease_id: leaseId, epochs: [{ epoch: 10_001, train_loss: 1, lr: 0.1 }, { epoch: 10_003, train_loss: 1, lr: 0.1 }] }, /epochs\[1\]\.epoch/);
    await expectRefused({ lease_id: leaseId, epochs: [{ epoch: 10_005, train_loss: 1, lr: 0.1 }] }, /epochs\[0\]\.epoch/); // a gap after 10,000
    await expectRefused({ lease_id: leaseId, epochs: [{ epoch: 10_001, train_loss: "1e999", lr: 0.1 }] }, /epochs\[0\]\.train_loss/);
    const infinite = await report(`{"lease_id":${JSON.stringify(leaseId)},"epochs":[{"epoch":10001,"train_loss":1e999,"lr":0.1}]}`);
    expect(infinite.status).toBe(400);
    expect(await infinite.text()).toMatch(/epochs\[0\]\.train_loss/);
    expect((await getJob(id)).metrics.epochs).toBe(10_000);

    // past the run's epochs
    const short = await submit(job(3));
    const shortLease = await claim(short);
    const past = await node(`/jobs/${short}/progress`, { lease_id: shortLease, epochs: epochs(1, 4) });
    expect(past.status).toBe(422);
    expect(await past.text()).toMatch(/epochs\[3\]\.epoch/);
    // a retried report repeats epochs already taken: still fine
    expect((await node(`/jobs/${short}/progress`, { lease_id: shortLease, epochs: epochs(1, 2) })).status).toBe(200);
    expect((await node(`/jobs/${short}/progress`, { lease_id: shortLease, epochs: epochs(1, 3) })).status).toBe(200);
    expect((await getJob(short)).metrics.epochs).toBe(3);
  });
});
