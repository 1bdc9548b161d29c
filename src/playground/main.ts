/**
 * The playground page's script (bundled by scripts/build-browser.mjs into
 * build/public/playground/app.js; GET / serves the HTML shell that loads it).
 *
 * Pick a demo or upload a CSV (plus weights and a model or request JSON), set the training
 * options, and Start: on the server, an async job created and followed through the SDK (its SSE
 * iterator), or on this device, the browser library in a Web Worker. Every epoch is plotted as
 * it arrives; the end shows a summary, the weights and, when the result carries them, the
 * explanations.
 *
 * For tests and curious users the page keeps its state in `window.__edgetune` (`Hooks`) and
 * mirrors `status` and `final` on `#status` as `data-status` / `data-final`.
 */
import type { FineTuneCreateParams, FineTuneEvent, Job } from "../sdk/types.js";
import type { FineTuneResult, ProgressEvent } from "../schema/result.js";
import type { TrainRequest } from "../engine/prepare.js";
import { apiClient, describeError, loadLibrary } from "./api.js";
import { drawChart, drawLrFinder, type ChartPoint } from "./chart.js";
import { lookAtCsv } from "./csv.js";
import { DEMOS, isDemo } from "./demos.js";
import { isExplanations, renderExplanations } from "./explanations.js";
import { DEFAULT_FIELDS, FormError, formFromDemo, formFromRequestDocument, modelText, requestFromForm, schedulePreset, type FormFields, type Monitor, type PlaygroundRequest } from "./form.js";
import { formatNumber as fmt } from "./format.js";
import { describeWeights } from "./weights.js";

// ---------------------------------------------------------------- the page's elements

function byId<T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T {
  const node = document.getElementById(id);
  if (!(node instanceof type)) throw new Error(`The page has no #${id} (${type.name}).`);
  return node;
}
const input = (id: string) => byId(id, HTMLInputElement);
const select = (id: string) => byId(id, HTMLSelectElement);

const ui = {
  demo: select("demo"),
  uploadFields: byId("upload-fields", HTMLElement),
  csv: input("csv"),
  target: input("target"),
  valCsv: input("val-csv"),
  weights: input("weights"),
  modelFile: input("model-file"),
  dataSummary: byId("data-summary", HTMLElement),
  model: byId("model", HTMLTextAreaElement),
  loss: select("loss"),
  lossParams: input("loss-params"),
  optimizer: select("optimizer"),
  lr: input("lr"),
  optimizerParams: input("optimizer-params"),
  schedule: select("schedule"),
  scheduleParams: input("schedule-params"),
  batch: input("batch"),
  epochs: input("epochs"),
  split: input("val-split"),
  seed: input("seed"),
  restoreBest: input("restore-best"),
  patience: input("patience"),
  monitor: select("monitor"),
  trainingExtra: input("training-extra"),
  requestExtra: input("request-extra"),
  where: select("where"),
  deviceFields: byId("device-fields", HTMLElement),
  deviceKernel: select("device-kernel"),
  serverFields: byId("server-fields", HTMLElement),
  placement: select("placement"),
  apiKey: input("api-key"),
  start: byId("start", HTMLButtonElement),
  cancel: byId("cancel", HTMLButtonElement),
  requestPreview: byId("request-preview", HTMLElement),
  status: byId("status", HTMLElement),
  chart: byId("chart", HTMLCanvasElement),
  lrFinder: byId("lr-finder", HTMLCanvasElement),
  logY: input("logy"),
  result: byId("result", HTMLElement),
  summary: byId("summary", HTMLElement),
  download: byId("download", HTMLAnchorElement),
  tensors: byId("tensors", HTMLElement),
  explanations: byId("explanations", HTMLElement),
  explanationsBody: byId("explanations-body", HTMLElement),
  history: byId("history", HTMLElement),
  log: byId("log", HTMLElement),
};

// ---------------------------------------------------------------- state

