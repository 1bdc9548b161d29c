/**
 * Preparing a run: every check that can fail on user input, done before any training starts.
 *
 *   request (zod) -> data tables -> compiled model (shapes, names, ops) -> targets vs outputs
 *   -> plan (steps, FLOPs, memory) -> weights (safetensors, as load_state_dict(strict=True))
 *
 * The result, a PreparedRun, is what every backend and the training loop consume; nothing here
 * knows where the run will execute.
 */
import type { AsWritten } from "../schema/as-written.js";
import { FineTuneRequest, type DatasetSpec, type FineTuneRequestInput, type FineTuneRequest as Request, type ParsedFineTuneRequest } from "../schema/request.js";
import { zodIssues } from "../schema/issues.js";
import { checkPrivacy, resolvePrivacy, type PrivacySettings } from "./privacy/index.js";
import { RequestValidationError, UnprocessableError, type FieldIssue } from "../errors.js";
import { decodeBase64 } from "../formats/base64.js";
import { tableFromInline, type Table } from "../formats/dataset.js";
import { tableFromSafetensors } from "../formats/dataset-safetensors.js";
import { checkTargets, checkTokenIds } from "./targets.js";
import { parseSafetensors, readTensorF32 } from "../formats/safetensors.js";
import { loadTokenizer, tokenizeTables, tokenizerVocabularySize } from "../formats/text.js";
import { compileModel } from "./graph/compile.js";
import { checkExplain, DEFAULT_EXPLAIN_ROWS, explainFlops } from "./explain/index.js";
import { readCheckpoint } from "./huggingface/checkpoint.js";
import { resolveArchitecture, type HfTask, type ResolvedArchitecture } from "./huggingface/index.js";
import { numLabels, type ProblemType } from "./huggingface/define.js";
import { causalLmTargets, IGNORE_INDEX, labelIds, mapLabelNames } from "./huggingface/labels.js";
import { defaultInit } from "./init.js";
import { readAdapterWeights, resolveLora } from "./adapters/resolve.js";
import type { CompiledModel } from "./graph/types.js";
import { showShape } from "./layers/define.js";
import { checkLossSpec } from "./losses.js";
import { planRun, type RunPlan } from "./plan.js";
import { stateDtype, stateElements } from "./model.js";
import { identityOrder, MT19937, mixSeed, shuffleInPlace } from "./rng.js";
import { batchSizeCandidates, chooseLoss, LR_FINDER } from "./strategy.js";

/**
 * A request in the schema's exact input types: the API's JSON, or with weights as raw safetensors
 * bytes, and `data.train` / `data.validation` as a safetensors dataset's bytes (a Uint8Array, read
 * in place during the call: formats/dataset-safetensors.ts).
 */
export type ExactTrainRequest = Omit<FineTuneRequestInput, "weights" | "adapter_weights" | "data"> & {
  weights?: string | Uint8Array | null;
  adapter_weights?: string | Uint8Array | null;
  data: Omit<FineTuneRequestInput["data"], "train" | "validation"> & {
    train?: FineTuneRequestInput["data"]["train"] | Uint8Array;
    validation?: FineTuneRequestInput["data"]["validation"] | Uint8Array;
  };
};

/**
 * A request as `train()` accepts it: `ExactTrainRequest` as an app may write it (readonly
 * arrays, a JSON import's widened literals; see AsWritten). It is validated when the run is prepared.
 */
export type TrainRequest = AsWritten<ExactTrainRequest>;

/**
 * What the loss sees of the model's output: `positions` predictions of `classes` values per
 * sample (one position for [C] outputs; T for a per-token [T, C] output).
 */
export interface OutputLayout {
  positions: number;
  classes: number;
}

/** What a run of a Hugging Face model reports besides the weights (FineTuneResult.huggingface). */
export interface HuggingFaceRun {
  architecture: string;
  task: HfTask;
  /** config.json as given: returned unchanged, so that the output folder is complete. */
  config: Record<string, unknown>;
  /** Task-head tensors the checkpoint lacked, initialised as transformers' _init_weights. */
  initialized: string[];
  /** Checkpoint keys of other heads (BERT's pre-training `cls.*`), not used. */
  dropped: string[];
}

/**
 * Everything a run needs, validated: the parsed request, the compiled model, initial state, data.
 */
