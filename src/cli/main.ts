/**
 * The `edgetune` command line: fine-tune from files with a progress bar, and manage jobs.
 * Node built-ins and the SDK only.
 *
 * Exit codes: 0 ok; 1 the job ended without succeeding (failed, cancelled, diverged) or a local
 * failure such as an unwritable --out; 2 usage error; 3 API error (the problem's detail and
 * field paths are printed); 4 connection error (no response, timeout); 130 interrupted.
 */
import { readFileSync } from "node:fs";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, extname, join } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  ConflictError,
  Edgetune,
  EdgetuneAPIError,
  NotFoundError,
  decodeWeights,
  isJob,
  type FineTuneCreateParams,
  type ExplainRequestInput,
  type FineTuneEvent,
  type Job,
  type JobSummary,
} from "../sdk/index.js";
import { ProgressBar, num, summary, table, trialsTable, type Out } from "./format.js";

/** The CLI's exit codes. */
export const EXIT = { ok: 0, notSucceeded: 1, usage: 2, api: 3, connection: 4, interrupted: 130 } as const;

/** A mistake in the command line or its files: exit 2. */
export class UsageError extends Error {}

const DEFAULT_URL = "http://localhost:8787";

const GLOBAL_HELP = `edgetune: fine-tune models on an edgetune server

Usage:
  edgetune fine-tune --model model.json --train train.csv [--weights w.safetensors] [options]
  edgetune fine-tune --hf ./model-dir --train data.csv [options]
  edgetune jobs list [--limit N] [--all] [--status S[,S]]
  edgetune jobs get <id>
  edgetune jobs cancel <id>
  edgetune jobs pause <id>
  edgetune jobs resume <id>
  edgetune jobs checkpoints <id>
  edgetune jobs delete <id>
  edgetune jobs events <id> [--last-event-id N]
  edgetune jobs weights <id> [--checkpoint EPOCH] [--out FILE]
  edgetune explain <id> [--method integrated_gradients|kernel_shap] [options]

Global options:
  --url URL        the API (env EDGETUNE_URL, default ${DEFAULT_URL})
  --api-key KEY    the API key, sent as a bearer token (env EDGETUNE_API_KEY)
  --json           machine-readable output on stdout
  -h, --help       this help; "edgetune fine-tune --help" for the fine-tune options

Exit codes: 0 ok, 1 the job ended without succeeding, 2 usage error, 3 API error,
4 connection error.
`;

const FINE_TUNE_HELP = `edgetune fine-tune: create a fine-tune, wait for it, write the weights

Usage:
  edgetune fine-tune --model model.json --weights w.safetensors --train train.csv [options]

Inputs:
  --model FILE           model JSON: {"layers": [...]}, or a request JSON (its "model" is used)
  --hf DIR               a Hugging Face model folder: config.json, model.safetensors (if there)
                         and tokenizer.json (if there, data may be text); --out is then a folder
                         that gets the tuned model.safetensors with config.json and tokenizer.json
  --request FILE         a whole request JSON to start from; the options below override it
  --weights FILE         initial weights (safetensors, PyTorch state_dict names);
                         without them the model starts from PyTorch's default init
  --train FILE           training data: CSV with a header row, JSONL ({"x":[...],"y":...}),
                         or a .safetensors dataset (tensors x or input_ids, and y)
  --validation FILE      validation data (CSV, JSONL or .safetensors)
  --validation-split F   hold out this fraction of the training rows instead
  --target NAME[,NAME]   the CSV target column(s) (default y)

Training (PyTorch names and defaults):
  --epochs N  --batch-size N|auto  --lr X|auto  --optimizer sgd|adam|adamw|rmsprop|adagrad
  --loss auto|mse|l1|huber|smooth_l1|cross_entropy|bce_with_logits|hinge|multi_margin
                         auto: a learning-rate range test, the largest batch that fits,
                         the loss from the targets (docs/strategy.md)
  --schedule NAME  --seed N  --shuffle / --no-shuffle  --trainable LAYER[,LAYER]
  --dtype float32|float16|bfloat16   the dtype of the returned weights
  --search FILE          a hyperparameter search: a JSON search object ({"space": ..., "trials": 4,
                         "parallel": 2, ...}) or just its space ({"training.optimizer.lr":
                         {"log_uniform": [1e-4, 1e-1]}}); always async, prints a trials table

Differential privacy (DP-SGD, docs/privacy.md):
  --max-grad-norm C       clip each sample's gradient to norm C (privacy.max_grad_norm)
  --target-epsilon E      the ε to spend over the run (σ is found for it)
  --noise-multiplier S    or σ itself
  --delta D               δ (default 1/N rounded down to a power of ten)
  --base-dtype float32|float16|bfloat16   how frozen parameters are held (model.base_dtype)

Running:
  --mode auto|sync|async       auto (default): the server decides; async jobs show a progress bar
  --placement auto|edge|gpu-node
  --out FILE                   where to write the fine-tuned weights (default tuned.safetensors;
                               with --hf a folder, default <DIR>-tuned)
  --detach                     for async jobs: print the job id and exit without waiting

Example:
  edgetune fine-tune --request examples/seed-mlp/request.json \\
    --weights examples/seed-mlp/weights.safetensors --train examples/seed-mlp/train.csv --epochs 50
`;

