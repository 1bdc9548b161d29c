/**
 * Deploying: `wrangler deploy --dry-run` bundles the Worker offline (CI runs it with `npm test`),
 * and scripts/cloudflare-setup.mjs (`npm run deploy:setup`) sets an account up idempotently. There
 * is no network to Cloudflare here, so the setup script runs against test/e2e/fixtures/fake-wrangler.mjs,
 * which keeps the account's queues, buckets and secrets in a file.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { root } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-deploy-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const env: NodeJS.ProcessEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" };
for (const name of ["CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "EDGETUNE_API_KEYS", "EDGETUNE_NODE_TOKENS"]) delete env[name];

describe("wrangler deploy --dry-run", () => {
  it("bundles the Worker and its kernels offline and lists every binding of wrangler.toml", () => {
    const outdir = join(work, "dist");
    const r = spawnSync(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir], {
      cwd: root,
      env,
      encoding: "utf8",
    });
    const output = `${r.stdout}${r.stderr}`;
    expect(r.status, output).toBe(0);
    expect(output).toMatch(/--dry-run: exiting now/);
    const bindings = [
      [/env\.JOBS \(FineTuneJob\)\s+Durable Object/, "JOBS"],
      [/env\.JOB_INDEX \(JobIndex\)\s+Durable Object/, "JOB_INDEX"],
      [/env\.DISPATCHER \(JobDispatcher\)\s+Durable Object/, "DISPATCHER"],
      [/env\.RATE_LIMITS \(RateLimitBucket\)\s+Durable Object/, "RATE_LIMITS"],
      [/env\.JOB_QUEUE \(edgetune-jobs\)\s+Queue/, "JOB_QUEUE"],
      [/env\.BLOBS \(edgetune-blobs\)\s+R2 Bucket/, "BLOBS"],
    ] as const;
    for (const [pattern, name] of bindings) expect(output, name).toMatch(pattern);
    // a deploy never carries the local-development mark or an open API
    expect(output).not.toMatch(/EDGETUNE_DEV|EDGETUNE_ALLOW_OPEN|EDGETUNE_API_KEYS|EDGETUNE_NODE_TOKENS/);
    const files = readdirSync(outdir);
    expect(files).toContain("index.js");
    const bundle = readFileSync(join(outdir, "index.js"), "utf8");
    // the Durable Object classes of the migrations, exported by the bundle
    const exported = /^export \{([^}]*)\}/m.exec(bundle)?.[1] ?? "";
    for (const name of ["FineTuneJob", "JobIndex", "JobDispatcher", "RateLimitBucket"]) expect(exported).toMatch(new RegExp(`\\b${name}\\b`));
    const wasm = files.filter((f) => f.endsWith("relaxed-simd.wasm"));
    expect(wasm).toHaveLength(1);
    expect(statSync(join(outdir, wasm[0]!)).size).toBe(statSync(join(root, "build/wasm/relaxed-simd.wasm")).size);
    writeFileSync(join(work, "dry-run.log"), output);
  });
});

describe("npm run deploy:setup (scripts/cloudflare-setup.mjs)", () => {
  const stateFile = join(work, "account.json");
  type Account = { queues: string[]; buckets: string[]; secrets: Record<string, string>; deploys: number; calls: string[] };
  const account = () => JSON.parse(readFileSync(stateFile, "utf8")) as Account;
  const setup = (flags: string[] = [], extra: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [join(root, "scripts/cloudflare-setup.mjs"), ...flags], {
      cwd: root,
      env: { ...env, WRANGLER: join(root, "test/e2e/fixtures/fake-wrangler.mjs"), FAKE_CF_STATE: stateFile, ...extra },
      encoding: "utf8",
    });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  };

  it("a fresh account: wrangler deploy fails until both queues exist; setup creates them, the bucket and the secrets, then deploys", () => {
    writeFileSync(stateFile, JSON.stringify({ queues: [], buckets: [], secrets: {}, deploys: 0, calls: [] } satisfies Account));
    const bare = spawnSync(process.execPath, [join(root, "test/e2e/fixtures/fake-wrangler.mjs"), "deploy"], { env: { ...env, FAKE_CF_STATE: stateFile } });
    expect(bare.status).not.toBe(0);

    const first = setup([], { EDGETUNE_API_KEYS: "key-from-env" });
    expect(first.status, first.output).toBe(0);
    const after = account();
    expect(after.queues.sort()).toEqual(["edgetune-jobs", "edgetune-jobs-dlq"]);
    expect(after.buckets).toEqual(["edgetune-blobs"]);
    expect(after.deploys).toBe(1);
    expect(after.secrets.EDGETUNE_API_KEYS).toBe("key-from-env");
    // not given: generated (32 random bytes), and printed once
    const token = after.secrets.EDGETUNE_NODE_TOKENS!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.output).toContain(`EDGETUNE_NODE_TOKENS=${token}`);
    expect(first.output).not.toContain("key-from-env");
    // resources exist before the deploy, the secrets are set after it
    const order = after.calls.slice(1).filter((c) => /^(queues create|r2 bucket create|deploy|secret put)/.test(c));
    expect(order).toEqual(["queues create edgetune-jobs", "queues create edgetune-jobs-dlq", "r2 bucket create edgetune-blobs", "deploy", "secret put EDGETUNE_API_KEYS", "secret put EDGETUNE_NODE_TOKENS"]);
  });

  it("run again, it creates nothing and keeps the secrets", () => {
    const before = account();
    const again = setup();
    expect(again.status, again.output).toBe(0);
    const after = account();
    expect(after.queues).toEqual(before.queues);
    expect(after.buckets).toEqual(before.buckets);
    expect(after.secrets).toEqual(before.secrets);
    expect(after.deploys).toBe(2);
    const calls = after.calls.slice(before.calls.length);
    expect(calls.filter((c) => / create |^secret put/.test(c))).toEqual([]);
    expect(again.output).toMatch(/secret EDGETUNE_API_KEYS: set \(kept/);
  });

  it("--dry-run runs no wrangler command at all", () => {
    const before = account();
    const dry = setup(["--dry-run"]);
    expect(dry.status, dry.output).toBe(0);
    expect(account().calls).toEqual(before.calls);
    expect(dry.output).toMatch(/would run: wrangler queues create edgetune-jobs-dlq/);
    expect(dry.output).toMatch(/would run: wrangler deploy/);
  });

  it("a queue that exists already is not an error", () => {
    writeFileSync(stateFile, JSON.stringify({ queues: ["edgetune-jobs"], buckets: ["edgetune-blobs"], secrets: {}, deploys: 0, calls: [] } satisfies Account));
    const r = setup(["--no-deploy"]);
    expect(r.status, r.output).toBe(0);
    expect(account().queues.sort()).toEqual(["edgetune-jobs", "edgetune-jobs-dlq"]);
    expect(account().deploys).toBe(0);
    expect(existsSync(stateFile)).toBe(true);
  });
});
