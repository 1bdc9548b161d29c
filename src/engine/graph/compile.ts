/**
 * The compiler: a request's `model` (layers, input shape) and the data's shape in, a
 * CompiledModel out. It runs before any memory is touched, so every shape mismatch is a 422
 * naming the layer path and both shapes, and the planner knows FLOPs and memory exactly.
 *
 *   1. shape inference and lowering: each layer's `build` (layers/*.ts) over its input shape
 *   2. names and `trainable`: state_dict keys as nn.Module names them; the selected parameters
 *   3. state layout: [trainable parameters | buffers | frozen parameters] (one contiguous range
 *      each for the optimizer, the last-finite snapshot and the frozen rest)
 *   4. which values need gradients, and the backward schedule over liveness-planned slots
 */
import { UnprocessableError, type FieldIssue } from "../../errors.js";
import type { LayerBuilder } from "../layers/define.js";
import { numel, showShape } from "../layers/define.js";
import { layerDef, type LayerSpec } from "../layers/index.js";
import { resolveArchitecture, type HuggingFaceModel } from "../huggingface/index.js";
import { OPS } from "../ops/index.js";
import type { BackwardNeeds, Op } from "../ops/types.js";
import { loraInit, loraScaling, moduleMatches, type LoraAdapter, type LoraModule } from "../adapters/lora.js";
import { placeGradientSlots } from "./memory.js";
import type { BaseDtype, BackwardStep, BatchRowsRequirement, CheckpointRules, CompiledModel, LayerGroup, InitRecipe, SavedInfo, Shape, StateTensor, TensorRef, ValueInfo } from "./types.js";

/** The request's `model`, as far as the compiler reads it: a layer list, or a Hugging Face architecture. */
export interface ModelDescription {
  layers?: readonly LayerSpec[] | undefined;
  input?: { shape: readonly number[] } | undefined;
  huggingface?: HuggingFaceModel | undefined;
  /** How frozen parameters are held (float32 by default). */
  base_dtype?: BaseDtype | undefined;
}

/** The adapter of a run, with its targets resolved (prepareRun: resolveLora). */
export interface LoraBuild {
  readonly spec: LoraAdapter;
  /** target_modules as resolved: a list (suffix match) or a regular expression. */
  readonly targets: readonly string[] | string;
  /** modules_to_save as resolved (PEFT adds a sequence classifier's head). */
  readonly modulesToSave: readonly string[];
}

/** The data's shape: features per row (token ids per row for token data) and whether a mask comes with it. */
export interface DataDescription {
  features: number;
  /** Rows are token ids (`input_ids`), not features. */
  tokens?: boolean;
  /** An attention mask comes with the token ids. */
  mask?: boolean;
}

/** How a model is compiled besides its description (explain/: a model for input gradients). */
export interface CompileOptions {
  /**
   * Compile for gradients w.r.t. the input instead of the parameters: every parameter is frozen
   * (no parameter gradient is computed) and the backward pass ends with dL/d(input) in
   * `inputGrad.slot`. The input is x for feature rows, and the output of the embedding that
   * reads the token ids (with its LoRA update, if any) for token rows: the embedding layer
   * output Captum's LayerIntegratedGradients attributes to.
   */
  inputGradient?: boolean;
}

/**
 * Compiles a model for data of a given shape.
 *
 * @example
 * ```ts
 * const compiled = compileModel({ layers: request.model.layers }, null, { features: 10 });
 * compiled.state.map((t) => t.name); // ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
 * ```
 */