const JOBS_HELP = `edgetune jobs: your fine-tunes

  edgetune jobs list [--limit N] [--all] [--cursor C]   newest first
         [--status queued,running]                      only jobs in these states
  edgetune jobs get <id>                                status, plan and the history table
  edgetune jobs cancel <id>                             cancel a queued or running job
  edgetune jobs pause <id>                              pause an async job (it checkpoints at its epoch's end)
  edgetune jobs resume <id>                             resume a paused job from its last checkpoint
  edgetune jobs checkpoints <id>                        the job's stored checkpoints
  edgetune jobs delete <id>                             delete an ended job and its files now
  edgetune jobs events <id> [--last-event-id N]         follow the job's events until it ends
  edgetune jobs weights <id> [--out FILE]               download the weights (default <id>.safetensors)
         [--checkpoint EPOCH]                           that checkpoint's weights instead (default <id>-epoch-EPOCH.safetensors)

Add --json for machine output (events as JSON lines). --version (-v) prints the version.
`;

const EXPLAIN_HELP = `edgetune explain: attributions of a fine-tune that succeeded (docs/explain.md)

Usage:
  edgetune explain <id> [--method integrated_gradients|kernel_shap] [options]

  --method M             integrated_gradients (default) or kernel_shap
  --spec FILE            a whole explain JSON object to start from; the options below override it
  --rows FILE            rows to explain: a JSON array of rows (default: up to 100 validation rows)
  --target N|predicted   the output explained (default predicted: each row's argmax)
  integrated_gradients:  --steps N (default 50)  --baseline zeros|mean (default zeros)
                         --integration gausslegendre|riemann_trapezoid
  kernel_shap:           --samples N (default 2048)  --seed N
  --placement P          auto (default: in the Worker when it fits its budget, else on a GPU node),
                         edge (only in the Worker), or gpu-node; a GPU node's result is waited for

Prints the features by mean |attribution|; --json prints the whole result.explanations object.
`;

const options = {
  url: { type: "string" },
  "api-key": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
  // fine-tune
  model: { type: "string" },
  hf: { type: "string" },
  request: { type: "string" },
  weights: { type: "string" },
  train: { type: "string" },
  validation: { type: "string" },
  "validation-split": { type: "string" },
  target: { type: "string" },
  epochs: { type: "string" },
  "batch-size": { type: "string" },
  search: { type: "string" },
  lr: { type: "string" },
  optimizer: { type: "string" },
  loss: { type: "string" },
  schedule: { type: "string" },
  seed: { type: "string" },
  shuffle: { type: "boolean" },
  "no-shuffle": { type: "boolean" },
  trainable: { type: "string" },
  dtype: { type: "string" },
  "base-dtype": { type: "string" },
  "max-grad-norm": { type: "string" },
  "target-epsilon": { type: "string" },
  "noise-multiplier": { type: "string" },
  delta: { type: "string" },
  mode: { type: "string" },
  placement: { type: "string" },
  out: { type: "string" },
  detach: { type: "boolean" },
  // jobs
  limit: { type: "string" },
  all: { type: "boolean" },
  cursor: { type: "string" },
  status: { type: "string" },
  "last-event-id": { type: "string" },
  checkpoint: { type: "string" },
  // explain
  method: { type: "string" },
  spec: { type: "string" },
  rows: { type: "string" },
  steps: { type: "string" },
  samples: { type: "string" },
  baseline: { type: "string" },
  integration: { type: "string" },
} as const satisfies ParseArgsConfig["options"];

type Values = { [K in keyof typeof options]?: (typeof options)[K]["type"] extends "boolean" ? boolean : string };

const GLOBAL = ["url", "api-key", "json", "help", "version"];
const FINE_TUNE_OPTIONS = [
  "model", "hf", "request", "weights", "train", "validation", "validation-split", "target", "epochs", "batch-size", "lr", "optimizer",
  "loss", "schedule", "seed", "shuffle", "no-shuffle", "trainable", "dtype", "base-dtype", "mode", "placement", "out", "detach", "search",
  "max-grad-norm", "target-epsilon", "noise-multiplier", "delta",
];
const EXPLAIN_OPTIONS = ["method", "spec", "rows", "target", "steps", "samples", "baseline", "integration", "seed", "placement"];
const JOB_OPTIONS: Record<string, string[]> = {
  list: ["limit", "all", "cursor", "status"], get: [], cancel: [], delete: [], events: ["last-event-id"], weights: ["out", "checkpoint"],
  pause: [], resume: [], checkpoints: [],
};

/** Where the CLI reads its environment and writes its output (injectable for tests). */
export interface CliIO {
  stdout: Out;
  stderr: Out;
  env: Record<string, string | undefined>;
  /** Registers a Ctrl-C handler while a job is followed; returns a function that removes it. */
  onInterrupt?: (handler: () => void) => () => void;
}