/** What the page keeps in `window.__edgetune` for tests. */
interface Hooks {
  status: string;
  final: boolean;
  where: "server" | "device";
  jobId: string | null;
  epochsPlotted: number;
  points: ChartPoint[];
  lastJob: unknown;
  kernel: string | null;
  weightsUrl: string | null;
  weightsBytes: number;
  /** "fetch" (the SDK's event stream), "worker" or "main-thread" (this device). */
  transport: "fetch" | "worker" | "main-thread" | null;
  error: string | null;
  plannedEpochs: number;
  /** Whether the last run's result carried explanations (and the panel shows them). */
  explanations: boolean;
}

const hooks: Hooks = {
  status: "idle",
  final: false,
  where: "server",
  jobId: null,
  epochsPlotted: 0,
  points: [],
  lastJob: null,
  kernel: null,
  weightsUrl: null,
  weightsBytes: 0,
  transport: null,
  error: null,
  plannedEpochs: 0,
  explanations: false,
};
(window as unknown as { __edgetune: Hooks }).__edgetune = hooks;

/** The run being followed. An on-device run keeps its weights (safetensors bytes) once done. */
interface Run {
  id: string | null;
  device: boolean;
  ctrl: AbortController;
  weights: Uint8Array | null;
  /** Whether the request asked for the best epoch's weights. */
  restoreBest: boolean;
  textModel: boolean;
}
let run: Run | null = null;

const FINAL = new Set(["succeeded", "failed", "cancelled", "diverged"]);

/** The uploaded model or request JSON, parsed; null when none is chosen. */
let uploadedDocument: unknown = null;

// ---------------------------------------------------------------- the form

/** Copies every field into its input: nothing of a previous load survives. */
function applyFields(f: FormFields): void {
  ui.model.value = f.model;
  ui.target.value = f.target;
  ui.loss.value = f.loss;
  ui.lossParams.value = f.lossParams;
  ui.optimizer.value = f.optimizer;
  ui.lr.value = f.lr;
  ui.optimizerParams.value = f.optimizerParams;
  ui.schedule.value = f.schedule;
  ui.scheduleParams.value = f.scheduleParams;
  ui.batch.value = f.batch;
  ui.epochs.value = f.epochs;
  ui.split.value = f.split;
  ui.seed.value = f.seed;
  ui.restoreBest.checked = f.restoreBest;
  ui.patience.value = f.patience;
  ui.monitor.value = f.monitor;
  ui.trainingExtra.value = f.trainingExtra;
  ui.requestExtra.value = f.requestExtra;
  for (const [node, value] of [[ui.loss, f.loss], [ui.optimizer, f.optimizer], [ui.schedule, f.schedule]] as const) {
    if (node.value !== value) setStatus("error", `The file's ${node.id} "${value}" is not one the form offers; pick one.`);
  }
}

function readFields(): FormFields {
  return {
    model: ui.model.value,
    target: ui.target.value,
    loss: ui.loss.value,
    lossParams: ui.lossParams.value,
    optimizer: ui.optimizer.value,
    lr: ui.lr.value,
    optimizerParams: ui.optimizerParams.value,
    schedule: ui.schedule.value,
    scheduleParams: ui.scheduleParams.value,
    batch: ui.batch.value,
    epochs: ui.epochs.value,
    split: ui.split.value,
    seed: ui.seed.value,
    restoreBest: ui.restoreBest.checked,
    patience: ui.patience.value,
    monitor: ui.monitor.value as Monitor,
    trainingExtra: ui.trainingExtra.value,
    requestExtra: ui.requestExtra.value,
  };
}

const targets = () =>
  ui.target.value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** The Dataset menu: a demo sets every field; "upload" starts from the defaults or the uploaded JSON. */
function pickDemo(): void {
  const name = ui.demo.value;
  ui.uploadFields.hidden = isDemo(name);
  if (isDemo(name)) {
    applyFields(formFromDemo(name));
    ui.dataSummary.textContent = DEMOS[name].summary;
    return;
  }
  applyFields(uploadedDocument === null ? { ...DEFAULT_FIELDS } : formFromRequestDocument(uploadedDocument));
  ui.dataSummary.textContent = "Choose a CSV: every column but the target is a feature.";
  void inspectCsv();
}

