/**
 * Searches from the client side: the SDK's create({ search }) and trials(), its `trial` events,
 * and the CLI's --search with its trials table, against the real app on a port (test/sdk/server.ts).
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Edgetune, isJob, type FineTuneEvent } from "../../src/sdk/index.js";
import { regressionData } from "../helpers.js";
import { startServer } from "./server.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const cli = join(root, "dist/src/cli/index.js");
const seed = (name: string) => join(root, "examples/seed-mlp", name);
const KEY = "search-test-key";

let server: Awaited<ReturnType<typeof startServer>>;
let work: string;

beforeAll(async () => {
  // the CLI runs from dist: rebuilt when the CLI or SDK sources are newer
  const newest = ["src/cli", "src/sdk", "src/schema"].flatMap((d) => readdirSync(join(root, d)).map((f) => statSync(join(root, d, f)).mtimeMs));
  if (!existsSync(cli) || statSync(cli).mtimeMs < Math.max(...newest)) {
    await promisify(execFile)(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.build.json")], { cwd: root }).catch(() => undefined);
  }
  server = await startServer({ apiKeys: [KEY] });
  work = mkdtempSync(join(tmpdir(), "edgetune-search-"));
}, 180_000);

afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("searches from the SDK and the CLI", () => {
  it("SDK: create({ search }) answers the search job; trials() lists them with the best marked; events carry trial events", async () => {
    const client = new Edgetune({ baseURL: server.url, apiKey: KEY });
    const created = await client.fineTunes.create({
      model: { layers: [{ type: "linear", name: "fc1", in_features: 10, out_features: 1 }] },
      data: { train: regressionData(64), validation_split: 0.25 },
      training: { epochs: 2, batch_size: 16, optimizer: { type: "sgd", lr: 0.01 } },
      mode: "async",
      placement: "edge",
      search: { space: { "training.optimizer.lr": { choice: [0.001, 0.01, 0.1] } }, algorithm: "grid", parallel: 2 },
    });
    expect(isJob(created)).toBe(true);
    if (!isJob(created)) return;
    const events: FineTuneEvent[] = [];
    const done = await client.fineTunes.waitForCompletion(created.id, { onEvent: (e) => void events.push(e) });
    expect(done.status).toBe("succeeded");
    const trials = await client.fineTunes.trials(created.id);
    expect(trials.map((t) => t.params["training.optimizer.lr"])).toEqual([0.001, 0.01, 0.1]);
    expect(trials.filter((t) => t.best).map((t) => t.id)).toEqual([done.best_trial]);
    const best = trials.find((t) => t.best)!;
    expect(best.metric).toBe(Math.min(...trials.map((t) => t.metric!)));
    expect(events.filter((e) => e.event === "trial" && e.data.status === "succeeded")).toHaveLength(3);
    expect(await client.fineTunes.weights(created.id)).toEqual(await client.fineTunes.weights(best.id));
  });

  it("CLI: --search with a space file runs the search, prints the trials table, and writes the best trial's weights", async () => {
    const space = join(work, "space.json");
    writeFileSync(space, JSON.stringify({ "training.optimizer.lr": { log_uniform: [1e-3, 1e-1] } }));
    const out = join(work, "best.safetensors");
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [cli, "fine-tune", "--request", seed("request.json"), "--train", seed("train.csv"), "--epochs", "2", "--mode", "async", "--placement", "edge", "--search", space, "--out", out],
        { cwd: work, env: { PATH: process.env.PATH ?? "", EDGETUNE_URL: server.url, EDGETUNE_API_KEY: KEY } },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    const head = lines.findIndex((l) => l.startsWith("trials (val_loss; * best)"));
    expect(head).toBeGreaterThan(0);
    expect(lines[head + 1]).toMatch(/^\s+id\s+status\s+epoch\s+val_loss\s+training\.optimizer\.lr$/);
    const rows = lines.slice(head + 2, head + 12).filter((l) => /ft_[0-9a-f]{32}/.test(l));
    expect(rows).toHaveLength(10); // random search: 10 trials by default
    expect(rows.filter((l) => l.startsWith("*"))).toHaveLength(1);
    for (const row of rows) expect(row).toMatch(/succeeded\s+2\s+\d/);
    expect(statSync(out).size).toBeGreaterThan(400);
    expect(r.stderr).toMatch(/^ft_[0-9a-f]{32}: a search of 10 trials, 1 at once\n/);
    expect(r.stderr.match(/^trial ft_[0-9a-f]{32} succeeded at epoch 2 {2}metric \d/gm)).toHaveLength(10);
  });
});