/**
 * Runs the CLI on `argv` (without `node` and the script) and resolves with the exit code.
 *
 * @example
 * ```ts
 * const code = await main(["jobs", "list", "--json"], { stdout: process.stdout, stderr: process.stderr, env: process.env });
 * ```
 */
export async function main(argv: string[], io: CliIO): Promise<number> {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true }) as { values: Values; positionals: string[] });
  } catch (err) {
    return usage(io, parseErrorMessage(err));
  }
  const [command, sub, ...rest] = positionals;
  if (values.version || command === "version") {
    io.stdout.write(`edgetune ${packageVersion()}\n`);
    return EXIT.ok;
  }
  if (values.help || command === "help") {
    io.stdout.write(command === "fine-tune" ? FINE_TUNE_HELP : command === "jobs" ? JOBS_HELP : command === "explain" ? EXPLAIN_HELP : GLOBAL_HELP);
    return EXIT.ok;
  }
  const baseURL = values.url ?? io.env.EDGETUNE_URL ?? DEFAULT_URL;
  const apiKey = values["api-key"] ?? io.env.EDGETUNE_API_KEY ?? null;
  const client = new Edgetune({ baseURL, apiKey });
  const json = values.json === true;
  try {
    if (command === "fine-tune") {
      if (sub !== undefined) throw new UsageError(`fine-tune takes no positional arguments (got "${sub}")`);
      allowOnly(values, FINE_TUNE_OPTIONS, "fine-tune");
      return await fineTune(client, values, io, json);
    }
    if (command === "jobs") {
      if (sub === undefined || !(sub in JOB_OPTIONS)) throw new UsageError(sub === undefined ? "jobs needs a subcommand: list, get, cancel, pause, resume, checkpoints, delete, events or weights" : `unknown jobs subcommand "${sub}"`);
      allowOnly(values, JOB_OPTIONS[sub]!, `jobs ${sub}`);
      if (sub === "list") {
        if (rest.length > 0) throw new UsageError(`jobs list takes no positional arguments (got "${rest[0]}")`);
        return await listJobs(client, values, io, json);
      }
      if (rest.length !== 1) throw new UsageError(`jobs ${sub} takes one job id`);
      const id = rest[0]!;
      if (sub === "get") return await getJob(client, id, io, json);
      if (sub === "cancel") return await cancelJob(client, id, io, json);
      if (sub === "delete") return await deleteJob(client, id, io, json);
      if (sub === "events") return await followEvents(client, id, values, io, json);
      if (sub === "pause" || sub === "resume") return await pauseOrResume(client, sub, id, io, json);
      if (sub === "checkpoints") return await listCheckpoints(client, id, io, json);
      const epoch = number(values, "checkpoint", "int", (n) => n >= 1);
      if (epoch !== undefined) return await downloadCheckpointWeights(client, id, epoch, values.out ?? `${id}-epoch-${epoch}.safetensors`, io, json);
      return await downloadWeights(client, id, values.out ?? `${id}.safetensors`, io, json);
    }
    if (command === "explain") {
      if (sub === undefined || rest.length > 0) throw new UsageError("explain takes one job id");
      allowOnly(values, EXPLAIN_OPTIONS, "explain");
      return await explainJob(client, sub, values, io, json);
    }
    if (command === undefined) {
      io.stderr.write(GLOBAL_HELP);
      return EXIT.usage;
    }
    throw new UsageError(`unknown command "${command}"`);
  } catch (err) {
    return report(err, io, json, baseURL);
  }
}

/**
 * node:util parseArgs's errors in the CLI's words: the option's name, what it needs, the
 * nearest known option for a typo, and none of parseArgs's advice about "--" and positionals
 * (which reads as if the user had meant a positional argument).
 */
export function parseErrorMessage(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const option = /'(-{1,2}[^' <]+)/.exec(message)?.[1];
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) {
    const near = nearestOption(option.replace(/^-+/, ""));
    return `unknown option ${option}${near ? ` (did you mean --${near}?)` : ""}`;
  }
  if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) {
    if (/does not take an argument/.test(message)) return `${option} is a switch and takes no value`;
    if (/ambiguous/.test(message)) return `the value after ${option} starts with "-": write it as ${option}=<value> (e.g. ${option}=-1)`;
    return `${option} needs a value`;
  }
  return message.split(". To specify")[0]!;
}

