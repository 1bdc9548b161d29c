/**
 * The CLI as a user runs it: `node dist/src/cli/index.js` (built from src; rebuilt here when
 * stale) against the real app served over HTTP on a free port, on the examples/seed-mlp files.
 */
import { spawn, execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";
import { decodeF16, encodeF16 } from "../../src/formats/dtype.js";
import { prepareRun } from "../../src/engine/prepare.js";
import { defaultInit } from "../../src/engine/init.js";
import { transpose } from "../../src/engine/huggingface/checkpoint.js";
import { startServer } from "./server.js";
import { runGpuNode } from "../../src/node/gpu-node.js";
import { NODE_TOKEN } from "../api/app.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const cli = join(root, "dist/src/cli/index.js");
const seed = (name: string) => join(root, "examples/seed-mlp", name);
const KEY = "cli-test-key";

/** Rebuilds dist when the CLI or SDK sources are newer than the built CLI (npm test builds first anyway). */
async function ensureBuilt() {
  const newest = ["src/cli", "src/sdk"].flatMap((d) => readdirSync(join(root, d)).map((f) => statSync(join(root, d, f)).mtimeMs));
  if (existsSync(cli) && statSync(cli).mtimeMs >= Math.max(...newest)) return;
  await promisify(execFile)(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.build.json")], { cwd: root }).catch(() => {
    // type errors elsewhere in src still emit; the check below is what matters
  });
  if (!existsSync(cli)) throw new Error(`${cli} was not built`);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let server: Awaited<ReturnType<typeof startServer>>;
let work: string;
const temps: string[] = [];

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: work,
      env: { PATH: process.env.PATH ?? "", EDGETUNE_URL: server.url, EDGETUNE_API_KEY: KEY, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  await ensureBuilt();
  server = await startServer({ apiKeys: [KEY] });
  work = mkdtempSync(join(tmpdir(), "edgetune-cli-"));
  temps.push(work);
}, 180_000);