export interface PreparedRun {
  request: Request;
  model: CompiledModel;
  output: OutputLayout;
  /** The given weights (and buffers), or null: PyTorch's default init from training.seed, done by the run. */
  initialState: Map<string, Float32Array> | null;
  train: Table;
  validation: Table | null;
  plan: RunPlan;
  /** A Hugging Face model: its architecture and task, and what reading its checkpoint did; null for layer lists. */
  huggingface: HuggingFaceRun | null;
  /** The model's own names of state tensors renamed after the checkpoint (a base file without its prefix); null when none were. */
  originalNames: Map<string, string> | null;
  /**
   * Which learning rates the run's range test chooses (docs/strategy.md): the optimizer's lr
   * and/or onecycle's max_lr, given as "auto". Until then the request holds the test's start
   * rate as lr and no max_lr. Absent or null: none.
   */
  lrFinder?: { lr: boolean; maxLr: boolean } | null;
  /** A private run's DP-SGD settings (request `privacy`, σ resolved), or null. */
  privacy?: PrivacySettings | null;
}

/**
 * How prepareRun chooses what the request leaves to it.
 *
 * @example
 * ```ts
 * prepareRun(request, tables, { memoryBudgetBytes: 96 * 2 ** 20 }).plan.batch_size; // "auto" fitted to the Worker
 * ```
 */
export interface PrepareOptions {
  /**
   * The memory budget "batch_size": "auto" fits the plan to (the placement's: the in-Worker
   * budget at the edge); when no batch size fits it, the largest that fits WebAssembly memory.
   * Default: WebAssembly memory (3.5 GiB).
   */
  memoryBudgetBytes?: number | undefined;
}

/**
 * Validates a request and everything it refers to (weights, data, plan) without training.
 * Throws RequestValidationError (400) or UnprocessableError subclasses (422) naming the field.
 *
 * @example
 * ```ts
 * const prepared = prepareRun(request);
 * prepared.plan.flops; // decide where to run it
 * ```
 */