export function compileModel(
  model: ModelDescription, trainable: readonly string[] | null, data: DataDescription, lora: LoraBuild | null = null, checkpointing = false,
  options: CompileOptions = {},
): CompiledModel {
  const graph = new GraphState();
  graph.lora = lora;
  const tokens = data.tokens ?? false;
  // ---- the inputs: x (features or token ids) and the attention mask
  let shape: Shape = [data.features];
  if (model.input) {
    shape = model.input.shape;
    if (tokens && shape.length !== 1) {
      throw new UnprocessableError("shape_mismatch", [
        { path: "model.input.shape", message: `is ${showShape(shape)}, but token ids are read as one sequence [tokens] per row (input_ids rows of ${data.features})` },
      ]);
    }
    if (numel(shape) !== data.features) {
      throw new UnprocessableError("shape_mismatch", [
        {
          path: "model.input.shape",
          message: `${showShape(shape)} holds ${numel(shape)} values per sample but the data has ${data.features} ${tokens ? "token ids" : "features"} per row`,
        },
      ]);
    }
  }
  const x: TensorRef = { ...graph.input(numel(shape)), shape, ids: tokens };
  const mask = data.mask ? graph.input(data.features).value : null;

  // ---- 1. shape inference and lowering
  const root = new Builder(graph, "model", "", mask, mask === null ? 0 : data.features);
  let y = x;
  let checkpoint: CheckpointRules | null = null;
  if (model.huggingface) {
    const arch = resolveArchitecture(model.huggingface);
    if (!tokens) {
      throw new UnprocessableError("invalid_dataset", [{ path: "data.train", message: `${arch.def.name} reads token ids: give input_ids (or text rows with a tokenizer), not x` }]);
    }
    const T = data.features, limit = arch.def.maxPositions(arch.config);
    if (arch.def.positionsBound && T > limit) {
      throw new UnprocessableError("shape_mismatch", [
        { path: "data.train.input_ids", message: `rows have ${T} tokens but the model has ${limit} positions (config max_position_embeddings / n_positions): truncate the rows (data.tokenization.truncation)` },
      ]);
    }
    y = arch.def.build(arch.config, new Builder(graph, "model.huggingface.config", "", mask, root.maskTokens), x);
    checkpoint = arch.def.checkpoint;
  } else {
    const layers = model.layers ?? [];
    const siblings = new Set<string>();
    layers.forEach((spec, index) => {
      graph.group = spec.name ?? String(index);
      try {
        y = root.child(spec, y, index, `model.layers[${index}]`, siblings);
      } catch (e) {
        // a layer that cannot take the data's rows as they are: say so at the data too
        if (e instanceof UnprocessableError && y.value === x.value && !model.input) {
          const rows = tokens ? "data.train.input_ids" : "data.train.x";
          e.errors.push({ path: rows, message: `rows have ${data.features} ${tokens ? "token ids" : "features"}, which ${e.errors[0]?.path ?? "the first layer"} does not take (give model.input.shape to read each row as a shaped sample)` });
        }
        throw e;
      }
    });
  }
  if (graph.state.every((t) => t.kind !== "parameter")) {
    throw new UnprocessableError("invalid_model", [{ path: "model.layers", message: "the model has no parameters to train" }]);
  }

  // ---- 2. trainable
  const params = graph.state.filter((t) => t.kind === "parameter");
  if (lora) {
    // PEFT: the adapter trains, modules_to_save train in full (a suffix of the module's name, as
    // _set_trainable's endswith), and the biases `bias` names; the rest is frozen
    for (const step of graph.loraInit) graph.initSteps.push(step);
    const adapter = new Set(graph.loraModules.flatMap((m) => [m.a, m.b]));
    const targeted = new Set(graph.loraModules.map((m) => m.module));
    graph.state.forEach((p, i) => {
      if (p.kind !== "parameter") return;
      const module = p.name.slice(0, p.name.lastIndexOf("."));
      const isBias = p.name.endsWith(".bias");
      (p as { trainable: boolean }).trainable =
        adapter.has(i) ||
        lora.modulesToSave.some((m) => module.endsWith(m)) ||
        (isBias && (lora.spec.bias === "all" || (lora.spec.bias === "lora_only" && targeted.has(module))));
    });
  } else if (trainable !== null && !options.inputGradient) {
    const issues: FieldIssue[] = [];
    const selected = new Set<StateTensor>();
    trainable.forEach((entry, i) => {
      const hits = params.filter((p) => p.name === entry || p.name.startsWith(`${entry}.`));
      if (hits.length === 0) {
        const modules = [...new Set(params.flatMap((p) => prefixes(p.name)))];
        issues.push({
          path: `trainable[${i}]`,
          message: `"${entry}" is not a layer or parameter of the model (have: ${[...modules, ...params.map((p) => p.name)].join(", ")})`,
        });
      }
      for (const h of hits) selected.add(h);
    });
    if (issues.length > 0) throw new UnprocessableError("invalid_model", issues);
    for (const p of params) (p as { trainable: boolean }).trainable = selected.has(p);
  }

  // an input-gradient model trains nothing: the backward pass computes only what reaches the input
  if (options.inputGradient) for (const p of params) (p as { trainable: boolean }).trainable = false;
  const gradientTarget = options.inputGradient ? inputGradientValue(graph, x) : null;

  // ---- 3. state layout: trainable parameters, buffers, frozen parameters
  let offset = 0;
  for (const t of graph.state) if (t.trainable) (t.offset = offset), (offset += t.size);
  const trainableCount = offset;
  for (const t of graph.state) if (t.kind === "buffer") (t.offset = offset), (offset += t.size);
  const bufferCount = offset - trainableCount;
  for (const t of graph.state) if (t.kind === "parameter" && !t.trainable) (t.offset = offset), (offset += t.size);

  // ---- 4. gradients: which values need one, and the backward schedule
  if (gradientTarget !== null) graph.values[gradientTarget.value]!.requiresGrad = true;
  for (const op of graph.ops) {
    const needs = op.params.some((p) => graph.state[p]!.trainable) || op.inputs.some((v) => graph.values[v]!.requiresGrad);
    for (const v of op.outputs) graph.values[v]!.requiresGrad = needs || v === gradientTarget?.value;
  }
  const schedule = scheduleBackward(graph.ops, graph.values, y.value, gradientTarget?.value ?? null);
  const segments = checkpointing ? checkpointSegments(graph.ops) : null;
  const savedBuffers = segments ? planCheckpointedSaved(graph.ops, graph.saved, segments) : graph.saved.map((_, i) => i);
  const kept = [y.value, ...(gradientTarget ? [gradientTarget.value] : [])];
  const stepReads = backwardReads(graph.ops, schedule.steps, (i) => graph.state[i]!.trainable);
  const pinned = new Set([...kept, ...stepReads.flat()]);
  const buffers = segments
    ? planCheckpointedBuffers(graph.ops, graph.values, segments, kept, pinned)
    : planValueBuffers(graph.ops, graph.values, y.value, pinned);
  // the gradient slots go into activation buffers that hold nothing while they are live (memory.ts)
  const placed = placeGradientSlots({
    ops: graph.ops, values: graph.values, steps: schedule.steps, stepReads, slots: schedule.slots, outputSlot: schedule.outputSlot,
    targetSlot: schedule.targetSlot, segments, valueBuffer: buffers.valueBuffer, bufferSizes: buffers.sizes, kept,
  });

  let forwardFlops = 0;
  let backwardFlops = 0;
  let couplesRows = false;
  const groups = new Map<string, { params: number; trainableParams: number; forwardFlopsPerRow: number; backwardFlopsPerRow: number; activationsPerRow: number; fixedElements: number }>();
  const groupOf = (name: string) => {
    let g = groups.get(name);
    if (!g) groups.set(name, (g = { params: 0, trainableParams: 0, forwardFlopsPerRow: 0, backwardFlopsPerRow: 0, activationsPerRow: 0, fixedElements: 0 }));
    return g;
  };
  graph.state.forEach((t, i) => {
    const g = groupOf(graph.stateGroup[i]!);
    if (t.kind === "parameter") g.params += t.size;
    if (t.trainable) g.trainableParams += t.size;
  });
  const scheduled = new Set(schedule.steps.map((s) => s.op));
  graph.ops.forEach((op, i) => {
    const def = OPS[op.kind] as (typeof OPS)[Op["kind"]] & { flops(op: Op): { forward: number; backward: number } };
    const flops = def.flops(op);
    const g = groupOf(op.group);
    forwardFlops += flops.forward;
    g.forwardFlopsPerRow += flops.forward;
    if (scheduled.has(i)) {
      backwardFlops += flops.backward;
      g.backwardFlopsPerRow += flops.backward;
    }
    for (const v of op.outputs) g.activationsPerRow += graph.values[v]!.size;
    couplesRows ||= def.couplesRows === true;
  });
  graph.saved.forEach((sv, i) => {
    const g = groupOf(graph.savedGroup[i]!);
    g.activationsPerRow += sv.perRow;
    g.fixedElements += sv.fixed;
  });
  const layerGroups: LayerGroup[] = [...groups].map(([name, g]) => ({ name, ...g }));

  return {
    state: graph.state,
    init: graph.initSteps,
    values: graph.values,
    saved: graph.saved,
    ops: graph.ops.map(({ params: _params, group: _group, ...op }) => op as Op),
    backward: schedule.steps,
    gradSlots: schedule.slots,
    valueBuffers: buffers.valueBuffer,
    bufferSizes: placed.sizes,
    gradSlotBuffers: placed.slotBuffers,
    checkpoints: segments,
    savedBuffers,
    recomputeFlopsPerRow: segments
      ? segments.slice(0, -1).reduce((sum, s) => sum + graph.ops.slice(s.start, s.end).reduce((f, op) => f + (OPS[op.kind] as { flops(op: Op): { forward: number } }).flops(op).forward, 0), 0)
      : 0,
    outputGradSlot: schedule.outputSlot,
    input: { value: x.value, shape, ids: tokens },
    mask,
    lora: lora ? { modules: graph.loraModules, modulesToSave: lora.modulesToSave, targets: lora.targets } : null,
    tokenTypes: graph.tokenTypes?.value ?? null,
    tokenTypeCount: graph.tokenTypes?.types ?? 0,
    checkpoint,
    vocabulary: graph.vocabulary,
    output: { value: y.value, shape: y.shape },
    baseDtype: model.base_dtype ?? "float32",
    stateCount: offset,
    trainableCount,
    bufferCount,
    paramCount: params.reduce((s, p) => s + p.size, 0),
    forwardFlopsPerRow: forwardFlops,
    backwardFlopsPerRow: backwardFlops,
    couplesRows,
    batchRows: graph.batchRows,
    groups: layerGroups,
    ...(gradientTarget ? { inputGrad: { value: gradientTarget.value, producer: gradientTarget.producer, slot: schedule.targetSlot } } : {}),
  };
}

