/**
 * The form's state as plain values (the strings the inputs hold), and the two directions
 * between it and a request: `formFromRequestDocument` fills every field from an uploaded
 * request.json (or a model JSON) and the defaults, `requestFromForm` builds the request the page
 * sends. No DOM here: main.ts copies these values into the inputs and back.
 *
 * Every load (a demo, a request.json) starts from `DEFAULT_FIELDS`, so nothing of the previous
 * load survives it: a request.json without a schedule trains with a constant one, whatever demo
 * was picked before.
 */
import { DEMOS, type DemoName, type ModelSpec } from "./demos.js";

/** Which metric early stopping watches; "auto": val_loss when there is validation data, else train_loss. */
export type Monitor = "auto" | "val_loss" | "train_loss" | "val_accuracy";

/**
 * The training part of the form. Numbers are kept as the inputs' strings; JSON fields as text.
 *
 * @example
 * ```ts
 * const t: TrainingFields = { ...DEFAULT_FIELDS, loss: "cross_entropy", lr: "0.01" };
 * ```
 */
export interface TrainingFields {
  loss: string;
  /** The loss's options other than its type, as JSON (`{"delta": 0.5}` for huber). */
  lossParams: string;
  optimizer: string;
  lr: string;
  /** The optimizer's options other than type and lr, as JSON (`{"weight_decay": 0.01}`). */
  optimizerParams: string;
  schedule: string;
  /** The schedule's options other than its type, as JSON. */
  scheduleParams: string;
  batch: string;
  epochs: string;
  /** The validation split (0 or empty: none). */
  split: string;
  seed: string;
  /**
   * Restore the best epoch's weights at the end (training.early_stopping.restore_best_weights):
   * the result's weights are those of `metrics.best_epoch`, not the last epoch's.
   */
  restoreBest: boolean;
  /** Early-stopping patience in epochs; empty: no early stopping (the run trains every epoch). */
  patience: string;
  monitor: Monitor;
  /** The rest of `training` as JSON: shuffle, drop_last, clip_grad_norm, gradient_checkpointing, ... */
  trainingExtra: string;
}

/**
 * The whole form: training fields, the model JSON, the CSV target column(s), and other request
 * fields (trainable, adapter, output, data.tokenization, ...) as JSON.
 *
 * @example
 * ```ts
 * const fields: FormFields = formFromDemo("xor");
 * fields.epochs; // "150"
 * ```
 */
export interface FormFields extends TrainingFields {
  model: string;
  /** CSV target column name(s), comma-separated. */
  target: string;
  /** Request fields the form has no input for, as JSON (an uploaded request's trainable, adapter, output, data.tokenization). */
  requestExtra: string;
}

/**
 * The API's defaults (PyTorch's): what every field holds before a demo or a file sets it.
 *
 * @example
 * ```ts
 * DEFAULT_FIELDS.schedule; // "constant"
 * ```
 */
export const DEFAULT_FIELDS: Readonly<FormFields> = Object.freeze({
  loss: "mse",
  lossParams: "{}",
  optimizer: "adam",
  lr: "0.001",
  optimizerParams: "{}",
  schedule: "constant",
  scheduleParams: "{}",
  batch: "32",
  epochs: "20",
  split: "0",
  seed: "0",
  restoreBest: false,
  patience: "",
  monitor: "auto",
  trainingExtra: "{}",
  model: "",
  target: "y",
  requestExtra: "{}",
});

/** Options a schedule gets when it is picked from the menu (PyTorch's arguments, sensible for a short run). */
const SCHEDULE_PRESETS: Record<string, Record<string, unknown>> = {
  constant: {},
  step: { step_size: 10, gamma: 0.5 },
  multistep: { milestones: [10, 20], gamma: 0.1 },
  exponential: { gamma: 0.95 },
  cosine: { eta_min: 0 },
  linear: { start_factor: 0.1, total_iters: 5 },
  onecycle: { pct_start: 0.3 },
  plateau: { factor: 0.5, patience: 3 },
  sequential: {
    schedulers: [
      { type: "linear", start_factor: 0.1, total_iters: 5 },
      { type: "cosine", T_max: 25 },
    ],
    milestones: [5],
  },
};