afterAll(async () => {
  await server?.close();
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

const seedArgs = ["--request", seed("request.json"), "--weights", seed("weights.safetensors"), "--train", seed("train.csv")];

describe("edgetune fine-tune", () => {
  it("sync: trains examples/seed-mlp, prints the summary table, writes the weights", async () => {
    const r = await run(["fine-tune", ...seedArgs, "--epochs", "5", "--mode", "sync", "--out", "sync.safetensors"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^epoch\s+train_loss\s+val_loss\s+lr$/);
    expect(lines.slice(1, 6).map((l) => l.trim().split(/\s+/)[0])).toEqual(["1", "2", "3", "4", "5"]);
    expect(r.stdout).toMatch(/^status\s+succeeded/m);
    expect(r.stdout).toMatch(/^placement\s+edge \(sync\) · wasm-simd/m);
    expect(r.stdout).toMatch(/^weights\s+sync\.safetensors \(\d+ bytes\)/m);
    const tensors = parseSafetensors(new Uint8Array(readFileSync(join(work, "sync.safetensors")))).tensors;
    expect([...tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    // the loss fell
    const losses = lines.slice(1, 6).map((l) => Number(l.trim().split(/\s+/)[1]));
    expect(losses[4]!).toBeLessThan(losses[0]!);
  });

  it('--lr auto --batch-size auto --loss auto: the summary names the rate the range test chose, the batch size and the loss', async () => {
    const r = await run(["fine-tune", ...seedArgs, "--epochs", "3", "--lr", "auto", "--batch-size", "auto", "--loss", "auto", "--mode", "sync", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { plan: Record<string, unknown>; metrics: { lr_finder: { lr: number; method: string } } };
    expect(result.plan).toMatchObject({ batch_size: 256, loss: "mse", lr_finder_steps: 100 });
    expect(result.metrics.lr_finder.method).toMatch(/^(steep|minimum)$/);
    const text = await run(["fine-tune", ...seedArgs, "--epochs", "3", "--lr", "auto", "--batch-size", "auto", "--mode", "sync", "--out", "auto.safetensors"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^lr\s+[\d.e-]+ \(lr "auto": range test, (steep|minimum), \d+ steps\)$/m);
    expect(text.stdout).toMatch(/^batch\s+256 rows · loss mse$/m);
    const bad = await run(["fine-tune", ...seedArgs, "--lr", "fast"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--lr must be a number or "auto", got "fast"/);
  });

  it("--trainable with --base-dtype float16: the frozen layer comes back rounded to float16, the trained one does not", async () => {
    const r = await run(["fine-tune", ...seedArgs, "--epochs", "2", "--trainable", "fc2", "--base-dtype", "float16", "--mode", "sync", "--out", "half.safetensors"]);
    expect(r.code, r.stderr).toBe(0);
    const file = parseSafetensors(new Uint8Array(readFileSync(join(work, "half.safetensors"))));
    const given = parseSafetensors(new Uint8Array(readFileSync(seed("weights.safetensors"))));
    const f16 = (x: Float32Array) => {
      const bits = new Uint16Array(x.length), out = new Float32Array(x.length);
      encodeF16(x, bits);
      decodeF16(bits, out);
      return out;
    };
    const fc1 = readTensorF32(file, "fc1.weight"), fc1Given = readTensorF32(given, "fc1.weight");
    expect(fc1).toEqual(f16(fc1Given));
    expect(fc1).not.toEqual(fc1Given);
    const fc2 = readTensorF32(file, "fc2.weight");
    expect(fc2).not.toEqual(f16(fc2)); // trained in float32
    const bad = await run(["fine-tune", ...seedArgs, "--base-dtype", "half"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--base-dtype must be one of float32, float16, bfloat16/);
  });

  it("async: a progress line per epoch on stderr, the summary table on stdout, the weights file (default name)", async () => {
    const r = await run(["fine-tune", "--model", seed("request.json"), "--weights", seed("weights.safetensors"), "--train", seed("train.csv"), "--validation-split", "0.2", "--epochs", "6", "--batch-size", "64", "--lr", "0.01", "--mode", "async"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^ft_[0-9a-f]{32} queued for the edge/m);
    const progress = r.stderr.split("\n").filter((l) => l.startsWith("epoch "));
    expect(progress.map((l) => l.split(/\s+/)[1])).toEqual(["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]);
    expect(progress[0]).toMatch(/train_loss [\d.e-]+\s+val_loss [\d.e-]+/);
    expect(r.stderr).toMatch(/^status running$/m);
    expect(r.stdout).toMatch(/^epoch\s+train_loss\s+val_loss\s+lr$/m);
    expect(r.stdout).toMatch(/^\s+6\s+[\d.]+\s+[\d.]+\s+0\.01$/m);
    expect(r.stdout).toMatch(/^placement\s+edge \(async\)/m);
    expect(r.stdout).toMatch(/^weights\s+tuned\.safetensors/m);
    expect(parseSafetensors(new Uint8Array(readFileSync(join(work, "tuned.safetensors")))).tensors.size).toBe(4);
  });

  it("--json prints the run as JSON (without inline weights)", async () => {
    const r = await run(["fine-tune", ...seedArgs, "--epochs", "2", "--json", "--out", "j.safetensors"]);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout);
    expect(body).toMatchObject({ status: "succeeded", weights_file: "j.safetensors" });
    expect(body.weights).toBeUndefined();
    expect(body.metrics.history).toHaveLength(2);
  });

  it("--max-grad-norm with --target-epsilon trains privately: σ found for ε, ε per epoch and in metrics.privacy", async () => {
    const r = await run(["fine-tune", ...seedArgs, "--epochs", "3", "--max-grad-norm", "1", "--target-epsilon", "3", "--json", "--out", "dp.safetensors"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout);
    expect(body.status).toBe("succeeded");
    expect(body.metrics.privacy).toMatchObject({ accountant: "rdp", steps: body.metrics.steps });
    expect(body.metrics.privacy.noise_multiplier).toBeGreaterThan(0);
    expect(body.metrics.privacy.epsilon).toBeLessThanOrEqual(3);
    expect(body.metrics.privacy.epsilon).toBeGreaterThan(2.99);
    const eps = body.metrics.history.map((h: { epsilon: number }) => h.epsilon);
    expect(eps).toHaveLength(3);
    expect(eps[0]).toBeLessThan(eps[1]);
    expect(eps[2]).toBe(body.metrics.privacy.epsilon);
    const both = await run(["fine-tune", ...seedArgs, "--target-epsilon", "3", "--noise-multiplier", "1"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--target-epsilon and --noise-multiplier/);
  });

  it("a run that diverges exits 1 and still writes the last finite weights", async () => {
    const r = await run(["fine-tune", ...seedArgs, "--epochs", "3", "--optimizer", "sgd", "--lr", "1e6", "--out", "d.safetensors"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^status\s+diverged/m);
    expect(r.stdout).toMatch(/^error\s+\w+ at step \d+/m);
    expect(existsSync(join(work, "d.safetensors"))).toBe(true);
  });

  it("an API error exits 3 with the problem's detail and field paths", async () => {
    const r = await run(["fine-tune", ...seedArgs, "--optimizer", "adam", "--lr=-1"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^edgetune: 400 Invalid request \(invalid_request\): .*training\.optimizer\.lr: /);

    const model = JSON.parse(readFileSync(seed("request.json"), "utf8")).model;
    writeFileSync(join(work, "many.json"), JSON.stringify({ model, data: {}, training: { epochs: 0, batch_size: 0 } }));
    const csv = join(work, "bad.csv");
    writeFileSync(csv, "x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,y\n1,2,3,4,5,6,7,8,9,10,1\n1,2,oops,4,5,6,7,8,9,10,1\n");
    const bad = await run(["fine-tune", "--model", seed("request.json"), "--train", csv]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/^edgetune: 422 .*\(invalid_dataset\): .*data\.train \(line 3, column "x2"\)/);

    // several offending fields: each on its own line with its path
    const many = await run(["fine-tune", "--request", join(work, "many.json"), "--train", seed("train.csv")]);
    expect(many.code).toBe(3);
    expect(many.stderr).toMatch(/^ {2}training\.epochs: /m);
    expect(many.stderr).toMatch(/^ {2}training\.batch_size: /m);

    const unauthorized = await run(["jobs", "list"], { EDGETUNE_API_KEY: "wrong" });
    expect(unauthorized.code).toBe(3);
    expect(unauthorized.stderr).toMatch(/401 .*unauthorized/);
  });

  it("usage errors exit 2", async () => {
    for (const args of [[], ["fine-tune", "--epochs", "x", ...seedArgs], ["fine-tune", "--bogus"], ["fine-tune", "--train", seed("train.csv")], ["fine-tune", ...seedArgs, "--weights", "missing.safetensors"], ["jobs"], ["jobs", "get"], ["jobs", "list", "--epochs", "3"], ["launch"]]) {
      const r = await run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(/edgetune|Usage/);
    }
    // parseArgs's own wording never reaches the user: each message names the option and what it needs
    const typo = await run(["fine-tune", "--epoch", "3"]);
    expect(typo.stderr).toBe('edgetune: unknown option --epoch (did you mean --epochs?)\nRun "edgetune --help" for usage.\n');
    const missing = await run(["fine-tune", "--epochs"]);
    expect(missing.stderr).toMatch(/^edgetune: --epochs needs a value\n/);
    const dash = await run(["fine-tune", "--lr", "-0.1"]);
    expect(dash.stderr).toMatch(/^edgetune: the value after --lr starts with "-": write it as --lr=<value>/);
    const flag = await run(["jobs", "list", "--json=yes"]);
    expect(flag.stderr).toMatch(/^edgetune: --json is a switch and takes no value\n/);
    for (const r of [typo, missing, dash, flag]) {
      expect(r.code).toBe(2);
      expect(r.stderr).not.toMatch(/positional argument|ERR_PARSE_ARGS/);
    }
    const help = await run(["fine-tune", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--batch-size/);
  });

  it("--version prints the package's version", async () => {
    const version = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version as string;
    for (const args of [["--version"], ["-v"], ["version"]]) {
      const r = await run(args);
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 0, stdout: `edgetune ${version}\n` });
    }
  });

  it("a server that cannot be reached exits 4", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const r = await run(["jobs", "list"], { EDGETUNE_URL: `http://127.0.0.1:${port}` });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`cannot reach http://127.0.0.1:${port}: connect ECONNREFUSED`);
  }, 20_000);
});

describe("edgetune fine-tune --hf", () => {
  it("reads a Hub folder (config.json, model.safetensors, tokenizer.json), trains on text rows, writes the tuned folder with Hub names", async () => {
    const dir = join(work, "tiny-gpt2");
    mkdirSync(dir);
    const config = { architectures: ["GPT2LMHeadModel"], model_type: "gpt2", vocab_size: 513, n_embd: 8, n_layer: 1, n_head: 2, n_positions: 16, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
    const tokenizer = readFileSync(join(root, "test/fixtures/tokenizers/tiny-gpt2.json"));
    writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
    writeFileSync(join(dir, "tokenizer.json"), tokenizer);
    const prepared = prepareRun({ model: { huggingface: { config } }, data: { train: { input_ids: [[1, 2, 3]] } } } as never);
    const init = defaultInit(prepared.model, 1);
    const weights = prepared.model.state.map((t) => ({ name: t.name, shape: [...t.shape], data: t.transposed ? transpose(init.get(t.name)!, t.shape[1]!, t.shape[0]!) : init.get(t.name)! }));
    writeFileSync(join(dir, "model.safetensors"), writeSafetensors(weights));
    writeFileSync(join(work, "reviews.csv"), ["text", "a good movie", '"hello, world"', "this film was awful", "i love it", "not great"].join("\n"));

    const r = await run(["fine-tune", "--hf", "tiny-gpt2", "--train", "reviews.csv", "--epochs", "2", "--batch-size", "2", "--mode", "sync"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^weights\s+tiny-gpt2-tuned\/model\.safetensors/m);
    const out = join(work, "tiny-gpt2-tuned");
    expect(readdirSync(out).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json"]);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8"))).toEqual(config);
    expect(readFileSync(join(out, "tokenizer.json"))).toEqual(tokenizer);
    const tuned = parseSafetensors(new Uint8Array(readFileSync(join(out, "model.safetensors")))).tensors;
    expect([...tuned.keys()]).toEqual(weights.map((w) => w.name));
    expect(tuned.get("transformer.h.0.attn.c_attn.weight")!.shape).toEqual([8, 24]);
  });
});

describe("edgetune jobs", () => {
  it("list, get, events, weights, cancel", async () => {
    const created = await run(["fine-tune", ...seedArgs, "--epochs", "3", "--mode", "sync", "--json", "--out", "x.safetensors"]);
    const id = JSON.parse(created.stdout).id as string;

    const list = await run(["jobs", "list", "--limit", "100"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^id\s+status\s+mode\s+placement\s+created\s+epochs\s+train_loss$/m);
    expect(list.stdout).toContain(id);
    const all = JSON.parse((await run(["jobs", "list", "--all", "--limit", "2", "--json"])).stdout);
    expect(all.data.map((j: { id: string }) => j.id)).toContain(id);

    const get = await run(["jobs", "get", id]);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/^status\s+succeeded/m);
    expect(get.stdout).toMatch(new RegExp(`^id\\s+${id}$`, "m"));

    const events = await run(["jobs", "events", id]);
    expect(events.code).toBe(0);
    expect(events.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/)[1])).toEqual(["status", "epoch", "epoch", "epoch", "status", "done"]);
    const resumed = await run(["jobs", "events", id, "--last-event-id", "4", "--json"]);
    expect(resumed.stdout.trim().split("\n").map((l) => JSON.parse(l).id)).toEqual([5, 6]);

    const weights = await run(["jobs", "weights", id, "--out", "w.safetensors"]);
    expect(weights.code).toBe(0);
    expect(readFileSync(join(work, "w.safetensors"))).toEqual(readFileSync(join(work, "x.safetensors")));

    const cancel = await run(["jobs", "cancel", id]);
    expect(cancel.code).toBe(3);
    expect(cancel.stderr).toMatch(/409 Conflict \(already_finished\)/);

    const missing = await run(["jobs", "get", "ft_0123456789abcdef0123456789abcdef"]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/404 Not found \(not_found\)/);
  });

  it("cancel a queued job; its events end with error and exit 1", async () => {
    const detached = await run(["fine-tune", ...seedArgs, "--epochs", "2000", "--mode", "async", "--placement", "gpu-node", "--detach"]);
    expect(detached.code).toBe(0);
    const id = detached.stdout.match(/^(ft_[0-9a-f]{32}) queued/)![1]!;
    const cancel = await run(["jobs", "cancel", id]);
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toBe(`${id} cancelled\n`);
    const events = await run(["jobs", "events", id]);
    expect(events.code).toBe(1);
    expect(events.stdout.trim().split("\n").at(-1)).toMatch(/error\s+cancelled/);

    // --status lists only jobs in those states; delete removes the ended job
    const cancelled = JSON.parse((await run(["jobs", "list", "--status", "cancelled", "--all", "--json"])).stdout) as { data: { id: string; status: string }[] };
    expect(cancelled.data.map((j) => j.id)).toContain(id);
    expect(new Set(cancelled.data.map((j) => j.status))).toEqual(new Set(["cancelled"]));
    const badStatus = await run(["jobs", "list", "--status", "done"]);
    expect(badStatus.code).toBe(3);
    expect(badStatus.stderr).toMatch(/status/);
    const deleted = await run(["jobs", "delete", id]);
    expect([deleted.code, deleted.stdout]).toEqual([0, `${id} deleted\n`]);
    expect((await run(["jobs", "get", id])).stderr).toMatch(/404 Not found/);
  });
});

describe("examples/sdk-roundtrip", () => {
  it("roundtrip.mjs fine-tunes seed-mlp through the built SDK and writes tuned.safetensors that PyTorch loads", async () => {
    const dir = mkdtempSync(join(tmpdir(), "edgetune-roundtrip-"));
    temps.push(dir);
    const r = await new Promise<Run>((resolve, reject) => {
      const child = spawn(process.execPath, [join(root, "examples/sdk-roundtrip/roundtrip.mjs")], { cwd: dir, env: { PATH: process.env.PATH ?? "", EDGETUNE_URL: server.url, EDGETUNE_API_KEY: KEY } });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").filter((l) => l.startsWith("epoch"))).toHaveLength(20);
    expect(r.stdout).toMatch(/wrote tuned\.safetensors/);
    const tuned = join(dir, "tuned.safetensors");
    expect(parseSafetensors(new Uint8Array(readFileSync(tuned))).tensors.size).toBe(4);

    const torch = await promisify(execFile)("/usr/bin/python3", ["-c", "import torch"]).then(() => true, () => false);
    if (!torch) return; // PyTorch is optional: the load-back check runs where it is installed
    const { stdout } = await promisify(execFile)("/usr/bin/python3", [join(root, "examples/seed-mlp/check.py"), tuned]);
    expect(stdout).toMatch(/the fine-tuned weights load into PyTorch and the loss fell/);
  }, 60_000);
});

describe("edgetune explain", () => {
  it("prints the features by importance (CSV header names), --json the whole object; bad options are usage errors", async () => {
    const created = await run(["fine-tune", ...seedArgs, "--epochs", "2", "--mode", "sync", "--json", "--out", "e.safetensors"]);
    const id = JSON.parse(created.stdout).id as string;
    const r = await run(["explain", id, "--steps", "16", "--baseline", "mean"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^integrated_gradients, target predicted, \d+ rows: mean \|attribution\| per feature$/);
    const names = lines.slice(1, 11).map((l) => l.trim().split(/\s+/)[0]);
    expect([...names].sort()).toEqual(["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"]);
    const values = lines.slice(1, 11).map((l) => Number(l.trim().split(/\s+/)[1]));
    expect(values).toEqual([...values].sort((a, b) => b - a));
    expect(lines.at(-1)).toMatch(/^largest \|convergence delta\|/);

    writeFileSync(join(work, "rows.json"), JSON.stringify([[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]]));
    const shap = JSON.parse((await run(["explain", id, "--method", "kernel_shap", "--rows", "rows.json", "--samples", "64", "--target", "0", "--json"])).stdout);
    expect(shap).toMatchObject({ method: "kernel_shap", target: 0 });
    expect(shap.attributions).toHaveLength(1);

    const bad = await run(["explain", id, "--method", "kernel_shap", "--steps", "8"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--steps does not apply to kernel_shap/);
    const wide = await run(["explain", id, "--target", "3"]);
    expect(wide.code).toBe(3);
    expect(wide.stderr).toMatch(/422/);

    // on a GPU node (a real node loop, in-process): the CLI waits and prints the same numbers
    const edge = JSON.parse((await run(["explain", id, "--steps", "16", "--target", "0", "--json"])).stdout);
    const stop = new AbortController();
    const nodeLog: string[] = [];
    const node = runGpuNode({ url: server.url, token: NODE_TOKEN, nodeId: "cli-node", pollMs: 10, waitMs: 0, threads: 1, webgpu: "off", signal: stop.signal, log: (l) => nodeLog.push(l) });
    try {
      const onNode = await run(["explain", id, "--steps", "16", "--target", "0", "--placement", "gpu-node", "--json"]);
      expect(onNode.code).toBe(0);
      expect(onNode.stderr).toMatch(/^ex_[0-9a-f]{32}: queued for a GPU node/);
      expect(JSON.parse(onNode.stdout)).toEqual(edge);
      expect(nodeLog.some((l) => /explanation ft_[0-9a-f]{32}:ex_[0-9a-f]{32}: uploaded/.test(l))).toBe(true);
    } finally {
      stop.abort();
      await node;
    }
  });
});

describe("edgetune jobs: checkpoints, pause and resume", () => {
  it("checkpoints, a checkpoint's weights, pause and resume", async () => {
    const request = JSON.parse(readFileSync(seed("request.json"), "utf8")) as { training?: Record<string, unknown> };
    writeFileSync(join(work, "checkpointed.json"), JSON.stringify({ ...request, training: { ...request.training, epochs: 3, checkpoints: { every: 1, keep: 2 } } }));
    const args = ["--request", join(work, "checkpointed.json"), "--weights", seed("weights.safetensors"), "--train", seed("train.csv")];
    const created = await run(["fine-tune", ...args, "--mode", "sync", "--json", "--out", "c.safetensors"]);
    expect(created.code).toBe(0);
    const id = JSON.parse(created.stdout).id as string;

    const list = await run(["jobs", "checkpoints", id]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^\s+epoch\s+step\s+train_loss\s+val_loss\s+created$/m);
    expect(list.stdout.trim().split("\n").slice(1).map((l) => Number(l.trim().split(/\s+/)[0]))).toEqual([2, 3]);
    const listed = JSON.parse((await run(["jobs", "checkpoints", id, "--json"])).stdout) as { data: { epoch: number }[] };
    expect(listed.data.map((c) => c.epoch)).toEqual([2, 3]);

    const weights = await run(["jobs", "weights", id, "--checkpoint", "3"]);
    expect(weights.code).toBe(0);
    expect(weights.stdout).toMatch(new RegExp(`^${id}-epoch-3.safetensors \\(`));
    expect([...parseSafetensors(new Uint8Array(readFileSync(join(work, `${id}-epoch-3.safetensors`)))).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    expect((await run(["jobs", "weights", id, "--checkpoint", "1"])).stderr).toMatch(/404 Not found/);
    expect((await run(["jobs", "pause", id])).stderr).toMatch(/409 Conflict \(not_pausable\)/);

    const detached = await run(["fine-tune", ...args, "--mode", "async", "--placement", "gpu-node", "--detach"]);
    const queued = detached.stdout.match(/^(ft_[0-9a-f]{32}) queued/)![1]!;
    const paused = await run(["jobs", "pause", queued]);
    expect([paused.code, paused.stdout]).toEqual([0, `${queued} paused; resume it with: edgetune jobs resume ${queued}\n`]);
    const resumed = await run(["jobs", "resume", queued]);
    expect([resumed.code, resumed.stdout]).toEqual([0, `${queued} queued: it continues from its last checkpoint\n`]);
    expect((await run(["jobs", "resume", queued])).stderr).toMatch(/409 Conflict \(not_paused\)/);
    expect((await run(["jobs", "cancel", queued])).code).toBe(0);
  });
});