/**
 * The value an input-gradient model differentiates with respect to: x for feature rows; for
 * token rows the output of the first embedding op over the ids, or the LoRA sum that replaces
 * it (base + scaling * B(A[ids])), with the index of the op that writes it.
 */
function inputGradientValue(graph: GraphState, x: TensorRef): { value: number; producer: number } {
  if (!x.ids) return { value: x.value, producer: -1 };
  const first = graph.ops.findIndex((op) => op.kind === "embedding" && op.inputs[0] === x.value);
  if (first < 0) throw new UnprocessableError("invalid_model", [{ path: "explain", message: "the model reads token ids without an embedding layer: there is no embedding output to attribute to" }]);
  const base = graph.ops[first]!;
  const lora = graph.loraModules.find((m) => m.kind === "embedding" && m.base === (base as { weight: number }).weight);
  if (lora) {
    const sum = graph.ops.findIndex((op) => op.kind === "add" && op.inputs[0] === base.outputs[0]);
    if (sum >= 0) return { value: graph.ops[sum]!.outputs[0]!, producer: sum };
  }
  return { value: base.outputs[0]!, producer: first };
}

/** "a.b.c" -> ["a", "a.b"] */
function prefixes(name: string): string[] {
  const parts = name.split(".");
  return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join("."));
}