/**
 * The options JSON a schedule gets when picked from the menu; "sequential" (a warm-up then
 * cosine) runs its cosine over the epochs after the 5 warm-up epochs.
 *
 * @example
 * ```ts
 * schedulePreset("step", 30); // '{"step_size":10,"gamma":0.5}'
 * ```
 */
export function schedulePreset(type: string, epochs: number): string {
  const preset = structuredClone(SCHEDULE_PRESETS[type] ?? {});
  if (type === "sequential") {
    const schedulers = preset.schedulers as { T_max?: number }[];
    schedulers[1]!.T_max = Math.max(1, (Number.isFinite(epochs) && epochs > 0 ? epochs : 30) - 5);
  }
  return JSON.stringify(preset);
}

/**
 * The model JSON one layer a line (and its input shape, when it has one); a model without a
 * `layers` array (a Hub model) as indented JSON.
 *
 * @example
 * ```ts
 * modelText({ layers: [{ type: "relu" }] }); // '{"layers": [\n  {"type":"relu"}\n]}'
 * ```
 */
export function modelText(model: unknown): string {
  const m = model as Partial<ModelSpec> | null;
  if (!m || typeof m !== "object" || !Array.isArray(m.layers)) return JSON.stringify(model, null, 1);
  const rest = Object.fromEntries(Object.entries(m).filter(([k]) => k !== "layers"));
  const head = Object.keys(rest).length ? `${JSON.stringify(rest).slice(0, -1)},\n "layers": [\n` : '{"layers": [\n';
  return `${head}${m.layers.map((layer) => `  ${JSON.stringify(layer)}`).join(",\n")}\n]}`;
}

/**
 * Every field for a demo: the defaults, then the demo's model and training options.
 *
 * @example
 * ```ts
 * formFromDemo("moons").schedule; // "cosine"
 * ```
 */
export function formFromDemo(name: DemoName): FormFields {
  const demo = DEMOS[name];
  const fields: FormFields = { ...DEFAULT_FIELDS, ...demo.training, model: modelText(demo.model) };
  fields.scheduleParams = schedulePreset(fields.schedule, Number(fields.epochs));
  return fields;
}

/**
 * A thrown error that names the form field it is about (the input's id), so the page can focus it.
 *
 * @example
 * ```ts
 * throw new FormError("lr", "The learning rate must be a number");
 * ```
 */
export class FormError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "FormError";
  }
}

type JsonObject = Record<string, unknown>;
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);
const without = (o: JsonObject, ...keys: string[]): JsonObject => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
const json = (o: JsonObject): string => JSON.stringify(o);
const str = (v: unknown, fallback: string): string => (typeof v === "number" || typeof v === "string" ? String(v) : fallback);

const TRAINING_FIELDS_SHOWN = ["epochs", "batch_size", "seed", "loss", "optimizer", "schedule", "early_stopping"];
const MONITORS: readonly Monitor[] = ["val_loss", "train_loss", "val_accuracy"];

/**
 * Every field from an uploaded JSON: a request (`{model, data, training, ...}`, like
 * examples/seed-mlp/request.json) or a model alone (`{layers}` / `{input, layers}`). Whatever the
 * file does not set takes its default (`DEFAULT_FIELDS`), never the previous demo's value;
 * request fields the form has no input for land in `trainingExtra` / `requestExtra`.
 * Throws `FormError` when the file has neither `model` nor `layers`.
 *
 * @example
 * ```ts
 * const fields = formFromRequestDocument({ model: { layers: [] }, training: { epochs: 5 } });
 * fields.epochs; // "5"
 * fields.schedule; // "constant" (the default)
 * ```
 */