async function inspectCsv(): Promise<void> {
  const file = ui.csv.files?.[0];
  if (!file) return;
  const look = lookAtCsv(await file.text(), file.name, targets());
  if (ui.csv.files?.[0] !== file) return; // another file was chosen meanwhile
  ui.dataSummary.textContent = look.summary;
  if (look.model && uploadedDocument === null) {
    ui.model.value = modelText(look.model);
    if (look.loss) ui.loss.value = look.loss;
  }
}

async function loadModelFile(): Promise<void> {
  const file = ui.modelFile.files?.[0];
  if (!file) {
    uploadedDocument = null;
    return;
  }
  try {
    const doc: unknown = JSON.parse(await file.text());
    const fields = formFromRequestDocument(doc); // throws before anything changes
    uploadedDocument = doc;
    applyFields(fields);
    await inspectCsv();
  } catch (e) {
    uploadedDocument = null;
    setStatus("error", `The model file is not usable: ${(e as Error).message}`);
  }
}

ui.demo.addEventListener("change", pickDemo);
ui.csv.addEventListener("change", () => void inspectCsv());
ui.target.addEventListener("change", () => void inspectCsv());
ui.modelFile.addEventListener("change", () => void loadModelFile());
// the Run box's placement and key sit in a <form> so that password managers leave the key alone; Enter must not submit it
ui.serverFields.addEventListener("submit", (e) => e.preventDefault());
ui.where.addEventListener("change", () => {
  const device = ui.where.value === "device";
  ui.serverFields.hidden = device;
  ui.deviceFields.hidden = !device;
});
// a new type's options are not the old one's (the schema refuses unknown keys)
ui.schedule.addEventListener("change", () => (ui.scheduleParams.value = schedulePreset(ui.schedule.value, Number(ui.epochs.value))));
ui.loss.addEventListener("change", () => (ui.lossParams.value = "{}"));
ui.optimizer.addEventListener("change", () => (ui.optimizerParams.value = "{}"));
if (!("gpu" in navigator)) {
  const option = ui.deviceKernel.options[1]!;
  option.disabled = true;
  option.textContent += ": not in this browser";
}

// ---------------------------------------------------------------- status, log, chart

function setStatus(status: string, text: string): void {
  hooks.status = status;
  hooks.final = FINAL.has(status) || status === "error";
  ui.status.dataset.status = status;
  ui.status.dataset.final = String(hooks.final);
  ui.status.textContent = text;
}

function log(line: string): void {
  ui.log.textContent += `${line}\n`;
  ui.log.scrollTop = ui.log.scrollHeight;
}

function redraw(): void {
  drawChart(ui.chart, hooks.points, {
    plannedEpochs: hooks.plannedEpochs,
    logY: ui.logY.checked,
    emptyText: run ? "waiting for the first epoch…" : "the loss curve appears here, one point per epoch",
  });
}

// data updates at once (the hooks count them); the DOM and the canvas once per frame, so that a
// burst of replayed events costs one layout, not one per epoch
let rowsByEpoch = new Map<number, HTMLTableRowElement>();
let newRows: HTMLTableRowElement[] = [];
let frame = 0;

interface EpochData {
  epoch: number;
  train_loss: number;
  val_loss?: number | undefined;
  val_accuracy?: number | undefined;
  lr?: number | undefined;
  /** A private run's ε by the end of the epoch (null: unbounded, σ = 0). */
  epsilon?: number | null | undefined;
  attempt?: number | undefined;
}

/** ε as the table shows it: blank for a run without privacy, ∞ for an unbounded one (σ = 0). */
function epsilonText(epsilon: number | null | undefined): string {
  if (epsilon === undefined) return "";
  return epsilon === null ? "∞" : epsilon.toFixed(3);
}