export function prepareRun(input: TrainRequest, tables: { train?: Table; validation?: Table } = {}, options: PrepareOptions = {}): PreparedRun {
  if (!isObject(input)) throw new RequestValidationError([{ path: "(body)", message: "must be a JSON object" }]);
  const rawWeights = input.weights;
  const rawAdapterWeights = input.adapter_weights;
  // Inline rows are validated once, by tableFromInline (row and column paths, NaN/Inf, ragged
  // rows): running zod over every number as well would double the cost of a small job.
  const data = isObject(input.data) ? input.data : undefined;
  const parsed = FineTuneRequest.safeParse({
    ...input,
    weights: rawWeights instanceof Uint8Array ? null : rawWeights,
    adapter_weights: rawAdapterWeights instanceof Uint8Array ? null : rawAdapterWeights,
    data: data ? { ...data, train: undefined, validation: undefined } : input.data,
  });
  if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
  const { request, lrFinder, autoBatchSize } = openChoices(parsed.data);
  const huggingface = request.model.huggingface ? resolveArchitecture(request.model.huggingface) : null;

  let train = tables.train ?? inlineTable(data?.train, "data.train");
  if (!train) throw new RequestValidationError([{ path: "data.train", message: "training data is required" }]);
  let validation = tables.validation ?? inlineTable(data?.validation, "data.validation");
  if (train.labelNames || validation?.labelNames) ({ train, validation } = classIndicesOfNames(huggingface, train, validation));
  if (train.text || validation?.text) ({ train, validation } = tokenizeText(request, huggingface, train, validation));
  else if (huggingface && request.tokenizer) checkTokenizer(loadTokenizer(request.tokenizer), huggingface);
  if (validation) {
    if (request.data.validation_split !== undefined) {
      throw new RequestValidationError([{ path: "data.validation_split", message: "give either data.validation or data.validation_split, not both" }]);
    }
    checkSameColumns(train, validation);
  }

  // ---- a causal LM's targets: the next token (labels shifted inside the model, as transformers)
  if (huggingface?.task === "causal-lm") {
    train = causalLmTargets(train, "data.train");
    if (validation) validation = causalLmTargets(validation, "data.validation");
  }

  // ---- a Hugging Face head's loss, as its forward picks it (its labels' shape decides some)
  if (huggingface) applyTaskLoss(request, huggingface, isObject(input.training) && isObject(input.training.loss) && input.training.loss.type !== "auto", train.targets);

  // ---- the model, compiled for the data's shape (with its adapter: a first pass finds the modules)
  const dataShape = { features: train.features, tokens: train.ids ?? false, mask: !!train.mask };
  const lora = request.adapter ? resolveLora(request.adapter, compileModel(request.model, null, dataShape), huggingface) : null;
  checkAdapterFields(request, rawAdapterWeights);
  let model = compileModel(request.model, request.trainable, dataShape, lora, request.training.gradient_checkpointing);
  checkBaseDtype(model);
  if (model.tokenTypes !== null) {
    checkTokenTypes(train, model.tokenTypeCount, "data.train");
    if (validation) checkTokenTypes(validation, model.tokenTypeCount, "data.validation");
  }
  const output = outputLayout(model, request);
  if (autoLoss(request)) request.training.loss = chooseLoss(train, output);
  checkLossSpec(request.training.loss, output.classes);
  checkModelSize(model);
  if (model.vocabulary) {
    checkTokenIds(train, model.vocabulary, "data.train");
    if (validation) checkTokenIds(validation, model.vocabulary, "data.validation");
  }
  checkTargets(train, request.training.loss, output.classes, "data.train", output.positions);
  if (request.explain) checkExplain(request.explain, model, output, train);
  checkPrivacy(request, model);
  if (validation) checkTargets(validation, request.training.loss, output.classes, "data.validation", output.positions);
  else if (request.data.validation_split !== undefined) {
    [train, validation] = splitTable(train, request.data.validation_split, request.training.seed);
  }
  const planData = {
    trainRows: train.rows,
    validationRows: validation?.rows ?? 0,
    features: train.features,
    targets: train.targets,
    mask: !!train.mask,
  };
  const planOptions = { lrFinderSteps: lrFinder ? LR_FINDER.steps : 0 };
  const plan = autoBatchSize
    ? planAutoBatchSize(request, model, output, planData, planOptions, options.memoryBudgetBytes ?? MAX_MEMORY_BYTES)
    : planRun(request, model, output, planData, planOptions);
  if (request.explain) {
    // the explanation runs after training, where the job runs: its cost is part of the run's
    const rows = request.explain.rows?.length ?? Math.min(DEFAULT_EXPLAIN_ROWS, (validation ?? train).rows);
    plan.flops += explainFlops(request.explain, model, rows, train.rows);
  }
  let privacy: PrivacySettings | null = null;
  if (request.privacy && lrFinder) {
    // the range test trains on the data without clipping or noise, and its losses are reported
    throw new UnprocessableError("invalid_privacy", [
      {
        path: lrFinder.lr ? "training.optimizer.lr" : "training.schedule.max_lr",
        message: '"auto" runs a learning-rate range test on the private data without clipping or noise, which the privacy budget does not account for; give the rate',
      },
    ]);
  }
  if (request.privacy) {
    // the clipped sum of a private step is kept beside the gradients, and each row goes through
    // the forward and backward passes twice (the ghost norms, then the clipped sum): the cost
    // the in-Worker budget and the placement see
    plan.memory_bytes += 4 * model.trainableCount;
    plan.flops += request.training.epochs * train.rows * (model.forwardFlopsPerRow + model.backwardFlopsPerRow);
    try {
      privacy = resolvePrivacy(request.privacy, request.training.batch_size, train.rows, plan.steps);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      throw new UnprocessableError("invalid_privacy", [{ path: "privacy.target_epsilon", message: `${e.message} (${plan.steps} steps at sample rate ${Math.min(1, request.training.batch_size / train.rows)})` }]);
    }
  }
  if (plan.memory_bytes > MAX_MEMORY_BYTES) {
    throw new UnprocessableError("too_large", [
      {
        path: "model.layers",
        message: `the run needs ${(plan.memory_bytes / 2 ** 30).toFixed(2)} GiB of memory; WebAssembly memory is limited to ${MAX_MEMORY_BYTES / 2 ** 30} GiB`,
      },
    ]);
  }
  // weights are read only once the plan is known to fit; without weights, the run initialises
  // them itself (from training.seed), so nothing of the model's size is allocated here
  const bytes = rawWeights === undefined || rawWeights === null ? null : typeof rawWeights === "string" ? decodeBase64(rawWeights, "weights") : rawWeights;
  let initialState: Map<string, Float32Array> | null = null;
  let originalNames: Map<string, string> | null = null;
  const initialized: string[] = [];
  const dropped: string[] = [];
  // an adapter's tensors are not the base's: they come from adapter_weights or their init
  const adapterNames = new Set(model.lora?.modules.flatMap((m) => [model.state[m.a]!.name, model.state[m.b]!.name]) ?? []);
  const baseModel = adapterNames.size > 0 ? { ...model, state: model.state.filter((t) => !adapterNames.has(t.name)) } : model;
  if (bytes && model.checkpoint) {
    // a 16-bit base's frozen tensors stay as the file's bits when it holds them in that dtype
    const compiled = model;
    const read = readCheckpoint(parseSafetensors(bytes, { field: "weights" }), baseModel.state, model.checkpoint, { holdHalf: (t) => stateDtype(compiled, t) });
    initialState = read.values;
    if (read.initialized.length > 0) {
      // the task head the file lacks starts as transformers' _init_weights starts it
      const head = new Set(read.initialized.map((name) => model.state.findIndex((t) => t.name === name)));
      const init = defaultInit(model, request.training.seed, head);
      for (const name of read.initialized) initialState.set(name, init.get(name)!);
    }
    if (read.prefixless) {
      // the result is named as the file was (a base-model file for an *LMHeadModel)
      const prefix = model.checkpoint.basePrefix;
      const rename = (n: string) => (n.startsWith(prefix) ? n.slice(prefix.length) : n);
      initialState = read.values.renamed(rename);
      originalNames = new Map(model.state.map((t) => [rename(t.name), t.name]));
      model = { ...model, state: model.state.map((t) => ({ ...t, name: rename(t.name) })) };
    }
    initialized.push(...read.initialized);
    dropped.push(...read.dropped);
  } else if (bytes) {
    initialState = loadWeights(baseModel, bytes);
  }
  if (model.lora) {
    const adapterBytes =
      rawAdapterWeights === undefined || rawAdapterWeights === null ? null : typeof rawAdapterWeights === "string" ? decodeBase64(rawAdapterWeights, "adapter_weights") : rawAdapterWeights;
    const continued = adapterBytes ? readAdapterWeights(parseSafetensors(adapterBytes, { field: "adapter_weights" }), model) : null;
    // the new adapter draws from its own generator, as `torch.manual_seed(seed); get_peft_model(model,
    // config)` does over a loaded base; the base (without weights) from the same seed, as before
    const adapterTensors = new Set(model.lora.modules.flatMap((m) => [m.a, m.b]));
    const seed = request.training.seed;
    const adapterInit = defaultInit({ ...model, init: model.init.filter((s) => adapterTensors.has(s.tensor)) }, seed, adapterTensors);
    const state = initialState ?? defaultInit({ ...model, init: model.init.filter((s) => !adapterTensors.has(s.tensor)) }, seed);
    for (const name of adapterNames) state.set(name, adapterInit.get(name)!);
    for (const [name, data] of continued ?? []) state.set(name, data);
    initialState = state;
  }
  const hf: HuggingFaceRun | null = huggingface
    ? { architecture: huggingface.def.name, task: huggingface.task, config: request.model.huggingface!.config, initialized, dropped }
    : null;
  return { request, model, output, initialState, train, validation, plan, huggingface: hf, originalNames, lrFinder, privacy };
}

