/**
 * The Worker inside workerd (@cloudflare/vitest-pool-workers): the real fetch handler, the
 * kernel module imported as a compiled WebAssembly.Module, Durable Objects and R2.
 */
import { SELF, env, createExecutionContext, createMessageBatch, getQueueResult, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { CloudflareJobStore, INLINE_BLOB_BYTES } from "../../worker/store.js";
import { seedRequest } from "../helpers.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { decodeBase64, encodeBase64 } from "../../src/formats/base64.js";

const auth = { authorization: "Bearer worker-test-key" };
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });

describe("the Worker in workerd", () => {
  it("healthz reports the workerd runtime and the relaxed-SIMD kernels", async () => {
    const res = await SELF.fetch("http://edgetune.test/healthz");
    expect(await res.json()).toMatchObject({ status: "ok", kernel: "wasm-relaxed-simd", runtime: "workerd" });
  });

  it("runs a sync fine-tune and stores it in one write: the job, its history, weights and input in its Durable Object", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(seedRequest(200, { training: { epochs: 5 } })));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; status: string; weights: string; engine: { runtime: string }; metrics: { history: { train_loss: number }[] } };
    expect(result.status).toBe("succeeded");
    expect(result.engine.runtime).toBe("workerd");
    const h = result.metrics.history;
    expect(h.at(-1)!.train_loss).toBeLessThan(h[0]!.train_loss);

    // right after the answer: the job, its metrics and its weights (the bytes the answer carried)
    const job = (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}`, { headers: auth })).json()) as { status: string };
    expect(job.status).toBe("succeeded");
    const metrics = (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/metrics`, { headers: auth })).json()) as { data: unknown[] };
    expect(metrics.data).toEqual(h);
    const weights = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/weights`, { headers: auth });
    expect(weights.status).toBe(200);
    const downloaded = new Uint8Array(await weights.arrayBuffer());
    expect(btoa(String.fromCharCode(...downloaded))).toBe(result.weights);
    // small blobs are held by the job's object (INLINE_BLOB_BYTES), not put to R2
    const held = await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(result.id)), async (_i, state) => [...(await state.storage.list()).keys()].sort());
    expect(held).toEqual(["blob:input", "blob:weights", "record", "ttlMs"]);
    expect(await env.BLOBS.head(`weights/${result.id}.safetensors`)).toBeNull();
    expect(await env.BLOBS.head(`inputs/${result.id}.safetensors`)).toBeNull();
  });

  it("a sync or async answer makes the next job's id and starts its object, which stores nothing until that job is stored there", async () => {
    const idTime = (id: string) => parseInt(id.slice(3, 15), 16);
    const create = async () => {
      const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(32, { training: { epochs: 1 } }), mode: "sync" }));
      expect(res.status).toBe(200);
      const { id } = (await res.json()) as { id: string };
      const job = (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}`, { headers: auth })).json()) as { created_at: string };
      return { id, createdAt: Date.parse(job.created_at) };
    };
    await create();
    await new Promise((r) => setTimeout(r, 50));
    // the id was made when the create before answered, at least 50 ms before this job's creation
    const next = await create();
    expect(next.createdAt - idTime(next.id)).toBeGreaterThanOrEqual(40);
    // an async create takes one too, and its answer (its job does not train in this isolate) makes the next
    await new Promise((r) => setTimeout(r, 50));
    const queued = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(32, { training: { epochs: 1 } }), mode: "async", placement: "gpu-node" }));
    const job = (await queued.json()) as { id: string; created_at: string };
    expect(Date.parse(job.created_at) - idTime(job.id)).toBeGreaterThanOrEqual(40);
    await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${job.id}/cancel`, { method: "POST", headers: auth });
    await new Promise((r) => setTimeout(r, 50));
    const afterAsync = await create();
    expect(afterAsync.createdAt - idTime(afterAsync.id)).toBeGreaterThanOrEqual(40);
    // a warmed object stores nothing: an id no create takes leaves nothing behind
    const unused = "ft_00000000000000000000000000000abc";
    await new CloudflareJobStore(env).warm(unused);
    expect(await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(unused)), async (_i, state) => (await state.storage.list()).size)).toBe(0);
  });

  it("weights and an input past INLINE_BLOB_BYTES go to R2 before the job is stored; GET and explain read them there", async () => {
    // 300 x 900 + 900 x 1 weights: 1.08 MB of float32; and 1,000 rows of 300 features, 1.2 MB of
    // float32, so that the run input is past it too (a sync job's input leaves out the given weights)
    const rows = 1000;
    const value = (i: number) => ((i * 37) % 101) / 1010 - 0.05;
    const given = writeSafetensors([
      { name: "fc1.weight", shape: [900, 300], data: Float32Array.from({ length: 900 * 300 }, (_, i) => value(i)) },
      { name: "fc1.bias", shape: [900], data: new Float32Array(900) },
      { name: "fc2.weight", shape: [1, 900], data: Float32Array.from({ length: 900 }, (_, i) => value(i)) },
      { name: "fc2.bias", shape: [1], data: new Float32Array(1) },
    ]);
    const request = {
      mode: "sync",
      model: { layers: [{ type: "linear", name: "fc1", in_features: 300, out_features: 900 }, { type: "relu" }, { type: "linear", name: "fc2", in_features: 900, out_features: 1 }] },
      weights: encodeBase64(given),
      data: { train: { x: Array.from({ length: rows }, (_, r) => Array.from({ length: 300 }, (_, c) => ((r * 7 + c * 13) % 17) / 17 - 0.5)), y: Array.from({ length: rows }, (_, r) => (r % 5) / 5) } },
      training: { epochs: 1, batch_size: 100, loss: { type: "mse" } },
    };
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(request));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; weights: string };
    const inR2 = await env.BLOBS.get(`weights/${result.id}.safetensors`);
    expect(inR2).not.toBeNull();
    const stored = new Uint8Array(await inR2!.arrayBuffer());
    expect(stored.byteLength).toBeGreaterThan(INLINE_BLOB_BYTES);
    const input = await env.BLOBS.head(`inputs/${result.id}.safetensors`);
    expect(input!.size).toBeGreaterThan(INLINE_BLOB_BYTES);
    const held = await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(result.id)), async (_i, state) => [...(await state.storage.list()).keys()].sort());
    expect(held).toEqual(["record", "ttlMs"]);
    const downloaded = new Uint8Array(await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/weights`, { headers: auth })).arrayBuffer());
    expect(downloaded).toEqual(stored);
    // explain reads the model and data back from the R2 input
    const explained = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/explain`, post({ method: "integrated_gradients", steps: 4, target: 0, rows: [request.data.train.x[0]] }));
    expect(explained.status).toBe(200);
    expect(((await explained.json()) as { attributions: number[][] }).attributions[0]).toHaveLength(300);
  });

  it("a safetensors dataset as a multipart part and as base64 JSON trains in workerd as the inline rows", async () => {
    const request = seedRequest(64, { training: { epochs: 2, batch_size: 16 } });
    const { x, y } = request.data.train;
    const dataset = writeSafetensors([
      { name: "x", shape: [x.length, 10], data: Float32Array.from(x.flat()) },
      { name: "y", shape: [y.length], data: Float32Array.from(y as number[]) },
    ]);
    const weightsOf = async (res: Response) => {
      expect(res.status).toBe(200);
      return ((await res.json()) as { weights: string }).weights;
    };
    const inline = await weightsOf(await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(request)));
    const { data: _data, ...rest } = request;
    const form = new FormData();
    form.set("request", JSON.stringify({ ...rest, data: {} }));
    form.set("train", new Blob([dataset as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }), "train.safetensors");
    const part = await weightsOf(await SELF.fetch("http://edgetune.test/v1/fine-tunes", { method: "POST", headers: auth, body: form }));
    const base64 = await weightsOf(await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...rest, data: { train: { safetensors: encodeBase64(dataset) } } })));
    expect(part).toBe(inline);
    expect(base64).toBe(inline);
  });

  it("a float16 base as a multipart weights part is staged in kernel memory; the weights file goes to R2 from there", async () => {
    // fc1 2400 x 2400 frozen in float16 (11.5 MB; its widening scratch 23 MB), fc2 trains: a
    // kernel memory over 32 MiB, so the result's file is written into the memory training freed
    // and put to R2 from that view (and the base64 JSON of the same request fits MAX_BODY_BYTES)
    const F = 2400;
    const weights = writeSafetensors(
      [
        { name: "0.weight", shape: [F, F], data: Float32Array.from({ length: F * F }, (_, i) => Math.sin(i) / 64) },
        { name: "0.bias", shape: [F], data: new Float32Array(F) },
        { name: "2.weight", shape: [1, F], data: Float32Array.from({ length: F }, (_, i) => Math.cos(i) / 64) },
        { name: "2.bias", shape: [1], data: new Float32Array(1) },
      ],
      { dtype: "float16" },
    );
    const request = {
      model: { layers: [{ type: "linear", in_features: F, out_features: F }, { type: "relu" }, { type: "linear", in_features: F, out_features: 1 }], base_dtype: "float16" },
      trainable: ["2"],
      data: { train: { x: Array.from({ length: 4 }, (_, i) => Array.from({ length: F }, (_, j) => Math.sin(i + j) / 8)), y: [0.5, -0.5, 1, 0] } },
      training: { epochs: 2, batch_size: 2, optimizer: { type: "sgd", lr: 0.01 }, seed: 3 },
      mode: "sync",
    };
    const form = new FormData();
    form.set("weights", new Blob([weights as Uint8Array<ArrayBuffer>]), "model.safetensors");
    form.set("request", JSON.stringify(request));
    const staged = await SELF.fetch("http://edgetune.test/v1/fine-tunes", { method: "POST", headers: auth, body: form });
    expect(staged.status).toBe(200);
    const result = (await staged.json()) as { id: string; status: string; weights: string; metrics: { history: unknown[] } };
    expect(result.status).toBe("succeeded");
    // the reference: the same checkpoint as a base64 text field (not a file: held in the heap, not staged)
    const asText = new FormData();
    asText.set("weights", encodeBase64(weights));
    asText.set("request", JSON.stringify(request));
    const inlineRes = await SELF.fetch("http://edgetune.test/v1/fine-tunes", { method: "POST", headers: auth, body: asText });
    const inline = (await inlineRes.json()) as typeof result;
    expect(inlineRes.status, JSON.stringify(inline).slice(0, 400)).toBe(200);
    expect(result.metrics.history).toEqual(inline.metrics.history);
    expect(result.weights === inline.weights).toBe(true);
    const stored = new Uint8Array(await (await env.BLOBS.get(`weights/${result.id}.safetensors`))!.arrayBuffer());
    expect(encodeBase64(stored) === result.weights).toBe(true);
  });

  it("a small weights file written into a large kernel memory is stored in the job's object as its own bytes, not the memory", async () => {
    // 1,024 rows through a 4,096-wide hidden layer: buffers of 16 MiB, a kernel memory over 32 MiB,
    // so the result's file (49k parameters, 197 KB) is written into the memory training freed.
    // Serialising that view to the job's object would send the whole memory (RPC's limit is 32 MiB)
    const H = 4096;
    const request = {
      mode: "sync",
      model: { layers: [{ type: "linear", in_features: 10, out_features: H }, { type: "relu" }, { type: "linear", in_features: H, out_features: 1 }] },
      data: { train: { x: Array.from({ length: 1024 }, (_, i) => Array.from({ length: 10 }, (_, j) => Math.sin(i + j))), y: Array.from({ length: 1024 }, (_, i) => Math.cos(i)) } },
      training: { epochs: 1, batch_size: 1024, optimizer: { type: "sgd", lr: 0.01 }, seed: 3 },
    };
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(request));
    const result = (await res.json()) as { id: string; status: string; weights: string; plan: { memory_bytes: number } };
    expect(res.status, JSON.stringify(result).slice(0, 400)).toBe(200);
    expect(result.plan.memory_bytes).toBeGreaterThan(32 * 2 ** 20);
    const file = decodeBase64(result.weights);
    expect(file.byteLength).toBeLessThan(INLINE_BLOB_BYTES);
    expect(await env.BLOBS.head(`weights/${result.id}.safetensors`)).toBeNull(); // held by the job's object
    const downloaded = new Uint8Array(await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/weights`, { headers: auth })).arrayBuffer());
    expect(downloaded).toEqual(file);
  });

  it("lists the key's jobs from its Durable Object index", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(seedRequest(32, { training: { epochs: 1 } })));
    const { id } = (await res.json()) as { id: string };
    const list = (await (await SELF.fetch("http://edgetune.test/v1/fine-tunes?limit=100", { headers: auth })).json()) as { data: { id: string }[] };
    expect(list.data.map((j) => j.id)).toContain(id);
  });

  it("serves openapi.json without a key", async () => {
    const doc = (await (await SELF.fetch("http://edgetune.test/openapi.json")).json()) as { openapi: string };
    expect(doc.openapi).toBe("3.1.0");
  });

  it("answers bad requests with problem+json, never a 5xx", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ model: { layers: [] }, data: {} }));
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const unauthorized = await SELF.fetch("http://edgetune.test/v1/fine-tunes", { method: "POST", body: "{}" });
    expect(unauthorized.status).toBe(401);
  });

  it("the default export is a fetch handler (unit call)", async () => {
    const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const res = await worker.fetch(new Request("http://edgetune.test/healthz"), env, ctx);
    expect(res.status).toBe(200);
  });
});