function plotEpoch(e: EpochData): void {
  const point: ChartPoint = { epoch: e.epoch, train: e.train_loss, val: e.val_loss, acc: e.val_accuracy, lr: e.lr, attempt: e.attempt };
  const pts = hooks.points;
  const last = pts[pts.length - 1];
  if (!last || last.epoch < e.epoch) pts.push(point);
  else {
    const at = pts.findIndex((p) => p.epoch === e.epoch);
    if (at >= 0) pts[at] = point; // a retried attempt reports the epoch again
    else {
      pts.push(point);
      pts.sort((a, b) => a.epoch - b.epoch);
    }
  }
  hooks.epochsPlotted = pts.length;
  let row = rowsByEpoch.get(e.epoch);
  if (!row) {
    row = document.createElement("tr");
    row.id = `epoch-${e.epoch}`;
    rowsByEpoch.set(e.epoch, row);
    newRows.push(row);
  }
  const cells = [e.epoch, fmt(e.train_loss), fmt(e.val_loss), e.val_accuracy === undefined ? "" : `${(100 * e.val_accuracy).toFixed(1)}%`, fmt(e.lr), epsilonText(e.epsilon), e.attempt ?? ""];
  row.replaceChildren(
    ...cells.map((v) => {
      const td = document.createElement("td");
      td.textContent = String(v);
      return td;
    }),
  );
  frame ||= requestAnimationFrame(render);
}

function render(): void {
  if (frame) cancelAnimationFrame(frame);
  frame = 0;
  if (newRows.length) {
    ui.history.append(...newRows);
    newRows = [];
  }
  redraw();
}

function epochStatus(who: string, e: EpochData): string {
  return `${who}: epoch ${e.epoch}/${hooks.plannedEpochs}, train_loss ${fmt(e.train_loss)}${e.val_loss !== undefined ? `, val_loss ${fmt(e.val_loss)}` : ""}`;
}

// ---------------------------------------------------------------- the request

/** The form's request plus the data: demo rows inline, or the uploaded files. */
interface Built {
  request: PlaygroundRequest;
  demoRows: boolean;
  files: { train: File; validation: File | undefined; weights: File | undefined } | null;
}

function buildRequest(): Built {
  const validation = ui.valCsv.files?.[0];
  const name = ui.demo.value;
  const request = requestFromForm(readFields(), { hasValidationFile: !isDemo(name) && validation !== undefined });
  if (isDemo(name)) {
    request.data.train = DEMOS[name].data();
    return { request, demoRows: true, files: null };
  }
  const train = ui.csv.files?.[0];
  if (!train) throw new FormError("csv", "Choose a training CSV first.");
  const t = targets();
  request.data.target = t.length === 1 ? t[0]! : t;
  if (validation) delete request.data.validation_split;
  return { request, demoRows: false, files: { train, validation, weights: ui.weights.files?.[0] } };
}

/** "Request sent": the request with the rows elided and the files named. */
function preview(built: Built, extra: Record<string, unknown> = {}): void {
  const shown = structuredClone(built.request) as PlaygroundRequest & Record<string, unknown>;
  const rows = shown.data.train as { x: unknown[]; y: unknown[] } | undefined;
  if (rows && built.demoRows) {
    const n = rows.x.length;
    rows.x = [...rows.x.slice(0, 3), `… ${n} rows in all`];
    rows.y = [...rows.y.slice(0, 3), "…"];
  }
  if (built.files) {
    const f = built.files;
    shown["(files)"] = [`train: ${f.train.name}`, ...(f.validation ? [`validation: ${f.validation.name}`] : []), ...(f.weights ? [`weights: ${f.weights.name} (${f.weights.size} bytes)`] : [])];
  }
  ui.requestPreview.textContent = JSON.stringify({ ...shown, ...extra }, null, 1);
}

/** Whether the model reads token ids (an embedding first, or a Hub model): explanations then colour tokens. */
function isTextModel(model: unknown): boolean {
  const m = model as { layers?: { type?: unknown }[] } | null;
  if (!m || typeof m !== "object") return false;
  if (!Array.isArray(m.layers)) return true;
  return m.layers[0]?.type === "embedding";
}

// ---------------------------------------------------------------- running

