/**
 * End to end as a new user: a real `wrangler dev` process (local R2 and Durable Objects,
 * persisted to a temporary directory), the README's curl command run as written (only the port
 * changed), the weights checked, and the job still there after wrangler dev restarts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors } from "../../src/formats/safetensors.js";
import { freePort, root, startWranglerDev, stop, type Proc } from "./processes.js";
import { torchAvailable } from "../torch.js";
import { seedRequest } from "../helpers.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-e2e-"));
const persist = join(work, "state");

/** The README's quick-start curl command, exactly as written there. */
function readmeCurl(): string {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const lines = readme.split("\n");
  const start = lines.findIndex((l) => l.startsWith("curl -s http://localhost:8787/v1/fine-tunes"));
  expect(start, "README has the quick-start curl command").toBeGreaterThanOrEqual(0);
  const command: string[] = [];
  for (let i = start; i < lines.length; i++) {
    command.push(lines[i]!);
    if (!lines[i]!.trimEnd().endsWith("\\")) break;
  }
  return command.join("\n");
}


describe("wrangler dev, as a new user runs it", () => {
  let port = 0;
  let dev: Proc | undefined;
  let result: { id: string; status: string; weights: string; metrics: { history: { train_loss: number; val_loss?: number }[]; steps: number } };

  beforeAll(async () => {
    port = await freePort();
    dev = await startWranglerDev(port, persist);
  });
  afterAll(async () => {
    await stop(dev);
    rmSync(work, { recursive: true, force: true });
  });

  it("the README curl example fine-tunes the seed MLP and the loss falls", () => {
    const command = readmeCurl().replaceAll("localhost:8787", `127.0.0.1:${port}`).replace("-o result.json", `-o ${join(work, "result.json")}`);
    execFileSync("bash", ["-c", command], { cwd: root, stdio: "inherit" });
    result = JSON.parse(readFileSync(join(work, "result.json"), "utf8"));
    expect(result.status).toBe("succeeded");
    const h = result.metrics.history;
    expect(h).toHaveLength(20);
    expect(h.at(-1)!.train_loss).toBeLessThan(h[0]!.train_loss);
    expect(h.every((e) => typeof e.val_loss === "number")).toBe(true);
    const tensors = parseSafetensors(decodeBase64(result.weights)).tensors;
    expect([...tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
  });

  it("right after the answer the job, its weights and its listing entry are stored (docs/api.md, When a sync job is stored)", async () => {
    const base = `http://127.0.0.1:${port}`;
    const body = JSON.stringify({ ...seedRequest(200, { training: { epochs: 3 } }), mode: "sync" });
    for (let i = 0; i < 3; i++) {
      const created = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect(created.status).toBe(200);
      const { id, weights } = (await created.json()) as { id: string; weights: string };
      // no wait between the answer and these reads
      const [job, stored, listed] = await Promise.all([
        fetch(`${base}${created.headers.get("location")}`),
        fetch(`${base}/v1/fine-tunes/${id}/weights`),
        fetch(`${base}/v1/fine-tunes?limit=1`),
      ]);
      expect(((await job.json()) as { status: string }).status).toBe("succeeded");
      expect(new Uint8Array(await stored.arrayBuffer())).toEqual(decodeBase64(weights));
      expect(((await listed.json()) as { data: { id: string }[] }).data.map((j) => j.id)).toEqual([id]);
    }
  });

  it.skipIf(!torchAvailable)("the returned weights load into PyTorch and lower its loss (needs /usr/bin/python3 with torch)", () => {
    const out = execFileSync("/usr/bin/python3", [join(root, "examples/seed-mlp/check.py"), join(work, "result.json")], { encoding: "utf8" });
    expect(out).toMatch(/the loss fell/);
  });

  it("the per-user head example personalises two users, training only the head", () => {
    const out = execFileSync(process.execPath, [join(root, "examples/per-user-head/personalise.mjs")], {
      cwd: work,
      env: { ...process.env, EDGETUNE_URL: `http://127.0.0.1:${port}` },
      encoding: "utf8",
    });
    expect(out).toMatch(/ada: head-only fine-tune, .* 51 of 195 parameters trained/);
    const [ada, lin] = ["ada", "lin"].map((u) => parseSafetensors(new Uint8Array(readFileSync(join(work, `head-${u}.safetensors`)))));
    const encoder = (f: ReturnType<typeof parseSafetensors>) => f.bytes.slice(f.dataStart + f.tensors.get("encoder.weight")!.begin, f.dataStart + f.tensors.get("encoder.weight")!.end);
    expect(encoder(ada!)).toEqual(encoder(lin!));
  });

  it("the digits CNN example fine-tunes a PyTorch-pretrained CNN and the held-out accuracy rises", () => {
    const out = execFileSync(process.execPath, [join(root, "examples/digits-cnn/finetune.mjs")], {
      cwd: work,
      env: { ...process.env, EDGETUNE_URL: `http://127.0.0.1:${port}` },
      encoding: "utf8",
    });
    const [, before, after] = out.match(/held-out accuracy on the new user's digits: ([\d.]+) pretrained -> ([\d.]+) fine-tuned/) ?? [];
    expect(Number(before)).toBeLessThan(0.6);
    expect(Number(after)).toBeGreaterThan(0.85);
    expect(parseSafetensors(new Uint8Array(readFileSync(join(work, "digits-tuned.safetensors")))).tensors.has("conv1.weight")).toBe(true);
  });

  it.skipIf(!torchAvailable)("the digits CNN's fine-tuned weights load into PyTorch and score the same there (needs /usr/bin/python3 with torch)", () => {
    const out = execFileSync("/usr/bin/python3", [join(root, "examples/digits-cnn/check.py"), join(work, "digits-tuned.safetensors")], { encoding: "utf8" });
    expect(out).toMatch(/fine-tuned by edgetune/);
  });

  it('the digits MLP example: lr "auto" from default init reaches >= 0.88 held-out accuracy in 8 epochs (docs/strategy.md)', () => {
    const out = execFileSync(process.execPath, [join(root, "examples/digits-mlp-auto-lr/finetune.mjs")], {
      cwd: work,
      env: { ...process.env, EDGETUNE_URL: `http://127.0.0.1:${port}` },
      encoding: "utf8",
    });
    expect(out).toMatch(/^lr "auto": [\d.e-]+ \(steep, a range test of 100 steps\); loss "auto": cross_entropy$/m);
    expect(out.split("\n").filter((l) => l.startsWith("epoch "))).toHaveLength(8);
    const [, accuracy] = out.match(/held-out accuracy after 8 epochs: ([\d.]+)/) ?? [];
    expect(Number(accuracy)).toBeGreaterThanOrEqual(0.88);
    expect(readFileSync(join(work, "lr-finder.svg"), "utf8")).toMatch(/^<svg[\s\S]*<polyline[\s\S]*steep: /);
  });

  it.skipIf(!torchAvailable)("the digits MLP's weights load into PyTorch and score >= 0.88 there too (needs /usr/bin/python3 with torch)", () => {
    const out = execFileSync("/usr/bin/python3", [join(root, "examples/digits-mlp-auto-lr/check.py"), join(work, "digits-mlp.safetensors")], { encoding: "utf8" });
    expect(out).toMatch(/PyTorch, held-out accuracy: 0\.(8[89]|9)\d*/);
  });

  it("the tiny GPT-2 example fine-tunes a Hub folder (config, weights, token rows as parts) and the held-out perplexity falls; its text rows with the tokenizer part do the same", () => {
    const out = execFileSync(process.execPath, [join(root, "examples/tiny-gpt2/finetune.mjs"), `http://127.0.0.1:${port}`], { cwd: work, encoding: "utf8" });
    const [, before, after, placement] = out.match(/held-out perplexity on the Apache License: ([\d.]+) pretrained -> ([\d.]+) fine-tuned \(\d+ steps on [\w-]+, ([\w-]+)/) ?? [];
    expect(Number(before)).toBeGreaterThan(Number(after)); // metrics.initial.val_perplexity > the last epoch's
    expect(placement).toBe("edge");
    const folder = join(work, "tiny-gpt2-tuned");
    const example = join(root, "examples/tiny-gpt2");
    const shapes = (file: string) => [...parseSafetensors(new Uint8Array(readFileSync(file))).tensors].map(([name, info]) => [name, info.shape]);
    expect(shapes(join(folder, "model.safetensors"))).toEqual(shapes(join(example, "model.safetensors")));
    expect(JSON.parse(readFileSync(join(folder, "config.json"), "utf8"))).toEqual(JSON.parse(readFileSync(join(example, "config.json"), "utf8")));
    expect(readFileSync(join(folder, "tokenizer.json"))).toEqual(readFileSync(join(example, "tokenizer.json")));

    // --text: the same rows as a text CSV with a tokenizer part train to the same weights
    const textDir = join(work, "text");
    mkdirSync(textDir);
    const viaText = execFileSync(process.execPath, [join(root, "examples/tiny-gpt2/finetune.mjs"), `http://127.0.0.1:${port}`, "--text"], { cwd: textDir, encoding: "utf8" });
    expect(viaText).toMatch(/text rows tokenized by the server/);
    expect(viaText.match(/([\d.]+) pretrained -> ([\d.]+) fine-tuned/)!.slice(1)).toEqual([before, after]);
    expect(readFileSync(join(textDir, "tiny-gpt2-tuned", "model.safetensors"))).toEqual(readFileSync(join(folder, "model.safetensors")));
  });

  it.skipIf(!torchAvailable)("the tiny GPT-2's tuned folder loads strictly into the PyTorch GPT-2, whose held-out perplexity falls too (needs /usr/bin/python3 with torch)", () => {
    const out = execFileSync("/usr/bin/python3", [join(root, "examples/tiny-gpt2/check.py"), join(work, "tiny-gpt2-tuned")], { encoding: "utf8" });
    expect(out).toMatch(/held-out perplexity on the Apache License: [\d.]+ pretrained, [\d.]+ fine-tuned by edgetune/);
  });

  it("the job and its weights survive a restart of wrangler dev", async () => {
    await stop(dev);
    dev = await startWranglerDev(port, persist);
    const job = (await (await fetch(`http://127.0.0.1:${port}/v1/fine-tunes/${result.id}`)).json()) as { status: string; metrics: { steps: number } };
    expect(job.status).toBe("succeeded");
    expect(job.metrics.steps).toBe(result.metrics.steps);
    const weights = new Uint8Array(await (await fetch(`http://127.0.0.1:${port}/v1/fine-tunes/${result.id}/weights`)).arrayBuffer());
    expect(weights).toEqual(decodeBase64(result.weights));
    expect(existsSync(persist)).toBe(true);
  });
});