/** The known option closest to `name` (edit distance at most 2), for "did you mean". */
function nearestOption(name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const known of Object.keys(options)) {
    const d = editDistance(name, known);
    if (d < bestDistance) [best, bestDistance] = [known, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/** The installed package's version: the nearest package.json named "edgetune" above this module (src/cli or dist/src/cli). */
function packageVersion(): string {
  for (let dir = new URL(".", import.meta.url); ; dir = new URL("..", dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("package.json", dir), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "edgetune" && pkg.version) return pkg.version;
    } catch {
      // no package.json here: look further up
    }
    if (dir.pathname === "/") return "unknown";
  }
}

function usage(io: CliIO, message: string): number {
  io.stderr.write(`edgetune: ${message}\nRun "edgetune --help" for usage.\n`);
  return EXIT.usage;
}

/** Maps an error to its message and exit code. */
function report(err: unknown, io: CliIO, json: boolean, baseURL: string): number {
  if (err instanceof UsageError) return usage(io, err.message);
  if (err instanceof APIUserAbortError) {
    io.stderr.write("edgetune: interrupted\n");
    return EXIT.interrupted;
  }
  if (err instanceof APIConnectionError) {
    let root: unknown = err.cause;
    while (root instanceof Error && root.cause instanceof Error) root = root.cause;
    if (err instanceof APITimeoutError) io.stderr.write(`edgetune: ${err.message}\n`);
    else io.stderr.write(`edgetune: cannot reach ${baseURL}: ${root instanceof Error ? root.message : err.message}\n`);
    if (baseURL === DEFAULT_URL) io.stderr.write("Is the server running? Start it with `npm run dev`, or pass --url / set EDGETUNE_URL.\n");
    if (json) io.stdout.write(JSON.stringify({ error: { code: "connection_error", detail: err.message } }) + "\n");
    return EXIT.connection;
  }
  if (err instanceof EdgetuneAPIError) {
    const detail = err.detail ?? err.message;
    io.stderr.write(`edgetune: ${err.status ?? "error"} ${err.title ?? ""} (${err.code ?? "error"}): ${detail}\n`);
    // the detail names the first field; list them all when there are more (or it does not)
    const list = err.errors.length > 1 || (err.errors.length === 1 && !detail.includes(err.errors[0]!.path));
    for (const issue of list ? err.errors : []) {
      const at = [issue.line !== undefined ? `line ${issue.line}` : "", issue.column !== undefined ? `column ${issue.column}` : ""].filter(Boolean).join(", ");
      io.stderr.write(`  ${issue.path}${at ? ` (${at})` : ""}: ${issue.message}\n`);
    }
    if (err.status === 401) io.stderr.write("Pass --api-key or set EDGETUNE_API_KEY.\n");
    if (json && err.problem) io.stdout.write(JSON.stringify({ error: err.problem }) + "\n");
    return EXIT.api;
  }
  io.stderr.write(`edgetune: ${err instanceof Error ? err.message : String(err)}\n`);
  return EXIT.notSucceeded;
}

function allowOnly(values: Values, allowed: string[], command: string): void {
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && !GLOBAL.includes(name) && !allowed.includes(name)) throw new UsageError(`--${name} does not apply to ${command}`);
  }
}

// ---------------------------------------------------------------- fine-tune

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  const text = await readText(path, what);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new UsageError(`${what} ${path} must hold a JSON object`);
  return value as Record<string, unknown>;
}

async function readText(path: string, what: string): Promise<string> {
  return (await readBytes(path, what)).toString("utf8");
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function readBytes(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** A data file as a File whose name and type tell the server its format. */
async function dataFile(path: string, what: string): Promise<File> {
  const bytes = await readBytes(path, what);
  const ext = extname(path).toLowerCase();
  const type = ext === ".csv" ? "text/csv" : ext === ".jsonl" || ext === ".ndjson" ? "application/jsonl" : "";
  return new File([new Uint8Array(bytes)], basename(path), { type });
}

function number(values: Values, name: keyof Values, kind: "int" | "float", check: (n: number) => boolean = () => true): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(n) || (kind === "int" && !Number.isInteger(n)) || !check(n)) {
    throw new UsageError(`--${name} must be ${kind === "int" ? "an integer" : "a number"}${name === "validation-split" ? " between 0 and 1" : ""}, got "${raw}"`);
  }
  return n;
}

/** A number option that also takes "auto" (docs/strategy.md): its usage error says so. */
function orAuto(read: () => number | undefined): number | undefined {
  try {
    return read();
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(e.message.replace(/ must be (an integer|a number)/, ' must be $1 or "auto"'));
    throw e;
  }
}

function oneOf<T extends string>(values: Values, name: keyof Values, allowed: readonly T[]): T | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (!allowed.includes(raw as T)) throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
  return raw as T;
}