export function formFromRequestDocument(doc: unknown): FormFields {
  if (!isObject(doc)) throw new FormError("model-file", "it is not a JSON object");
  const model = isObject(doc.model) ? doc.model : Array.isArray(doc.layers) ? doc : null;
  if (!model) throw new FormError("model-file", "it has neither model nor layers");
  const fields: FormFields = { ...DEFAULT_FIELDS, model: modelText(model) };
  if (model === doc) return fields;

  const data = isObject(doc.data) ? doc.data : {};
  if (typeof data.target === "string" || Array.isArray(data.target)) fields.target = ([] as unknown[]).concat(data.target).join(",");
  fields.split = str(data.validation_split, DEFAULT_FIELDS.split);

  const t = isObject(doc.training) ? doc.training : {};
  const loss = isObject(t.loss) ? t.loss : {};
  fields.loss = str(loss.type, DEFAULT_FIELDS.loss);
  fields.lossParams = json(without(loss, "type"));
  const optimizer = isObject(t.optimizer) ? t.optimizer : {};
  fields.optimizer = str(optimizer.type, DEFAULT_FIELDS.optimizer);
  fields.lr = str(optimizer.lr, DEFAULT_FIELDS.lr);
  fields.optimizerParams = json(without(optimizer, "type", "lr"));
  const schedule = isObject(t.schedule) ? t.schedule : {};
  fields.schedule = str(schedule.type, DEFAULT_FIELDS.schedule);
  fields.scheduleParams = json(without(schedule, "type"));
  fields.batch = str(t.batch_size, DEFAULT_FIELDS.batch);
  fields.epochs = str(t.epochs, DEFAULT_FIELDS.epochs);
  fields.seed = str(t.seed, DEFAULT_FIELDS.seed);

  const trainingExtra = without(t, ...TRAINING_FIELDS_SHOWN);
  if (isObject(t.early_stopping)) {
    const es = t.early_stopping;
    fields.patience = str(es.patience, "3"); // the schema's default patience
    fields.restoreBest = typeof es.restore_best_weights === "boolean" ? es.restore_best_weights : true; // the schema's default
    fields.monitor = MONITORS.includes(es.monitor as Monitor) ? (es.monitor as Monitor) : "val_loss";
    const more = without(es, "patience", "restore_best_weights", "monitor");
    if (Object.keys(more).length) trainingExtra.early_stopping = more; // min_delta, mode
  }
  fields.trainingExtra = json(trainingExtra);

  const requestExtra = without(doc, "model", "data", "training", "mode", "placement");
  const dataExtra = without(data, "train", "validation", "target", "validation_split");
  if (Object.keys(dataExtra).length) requestExtra.data = dataExtra; // data.tokenization
  fields.requestExtra = json(requestExtra);
  return fields;
}

/**
 * The request the form describes, without its data rows (the caller adds `data.train`, or sends
 * the CSV as a part). `early_stopping` is sent when a patience is set or the restore-best toggle
 * is on; with the toggle on and no patience, patience is the epoch count, so the run trains every
 * epoch and keeps the best one's weights.
 *
 * @example
 * ```ts
 * const request = requestFromForm({ ...formFromDemo("xor"), restoreBest: true }, { hasValidationFile: false });
 * request.training.early_stopping; // { monitor: "train_loss", patience: 150, restore_best_weights: true }
 * ```
 */