/** An op while the graph is built: with the parameters it trains (for requiresGrad). */
type PendingOp = Op & { params: readonly number[]; group: string };

/** Everything the builders append to. */
class GraphState {
  readonly state: StateTensor[] = [];
  readonly initSteps: { tensor: number; recipe: InitRecipe }[] = [];
  readonly values: ValueInfo[] = [];
  readonly saved: SavedInfo[] = [];
  readonly ops: PendingOp[] = [];
  readonly batchRows: BatchRowsRequirement[] = [];
  /** The strictest vocabulary of the layers that read token ids. */
  vocabulary: { size: number; path: string } | null = null;
  private readonly names = new Set<string>();

  input(size: number): TensorRef {
    this.values.push({ size, input: true, requiresGrad: false });
    return { value: this.values.length - 1, shape: [size] };
  }

  value(shape: Shape): TensorRef {
    this.values.push({ size: numel(shape), input: false, requiresGrad: false });
    return { value: this.values.length - 1, shape: [...shape] };
  }

  /** The layer group state and ops are declared in, and each one's group. */
  group = "";
  readonly stateGroup: string[] = [];
  readonly savedGroup: string[] = [];
  /** The adapter being built in, its modules and their deferred init (PEFT wraps a built model). */
  lora: LoraBuild | null = null;
  readonly loraModules: LoraModule[] = [];
  readonly loraInit: { tensor: number; recipe: InitRecipe }[] = [];
  /** Weights an embedding op reads: a linear op over one is a tied output head, not a Linear. */
  readonly embeddingWeights = new Set<number>();
  /** Linear and embedding modules seen (for the message when target_modules matches none). */
  readonly adaptable: string[] = [];
  /** The token_type_ids input, created by the first layer that reads it. */
  tokenTypes: { value: number; types: number } | null = null;

  tensor(name: string, shape: readonly number[], kind: StateTensor["kind"], dtype: StateTensor["dtype"], transposed = false): number {
    if (this.names.has(name)) throw new Error(`layer registry: "${name}" declared twice`);
    this.names.add(name);
    this.stateGroup.push(this.group);
    this.state.push({
      name, shape: [...shape], size: numel(shape), kind, trainable: kind === "parameter", dtype, offset: 0, ...(transposed ? { transposed: true } : {}),
    });
    return this.state.length - 1;
  }
}

/** A LayerBuilder at one place of the model. */
class Builder implements LayerBuilder {
  constructor(
    private readonly graph: GraphState,
    readonly path: string,
    readonly name: string,
    readonly mask: number | null,
    readonly maskTokens: number,
  ) {}

  private qualified(local: string): string {
    return this.name ? `${this.name}.${local}` : local;
  }

