/**
 * Terminal output of the CLI: tables, the job summary, and the progress bar.
 */
import type { EpochMetrics, Job } from "../sdk/index.js";
import type { Metrics } from "../schema/result.js";
import type { JobMetrics } from "../schema/job.js";
import type { FineTuneEvent } from "../sdk/index.js";

/** A writable text stream (process.stdout / process.stderr). */
export interface Out {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * A number for a table cell: 6 significant digits, no trailing zeros.
 *
 * @example
 * ```ts
 * num(0.00123456789); // "0.00123457"
 * ```
 */
export function num(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  if (!Number.isFinite(x)) return String(x);
  if (x !== 0 && (Math.abs(x) < 1e-4 || Math.abs(x) >= 1e9)) return x.toExponential(4);
  return String(Number(x.toPrecision(6)));
}

/**
 * Right-aligned columns (left-aligned for columns listed in `left`), two spaces apart.
 *
 * @example
 * ```ts
 * table(["epoch", "train_loss"], [["1", "0.5"]]); // " epoch  train_loss\n     1         0.5\n"
 * ```
 */
export function table(header: string[], rows: string[][], left: number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (left.includes(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/**
 * The history as a table; long ones show the first 5 and the last 10 epochs.
 *
 * @example
 * ```ts
 * process.stdout.write(historyTable(job.metrics.history));
 * ```
 */
export function historyTable(history: EpochMetrics[]): string {
  if (history.length === 0) return "(no completed epoch)\n";
  const hasVal = history.some((h) => h.val_loss !== undefined);
  const hasAcc = history.some((h) => h.val_accuracy !== undefined);
  const header = ["epoch", "train_loss", ...(hasVal ? ["val_loss"] : []), ...(hasAcc ? ["val_accuracy"] : []), "lr"];
  const row = (h: EpochMetrics) => [String(h.epoch), num(h.train_loss), ...(hasVal ? [num(h.val_loss)] : []), ...(hasAcc ? [num(h.val_accuracy)] : []), num(h.lr)];
  let rows: string[][];
  if (history.length > 30) {
    const gap = header.map((_, i) => (i === 0 ? "..." : ""));
    rows = [...history.slice(0, 5).map(row), gap, ...history.slice(-10).map(row)];
  } else {
    rows = history.map(row);
  }
  return table(header, rows);
}

/** What the summary shows: a sync result or a job. */
export type RunView = Pick<Job, "id" | "status" | "plan" | "engine" | "error"> & { metrics: Metrics | JobMetrics | null; mode?: Job["mode"] };

/**
 * The summary of a run: its history table, then status, id, steps, placement and the weights file.
 *
 * @example
 * ```ts
 * process.stdout.write(summary(job, { weightsFile: "tuned.safetensors", weightsBytes: 764 }));
 * ```
 */
export function summary(run: RunView, weights?: { file: string; bytes: number } | null): string {
  const lines: string[] = [];
  if (run.metrics) lines.push(historyTable(run.metrics.history));
  // a job keeps its last epochs; `jobs get` says so rather than showing them as the whole run
  if (run.metrics && "history_truncated" in run.metrics && run.metrics.history_truncated) {
    lines.push(`(the last ${run.metrics.history.length} of ${run.metrics.epochs} epochs; GET /v1/fine-tunes/${run.id}/metrics has them all)`);
  }
  const field = (name: string, value: string) => lines.push(`${name.padEnd(10)} ${value}`);
  const best = run.metrics?.best_epoch;
  field("status", `${run.status}${best !== null && best !== undefined ? ` (best epoch ${best})` : ""}`);
  field("id", run.id);
  if (run.error) {
    const where = [run.error.step !== undefined ? `step ${run.error.step}` : "", run.error.epoch !== undefined ? `epoch ${run.error.epoch}` : ""].filter(Boolean).join(", ");
    field("error", `${run.error.code}${where ? ` at ${where}` : ""}: ${run.error.message}`);
  }
  if (run.metrics?.lr_finder) {
    const f = run.metrics.lr_finder;
    field("lr", `${num(f.lr)} (lr "auto": range test, ${f.method}, ${f.lrs.length} steps)`);
  }
  if (run.plan.batch_size !== undefined) field("batch", `${run.plan.batch_size} rows${run.plan.loss !== undefined ? ` · loss ${run.plan.loss}` : ""}`);
  if (run.metrics) {
    const m = run.metrics;
    field("steps", `${m.steps} in ${Math.round(m.duration_ms)} ms (${Math.round(m.samples_per_second).toLocaleString("en-US")} samples/s)`);
  }
  const engine = run.engine ? ` · ${run.engine.kernel} · ${run.engine.threads} thread${run.engine.threads === 1 ? "" : "s"} · ${run.engine.runtime}` : "";
  field("placement", `${run.plan.placement}${run.mode ? ` (${run.mode})` : ""}${engine}`);
  field("params", `${run.plan.params.toLocaleString("en-US")} (${run.plan.trainable_params.toLocaleString("en-US")} trainable)`);
  if (weights) field("weights", `${weights.file} (${weights.bytes.toLocaleString("en-US")} bytes)`);
  return lines.join("\n") + "\n";
}

/**
 * The progress of a job on stderr. On a terminal it redraws one line:
 * `[#######.............] 7/20 epochs  train_loss 0.1234  val_loss 0.1301`; elsewhere (logs, CI)
 * it writes a line per epoch (at most about 20 lines for long runs) and per status change.
 *
 * @example
 * ```ts
 * const bar = new ProgressBar(process.stderr, 20);
 * await client.fineTunes.waitForCompletion(id, { onEvent: (e) => bar.update(e) });
 * bar.done();
 * ```
 */
export class ProgressBar {
  private status = "queued";
  private epoch = 0;
  private attempt = 1;
  private last: EpochMetrics | null = null;
  private drawn = false;
  private drawnAt = 0;
  private stale = false;

  constructor(
    private readonly out: Out,
    private readonly total: number,
  ) {}

  update(event: FineTuneEvent): void {
    if (event.event === "status") {
      if (event.data.attempt !== undefined && event.data.attempt > this.attempt) {
        this.attempt = event.data.attempt;
        this.note(`worker lost: the job restarted (attempt ${this.attempt})`);
      }
      if (event.data.status === this.status) return;
      this.status = event.data.status;
      if (this.out.isTTY) this.draw();
      else this.out.write(`status ${this.status}\n`);
    } else if (event.event === "trial") {
      // a search: a line per trial that ends (its epochs are its own job's)
      const t = event.data;
      if (t.status !== "pending" && t.status !== "queued" && t.status !== "running") {
        this.note(`trial ${t.id} ${t.status}${t.epoch !== null ? ` at epoch ${t.epoch}` : ""}${t.metric !== null ? `  metric ${num(t.metric)}` : ""}${t.stopped_at_rung !== undefined ? `  (stopped at rung ${t.stopped_at_rung})` : ""}`);
      }
    } else if (event.event === "epoch") {
      this.epoch = event.data.epoch;
      this.last = event.data;
      if (this.out.isTTY) {
        // redraw at most every 50 ms: fast jobs send epochs in bursts
        const now = Date.now();
        if (now - this.drawnAt >= 50 || this.epoch === 1 || this.epoch >= this.total) this.draw();
        else this.stale = true;
      }
      else {
        const every = Math.max(1, Math.ceil(this.total / 20));
        if (this.epoch % every === 0 || this.epoch === 1 || this.epoch >= this.total) this.out.write(`epoch ${this.epoch}/${this.total}  ${this.losses()}\n`);
      }
    }
  }

  /** Ends the bar's line. */
  done(): void {
    if (this.out.isTTY && this.stale) this.draw();
    if (this.out.isTTY && this.drawn) this.out.write("\n");
    this.drawn = false;
  }

  private note(text: string): void {
    if (this.out.isTTY && this.drawn) this.out.write("\r\x1b[2K");
    this.out.write(`${text}\n`);
    if (this.out.isTTY && this.drawn) this.draw();
  }

  private losses(): string {
    if (!this.last) return "";
    const parts = [`train_loss ${num(this.last.train_loss)}`];
    if (this.last.val_loss !== undefined) parts.push(`val_loss ${num(this.last.val_loss)}`);
    if (this.last.val_accuracy !== undefined) parts.push(`val_accuracy ${num(this.last.val_accuracy)}`);
    return parts.join("  ");
  }

  private draw(): void {
    const width = 24;
    const filled = Math.min(width, Math.round((this.epoch / Math.max(1, this.total)) * width));
    const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
    const max = (this.out.columns && this.out.columns > 20 ? this.out.columns : 100) - 1;
    let text = this.epoch === 0 ? `${bar} ${this.status}...` : `${bar} ${this.epoch}/${this.total} epochs`;
    // as many of the losses as fit the terminal, whole
    for (const part of this.epoch === 0 ? [] : this.losses().split("  ")) {
      if (part && text.length + 2 + part.length <= max) text += `  ${part}`;
    }
    this.out.write(`\r\x1b[2K${text.slice(0, max)}`);
    this.drawn = true;
    this.drawnAt = Date.now();
    this.stale = false;
  }
}

/**
 * A search job's trials as a table: id, status, epoch, metric, the searched values, and `*`
 * at the best trial (docs/strategy.md, "Searches").
 *
 * @example
 * ```ts
 * process.stdout.write(trialsTable(await client.fineTunes.retrieve(searchId)));
 * ```
 */
export function trialsTable(job: Pick<Job, "trials" | "best_trial" | "search">): string {
  const trials = job.trials ?? [];
  const paths = [...new Set(trials.flatMap((t) => Object.keys(t.params)))];
  const metric = job.search?.metric ?? "metric";
  const value = (v: unknown) => (typeof v === "number" ? num(v) : JSON.stringify(v));
  const rows = trials.map((t) => [t.id === job.best_trial ? "*" : "", t.id, t.status, t.epoch === null ? "" : String(t.epoch), t.metric === null ? "" : num(t.metric), ...paths.map((p) => (p in t.params ? value(t.params[p]) : ""))]);
  return `\ntrials (${metric}; * best)\n` + table(["", "id", "status", "epoch", metric, ...paths], rows, [0, 1, 2]);
}