export function requestFromForm(fields: FormFields, options: { hasValidationFile: boolean }): PlaygroundRequest {
  const model = parseJson(fields.model, "model", "The model");
  const num = (value: string, field: string, what: string, check: (v: number) => boolean = Number.isFinite): number => {
    const v = Number(value);
    if (value.trim() === "" || !Number.isFinite(v) || !check(v)) throw new FormError(field, `${what} must be a number${check === Number.isFinite ? "" : " in range"} (got "${value}")`);
    return v;
  };
  const epochs = num(fields.epochs, "epochs", "Epochs", (v) => Number.isInteger(v) && v >= 1);
  const split = fields.split.trim() === "" ? 0 : num(fields.split, "val-split", "The validation split", (v) => v >= 0 && v < 1);
  const extra = parseJsonObject(fields.trainingExtra, "training-extra", "The other training options");
  const { early_stopping: earlyExtra, ...trainingExtra } = extra;
  const training: PlaygroundRequest["training"] = {
    ...trainingExtra,
    epochs,
    // "auto": the largest power of two that fits (docs/strategy.md)
    batch_size: isAuto(fields.batch) ? "auto" : num(fields.batch, "batch", "Batch size", (v) => Number.isInteger(v) && v >= 1),
    seed: num(fields.seed, "seed", "Seed", (v) => Number.isInteger(v) && v >= 0),
    loss: { ...parseJsonObject(fields.lossParams, "loss-params", "The loss options"), type: fields.loss },
    optimizer: { ...parseJsonObject(fields.optimizerParams, "optimizer-params", "The optimizer options"), type: fields.optimizer, lr: isAuto(fields.lr) ? "auto" : num(fields.lr, "lr", "The learning rate", (v) => v >= 0) },
    schedule: { ...parseJsonObject(fields.scheduleParams, "schedule-params", "The schedule options"), type: fields.schedule },
  };
  const patience = fields.patience.trim() === "" ? null : num(fields.patience, "patience", "Patience", (v) => Number.isInteger(v) && v >= 0);
  if (patience !== null || fields.restoreBest) {
    const hasValidation = split > 0 || options.hasValidationFile;
    training.early_stopping = {
      ...(isObject(earlyExtra) ? earlyExtra : {}),
      monitor: fields.monitor === "auto" ? (hasValidation ? "val_loss" : "train_loss") : fields.monitor,
      patience: patience ?? epochs,
      restore_best_weights: fields.restoreBest,
    };
  }
  const requestExtra = parseJsonObject(fields.requestExtra, "request-extra", "The other request fields");
  const { data: dataExtra, ...rest } = requestExtra;
  const data: PlaygroundRequest["data"] = { ...(isObject(dataExtra) ? dataExtra : {}) };
  if (split > 0) data.validation_split = split;
  return { ...rest, model: isObject(model) && isObject(model.model) ? model.model : model, data, training };
}

/**
 * The request the page builds: the API's request body (validated by the server or by the
 * library's `train()`, so `model` stays the user's JSON), before the data rows are added.
 *
 * @example
 * ```ts
 * const r: PlaygroundRequest = { model: { layers: [] }, data: { validation_split: 0.2 }, training: { epochs: 5, batch_size: 32, seed: 0, loss: { type: "mse" }, optimizer: { type: "adam", lr: 0.001 }, schedule: { type: "constant" } } };
 * ```
 */
export interface PlaygroundRequest {
  model: unknown;
  data: JsonObject & { validation_split?: number; target?: string | string[]; train?: unknown; validation?: unknown };
  training: JsonObject & {
    epochs: number;
    batch_size: number | "auto";
    seed: number;
    loss: JsonObject & { type: string };
    optimizer: JsonObject & { type: string; lr: number | "auto" };
    schedule: JsonObject & { type: string };
    early_stopping?: JsonObject & { monitor: string; patience: number; restore_best_weights: boolean };
  };
  [field: string]: unknown;
}

/** A field left to edgetune: "auto" as typed (any case, spaces around). */
const isAuto = (value: string): boolean => value.trim().toLowerCase() === "auto";

function parseJson(text: string, field: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormError(field, `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

function parseJsonObject(text: string, field: string, what: string): JsonObject {
  if (text.trim() === "") return {};
  const value = parseJson(text, field, what);
  if (!isObject(value)) throw new FormError(field, `${what} must be a JSON object like {"key": value}`);
  return value;
}