function resetRun(): void {
  Object.assign(hooks, {
    final: false,
    jobId: null,
    epochsPlotted: 0,
    points: [],
    lastJob: null,
    kernel: null,
    where: ui.where.value === "device" ? "device" : "server",
    weightsUrl: null,
    weightsBytes: 0,
    error: null,
    transport: null,
    explanations: false,
  } satisfies Partial<Hooks>);
  rowsByEpoch = new Map();
  newRows = [];
  if (frame) cancelAnimationFrame(frame);
  frame = 0;
  ui.history.replaceChildren();
  ui.log.textContent = "";
  ui.result.hidden = true;
  ui.download.hidden = true;
  ui.tensors.hidden = true;
  ui.explanations.hidden = true;
  ui.explanationsBody.replaceChildren();
  if (ui.download.href.startsWith("blob:")) URL.revokeObjectURL(ui.download.href);
  ui.download.removeAttribute("href");
  redraw();
}

function fail(e: unknown): void {
  hooks.error = describeError(e);
  setStatus("error", hooks.error);
  if (e instanceof FormError) document.getElementById(e.field)?.focus();
  end();
}

function end(): void {
  run?.ctrl.abort();
  run = null;
  ui.start.disabled = false;
  ui.cancel.disabled = true;
}

ui.start.addEventListener("click", () => {
  if (run) return;
  resetRun();
  let built: Built;
  try {
    built = buildRequest();
  } catch (e) {
    fail(e);
    return;
  }
  hooks.plannedEpochs = built.request.training.epochs;
  const r: Run = {
    id: null,
    device: hooks.where === "device",
    ctrl: new AbortController(),
    weights: null,
    restoreBest: built.request.training.early_stopping?.restore_best_weights === true,
    textModel: isTextModel(built.request.model),
  };
  run = r;
  ui.start.disabled = true;
  ui.cancel.disabled = false;
  // in one column (a phone) the chart sits below the form: bring it into view
  if (!matchMedia("(min-width: 60rem)").matches) ui.status.scrollIntoView({ block: "start", behavior: "smooth" });
  void (r.device ? trainOnDevice(r, built) : trainOnServer(r, built));
});

ui.cancel.addEventListener("click", () => {
  const r = run;
  if (!r) return;
  if (r.device) {
    r.ctrl.abort();
    log("cancel: asked the training worker to stop");
    return;
  }
  if (!r.id) return;
  apiClient(ui.apiKey.value)
    .fineTunes.cancel(r.id)
    .then(
      (job) => log(`cancel: the job is ${job.status}`),
      (e: unknown) => log(`cancel: ${describeError(e)}`),
    );
});

/** An async job: created and followed through the SDK (its SSE iterator resumes with Last-Event-ID). */
async function trainOnServer(r: Run, built: Built): Promise<void> {
  const client = apiClient(ui.apiKey.value);
  const { request, files } = built;
  // the server validates the request; the form's JSON fields are the user's
  const params = {
    ...request,
    mode: "async",
    placement: ui.placement.value,
    ...(files ? { data: { ...request.data, train: files.train, ...(files.validation ? { validation: files.validation } : {}) }, ...(files.weights ? { weights: files.weights } : {}) } : {}),
  } as unknown as FineTuneCreateParams & { mode: "async" };
  preview(built, { mode: "async", placement: ui.placement.value });
  setStatus("submitting", "Submitting…");
  try {
    const job = await client.fineTunes.create(params, { signal: r.ctrl.signal });
    if (run !== r) return;
    r.id = hooks.jobId = job.id;
    hooks.lastJob = job;
    setStatus(job.status, `${job.id}: ${job.status} (${job.plan.placement}, ${job.plan.steps} steps planned)`);
    log(`202 ${job.id} ${job.status}, placement ${job.plan.placement}`);
    hooks.transport = "fetch";
    for await (const event of client.fineTunes.events(job.id, { signal: r.ctrl.signal })) {
      if (run !== r) return;
      await onServerEvent(r, event, client);
    }
  } catch (e) {
    if (run !== r || r.ctrl.signal.aborted) return;
    fail(e);
  }
}