describe("asynchronous jobs in workerd (Queue, Durable Objects, R2)", () => {
  const nodeAuth = { authorization: "Bearer edgetune-dev-node-token", "content-type": "application/json" };

  async function claimWithin(ms: number) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const res = await SELF.fetch("http://edgetune.test/v1/nodes/claim", { method: "POST", headers: nodeAuth, body: JSON.stringify({ node: "test-node" }) });
      if (res.status === 200) return (await res.json()) as { job: { id: string }; lease_id: string };
      expect(res.status).toBe(204);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("no job was dispatched to GPU nodes");
  }

  it("a gpu-node job is queued, dispatched through the Queue, claimed and completed over /v1/nodes", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "async", placement: "gpu-node" }));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const claim = await claimWithin(10_000);
    expect(claim.job.id).toBe(id);
    const input = await SELF.fetch(`http://edgetune.test/v1/nodes/jobs/${id}/input?lease_id=${claim.lease_id}`, { headers: nodeAuth });
    expect(input.status).toBe(200);
    expect((await input.arrayBuffer()).byteLength).toBeGreaterThan(1000);
    const progress = await SELF.fetch(`http://edgetune.test/v1/nodes/jobs/${id}/progress`, {
      method: "POST", headers: nodeAuth, body: JSON.stringify({ lease_id: claim.lease_id, epochs: [{ epoch: 1, train_loss: 0.5, lr: 0.001 }] }),
    });
    expect(await progress.json()).toEqual({ ok: true, cancel: false });
    const job = (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}`, { headers: auth })).json()) as { status: string; metrics: { history: unknown[] } };
    expect(job.status).toBe("running");
    expect(job.metrics.history).toHaveLength(1);
    const stale = await SELF.fetch(`http://edgetune.test/v1/nodes/jobs/${id}/heartbeat`, { method: "POST", headers: nodeAuth, body: JSON.stringify({ lease_id: "not-the-lease" }) });
    expect(stale.status).toBe(409);
  });

  it("an edge async job is trained by the queue consumer", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "async" }));
    const { id } = (await res.json()) as { id: string };
    const deadline = Date.now() + 10_000;
    let status = "queued";
    while (Date.now() < deadline && status !== "succeeded") {
      await new Promise((r) => setTimeout(r, 100));
      status = ((await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}`, { headers: auth })).json()) as { status: string }).status;
    }
    expect(status).toBe("succeeded");
    expect((await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}/weights`, { headers: auth })).status).toBe(200);
  });
});