/**
 * The parsed request with its "auto" choices set aside (docs/strategy.md): lr "auto" becomes the
 * range test's start rate and onecycle's max_lr "auto" is left out until the run's range test
 * chooses them (lrFinder); batch_size "auto" and loss "auto" stay to be chosen once the data
 * and the model are known (autoBatchSize, autoLoss).
 */
function openChoices(parsed: ParsedFineTuneRequest): { request: Request; lrFinder: PreparedRun["lrFinder"]; autoBatchSize: boolean } {
  const t = parsed.training;
  const lr = t.optimizer.lr === "auto";
  if (lr) t.optimizer.lr = LR_FINDER.startLr;
  const maxLr = t.schedule.type === "onecycle" && t.schedule.max_lr === "auto";
  if (maxLr && t.schedule.type === "onecycle") delete t.schedule.max_lr;
  const autoBatchSize = t.batch_size === "auto";
  if (autoBatchSize) t.batch_size = 1; // chosen by planAutoBatchSize
  // what is left of "auto" is the loss, which autoLoss() finds and chooseLoss() replaces
  return { request: parsed as unknown as Request, lrFinder: lr || maxLr ? { lr, maxLr } : null, autoBatchSize };
}

/** Whether the loss is still "auto" (openChoices leaves it for chooseLoss). */
function autoLoss(request: Request): boolean {
  return (request.training.loss as { type: string }).type === "auto";
}