async function onServerEvent(r: Run, event: FineTuneEvent, client: ReturnType<typeof apiClient>): Promise<void> {
  switch (event.event) {
    case "status": {
      const { status, attempt } = event.data;
      log(`status ${status}${attempt ? ` (attempt ${attempt})` : ""}`);
      if (!FINAL.has(status)) setStatus(status, `${r.id}: ${status}${attempt && attempt > 1 ? ` (attempt ${attempt})` : ""}`);
      return;
    }
    case "epoch":
      plotEpoch(event.data);
      setStatus("running", epochStatus(r.id ?? "", event.data));
      return;
    case "step":
      return;
    case "done":
    case "error": {
      const job = event.data;
      log(`${event.event}: ${job.status}${job.error ? ` (${job.error.code}: ${job.error.message})` : ""}`);
      let weights: Uint8Array | null = null;
      if (job.status !== "failed") {
        hooks.weightsUrl = new URL(job.weights_url ?? `/v1/fine-tunes/${job.id}/weights`, location.href).href;
        try {
          weights = await client.fineTunes.weights(job.id, { signal: r.ctrl.signal });
        } catch (e) {
          log(`weights: ${describeError(e)}`);
        }
      }
      if (run === r) finish(r, job, weights);
      return;
    }
  }
}

/** The same request trained in this browser: nothing goes to the API. */
async function trainOnDevice(r: Run, built: Built): Promise<void> {
  setStatus("loading", "Loading the edgetune library and its WASM kernels…");
  try {
    const lib = await loadLibrary();
    const { request, files } = built;
    const tables: NonNullable<Parameters<typeof lib.train>[1]>["tables"] = {};
    const sent = request as unknown as TrainRequest; // validated by train(), as by the server
    if (files) {
      const target = request.data.target;
      tables.train = lib.readDataset(await files.train.text(), { name: files.train.name, target, field: "data.train" });
      if (files.validation) tables.validation = lib.readDataset(await files.validation.text(), { name: files.validation.name, target, field: "data.validation" });
      if (files.weights) sent.weights = new Uint8Array(await files.weights.arrayBuffer());
    }
    preview(built, files ? { "(read in the page)": true } : {});
    // a module Web Worker keeps the page responsive; without Worker, the page's own thread trains
    const inWorker = typeof Worker === "function";
    hooks.transport = inWorker ? "worker" : "main-thread";
    setStatus("running", "Training on this device…");
    log(`training on this device (${inWorker ? "Web Worker" : "main thread"}); nothing is sent to the server`);
    const options = {
      tables,
      signal: r.ctrl.signal,
      kernel: ui.deviceKernel.value as "wasm" | "webgpu",
      onProgress: (e: ProgressEvent) => {
        if (run !== r || e.type !== "epoch") return;
        plotEpoch(e);
        setStatus("running", epochStatus("this device", e));
      },
    };
    const result: FineTuneResult = await (inWorker ? lib.trainInWorker(sent, options) : lib.train(sent, options));
    if (run !== r) return;
    r.id = hooks.jobId = result.id;
    hooks.kernel = result.engine.kernel;
    const { weights, ...job } = result;
    log(`done: ${result.status} on this device, kernel ${result.engine.kernel}${result.error ? ` (${result.error.code}: ${result.error.message})` : ""}`);
    finish(r, job, lib.decodeBase64(weights));
  } catch (e) {
    if (run !== r) return;
    fail(e);
  }
}

