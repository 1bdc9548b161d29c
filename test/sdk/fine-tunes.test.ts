/**
 * The SDK against the real app (app.request() as the injected fetch): create (JSON, multipart,
 * sync, async), retrieve, list pagination, events (typed, resumed, aborted on break),
 * waitForCompletion (stream and polling), weights, cancel.
 */
import { DEFAULT_EDGE_BUDGET } from "../../src/api/budget.js";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseSafetensors, writeSafetensors } from "../../src/formats/safetensors.js";
import { encodeBase64 } from "../../src/formats/base64.js";
import { ConflictError, decodeWeights, huggingFace, isJob, type FineTuneEvent, type Job } from "../../src/sdk/index.js";
import { seedRequest } from "../helpers.js";
import { header, sdkSetup } from "./helpers.js";

const seedDir = new URL("../../examples/seed-mlp/", import.meta.url);
const seedWeights = new Uint8Array(readFileSync(new URL("weights.safetensors", seedDir)));
const seedCsv = readFileSync(new URL("train.csv", seedDir), "utf8");
const seedModel = JSON.parse(readFileSync(new URL("request.json", seedDir), "utf8")).model;

const small = (epochs = 3) => seedRequest(64, { training: { epochs, batch_size: 16 } });

describe("create", () => {
  it("mode sync: a JSON body answers the result; weights() gives the same bytes", async () => {
    const { client, calls } = await sdkSetup();
    const result = await client.fineTunes.create({ ...small(), mode: "sync" });
    expect(result).toMatchObject({ status: "succeeded", plan: { placement: "edge" }, engine: { runtime: "node" } });
    expect(result.metrics.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(header(calls[0]!, "content-type")).toBe("application/json");
    expect(header(calls[0]!, "idempotency-key")).toMatch(/^[0-9a-f-]{36}$/);
    const bytes = await client.fineTunes.weights(result.id);
    expect(encodeBase64(bytes)).toBe(result.weights);
    expect(decodeWeights(result)).toEqual(bytes);
    expect([...parseSafetensors(bytes).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
  });

  it("weights as bytes and data as CSV text / JSONL text go as multipart parts", async () => {
    const { client, calls } = await sdkSetup();
    const lines = seedCsv.trim().split("\n");
    const train = lines.slice(0, 201).join("\n");
    const validation = lines
      .slice(201, 261)
      .map((l) => l.split(",").map(Number))
      .map((r) => JSON.stringify({ x: r.slice(0, 10), y: r[10] }))
      .join("\n");
    const result = await client.fineTunes.create({
      model: seedModel,
      weights: seedWeights,
      data: { train, validation, target: "y" },
      training: { epochs: 2, batch_size: 50, shuffle: false },
      mode: "sync",
    });
    const body = calls[0]!.init.body as FormData;
    expect(body).toBeInstanceOf(FormData);
    expect([...body.keys()].sort()).toEqual(["request", "train", "validation", "weights"]);
    expect((body.get("train") as File).name).toBe("train.csv");
    expect((body.get("validation") as File).name).toBe("validation.jsonl");
    expect(JSON.parse(body.get("request") as string)).toEqual({ model: seedModel, data: { target: "y" }, training: { epochs: 2, batch_size: 50, shuffle: false }, mode: "sync" });
    expect(result.plan.steps).toBe(2 * 4);
    expect(result.metrics.history.every((h) => typeof h.val_loss === "number")).toBe(true);
  });

  it("a Uint8Array safetensors dataset goes as an application/octet-stream .safetensors part and trains as the inline rows", async () => {
    const { client, calls } = await sdkSetup();
    const { data, ...rest } = small();
    const rows = data.train;
    const dataset = writeSafetensors([
      { name: "x", shape: [rows.x.length, 10], data: Float32Array.from(rows.x.flat()) },
      { name: "y", shape: [rows.y.length], data: Float32Array.from(rows.y as number[]) },
    ]);
    const binary = await client.fineTunes.create({ ...rest, data: { train: dataset }, mode: "sync" });
    const form = calls[0]!.init.body as FormData;
    expect([...form.keys()].sort()).toEqual(["request", "train"]);
    const part = form.get("train") as File;
    expect({ name: part.name, type: part.type }).toEqual({ name: "train.safetensors", type: "application/octet-stream" });
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(dataset);
    expect(JSON.parse(form.get("request") as string).data).toEqual({});
    const inline = await client.fineTunes.create({ ...rest, data, mode: "sync" });
    expect(header(calls[1]!, "content-type")).toBe("application/json");
    expect(binary.weights).toBe(inline.weights);
  });

  it("Blob and File data parts, base64 weights and inline validation mix in one multipart body", async () => {
    const { client, calls } = await sdkSetup();
    const { data } = small();
    const result = await client.fineTunes.create({
      model: seedModel,
      weights: encodeBase64(seedWeights),
      data: { train: new File([seedCsv], "rows.csv", { type: "text/csv" }), validation: data.train! },
      training: { epochs: 1 },
      mode: "sync",
    });
    const form = calls[0]!.init.body as FormData;
    expect([...form.keys()].sort()).toEqual(["request", "train"]);
    expect(JSON.parse(form.get("request") as string).weights).toBe(encodeBase64(seedWeights));
    expect(result.status).toBe("succeeded");
    expect(result.metrics.history[0]!.val_loss).toBeTypeOf("number");

    const blob = await client.fineTunes.create({ model: seedModel, weights: new Blob([seedWeights as BlobPart]), data: { train: new Blob([seedCsv]) }, training: { epochs: 1 }, mode: "sync" });
    expect(blob.status).toBe("succeeded");
  });

  it("mode async answers the queued job (202); auto answers whichever the server chose", async () => {
    const { client } = await sdkSetup();
    const job = await client.fineTunes.create({ ...small(), mode: "async" });
    expect(isJob(job)).toBe(true);
    expect(job).toMatchObject({ object: "fine_tune", status: "queued", mode: "async" });
    const auto = await client.fineTunes.create(small());
    expect(isJob(auto)).toBe(false);
    const { client: tight } = await sdkSetup({ app: { budget: { ...DEFAULT_EDGE_BUDGET, maxCpuMs: 0.001 } } });
    const offloaded = await tight.fineTunes.create(small());
    expect(isJob(offloaded) && offloaded.plan.placement).toBe("gpu-node");
  });
});

describe("a Hugging Face model folder", () => {
  it("huggingFace() takes config.json and model.safetensors as read from disk; the result keeps Hub names and returns config.json", async () => {
    const fixture = JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as { cases: { name: string; request: { model: { huggingface: { config: Record<string, unknown> } }; data: { train: object } }; initial_weights: Record<string, { shape: number[]; data: number[] }> }[] };
    const gpt2 = fixture.cases.find((c) => c.name === "gpt2_causal_lm")!;
    const config = gpt2.request.model.huggingface.config;
    const weights = writeSafetensors(Object.entries(gpt2.initial_weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) })));
    const { client, calls } = await sdkSetup();
    const result = await client.fineTunes.create({
      ...huggingFace({ config: new TextEncoder().encode(JSON.stringify(config)), weights }),
      data: { train: gpt2.request.data.train as never },
      training: { epochs: 1, batch_size: 8 },
      mode: "sync",
    });
    expect([...(calls[0]!.init.body as FormData).keys()].sort()).toEqual(["request", "weights"]);
    expect(result.status).toBe("succeeded");
    expect(result.huggingface).toMatchObject({ architecture: "GPT2LMHeadModel", task: "causal-lm", config });
    expect([...parseSafetensors(decodeWeights(result)).tensors.keys()]).toEqual(Object.keys(gpt2.initial_weights));
    expect(() => huggingFace({ config: "{not json" })).toThrow(/config is not valid JSON/);
  });

  it("with tokenizer.json and a CSV of text rows, the tokenizer travels as its own part", async () => {
    const tokenizer = readFileSync(new URL("../fixtures/tokenizers/tiny-gpt2.json", import.meta.url));
    const config = { architectures: ["GPT2LMHeadModel"], vocab_size: 513, n_embd: 8, n_layer: 1, n_head: 2, n_positions: 16, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
    const { client, calls } = await sdkSetup();
    const csv = ["text", "a good movie", '"hello, world"', "this film was awful", "i love it"].join("\n");
    const result = await client.fineTunes.create({ ...huggingFace({ config: JSON.stringify(config), tokenizer }), data: { train: csv }, training: { epochs: 2, batch_size: 2 }, mode: "sync" });
    const form = calls[0]!.init.body as FormData;
    expect([...form.keys()].sort()).toEqual(["request", "tokenizer", "train"]);
    expect(JSON.parse(form.get("request") as string).tokenizer).toBeUndefined();
    expect(result.status).toBe("succeeded");
    expect(result.huggingface!.config).toEqual(config);
  });
});

describe("an adapter run", () => {
  it("weights(id, { format }) and adapterConfig(id) give PEFT's folder", async () => {
    const { client } = await sdkSetup();
    const result = await client.fineTunes.create({ ...small(2), adapter: { type: "lora", r: 2, target_modules: ["fc1"] }, mode: "sync" });
    const peft = parseSafetensors(await client.fineTunes.weights(result.id, { format: "peft" }));
    expect([...peft.tensors.keys()]).toEqual(["base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight"]);
    expect([...parseSafetensors(await client.fineTunes.weights(result.id)).tensors.keys()]).toContain("fc1.lora_A.weight");
    expect(await client.fineTunes.adapterConfig(result.id)).toEqual(result.adapter_config);
  });
});

describe("retrieve, list, weights, cancel", () => {
  it("retrieve answers the job", async () => {
    const { client } = await sdkSetup();
    const { id } = await client.fineTunes.create({ ...small(), mode: "sync" });
    const job = await client.fineTunes.retrieve(id);
    expect(job).toMatchObject({ id, object: "fine_tune", status: "succeeded", mode: "sync", weights_url: `/v1/fine-tunes/${id}/weights` });
  });

  it("list: await gives a page; for await walks every page, newest first", async () => {
    const { client, calls } = await sdkSetup();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await client.fineTunes.create({ ...seedRequest(16, { training: { epochs: 1 } }), mode: "sync" })).id);
      await new Promise((r) => setTimeout(r, 2));
    }
    const page = await client.fineTunes.list({ limit: 2 });
    expect(page.data.map((j) => j.id)).toEqual([ids[4], ids[3]]);
    expect(page.next_cursor).toEqual(expect.any(String));

    const before = calls.length;
    const seen: string[] = [];
    for await (const job of client.fineTunes.list({ limit: 2 })) seen.push(job.id);
    expect(seen).toEqual([...ids].reverse());
    expect(calls.length - before).toBe(3);

    const pages = [];
    for await (const p of client.fineTunes.list({ limit: 2, cursor: page.next_cursor! }).pages()) pages.push(p.data.length);
    expect(pages).toEqual([2, 1]);

    // a loop that stops early fetches no further pages
    const start = calls.length;
    for await (const job of client.fineTunes.list({ limit: 2 })) if (job) break;
    expect(calls.length - start).toBe(1);
  });

  it("metrics: the job keeps its last 100 epochs; for await walks the whole history a page at a time", async () => {
    const { client, calls } = await sdkSetup();
    const result = await client.fineTunes.create({ ...seedRequest(4, { training: { epochs: 250, batch_size: 4 } }), mode: "sync" });
    const job = await client.fineTunes.retrieve(result.id);
    expect(job.metrics).toMatchObject({ epochs: 250, history_truncated: true });
    expect(job.metrics!.history).toHaveLength(100);
    const first = await client.fineTunes.metrics(result.id, { limit: 100 });
    expect(first.data.map((h) => h.epoch)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    const before = calls.length;
    const epochs: number[] = [];
    for await (const h of client.fineTunes.metrics(result.id, { limit: 100 })) epochs.push(h.epoch);
    expect(epochs).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
    expect(calls.length - before).toBe(3);
    expect(epochs).toEqual(result.metrics.history.map((h) => h.epoch));
  });

  it("cancel ends a queued job; cancelling again answers the job; a finished job is a ConflictError", async () => {
    const { client, runNext } = await sdkSetup();
    const job = await client.fineTunes.create({ ...small(), mode: "async" });
    const cancelled = await client.fineTunes.cancel(job.id);
    expect(cancelled.status).toBe("cancelled");
    expect(await runNext()).toBe(false); // nothing left to run
    expect((await client.fineTunes.cancel(job.id)).status).toBe("cancelled");
    const finished = await client.fineTunes.create({ ...small(), mode: "sync" });
    const err = await client.fineTunes.cancel(finished.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({ status: 409, code: "already_finished" });
  });
});