/** The create params from the options and files. */
async function buildParams(values: Values): Promise<{ params: FineTuneCreateParams; epochs: number }> {
  const base = values.request ? await readJson(values.request, "request") : {};
  const request: Record<string, unknown> = { ...base };
  if (values.model) {
    const file = await readJson(values.model, "model");
    const model = "layers" in file || "huggingface" in file ? file : "model" in file ? file.model : null;
    if (!model || typeof model !== "object") throw new UsageError(`model ${values.model} needs "layers" (or a "model" with layers)`);
    request.model = model;
  }
  if (values.hf) {
    if (values.model) throw new UsageError("--hf and --model both give the model: use one");
    const dir = values.hf;
    const config = await readJson(join(dir, "config.json"), "config");
    const current = (request.model as { huggingface?: Record<string, unknown> } | undefined)?.huggingface ?? {};
    request.model = { huggingface: { ...current, config } };
    if (!values.weights && (await exists(join(dir, "model.safetensors")))) request.weights = new Uint8Array(await readBytes(join(dir, "model.safetensors"), "weights"));
    if (await exists(join(dir, "tokenizer.json"))) request.tokenizer = await readJson(join(dir, "tokenizer.json"), "tokenizer");
  }
  if (request.model === undefined) throw new UsageError("fine-tune needs --model or --hf (or --request with a model)");

  const data: Record<string, unknown> = { ...((request.data as Record<string, unknown> | undefined) ?? {}) };
  if (values.train) data.train = await dataFile(values.train, "training data");
  if (values.validation) data.validation = await dataFile(values.validation, "validation data");
  const split = number(values, "validation-split", "float", (n) => n > 0 && n < 1);
  if (split !== undefined) data.validation_split = split;
  if (values.target) {
    const names = values.target.split(",").map((s) => s.trim()).filter(Boolean);
    data.target = names.length === 1 ? names[0] : names;
  }
  if (data.train === undefined) throw new UsageError("fine-tune needs --train (or a request with data.train)");
  request.data = data;

  const training: Record<string, unknown> = { ...((request.training as Record<string, unknown> | undefined) ?? {}) };
  const epochs = number(values, "epochs", "int", (n) => n >= 1);
  if (epochs !== undefined) training.epochs = epochs;
  const batch = values["batch-size"] === "auto" ? "auto" : orAuto(() => number(values, "batch-size", "int", (n) => n >= 1));
  if (batch !== undefined) training.batch_size = batch;
  const seed = number(values, "seed", "int", (n) => n >= 0);
  if (seed !== undefined) training.seed = seed;
  if (values.shuffle && values["no-shuffle"]) throw new UsageError("--shuffle and --no-shuffle contradict each other");
  if (values.shuffle) training.shuffle = true;
  if (values["no-shuffle"]) training.shuffle = false;
  const lr = values.lr === "auto" ? "auto" : orAuto(() => number(values, "lr", "float"));
  const optimizerType = values.optimizer;
  if (optimizerType !== undefined || lr !== undefined) {
    const current = (training.optimizer as Record<string, unknown> | undefined) ?? { type: "adam" };
    const next = optimizerType !== undefined && optimizerType !== current.type ? { type: optimizerType, ...(current.lr !== undefined ? { lr: current.lr } : {}) } : { ...current };
    if (lr !== undefined) next.lr = lr;
    training.optimizer = next;
  }
  if (values.loss !== undefined) {
    const current = training.loss as Record<string, unknown> | undefined;
    training.loss = current?.type === values.loss ? current : { type: values.loss };
  }
  if (values.schedule !== undefined) {
    const current = training.schedule as Record<string, unknown> | undefined;
    training.schedule = current?.type === values.schedule ? current : { type: values.schedule };
  }
  request.training = training;

  // privacy: the flags override the request's `privacy`; ε and σ replace each other
  const maxGradNorm = number(values, "max-grad-norm", "float", (n) => n > 0);
  const targetEpsilon = number(values, "target-epsilon", "float", (n) => n > 0);
  const noiseMultiplier = number(values, "noise-multiplier", "float", (n) => n >= 0);
  const delta = number(values, "delta", "float", (n) => n > 0 && n < 1);
  if (targetEpsilon !== undefined && noiseMultiplier !== undefined) throw new UsageError("--target-epsilon and --noise-multiplier both set the noise: use one");
  if ([maxGradNorm, targetEpsilon, noiseMultiplier, delta].some((v) => v !== undefined)) {
    const privacy: Record<string, unknown> = { type: "dp-sgd", ...((request.privacy as Record<string, unknown> | null | undefined) ?? {}) };
    if (maxGradNorm !== undefined) privacy.max_grad_norm = maxGradNorm;
    if (targetEpsilon !== undefined) {
      privacy.target_epsilon = targetEpsilon;
      delete privacy.noise_multiplier;
    }
    if (noiseMultiplier !== undefined) {
      privacy.noise_multiplier = noiseMultiplier;
      delete privacy.target_epsilon;
    }
    if (delta !== undefined) privacy.delta = delta;
    request.privacy = privacy;
  }

  if (values.trainable) request.trainable = values.trainable.split(",").map((s) => s.trim()).filter(Boolean);
  const dtype = oneOf(values, "dtype", ["float32", "float16", "bfloat16"] as const);
  if (dtype) request.output = { ...((request.output as object | undefined) ?? {}), dtype };
  const baseDtype = oneOf(values, "base-dtype", ["float32", "float16", "bfloat16"] as const);
  if (baseDtype) request.model = { ...(request.model as object), base_dtype: baseDtype };
  const mode = oneOf(values, "mode", ["auto", "sync", "async"] as const);
  if (mode) request.mode = mode;
  const placement = oneOf(values, "placement", ["auto", "edge", "gpu-node"] as const);
  if (placement) request.placement = placement;
  if (values.weights) request.weights = new Uint8Array(await readBytes(values.weights, "weights"));
  if (values.search) {
    // a whole search object, or only its space (dotted paths to distributions)
    const search = await readJson(values.search, "search");
    request.search = "space" in search ? search : { space: search };
  }

  const total = typeof training.epochs === "number" ? training.epochs : 20;
  return { params: request as FineTuneCreateParams, epochs: total };
}