/**
 * "batch_size": "auto": the first of batchSizeCandidates() (powers of two up to the rows, at most
 * 256) whose plan is valid (no batch too small for BatchNorm) and fits `budget`; when none fits
 * it, the largest that fits WebAssembly memory. The choice is written into the request
 * (a stored job input keeps it) and reported as plan.batch_size.
 */
function planAutoBatchSize(
  request: Request,
  model: CompiledModel,
  output: OutputLayout,
  data: Parameters<typeof planRun>[3],
  planOptions: Parameters<typeof planRun>[4],
  budget: number,
): RunPlan {
  let fallback: { batch: number; plan: RunPlan } | null = null;
  let firstError: unknown = null;
  for (const batch of batchSizeCandidates(data.trainRows)) {
    request.training.batch_size = batch;
    let plan: RunPlan;
    try {
      plan = planRun(request, model, output, data, planOptions);
    } catch (e) {
      // a batch size that leaves a batch too small for a layer: try the next
      if (e instanceof UnprocessableError && e.errors.every((i) => i.path === "training.batch_size")) {
        firstError ??= e;
        continue;
      }
      throw e;
    }
    if (plan.memory_bytes <= budget) return plan;
    if (!fallback && plan.memory_bytes <= MAX_MEMORY_BYTES) fallback = { batch, plan };
  }
  if (fallback) {
    request.training.batch_size = fallback.batch;
    return fallback.plan;
  }
  if (firstError) throw firstError;
  // not even one row fits: the memory check after planning says how much it needs
  request.training.batch_size = 1;
  return planRun(request, model, output, data, planOptions);
}

/**
 * The loss of a Hugging Face task, as transformers' heads compute it. A causal LM takes
 * cross-entropy over the vocabulary (the only loss it takes). A sequence classifier takes what
 * its forward picks from `config.problem_type`: "regression" MSELoss, "single_label_classification"
 * CrossEntropyLoss, "multi_label_classification" BCEWithLogitsLoss. Without one, forward picks
 * regression for num_labels 1, single-label for integer (class index) labels and multi-label for
 * float labels; JSON cannot tell 1 from 1.0, so here the labels' shape stands for their dtype:
 * rows of num_labels values are multi-label targets, one value per row a class index
 * (https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py,
 * BertForSequenceClassification.forward). An explicit `training.loss` stands for sequence
 * classification. `targets`: target values per row of the training data.
 */
function applyTaskLoss(request: Request, arch: ResolvedArchitecture, given: boolean, targets: number): void {
  const crossEntropy = { type: "cross_entropy" as const, weight: null, ignore_index: IGNORE_INDEX, label_smoothing: 0 };
  if (arch.task === "causal-lm") {
    if (given && request.training.loss.type !== "cross_entropy") {
      throw new UnprocessableError("invalid_model", [{ path: "training.loss.type", message: `a causal LM trains with cross_entropy, not ${request.training.loss.type}` }]);
    }
    if (!given) request.training.loss = crossEntropy;
    return;
  }
  if (given) return;
  const problem = problemType(arch, targets);
  request.training.loss =
    problem === "regression" ? { type: "mse" } : problem === "multi_label_classification" ? { type: "bce_with_logits", pos_weight: null } : crossEntropy;
}

/**
 * A sequence classifier's problem type as its forward picks it (applyTaskLoss): config.problem_type,
 * else regression for num_labels 1, multi-label for rows of num_labels targets, else single-label.
 */
function problemType(arch: ResolvedArchitecture, targets: number): ProblemType {
  const config = arch.config as { id2label?: Record<string, string>; num_labels?: number; problem_type?: ProblemType | null };
  const labels = numLabels(config);
  return config.problem_type ?? (labels === 1 ? "regression" : targets === labels ? "multi_label_classification" : "single_label_classification");
}

/**
 * Targets given as class names (text rows' `"y": "positive"`), as class indices: a Hugging Face
 * sequence classifier's names (config.label2id, labelIds) are the only ones a request has, and
 * only single-label classification takes one name per row. A 422 at the targets otherwise.
 */