describe("events", () => {
  it("an async job's events are typed: status, epoch per epoch, then done with the job", async () => {
    const { client, runNext } = await sdkSetup();
    const job = await client.fineTunes.create({ ...small(4), mode: "async" });
    const events: FineTuneEvent[] = [];
    const consume = (async () => {
      for await (const e of client.fineTunes.events(job.id)) events.push(e);
    })();
    await new Promise((r) => setTimeout(r, 20));
    expect(await runNext()).toBe(true);
    await consume;
    expect(events.map((e) => e.event)).toEqual(["status", "status", "epoch", "epoch", "epoch", "epoch", "status", "done"]);
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const epochs = events.flatMap((e) => (e.event === "epoch" ? [e.data.epoch] : []));
    expect(epochs).toEqual([1, 2, 3, 4]);
    const last = events.at(-1)!;
    expect(last.event === "done" && last.data.status).toBe("succeeded");
    const first = events[0]!;
    expect(first.event === "status" && first.data.status).toBe("queued");
  });

  it("lastEventId resumes after that event", async () => {
    const { client, calls } = await sdkSetup();
    const { id } = await client.fineTunes.create({ ...small(3), mode: "sync" });
    const ids: number[] = [];
    for await (const e of client.fineTunes.events(id, { lastEventId: 4 })) ids.push(e.id);
    expect(ids).toEqual([5, 6]);
    expect(header(calls.at(-1)!, "last-event-id")).toBe("4");
  });

  it("breaking out of the loop aborts the request", async () => {
    const { client, calls } = await sdkSetup();
    const job = await client.fineTunes.create({ ...small(), mode: "async" });
    const stream = client.fineTunes.events(job.id);
    for await (const e of stream) {
      expect(e).toMatchObject({ id: 1, event: "status", data: { status: "queued" } });
      break;
    }
    const request = calls.at(-1)!;
    expect(request.url).toBe(`http://edge.test/v1/fine-tunes/${job.id}/events`);
    expect(request.init.signal!.aborted).toBe(true);
    expect(stream.controller.signal.aborted).toBe(true);
    expect(() => stream[Symbol.asyncIterator]()).toThrow(/iterated once/);
  });

  it("a connection that drops before the final event is resumed with Last-Event-ID, without repeats", async () => {
    let cut = true;
    const { client, calls } = await sdkSetup({
      wrap: (url, _init, res) => {
        if (!url.endsWith("/events") || !cut) return res;
        cut = false;
        // pass the first three events through, then break the connection
        let seen = 0;
        const reader = res.body!.getReader();
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (seen >= 3) {
              void reader.cancel();
              return controller.error(new TypeError("terminated")); // after the queued events were read
            }
            const { done, value } = await reader.read();
            if (done) return controller.close();
            const text = new TextDecoder().decode(value);
            const blocks = text.split("\n\n").filter(Boolean);
            const keep = blocks.slice(0, Math.max(0, 3 - seen));
            seen += keep.length;
            if (keep.length > 0) controller.enqueue(new TextEncoder().encode(keep.map((b) => `${b}\n\n`).join("")));
          },
        });
        return new Response(body, { headers: res.headers });
      },
    });
    const { id } = await client.fineTunes.create({ ...small(3), mode: "sync" });
    const ids: number[] = [];
    const names: string[] = [];
    for await (const e of client.fineTunes.events(id)) {
      ids.push(e.id);
      names.push(e.event);
    }
    expect(ids).toEqual([1, 2, 3, 4, 5, 6]);
    expect(names.at(-1)).toBe("done");
    const streams = calls.filter((c) => c.url.endsWith("/events"));
    expect(streams).toHaveLength(2);
    expect(header(streams[0]!, "last-event-id")).toBeNull();
    expect(header(streams[1]!, "last-event-id")).toBe("3");
  });
});