describe("queue deliveries are idempotent", () => {
  const nodeAuth = { authorization: "Bearer edgetune-dev-node-token", "content-type": "application/json" };
  const deliver = async (queue: string, id: string) => {
    const batch = createMessageBatch(queue, [{ id: crypto.randomUUID(), timestamp: new Date(), attempts: 2, body: { id } }]);
    const ctx = createExecutionContext();
    await worker.queue(batch as never, env, ctx);
    return getQueueResult(batch, ctx);
  };
  const jobOf = async (id: string) => (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}`, { headers: auth })).json()) as Record<string, any>;
  const claim = () => SELF.fetch("http://edgetune.test/v1/nodes/claim", { method: "POST", headers: nodeAuth, body: JSON.stringify({ node: "n", wait_ms: 3000 }) });

  it("a redelivered message for a finished edge job does not run it again", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(32, { training: { epochs: 1 } }), mode: "async" }));
    const { id } = (await res.json()) as { id: string };
    let job = await jobOf(id);
    for (let i = 0; i < 100 && job.status !== "succeeded"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      job = await jobOf(id);
    }
    expect(job.status).toBe("succeeded");
    const result = await deliver("edgetune-jobs", id);
    expect(result.explicitAcks).toHaveLength(1);
    expect(await jobOf(id)).toEqual(job);
  });

  it("redelivered messages for a GPU job give one claim, not two", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(32, { training: { epochs: 1 } }), mode: "async", placement: "gpu-node" }));
    const { id } = (await res.json()) as { id: string };
    await deliver("edgetune-jobs", id);
    await deliver("edgetune-jobs", id);
    const first = await claim();
    expect(first.status).toBe(200);
    expect(((await first.json()) as { job: { id: string } }).job.id).toBe(id);
    await deliver("edgetune-jobs", id); // a late redelivery while it runs
    expect((await claim()).status).toBe(204);
    expect((await jobOf(id)).status).toBe("running");
  });

  it("a dead-lettered message ends its job failed with the reason", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(32, { training: { epochs: 1 } }), mode: "async", placement: "gpu-node" }));
    const { id } = (await res.json()) as { id: string };
    await deliver("edgetune-jobs-dlq", id);
    expect(await jobOf(id)).toMatchObject({ status: "failed", error: { code: "failed", message: expect.stringMatching(/could not be dispatched/) } });
  });
});

describe("rate limits in workerd", () => {
  it("a key's Durable Object bucket refuses past its burst with 429 and Retry-After", async () => {
    const key = { authorization: "Bearer rate-test-key" }; // its own bucket: the other tests keep theirs
    let limited: Response | undefined;
    for (let i = 0; i < 80 && !limited; i++) {
      const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes?limit=1", { headers: key });
      if (res.status === 429) limited = res;
      else expect(res.status).toBe(200);
    }
    expect(limited).toBeDefined();
    expect(Number(limited!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(limited!.headers.get("content-type")).toBe("application/problem+json");
  });
});

describe("Idempotency-Key in workerd", () => {
  it("a retried create returns the first job, reserved in the key's Durable Object", async () => {
    const body = { ...seedRequest(32, { training: { epochs: 1 } }), mode: "async", placement: "gpu-node" };
    const init = () => ({ method: "POST", headers: { "content-type": "application/json", "idempotency-key": "wk-1", ...auth }, body: JSON.stringify(body) });
    const a = (await (await SELF.fetch("http://edgetune.test/v1/fine-tunes", init())).json()) as { id: string };
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", init());
    expect(res.status).toBe(202);
    expect(res.headers.get("idempotent-replayed")).toBe("true");
    expect(((await res.json()) as { id: string }).id).toBe(a.id);
  });

  it("a retried sync create replays the stored answer: the same id, history and weights (held by the job's object)", async () => {
    const body = { ...seedRequest(64, { training: { epochs: 3 } }), mode: "sync" };
    const init = () => ({ method: "POST", headers: { "content-type": "application/json", "idempotency-key": "wk-sync-1", ...auth }, body: JSON.stringify(body) });
    const first = await SELF.fetch("http://edgetune.test/v1/fine-tunes", init());
    expect(first.status).toBe(200);
    const a = (await first.json()) as { id: string; weights: string; metrics: { history: unknown[] } };
    // at once, with no wait after the first answer
    const again = await SELF.fetch("http://edgetune.test/v1/fine-tunes", init());
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const b = (await again.json()) as typeof a;
    expect(b.id).toBe(a.id);
    expect(b.weights).toBe(a.weights);
    expect(b.weights.length).toBeGreaterThan(0);
    expect(b.metrics.history).toEqual(a.metrics.history);
  });
});
