/** The CLI's terminal output: numbers, tables, the summary, and the progress bar on a terminal and in logs. */
import { describe, expect, it } from "vitest";
import { ProgressBar, historyTable, num, summary, table } from "../../src/cli/format.js";
import type { FineTuneEvent } from "../../src/sdk/index.js";

const sink = (isTTY: boolean) => {
  const chunks: string[] = [];
  return { out: { isTTY, columns: 80, write: (t: string) => chunks.push(t) }, chunks };
};
const epoch = (n: number, loss: number): FineTuneEvent => ({ id: n + 2, event: "epoch", data: { epoch: n, train_loss: loss, val_loss: loss * 1.1, lr: 0.001 } });
const status = (s: "queued" | "running" | "succeeded", attempt?: number): FineTuneEvent => ({ id: 1, event: "status", data: { status: s, ...(attempt ? { attempt } : {}) } });

describe("CLI output", () => {
  it("numbers and tables", () => {
    expect(num(0.00123456789)).toBe("0.00123457");
    expect(num(0.000012345)).toBe("1.2345e-5");
    expect(num(undefined)).toBe("-");
    expect(num(0)).toBe("0");
    expect(table(["id", "n"], [["a", "1"], ["bbb", "22"]], [0])).toBe("id    n\na     1\nbbb  22\n");
    const long = historyTable(Array.from({ length: 40 }, (_, i) => ({ epoch: i + 1, train_loss: 1 / (i + 1), lr: 0.1 })));
    expect(long.split("\n").filter(Boolean)).toHaveLength(1 + 5 + 1 + 10);
    expect(long).toContain("...");
  });

  it("the summary of a job whose history was truncated says it shows the last epochs", () => {
    const history = Array.from({ length: 100 }, (_, i) => ({ epoch: 401 + i, train_loss: 0.1, lr: 0.1 }));
    const plan = { params: 1, trainable_params: 1, flops: 1, memory_bytes: 1, steps: 500, placement: "edge" as const };
    const metrics = { history, epochs: 500, history_truncated: true, best_epoch: 500, steps: 500, samples_per_second: 1, duration_ms: 1 };
    const text = summary({ id: "ft_1", status: "succeeded", plan, engine: null, error: null, metrics });
    expect(text).toContain("(the last 100 of 500 epochs; GET /v1/fine-tunes/ft_1/metrics has them all)");
    expect(summary({ id: "ft_1", status: "succeeded", plan, engine: null, error: null, metrics: { ...metrics, history_truncated: false } })).not.toContain("the last");
  });

  it("on a terminal the bar redraws one line with epoch/total and the losses", () => {
    const { out, chunks } = sink(true);
    const bar = new ProgressBar(out, 4);
    bar.update(status("running"));
    bar.update(epoch(1, 0.5));
    (bar as unknown as { drawnAt: number }).drawnAt = 0; // past the redraw throttle
    bar.update(epoch(2, 0.25));
    bar.update(status("running", 2));
    bar.done();
    expect(chunks[0]).toMatch(/^\r\x1b\[2K\[\.{24}\] running\.\.\.$/);
    expect(chunks[1]).toMatch(/^\r\x1b\[2K\[#{6}\.{18}\] 1\/4 epochs {2}train_loss 0\.5 {2}val_loss 0\.55$/);
    expect(chunks[2]).toMatch(/\[#{12}\.{12}\] 2\/4 epochs {2}train_loss 0\.25/);
    expect(chunks.join("")).toContain("worker lost: the job restarted (attempt 2)\n");
    expect(chunks.at(-1)).toBe("\n");
  });

  it("on a narrow terminal whole losses are dropped rather than cut; bursts are redrawn at most every 50 ms", () => {
    const { out, chunks } = sink(true);
    out.columns = 60;
    const bar = new ProgressBar(out, 1000);
    for (let i = 1; i <= 500; i++) bar.update(epoch(i, 0.123456789));
    expect(chunks.length).toBeLessThan(5);
    bar.done();
    expect(chunks.at(-2)).toBe("\r\x1b[2K[############............] 500/1000 epochs");
    out.columns = 70;
    chunks.length = 0;
    bar.update(epoch(1000, 0.123456789));
    expect(chunks[0]).toBe("\r\x1b[2K[########################] 1000/1000 epochs  train_loss 0.123457");
  });

  it("in logs it writes a line per status and epoch, thinned to about 20 for long runs", () => {
    const { out, chunks } = sink(false);
    const bar = new ProgressBar(out, 100);
    bar.update(status("running"));
    for (let i = 1; i <= 100; i++) bar.update(epoch(i, 1 / i));
    bar.done();
    expect(chunks[0]).toBe("status running\n");
    const lines = chunks.slice(1);
    expect(lines).toHaveLength(21); // epoch 1, then every 5th
    expect(lines.at(-1)).toMatch(/^epoch 100\/100 {2}train_loss 0\.01 {2}val_loss 0\.011\n$/);
  });
});