  parameter(local: string, shape: readonly number[], options: { transposed?: boolean } = {}): number {
    if (options.transposed && shape.length !== 2) throw new Error(`layer registry: only a matrix is stored transposed (${local})`);
    return this.graph.tensor(this.qualified(local), shape, "parameter", "float", options.transposed);
  }

  tokenTypes(types: number): TensorRef {
    const seen = this.graph.tokenTypes;
    if (seen) {
      seen.types = Math.min(seen.types, types);
      return { value: seen.value, shape: [this.graph.values[seen.value]!.size], ids: true };
    }
    const input = this.graph.input(this.graph.values[0]!.size);
    this.graph.tokenTypes = { value: input.value, types };
    return { ...input, ids: true };
  }

  buffer(local: string, shape: readonly number[], dtype: "float" | "I64" = "float"): number {
    return this.graph.tensor(this.qualified(local), shape, "buffer", dtype);
  }

  init(tensor: number, recipe: InitRecipe): void {
    this.graph.initSteps.push({ tensor, recipe });
  }

  value(shape: Shape): TensorRef {
    return this.graph.value(shape);
  }

  group(name: string): void {
    this.graph.group = name;
  }

  saved(perRow: number, fixed = 0): number {
    this.graph.savedGroup.push(this.graph.group);
    this.graph.saved.push({ perRow, fixed });
    return this.graph.saved.length - 1;
  }

  private readIds = false;
  readsIds(vocabulary: number): void {
    this.readIds = true;
    const seen = this.graph.vocabulary;
    if (seen === null || vocabulary < seen.size) this.graph.vocabulary = { size: vocabulary, path: this.path };
  }

  op(op: Op): void {
    if ((op.kind === "linear" || op.kind === "embedding") && this.loraRewrite(op)) return;
    this.push(op);
  }

  /**
   * A linear or embedding op of a targeted module becomes base op + LoRA ops (adapters/lora.ts):
   * the base writes a fresh value and the LoRA sum writes the op's output. False: not a target.
   */
  private loraRewrite(op: Extract<Op, { kind: "linear" | "embedding" }>): boolean {
    const g = this.graph;
    const weight = g.state[op.weight]!;
    if (!weight.name.endsWith(".weight")) return false; // nn.MultiheadAttention's in_proj_weight: not a Linear module
    if (op.kind === "linear" && g.embeddingWeights.has(op.weight)) return false; // a tied output head
    const module = weight.name.slice(0, -".weight".length);
    if (!g.adaptable.includes(module)) g.adaptable.push(module);
    const lora = g.lora;
    if (!lora || !moduleMatches(module, lora.targets)) return false;
    const { r, lora_dropout: p } = lora.spec;
    const scaling = loraScaling(lora.spec);
    const y0 = g.value([g.values[op.outputs[0]!]!.size]);
    this.push({ ...op, outputs: [y0.value] });
    let a: number, b: number, z: number;
    if (op.kind === "linear") {
      const inF = op.in, outF = op.out, T = op.tokens;
      if (r > Math.min(inF, outF)) this.failAt("adapter.r", `is ${r}, larger than ${module} (${inF} -> ${outF}): the rank of a LoRA update is at most min(in, out)`);
      a = g.tensor(`${module}.lora_A.weight`, [r, inF], "parameter", "float");
      b = g.tensor(`${module}.lora_B.weight`, [outF, r], "parameter", "float");
      let x = op.inputs[0]!;
      if (p > 0) {
        const dropped = g.value([T * inF]).value;
        this.push({ kind: "dropout", inputs: [x], outputs: [dropped], p, n: T * inF, mask: this.saved(T * inF), salt: dropped });
        x = dropped;
      }
      const h = g.value([T * r]).value;
      this.push({ kind: "linear", inputs: [x], outputs: [h], weight: a, bias: -1, in: inF, out: r, tokens: T });
      z = g.value([T * outF]).value;
      this.push({ kind: "linear", inputs: [h], outputs: [z], weight: b, bias: -1, in: r, out: outF, tokens: T });
      for (const step of loraInit("linear", inF, r)) g.loraInit.push({ tensor: step.tensor === "a" ? a : b, recipe: step.recipe });
    } else {
      const num = weight.shape[0]!, dim = op.dim, T = op.tokens;
      if (r > Math.min(num, dim)) this.failAt("adapter.r", `is ${r}, larger than ${module} (${num} x ${dim})`);
      // lora_embedding_A is [r, num] in PEFT's file; held as [num, r], the table an embedding op reads
      a = g.tensor(`${module}.lora_embedding_A`, [r, num], "parameter", "float", true);
      b = g.tensor(`${module}.lora_embedding_B`, [dim, r], "parameter", "float");
      const h = g.value([T * r]).value;
      this.push({ kind: "embedding", inputs: [op.inputs[0]!], outputs: [h], weight: a, tokens: T, dim: r, paddingIdx: op.paddingIdx });
      z = g.value([T * dim]).value;
      this.push({ kind: "linear", inputs: [h], outputs: [z], weight: b, bias: -1, in: r, out: dim, tokens: T });
      for (const step of loraInit("embedding", num, r)) g.loraInit.push({ tensor: step.tensor === "a" ? a : b, recipe: step.recipe });
    }
    const n = g.values[op.outputs[0]!]!.size;
    this.push({ kind: "add", inputs: [y0.value, z], outputs: [op.outputs[0]!], n, scale: scaling });
    g.loraModules.push({ module, kind: op.kind, base: op.weight, a, b, scaling });
    return true;
  }