function classIndicesOfNames(arch: ResolvedArchitecture | null, train: Table, validation: Table | null): { train: Table; validation: Table | null } {
  const [table, field] = train.labelNames ? [train, "data.train"] : [validation!, "data.validation"];
  const { names, column } = table.labelNames!;
  const line = table.lines?.[0];
  const refuse = (why: string): never => {
    const message = `holds class names (${JSON.stringify(names[0])} first): ${why}`;
    throw new UnprocessableError("invalid_dataset", [line !== undefined ? { path: field, line, column, message } : { path: `${field}.${column}`, message }]);
  };
  if (arch?.task !== "sequence-classification") {
    refuse("names are turned into class indices through a Hugging Face sequence classifier's config.label2id (model.huggingface); for this model give the class indices (0, 1, ...)");
  }
  const config = arch!.config as { label2id?: unknown; id2label?: Record<string, string>; num_labels?: number; problem_type?: ProblemType | null };
  const classes = numLabels(config);
  const problem = problemType(arch!, 1); // one name per row
  if (problem !== "single_label_classification") {
    refuse(`one name per row is a single-label target, but the model is set up for ${problem} (${config.problem_type ? "config.problem_type" : "num_labels 1"})`);
  }
  const ids = labelIds(config, classes);
  return { train: mapLabelNames(train, ids, "data.train"), validation: validation ? mapLabelNames(validation, ids, "data.validation") : null };
}

/**
 * token_type_ids must index type_vocab_size rows (a model that does not read them, DistilBERT,
 * ignores them, as its tokenizer leaves them out).
 */
function checkTokenTypes(table: Table, types: number, field: string): void {
  if (!table.tokenTypes) return;
  const T = table.features;
  const bad = table.tokenTypes.findIndex((v) => !Number.isInteger(v) || v < 0 || v >= types);
  if (bad >= 0) {
    const r = Math.floor(bad / T);
    throw new UnprocessableError("invalid_dataset", [
      { path: `${field}.token_type_ids[${r}]`, message: `has ${table.tokenTypes[bad]} at position ${bad % T}; token types must be integers below type_vocab_size ${types}` },
    ]);
  }
}

/** adapter_weights and output.format other than "full" belong to adapter runs; an adapter replaces `trainable`. */
function checkAdapterFields(request: Request, adapterWeights: unknown): void {
  const issues: FieldIssue[] = [];
  if (!request.adapter) {
    if (adapterWeights !== undefined && adapterWeights !== null) issues.push({ path: "adapter_weights", message: "continues an adapter, but the request has no `adapter`" });
    if (request.output.format !== "full") issues.push({ path: "output.format", message: `is "${request.output.format}", which is for adapter runs: give an \`adapter\`` });
  } else if (request.trainable !== null) {
    issues.push({ path: "trainable", message: "an adapter decides what trains (the adapter, modules_to_save, bias): give either `trainable` or `adapter`" });
  }
  if (issues.length > 0) throw new UnprocessableError("invalid_adapter", issues);
}

/** A 16-bit base_dtype applies to frozen parameters: a run that trains every parameter has none. */
function checkBaseDtype(model: CompiledModel): void {
  if (model.baseDtype === "float32" || model.stateCount > model.trainableCount + model.bufferCount) return;
  throw new UnprocessableError("invalid_model", [
    {
      path: "model.base_dtype",
      message: `is "${model.baseDtype}", which holds the frozen parameters, but every parameter trains: give an \`adapter\` or \`trainable\` to freeze the base, or leave base_dtype at "float32"`,
    },
  ]);
}

/** The most memory a run may plan: WebAssembly's 32-bit memories stop at 4 GiB; keep a margin. */
const MAX_MEMORY_BYTES = 3.5 * 2 ** 30;

/**
 * Refuses models whose parameters alone cannot fit, before anything is allocated for them
 * (three float32 copies of each; with a 16-bit base_dtype, the state block as held plus two
 * copies of what trains and of the buffers).
 */
function checkModelSize(model: CompiledModel): void {
  const bytes = model.baseDtype === "float32" ? model.stateCount * 4 * 3 : stateElements(model) * 4 + (model.trainableCount + model.bufferCount) * 4 * 2;
  if (bytes > MAX_MEMORY_BYTES) {
    throw new UnprocessableError("too_large", [
      { path: "model.layers", message: `${model.paramCount.toLocaleString("en-US")} parameters do not fit in a WebAssembly memory (at most about ${Math.floor(MAX_MEMORY_BYTES / 12).toLocaleString("en-US")} with their gradients and optimizer state)` },
    ]);
  }
}

/**
 * How the loss reads the model's output: [C] is one prediction per sample; [T, C] one per
 * position (per-token targets); anything of higher rank must be flattened or pooled first.
 */