async function fineTune(client: Edgetune, values: Values, io: CliIO, json: boolean): Promise<number> {
  const { params, epochs } = await buildParams(values);
  // --hf: the output is a model folder (weights, config.json, tokenizer.json), as from_pretrained reads it
  const folder = values.hf ? (values.out ?? `${values.hf.replace(/[\\/]+$/, "")}-tuned`) : null;
  const out = folder ? join(folder, "model.safetensors") : (values.out ?? "tuned.safetensors");
  const save = async (path: string, bytes: Uint8Array) => {
    if (folder) await writeFolder(folder, values.hf!, bytes);
    else await saveFile(path, bytes);
  };
  const created = await client.fineTunes.create(params);

  if (!isJob(created)) {
    const { weights: encoded, ...result } = created;
    const bytes = decodeWeights({ weights: encoded });
    await save(out, bytes);
    if (json) io.stdout.write(JSON.stringify({ ...result, mode: "sync", weights_file: out }, null, 2) + "\n");
    else io.stdout.write(summary({ ...result, error: result.error ?? null, mode: "sync" }, { file: out, bytes: bytes.byteLength }));
    return created.status === "succeeded" ? EXIT.ok : EXIT.notSucceeded;
  }

  if (values.detach) {
    if (json) io.stdout.write(JSON.stringify(created, null, 2) + "\n");
    else io.stdout.write(`${created.id} ${created.status} (${created.plan.placement})\nFollow it with: edgetune jobs events ${created.id}\n`);
    return EXIT.ok;
  }

  if (!json && created.trials) io.stderr.write(`${created.id}: a search of ${created.trials.length} trials, ${created.search?.parallel ?? 1} at once\n`);
  else if (!json) io.stderr.write(`${created.id} queued for ${created.plan.placement === "gpu-node" ? "a GPU node" : "the edge"} (${created.plan.steps.toLocaleString("en-US")} steps)\n`);
  const bar = new ProgressBar(io.stderr, epochs);
  const job = await follow(client, created.id, io, (e) => bar.update(e)).finally(() => bar.done());
  let weights: { file: string; bytes: number } | null = null;
  if (job.status !== "failed") {
    try {
      const bytes = await client.fineTunes.weights(job.id);
      await save(out, bytes);
      weights = { file: out, bytes: bytes.byteLength };
    } catch (err) {
      if (!(err instanceof NotFoundError || err instanceof ConflictError)) throw err;
    }
  }
  if (json) io.stdout.write(JSON.stringify({ ...job, weights_file: weights?.file ?? null }, null, 2) + "\n");
  else io.stdout.write(summary(job, weights) + (job.trials ? trialsTable(job) : ""));
  return job.status === "succeeded" ? EXIT.ok : EXIT.notSucceeded;
}

/** Waits for a job; Ctrl-C stops waiting (the job keeps running) with a hint. */
async function follow(client: Edgetune, id: string, io: CliIO, onEvent: (e: FineTuneEvent) => void): Promise<Job> {
  const controller = new AbortController();
  const remove = io.onInterrupt?.(() => {
    io.stderr.write(`\nStopped waiting; the job keeps running. Cancel it with: edgetune jobs cancel ${id}\n`);
    controller.abort();
  });
  try {
    return await client.fineTunes.waitForCompletion(id, { onEvent, signal: controller.signal });
  } finally {
    remove?.();
  }
}

