/**
 * GET /docs in a real headless Chromium against a real `wrangler dev`: the reference UI
 * (Scalar's bundle, served by Workers Static Assets at /docs/assets/) renders the public
 * operations of /openapi.json (not raw JSON), under the page's CSP, with every request to the
 * deployment itself and none failing; the node protocol is not shown. Needs Debian's chromium
 * at /usr/bin/chromium (.ci/run installs it) and `npm run build:browser` (the assets).
 * EDGETUNE_DOCS_SCREENSHOT=<file.png> keeps a screenshot of the page.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM, freePort, launchChromium, root, startWranglerDev, stop, type Proc } from "./processes.js";

const hasChromium = existsSync(CHROMIUM);
const work = mkdtempSync(join(tmpdir(), "edgetune-docs-"));

describe("/docs in headless Chromium", () => {
  let base = "";
  let dev: Proc | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    if (!hasChromium) return;
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    [dev, browser] = await Promise.all([startWranglerDev(port, join(work, "state")), launchChromium()]);
  });
  afterAll(async () => {
    await browser?.close();
    await stop(dev);
    rmSync(work, { recursive: true, force: true });
  });

  it.skipIf(!hasChromium)("the reference renders the public operations from the deployment's own assets, with no failed request or CSP violation (needs /usr/bin/chromium)", async () => {
    expect(existsSync(join(root, "build/public/docs/assets/scalar-api-reference.js")), "run npm run build:browser").toBe(true);
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const requested: string[] = [];
    const failed: string[] = [];
    const problems: string[] = [];
    page.on("request", (r) => requested.push(r.url()));
    page.on("requestfailed", (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on("response", (r) => r.status() >= 400 && failed.push(`${r.url()}: ${r.status()}`));
    page.on("pageerror", (e) => problems.push(String(e)));
    // a CSP violation is reported on the console ("Refused to load ...")
    page.on("console", (m) => m.type() === "error" && problems.push(m.text()));

    const response = await page.goto(`${base}/docs`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()["content-security-policy"]).toMatch(/default-src 'self'/);
    // rendered operations, not raw JSON: the first one with its body model and responses...
    await page.getByRole("heading", { name: "Create a fine-tune" }).first().waitFor({ state: "visible", timeout: 60_000 });
    await page.getByRole("heading", { name: /^Body.*FineTuneRequest/ }).first().waitFor({ state: "visible" });
    // ...every public operation in the sidebar, and one of them rendered when chosen there
    const sidebar = ["Create a fine-tune", "List your fine-tunes, newest first", "Retrieve a fine-tune", "Cancel a queued or running fine-tune", "Liveness, build and kernel variant"];
    for (const summary of sidebar) await page.getByText(summary, { exact: true }).first().waitFor({ state: "visible" });
    await page.getByText("Server-Sent Events: status, epoch, then done or error", { exact: true }).first().click();
    await page.getByRole("heading", { name: "Server-Sent Events: status, epoch, then done or error" }).first().waitFor({ state: "visible" });
    const text = await page.locator("body").innerText();
    expect(text).toContain("/v1/fine-tunes/{id}/weights");
    expect(text).not.toContain('"$ref"'); // not a JSON dump
    expect(text).not.toMatch(/Claim the next offloaded job|\/v1\/nodes\//); // the node protocol is not public
    expect(await page.locator("#problem-weights_mismatch").count()).toBe(1); // where a problem's type links

    if (process.env.EDGETUNE_DOCS_SCREENSHOT) await page.screenshot({ path: process.env.EDGETUNE_DOCS_SCREENSHOT });
    await context.close();

    expect(failed).toEqual([]);
    expect(problems).toEqual([]);
    expect(requested.filter((url) => !url.startsWith(`${base}/`) && !url.startsWith("data:"))).toEqual([]);
    expect(requested).toContain(`${base}/docs/assets/scalar-api-reference.js`);
    expect(requested).toContain(`${base}/openapi.json`);
  });
});