function outputLayout(model: CompiledModel, request: Request): OutputLayout {
  const shape = model.output.shape;
  if (shape.length === 1) return { positions: 1, classes: shape[0]! };
  if (shape.length === 2) return { positions: shape[0]!, classes: shape[1]! };
  const last = (request.model.layers?.length ?? 1) - 1;
  throw new UnprocessableError("shape_mismatch", [
    {
      path: `model.layers[${last}]`,
      message: `the model outputs ${showShape(shape)} per sample; the loss takes [classes] or [tokens, classes]: add a flatten (or a pooling) layer and a linear head`,
    },
  ]);
}

/** Reads safetensors weights and checks them against the model as load_state_dict(strict=True) does. */
function loadWeights(model: CompiledModel, bytes: Uint8Array): Map<string, Float32Array> {
  const file = parseSafetensors(bytes, { field: "weights" });
  const issues: FieldIssue[] = [];
  const values = new Map<string, Float32Array>();
  const expected = new Set(model.state.map((p) => p.name));
  for (const t of model.state) {
    const info = file.tensors.get(t.name);
    if (!info && t.kind === "buffer" && t.dtype === "I64" && t.name.endsWith("num_batches_tracked")) {
      // as BatchNorm's _load_from_state_dict does for a state_dict without a version (safetensors
      // files carry none): a missing num_batches_tracked loads as 0
      values.set(t.name, new Float32Array(t.size));
      continue;
    }
    if (!info) {
      issues.push({ path: "weights", message: `missing tensor "${t.name}" (shape [${t.shape.join(", ")}])` });
      continue;
    }
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
      issues.push({
        path: `weights[${JSON.stringify(t.name)}]`,
        message: `has shape [${info.shape.join(", ")}] but the model expects [${t.shape.join(", ")}]`,
      });
      continue;
    }
    const data = readTensorF32(file, t.name, "weights", { integers: t.kind === "buffer" });
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      issues.push({ path: `weights[${JSON.stringify(t.name)}]`, message: `element ${bad} is ${data[bad]}: weights must be finite` });
      continue;
    }
    values.set(t.name, data);
  }
  for (const name of file.tensors.keys()) {
    if (!expected.has(name)) {
      issues.push({
        path: `weights[${JSON.stringify(name)}]`,
        message: `is not a parameter of the model (its parameters are ${[...expected].join(", ")})`,
      });
    }
  }
  if (issues.length > 0) throw new UnprocessableError("weights_mismatch", issues);
  return values;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * An inline dataset ({x, y}, {input_ids, attention_mask?, y}, {text, y}, {safetensors}) or a
 * safetensors dataset's bytes as a Table, or null when absent.
 */
function inlineTable(value: unknown, field: string): Table | null {
  if (value === undefined || value === null) return null;
  if (value instanceof Uint8Array) return tableFromSafetensors(value, field);
  if (ArrayBuffer.isView(value)) {
    // a Float32Array of every number, say: one issue, not one per element
    throw new RequestValidationError([{ path: field, message: `is a ${Object.prototype.toString.call(value).slice(8, -1)}: give rows as {x: rows, y: targets}, or the dataset as a safetensors file's bytes (a Uint8Array)` }]);
  }
  if (!isObject(value)) throw new RequestValidationError([{ path: field, message: "must be an object {x: rows, y: targets} (or {input_ids, attention_mask, y} for token rows, {text, y} for text rows, {safetensors: base64} for a binary dataset)" }]);
  if ("input_ids" in value || "text" in value || "safetensors" in value) return tableFromInline(value as DatasetSpec, field); // it names its own unknown fields
  const unknown = Object.keys(value).filter((k) => k !== "x" && k !== "y");
  if (unknown.length > 0) throw new RequestValidationError(unknown.map((k) => ({ path: `${field}.${k}`, message: "is not a known field" })));
  return tableFromInline(value as DatasetSpec, field);
}