describe("waitForCompletion", () => {
  it("follows the events to the final state and passes each to onEvent", async () => {
    const { client, runNext } = await sdkSetup();
    const job = await client.fineTunes.create({ ...small(5), mode: "async" });
    const seen: FineTuneEvent[] = [];
    const waiting = client.fineTunes.waitForCompletion(job.id, { onEvent: (e) => void seen.push(e) });
    await new Promise((r) => setTimeout(r, 20));
    await runNext();
    const done = await waiting;
    expect(done).toMatchObject({ id: job.id, status: "succeeded" });
    expect(done.metrics!.history).toHaveLength(5);
    expect(seen.filter((e) => e.event === "epoch")).toHaveLength(5);
    expect(seen.at(-1)!.event).toBe("done");
    expect(await client.fineTunes.weights(job.id)).toBeInstanceOf(Uint8Array);
  });

  it("falls back to polling when the event stream is unavailable, synthesising events", async () => {
    const { client, runNext, calls } = await sdkSetup({
      client: { maxRetries: 0 },
      wrap: (url, _init, res) =>
        url.endsWith("/events") ? new Response(JSON.stringify({ type: "about:blank", title: "Service unavailable", status: 503, detail: "down", code: "down" }), { status: 503, headers: { "content-type": "application/problem+json" } }) : res,
    });
    const job = await client.fineTunes.create({ ...small(3), mode: "async" });
    const seen: FineTuneEvent[] = [];
    const waiting = client.fineTunes.waitForCompletion(job.id, { pollInterval: 10, onEvent: (e) => void seen.push(e) });
    await new Promise((r) => setTimeout(r, 30));
    await runNext();
    const done: Job = await waiting;
    expect(done.status).toBe("succeeded");
    expect(calls.filter((c) => c.url.endsWith(`/v1/fine-tunes/${job.id}`)).length).toBeGreaterThanOrEqual(2);
    expect(seen.every((e) => e.id === 0)).toBe(true);
    expect(seen.filter((e) => e.event === "epoch").map((e) => (e.data as { epoch: number }).epoch)).toEqual([1, 2, 3]);
    expect(seen.map((e) => e.event).slice(-2)).toEqual(["status", "done"]);
  });

  it("resolves for a job that ended otherwise (cancelled) and times out on one that never ends", async () => {
    const { client } = await sdkSetup();
    const job = await client.fineTunes.create({ ...small(), mode: "async" });
    await expect(client.fineTunes.waitForCompletion(job.id, { timeout: 80 })).rejects.toMatchObject({ name: "APITimeoutError" });
    await client.fineTunes.cancel(job.id);
    expect((await client.fineTunes.waitForCompletion(job.id)).status).toBe("cancelled");
  });
});