  private push(op: Op): void {
    if (op.kind === "embedding") this.graph.embeddingWeights.add(op.weight);
    const params: number[] = [];
    for (const key of PARAM_FIELDS) {
      const v = (op as unknown as Record<string, unknown>)[key];
      if (typeof v === "number" && v >= 0 && this.graph.state[v]!.kind === "parameter") params.push(v);
    }
    this.graph.ops.push({ ...op, params, group: this.graph.group });
  }

  requireBatchRows(rows: number, why: string, evaluation = false): void {
    this.graph.batchRows.push({ rows, path: this.path, why, evaluation });
  }

  fail(field: string, message: string): never {
    throw new UnprocessableError("invalid_model", [{ path: field ? `${this.path}.${field}` : this.path, message }]);
  }

  module(local: string): LayerBuilder {
    return new Builder(this.graph, this.path, this.qualified(local), this.mask, this.maskTokens);
  }

  layer(spec: { type: string; name?: string | undefined }, x: TensorRef, index: number): TensorRef {
    return this.child(spec as LayerSpec, x, index, `${this.path}.layers[${index}]`, this.siblingNames());
  }

  private siblings: Set<string> | null = null;
  private siblingNames(): Set<string> {
    return (this.siblings ??= new Set());
  }

  /** Builds one layer below this module. */
  child(spec: LayerSpec, x: TensorRef, index: number, path: string, siblings: Set<string>): TensorRef {
    const local = spec.name ?? String(index);
    if (siblings.has(local)) this.failAt(`${path}.name`, `duplicate layer name "${local}"`);
    siblings.add(local);
    const def = layerDef(spec.type);
    const b = new Builder(this.graph, path, this.qualified(local), this.mask, this.maskTokens);
    if (x.ids && !def.takesIds) {
      b.fail("type", `${spec.type} needs features, but its input is token ids ${showShape(x.shape)}: a token model starts with an embedding`);
    }
    if (!x.ids && def.takesIds) {
      b.fail("type", `${spec.type} takes token ids (data input_ids), but its input is features ${showShape(x.shape)}`);
    }
    const y = def.build(spec as never, b, x);
    if (x.ids && !b.readIds) throw new Error(`layer registry: ${spec.type} takes ids but did not declare its vocabulary (readsIds)`);
    return y;
  }

  private failAt(path: string, message: string): never {
    throw new UnprocessableError("invalid_model", [{ path, message }]);
  }
}

/** Op fields that hold state tensor indices (a parameter there trains with the op). */
const PARAM_FIELDS = ["weight", "bias"] as const;

/**
 * What each scheduled op's backward reads of the activations (its backwardReads, given which
 * gradients the schedule computes; every input and output without one), in the schedule's
 * order. These values, the output, and an input-gradient model's token embedding output (read
 * back after the forward) must keep their contents until the backward pass. A frozen linear
 * layer's input, for one, is not among them: its backward forms dx = dy·W only.
 */
function backwardReads(ops: readonly PendingOp[], steps: readonly BackwardStep[], trains: (state: number) => boolean): number[][] {
  return steps.map((step) => {
    const op = ops[step.op]!;
    const def = OPS[op.kind] as { backwardReads?: (op: Op, needs: BackwardNeeds) => readonly number[] };
    return def.backwardReads
      ? [...def.backwardReads(op, { param: (index) => index >= 0 && trains(index), input: (k) => (step.dx[k] ?? -1) >= 0 })]
      : [...op.inputs, ...op.outputs];
  });
}

/**
 * Activation buffers, shared where lifetimes allow: a value the backward pass reads (the ops'
 * backwardReads, given which gradients the schedule computes), and the output, keeps a buffer
 * of its own; every other value lives from the op that writes it to the last op that reads it in
 * the forward pass, and its buffer then goes to a later value of the same size (the outputs of an
 * op are placed before its inputs are released, so no op writes over what it reads). A frozen
 * linear layer's input, for one, is not needed once the forward has passed it.
 */