/** The tuned Hugging Face folder: model.safetensors, and config.json and tokenizer.json as given. */
async function writeFolder(folder: string, source: string, weights: Uint8Array): Promise<void> {
  try {
    await mkdir(folder, { recursive: true });
  } catch (err) {
    throw new Error(`cannot create ${folder}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  await saveFile(join(folder, "model.safetensors"), weights);
  for (const name of ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]) {
    if (await exists(join(source, name))) await saveFile(join(folder, name), await readFile(join(source, name)));
  }
}

async function saveFile(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await writeFile(path, bytes);
  } catch (err) {
    throw new Error(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

// ---------------------------------------------------------------- jobs

async function listJobs(client: Edgetune, values: Values, io: CliIO, json: boolean): Promise<number> {
  const limit = number(values, "limit", "int", (n) => n >= 1 && n <= 100);
  const status = values.status?.split(",") as JobSummary["status"][] | undefined; // the API names a bad state
  const list = client.fineTunes.list({ ...(limit !== undefined ? { limit } : {}), ...(values.cursor ? { cursor: values.cursor } : {}), ...(status ? { status } : {}) });
  let jobs: JobSummary[];
  let next: string | null = null;
  if (values.all) {
    jobs = [];
    for await (const job of list) jobs.push(job);
  } else {
    const page = await list;
    jobs = page.data;
    next = page.next_cursor;
  }
  if (json) {
    io.stdout.write(JSON.stringify({ object: "list", data: jobs, next_cursor: next }, null, 2) + "\n");
    return EXIT.ok;
  }
  if (jobs.length === 0) {
    io.stdout.write(status ? `No fine-tunes ${status.join(" or ")}.\n` : "No fine-tunes yet.\n");
    return EXIT.ok;
  }
  const rows = jobs.map((j) => {
    const last = j.metrics?.last;
    return [j.id, j.status, j.mode, j.plan.placement, j.created_at.replace("T", " ").replace(/\.\d+Z$/, "Z"), String(j.metrics?.epochs ?? 0), num(last?.train_loss)];
  });
  io.stdout.write(table(["id", "status", "mode", "placement", "created", "epochs", "train_loss"], rows, [0, 1, 2, 3, 4]));
  if (next) io.stdout.write(`More: edgetune jobs list --cursor ${next}${limit ? ` --limit ${limit}` : ""}${status ? ` --status ${status.join(",")}` : ""}\n`);
  return EXIT.ok;
}

async function getJob(client: Edgetune, id: string, io: CliIO, json: boolean): Promise<number> {
  const job = await client.fineTunes.retrieve(id);
  if (json) io.stdout.write(JSON.stringify(job, null, 2) + "\n");
  else {
    io.stdout.write(summary(job));
    if (job.trials) io.stdout.write(trialsTable(job));
    if (job.weights_url) io.stdout.write(`${"weights".padEnd(10)} edgetune jobs weights ${job.id}\n`);
  }
  return EXIT.ok;
}

/** The explain object from --spec and the options over it. */
async function explainSpec(values: Values): Promise<ExplainRequestInput> {
  const spec: Record<string, unknown> = values.spec ? await readJson(values.spec, "explain spec") : {};
  spec.method = oneOf(values, "method", ["integrated_gradients", "kernel_shap"] as const) ?? spec.method ?? "integrated_gradients";
  if (values.rows) {
    const text = await readText(values.rows, "rows");
    let rows: unknown;
    try {
      rows = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`rows ${values.rows} is not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(rows)) throw new UsageError(`rows ${values.rows} must hold a JSON array of rows`);
    spec.rows = rows;
  }
  if (values.target !== undefined) spec.target = values.target === "predicted" ? "predicted" : number(values, "target", "int", (n) => n >= 0);
  const ig = spec.method === "integrated_gradients";
  const only = (name: keyof Values, applies: boolean) => {
    if (values[name] !== undefined && !applies) throw new UsageError(`--${name} does not apply to ${spec.method as string}`);
  };
  only("steps", ig), only("baseline", ig), only("integration", ig), only("samples", !ig), only("seed", !ig);
  const steps = number(values, "steps", "int", (n) => n >= 2);
  if (steps !== undefined) spec.steps = steps;
  const baseline = oneOf(values, "baseline", ["zeros", "mean"] as const);
  if (baseline !== undefined) spec.baseline = baseline;
  const integration = oneOf(values, "integration", ["gausslegendre", "riemann_trapezoid"] as const);
  if (integration !== undefined) spec.integration = integration;
  const samples = number(values, "samples", "int", (n) => n >= 2);
  if (samples !== undefined) spec.samples = samples;
  const seed = number(values, "seed", "int", (n) => n >= 0);
  if (seed !== undefined) spec.seed = seed;
  const placement = oneOf(values, "placement", ["auto", "edge", "gpu-node"] as const);
  if (placement !== undefined) spec.placement = placement;
  return spec as ExplainRequestInput;
}

async function explainJob(client: Edgetune, id: string, values: Values, io: CliIO, json: boolean): Promise<number> {
  const e = await client.fineTunes.explain(id, await explainSpec(values), {
    onQueued: (task) => void io.stderr.write(`${task.id}: queued for a GPU node (over the in-Worker budget, or --placement gpu-node); waiting for its result\n`),
  });
  if (json) {
    io.stdout.write(JSON.stringify(e, null, 2) + "\n");
    return EXIT.ok;
  }
  const most = Math.max(...e.feature_importance, 0);
  const width = Math.max(7, ...e.feature_names.map((n) => n.length));
  const order = e.feature_names.map((_, j) => j).sort((a, b) => e.feature_importance[b]! - e.feature_importance[a]!);
  io.stdout.write(`${e.method}, target ${e.target}, ${e.attributions.length} rows: mean |attribution| per feature\n`);
  for (const j of order) {
    const v = e.feature_importance[j]!;
    const bar = "#".repeat(most > 0 ? Math.round((v / most) * 40) : 0);
    io.stdout.write(`${e.feature_names[j]!.padEnd(width)}  ${v.toPrecision(4).padStart(11)}  ${bar}\n`);
  }
  if (e.convergence_delta) {
    const worst = Math.max(...e.convergence_delta.map(Math.abs));
    io.stdout.write(`largest |convergence delta|: ${worst.toPrecision(3)} (more --steps make it smaller)\n`);
  }
  return EXIT.ok;
}

async function cancelJob(client: Edgetune, id: string, io: CliIO, json: boolean): Promise<number> {
  const job = await client.fineTunes.cancel(id);
  if (json) io.stdout.write(JSON.stringify(job, null, 2) + "\n");
  else io.stdout.write(job.status === "cancelled" ? `${job.id} cancelled\n` : `${job.id} ${job.status}: cancel requested; it stops within an epoch\n`);
  return EXIT.ok;
}