/** The end of a run: summary, weights, explanations, final status. */
function finish(r: Run, job: Job | Omit<FineTuneResult, "weights">, weights: Uint8Array | null): void {
  hooks.lastJob = job;
  render();
  const m = job.metrics;
  const h = m?.history ?? [];
  const rows: [string, unknown][] = [
    ["status", job.status],
    ["job", job.id],
    ["placement", r.device ? `this device (${job.engine?.runtime})` : job.plan.placement],
    ["parameters", `${job.plan.params} (${job.plan.trainable_params} trainable)`],
  ];
  if (m) {
    // a stored job keeps its last 100 epochs (metrics.epochs counts them all); a local run has them all
    const total = "epochs" in m && typeof m.epochs === "number" ? m.epochs : h.length;
    const truncated = "history_truncated" in m && m.history_truncated === true;
    const early = total < hooks.plannedEpochs && job.status === "succeeded" ? " (early stopping)" : "";
    rows.push(["epochs", `${total}${total < hooks.plannedEpochs ? ` of ${hooks.plannedEpochs}${early}` : ""}`]);
    const first = h[0];
    const last = h[h.length - 1];
    const from = truncated && first ? `epoch ${first.epoch}: ` : "";
    if (first && last) rows.push(["train_loss", `${from}${fmt(first.train_loss)} → ${fmt(last.train_loss)}`]);
    if (first && last?.val_loss !== undefined) rows.push(["val_loss", `${from}${fmt(first.val_loss)} → ${fmt(last.val_loss)}`]);
    if (last?.val_accuracy !== undefined) rows.push(["val_accuracy", `${(100 * last.val_accuracy).toFixed(1)}%`]);
    rows.push(["best epoch", m.best_epoch]);
    if (m.lr_finder) rows.push(["learning rate", `${fmt(m.lr_finder.lr)} (auto: range test, ${m.lr_finder.method}, ${m.lr_finder.lrs.length} steps)`]);
    if (weights) rows.push(["weights from", r.restoreBest && job.status === "succeeded" && m.best_epoch !== null ? `epoch ${m.best_epoch} (the best, restored)` : `epoch ${last?.epoch ?? "-"} (the last)`]);
    rows.push(["optimizer steps", m.steps], ["samples/s", Math.round(m.samples_per_second)], ["duration", `${(m.duration_ms / 1000).toFixed(2)} s`]);
    if (m.privacy) {
      const p = m.privacy;
      rows.push(["privacy", `ε = ${epsilonText(p.epsilon)} at δ = ${p.delta} (DP-SGD, σ = ${fmt(p.noise_multiplier)}, q = ${fmt(p.sample_rate)}, ${p.steps} steps, ${p.accountant})`]);
    }
  }
  if (job.engine) rows.push(["engine", `${job.engine.kernel} on ${job.engine.runtime}, ${job.engine.threads} thread(s)`]);
  if (job.error) rows.push(["error", `${job.error.code}: ${job.error.message}`]);
  ui.summary.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v === null || v === undefined ? "-" : String(v);
      return [dt, dd];
    }),
  );
  ui.result.hidden = false;
  // lr "auto": the range test's curve, with the suggestion marked
  ui.lrFinder.hidden = !m?.lr_finder;
  if (m?.lr_finder) drawLrFinder(ui.lrFinder, m.lr_finder);
  if (weights) showWeights(job.id, weights, r.device);

  const explanations = (job as { explanations?: unknown }).explanations;
  if (isExplanations(explanations)) {
    renderExplanations(ui.explanationsBody, explanations, { text: r.textModel || explanations.tokens !== undefined });
    ui.explanations.hidden = false;
    hooks.explanations = true;
  }
  setStatus(
    job.status,
    `${job.id}: ${job.status}${m ? ` after ${h.length} epochs` : ""}${r.device ? ` on this device (${job.engine?.kernel})` : ""}${job.error ? ` (${job.error.code})` : ""}`,
  );
  end();
}

/** The download link (a Blob URL) and the tensors' names, dtypes and shapes. */
function showWeights(id: string, bytes: Uint8Array, device: boolean): void {
  hooks.weightsBytes = bytes.length;
  const a = ui.download;
  a.href = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }));
  if (device) hooks.weightsUrl = a.href;
  a.download = `${id}.safetensors`;
  a.textContent = `Download weights (${(bytes.length / 1024).toFixed(1)} KiB, ${id}.safetensors)`;
  a.hidden = false;
  try {
    ui.tensors.textContent = describeWeights(bytes);
  } catch (e) {
    ui.tensors.textContent = `not a valid safetensors file: ${(e as Error).message}`;
  }
  ui.tensors.hidden = false;
}

ui.logY.addEventListener("change", redraw);
window.addEventListener("resize", redraw);
pickDemo();
redraw();