function planValueBuffers(ops: readonly PendingOp[], values: readonly ValueInfo[], output: number, pinned: ReadonlySet<number>): { valueBuffer: number[]; sizes: number[] } {
  const lastRead = new Map<number, number>();
  ops.forEach((op, i) => {
    for (const v of op.inputs) lastRead.set(v, i);
  });
  const valueBuffer = values.map(() => -1);
  const sizes: number[] = [];
  const free = new Map<number, number[]>();
  const place = (v: number) => {
    const size = values[v]!.size;
    const reuse = pinned.has(v) ? undefined : free.get(size)?.pop();
    if (reuse !== undefined) return (valueBuffer[v] = reuse);
    sizes.push(size);
    valueBuffer[v] = sizes.length - 1;
  };
  ops.forEach((op, i) => {
    for (const v of op.outputs) place(v);
    for (const v of new Set(op.inputs)) {
      if (values[v]!.input || pinned.has(v) || lastRead.get(v) !== i) continue;
      const size = values[v]!.size;
      let list = free.get(size);
      if (!list) free.set(size, (list = []));
      list.push(valueBuffer[v]!);
    }
  });
  // a value no op reads (none but the output, which is pinned) keeps its buffer; inputs have none
  return { valueBuffer, sizes };
}

/**
 * Gradient checkpointing's segments: runs of consecutive ops of one layer group (a Hub block, a
 * top-level layer). A model whose statistics mix the rows of a batch (BatchNorm) cannot be
 * recomputed without updating its running statistics twice: refused.
 */
function checkpointSegments(ops: readonly PendingOp[]): { start: number; end: number }[] {
  if (ops.some((op) => op.kind === "batch_norm")) {
    throw new UnprocessableError("invalid_plan", [
      { path: "training.gradient_checkpointing", message: "recomputing a BatchNorm layer would update its running statistics twice: train this model without checkpointing" },
    ]);
  }
  const segments: { start: number; end: number }[] = [];
  ops.forEach((op, i) => {
    const last = segments.at(-1);
    if (last && ops[last.start]!.group === op.group) last.end = i + 1;
    else segments.push({ start: i, end: i + 1 });
  });
  return segments;
}

/**
 * Activation buffers under gradient checkpointing: a value another segment reads (a segment's
 * input or output), the model's output and an input-gradient model's target keep their own
 * buffers; a value produced and read within one segment lives only while that segment runs (its
 * forward, and in the backward pass its recomputed forward followed by its backward), so every
 * segment draws such values from one
 * shared pool. Within a segment the pool is shared by lifetime, as planValueBuffers does for a
 * whole model: a value the segment's backward reads (`pinned`) holds its buffer to the segment's
 * end; any other value gives it back after its last forward reader (outputs are placed before
 * inputs are released, so no op writes over what it reads). The recomputed forward writes the
 * same buffers in the same order, so the backward finds its values where the first forward
 * left them.
 */
function planCheckpointedBuffers(
  ops: readonly PendingOp[], values: readonly ValueInfo[], segments: readonly { start: number; end: number }[], kept: readonly number[], pinned: ReadonlySet<number>,
): { valueBuffer: number[]; sizes: number[] } {
  const segmentOf = new Array<number>(ops.length);
  segments.forEach((s, k) => {
    for (let i = s.start; i < s.end; i++) segmentOf[i] = k;
  });
  const producer = new Map<number, number>();
  ops.forEach((op, i) => op.outputs.forEach((v) => producer.set(v, segmentOf[i]!)));
  // the output and an input-gradient model's target are read after the passes: their own buffers too
  const crosses = new Set<number>(kept);
  ops.forEach((op, i) => {
    for (const v of op.inputs) if (producer.has(v) && producer.get(v) !== segmentOf[i]) crosses.add(v);
  });
  const lastRead = new Map<number, number>();
  ops.forEach((op, i) => {
    for (const v of op.inputs) lastRead.set(v, i);
  });
  const valueBuffer = values.map(() => -1);
  const sizes: number[] = [];
  const pool = new Map<number, number[]>(); // size -> the segments' shared buffers
  segments.forEach((s) => {
    const free = new Map([...pool].map(([size, list]) => [size, [...list].reverse()]));
    for (let i = s.start; i < s.end; i++) {
      const op = ops[i]!;
      for (const v of op.outputs) {
        const size = values[v]!.size;
        if (crosses.has(v)) {
          sizes.push(size);
          valueBuffer[v] = sizes.length - 1;
          continue;
        }
        const reuse = free.get(size)?.pop();
        if (reuse !== undefined) {
          valueBuffer[v] = reuse;
          continue;
        }
        sizes.push(size);
        valueBuffer[v] = sizes.length - 1;
        let list = pool.get(size);
        if (!list) pool.set(size, (list = []));
        list.push(valueBuffer[v]!);
      }
      for (const v of new Set(op.inputs)) {
        if (values[v]!.input || crosses.has(v) || pinned.has(v) || lastRead.get(v) !== i) continue;
        const size = values[v]!.size;
        let list = free.get(size);
        if (!list) free.set(size, (list = []));
        list.push(valueBuffer[v]!);
      }
    }
  });
  return { valueBuffer, sizes };
}