/** Validation rows must be read as the training rows are: as many features (or token ids), of the same kind. */
function checkSameColumns(train: Table, validation: Table): void {
  const kind = (t: Table) => (t.ids ? "token ids" : "features");
  if (validation.features !== train.features || (validation.ids ?? false) !== (train.ids ?? false)) {
    throw new UnprocessableError("shape_mismatch", [
      {
        path: validation.ids ? "data.validation.input_ids" : "data.validation.x",
        message: `rows have ${validation.features} ${kind(validation)} but the training rows have ${train.features} ${kind(train)}`,
      },
    ]);
  }
  if (!!validation.mask !== !!train.mask) {
    throw new UnprocessableError("shape_mismatch", [
      { path: "data.validation.attention_mask", message: `is ${validation.mask ? "given" : "missing"} but the training data ${train.mask ? "has" : "has none"}` },
    ]);
  }
  if (!!validation.tokenTypes !== !!train.tokenTypes) {
    throw new UnprocessableError("shape_mismatch", [
      { path: "data.validation.token_type_ids", message: `are ${validation.tokenTypes ? "given" : "missing"} but the training data ${train.tokenTypes ? "has them" : "has none"}` },
    ]);
  }
}

/** validation_split: a seeded random split, the first floor(n * (1 - split)) rows of the permutation train. */
function splitTable(table: Table, split: number, seed: number): [Table, Table] {
  const trainRows = Math.floor(table.rows * (1 - split));
  const valRows = table.rows - trainRows;
  if (trainRows === 0 || valRows === 0) {
    throw new UnprocessableError("invalid_dataset", [
      { path: "data.validation_split", message: `splits ${table.rows} rows into ${trainRows} training and ${valRows} validation rows; both need at least one` },
    ]);
  }
  const order = identityOrder(table.rows);
  shuffleInPlace(new MT19937(mixSeed(seed, 0x53504c54)), order); // "SPLT"
  const take = (idx: Int32Array): Table => {
    const pick = (src: Float32Array, width: number) => {
      const out = new Float32Array(idx.length * width);
      idx.forEach((r, i) => out.set(src.subarray(r * width, (r + 1) * width), i * width));
      return out;
    };
    const { lines: _lines, ...rest } = table; // rows move: their source lines no longer apply
    return {
      ...rest,
      rows: idx.length,
      x: pick(table.x, table.features),
      y: pick(table.y, table.targets),
      ...(table.mask ? { mask: pick(table.mask, table.features) } : {}),
      ...(table.tokenTypes ? { tokenTypes: pick(table.tokenTypes, table.features) } : {}),
    };
  };
  return [take(order.subarray(0, trainRows)), take(order.subarray(trainRows))];
}

// ---------------------------------------------------------------- text rows (issue 12)

/**
 * Text rows (`text`, `text_pair`) become token rows with the request's tokenizer.json, as
 * data.tokenization says (formats/text.ts); max_length defaults to the Hugging Face config's
 * max_position_embeddings (n_positions for GPT-2). Train and validation are both text or both not.
 */
function tokenizeText(request: Request, arch: ResolvedArchitecture | null, train: Table, validation: Table | null): { train: Table; validation: Table | null } {
  if (validation && !!validation.text !== !!train.text) {
    throw new UnprocessableError("shape_mismatch", [
      { path: "data.validation", message: `${validation.text ? "is text, but data.train is not" : "is not text, but data.train is"}: give both as text, or both as token ids` },
    ]);
  }
  if (request.tokenizer === undefined || request.tokenizer === null) {
    throw new UnprocessableError("tokenizer_required", [
      { path: "tokenizer", message: "text rows need a tokenizer: send the model's tokenizer.json as `tokenizer` (a multipart part, or the object in the request JSON), or send token rows (input_ids)" },
    ]);
  }
  const tokenizer = loadTokenizer(request.tokenizer);
  if (arch) checkTokenizer(tokenizer, arch);
  // max_length defaults to the model's positions (config defaults applied: BERT's 512, GPT-2's 1024)
  const positions = arch ? arch.def.maxPositions(arch.config) : null;
  return tokenizeTables(tokenizer, { train, validation }, request.data.tokenization, positions);
}

/**
 * A tokenizer that can produce ids the embedding does not have is refused; a smaller one is
 * normal (configs round vocab_size up: GPT-2's 50257 ids in a 50304 table).
 */
function checkTokenizer(tokenizer: ReturnType<typeof loadTokenizer>, arch: ResolvedArchitecture): void {
  const size = tokenizerVocabularySize(tokenizer);
  const vocab = arch.def.vocabSize(arch.config);
  if (size > vocab) {
    throw new UnprocessableError("invalid_tokenizer", [
      { path: "tokenizer", message: `has ${size} token ids but config.json's vocab_size is ${vocab}: this tokenizer does not belong to this model` },
    ]);
  }
}