async function pauseOrResume(client: Edgetune, action: "pause" | "resume", id: string, io: CliIO, json: boolean): Promise<number> {
  const job = action === "pause" ? await client.fineTunes.pause(id) : await client.fineTunes.resume(id);
  if (json) io.stdout.write(JSON.stringify(job, null, 2) + "\n");
  else if (action === "resume") io.stdout.write(`${job.id} ${job.status}: it continues from its last checkpoint\n`);
  else io.stdout.write(job.status === "paused" ? `${job.id} paused; resume it with: edgetune jobs resume ${job.id}\n` : `${job.id} ${job.status}: pause requested; it checkpoints and stops at the end of its epoch\n`);
  return EXIT.ok;
}

async function listCheckpoints(client: Edgetune, id: string, io: CliIO, json: boolean): Promise<number> {
  const checkpoints = await client.fineTunes.checkpoints.list(id);
  if (json) {
    io.stdout.write(JSON.stringify({ object: "list", data: checkpoints }, null, 2) + "\n");
    return EXIT.ok;
  }
  io.stdout.write(["epoch".padStart(6), "step".padStart(8), "train_loss".padStart(12), "val_loss".padStart(12), "  created"].join("") + "\n");
  for (const c of checkpoints) {
    io.stdout.write([String(c.epoch).padStart(6), String(c.step).padStart(8), num(c.metrics.train_loss).padStart(12), (c.metrics.val_loss === undefined ? "-" : num(c.metrics.val_loss)).padStart(12), `  ${c.created_at}`].join("") + "\n");
  }
  if (checkpoints.length === 0) io.stdout.write(`(none: give training.checkpoints {every, keep} to save some)\n`);
  return EXIT.ok;
}

async function downloadCheckpointWeights(client: Edgetune, id: string, epoch: number, out: string, io: CliIO, json: boolean): Promise<number> {
  const bytes = await client.fineTunes.checkpoints.weights(id, epoch);
  await saveFile(out, bytes);
  if (json) io.stdout.write(JSON.stringify({ id, epoch, weights_file: out, bytes: bytes.byteLength }) + "\n");
  else io.stdout.write(`${out} (${bytes.byteLength.toLocaleString("en-US")} bytes)\n`);
  return EXIT.ok;
}

async function deleteJob(client: Edgetune, id: string, io: CliIO, json: boolean): Promise<number> {
  await client.fineTunes.delete(id);
  io.stdout.write(json ? JSON.stringify({ id, deleted: true }) + "\n" : `${id} deleted\n`);
  return EXIT.ok;
}

async function followEvents(client: Edgetune, id: string, values: Values, io: CliIO, json: boolean): Promise<number> {
  const after = number(values, "last-event-id", "int", (n) => n >= 0);
  const controller = new AbortController();
  const remove = io.onInterrupt?.(() => controller.abort());
  let final: FineTuneEvent | null = null;
  try {
    for await (const e of client.fineTunes.events(id, { ...(after !== undefined ? { lastEventId: after } : {}), signal: controller.signal })) {
      if (json) io.stdout.write(JSON.stringify(e) + "\n");
      else io.stdout.write(`${String(e.id).padStart(4)}  ${e.event.padEnd(6)}  ${describeEvent(e)}\n`);
      if (e.event === "done" || e.event === "error") final = e;
    }
  } finally {
    remove?.();
  }
  return final?.event === "done" ? EXIT.ok : EXIT.notSucceeded;
}

function describeEvent(e: FineTuneEvent): string {
  switch (e.event) {
    case "status":
      return `${e.data.status}${e.data.attempt ? ` (attempt ${e.data.attempt}${e.data.resumed_from_epoch ? `, from the checkpoint of epoch ${e.data.resumed_from_epoch}` : ""})` : ""}`;
    case "epoch":
      return [`epoch ${e.data.epoch}`, `train_loss ${num(e.data.train_loss)}`, ...(e.data.val_loss !== undefined ? [`val_loss ${num(e.data.val_loss)}`] : []), ...(e.data.val_accuracy !== undefined ? [`val_accuracy ${num(e.data.val_accuracy)}`] : []), `lr ${num(e.data.lr)}`].join("  ");
    case "step":
      return `step ${e.data.step}  epoch ${e.data.epoch}  loss ${num(e.data.loss)}  lr ${num(e.data.lr)}`;
    case "trial":
      return `trial ${e.data.id}  ${e.data.status}${e.data.epoch !== null ? `  epoch ${e.data.epoch}` : ""}${e.data.metric !== null ? `  metric ${num(e.data.metric)}` : ""}`;
    case "done":
    case "error":
      return `${e.data.status}${e.data.error ? `: ${e.data.error.code}: ${e.data.error.message}` : ""}`;
  }
}

async function downloadWeights(client: Edgetune, id: string, out: string, io: CliIO, json: boolean): Promise<number> {
  const bytes = await client.fineTunes.weights(id);
  await saveFile(out, bytes);
  if (json) io.stdout.write(JSON.stringify({ id, weights_file: out, bytes: bytes.byteLength }) + "\n");
  else io.stdout.write(`${out} (${bytes.byteLength.toLocaleString("en-US")} bytes)\n`);
  return EXIT.ok;
}