/** Op fields that hold saved-buffer ids (ops/types.ts). */
const SAVED_FIELDS = ["probs", "dropMask", "dropped", "mask", "mean", "rstd", "stats", "argmax", "indices", "table"];

/**
 * Saved buffers under gradient checkpointing: an op's saved buffers (attention weights, masks,
 * norm statistics) are written by its segment's forward and read by its backward, which the
 * recomputed forward precedes, so the k-th saved buffer of a size in every segment shares one
 * allocation. Returns saved id -> the id whose allocation it uses (itself when not shared).
 */
function planCheckpointedSaved(ops: readonly PendingOp[], saved: readonly SavedInfo[], segments: readonly { start: number; end: number }[]): number[] {
  const owner = saved.map((_, i) => i);
  const first = new Map<string, number[]>(); // "perRow:fixed" -> the allocations, in rank order
  for (const s of segments) {
    const rank = new Map<string, number>();
    for (let i = s.start; i < s.end; i++) {
      const op = ops[i] as unknown as Record<string, unknown>;
      const ids = SAVED_FIELDS.map((f) => op[f]).filter((v): v is number => typeof v === "number" && v >= 0);
      for (const id of ids) {
        const key = `${saved[id]!.perRow}:${saved[id]!.fixed}`;
        const k = rank.get(key) ?? 0;
        rank.set(key, k + 1);
        let list = first.get(key);
        if (!list) first.set(key, (list = []));
        if (list.length <= k) list.push(id);
        owner[id] = list[k]!;
      }
    }
  }
  return owner;
}

/**
 * The backward schedule: ops in reverse, each reading its outputs' gradient slots and writing
 * its inputs' (allocated from a pool of free slots of the same size, freed after their last
 * reader). A value read by several ops (a residual's input) gets its first gradient in its own
 * slot and the others in temporary slots summed into it.
 */
function scheduleBackward(ops: readonly PendingOp[], values: readonly ValueInfo[], output: number, stopAt: number | null = null) {
  const slots: number[] = [];
  const free = new Map<number, number[]>();
  const alloc = (size: number): number => {
    const reuse = free.get(size)?.pop();
    if (reuse !== undefined) return reuse;
    slots.push(size);
    return slots.length - 1;
  };
  const release = (slot: number) => {
    const size = slots[slot]!;
    let list = free.get(size);
    if (!list) free.set(size, (list = []));
    list.push(slot);
  };
  const gradOf = new Map<number, number>();
  const outputSlot = alloc(values[output]!.size);
  gradOf.set(output, outputSlot);
  const steps: BackwardStep[] = [];
  for (let i = ops.length - 1; i >= 0; i--) {
    const op = ops[i]!;
    // an input-gradient model stops at its target: the op that writes it (and anything before it
    // that only feeds it) gets no backward, and the target's slot keeps dL/d(target)
    if (stopAt !== null && op.outputs.includes(stopAt)) continue;
    const dy = op.outputs.map((v) => gradOf.get(v) ?? -1);
    if (!op.outputs.some((v) => values[v]!.requiresGrad) || dy.every((s) => s < 0)) continue;
    const accumulate: { into: number; from: number; size: number }[] = [];
    const dx = op.inputs.map((v) => {
      const info = values[v]!;
      if (!info.requiresGrad) return -1;
      const existing = gradOf.get(v);
      const slot = alloc(info.size);
      if (existing === undefined) gradOf.set(v, slot);
      else accumulate.push({ into: existing, from: slot, size: info.size });
      return slot;
    });
    if (dy.some((s) => s < 0)) throw new Error(`graph compiler: an output of op ${i} (${op.kind}) has no gradient`);
    steps.push({ op: i, dy, dx, accumulate });
    for (const s of dy) release(s);
    for (const a of accumulate) release(a.from);
  }
  return { steps, slots, outputSlot, targetSlot: stopAt === null ? -1 : (gradOf.get(stopAt) ?? -1) };
}
