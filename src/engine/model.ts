/**
 * The model: an nn.Sequential built from the request's layer list, with its parameters,
 * gradients and activations in the arena, and its forward and backward passes as kernel calls.
 *
 * Parameter layout: trainable tensors first (in state_dict order), frozen ones after, so the
 * optimizer, the gradient norm and the divergence checks each cover one contiguous range.
 */
import type { LayerSpec } from "../schema/request.js";
import { UnprocessableError } from "../errors.js";
import type { Arena, Region } from "./arena.js";
import type { Kernels, Ptr } from "./kernels.js";

/** One parameter tensor of the state_dict. */
export interface Parameter {
  /** state_dict key, e.g. "fc1.weight" or "0.bias". */
  readonly name: string;
  readonly shape: readonly number[];
  readonly size: number;
  readonly trainable: boolean;
  /** Offset of the tensor within the parameter block, in elements. */
  offset: number;
}

interface LinearLayer {
  kind: "linear";
  name: string;
  inFeatures: number;
  outFeatures: number;
  weight: Parameter;
  bias: Parameter | null;
}
interface ActivationLayer {
  kind: "relu" | "leaky_relu" | "gelu" | "gelu_tanh" | "tanh" | "sigmoid";
  name: string;
  width: number;
  slope: number;
}
interface DropoutLayer {
  kind: "dropout";
  name: string;
  width: number;
  p: number;
}
type Layer = LinearLayer | ActivationLayer | DropoutLayer;

/** The static description of a model (no memory): layers, parameters, widths. */
export interface ModelSpec {
  readonly layers: readonly Layer[];
  /** Every parameter in state_dict order. */
  readonly parameters: readonly Parameter[];
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly paramCount: number;
  readonly trainableCount: number;
  /** Widest activation, in features. */
  readonly maxWidth: number;
  /** Largest in*out of any linear layer (scratch for W^T). */
  readonly maxWeight: number;
  /** Index of the first layer that owns a trainable parameter (backward stops there). */
  readonly firstTrainableLayer: number;
  /** FLOPs of one forward and one backward pass per row. */
  readonly forwardFlopsPerRow: number;
  readonly backwardFlopsPerRow: number;
}

/**
 * Builds the model description from the request's layers, naming unnamed layers by their
 * index as nn.Sequential does, and applying `trainable` (layer or parameter names).
 *
 * @example
 * ```ts
 * const spec = describeModel(request.model.layers, ["fc2"]);
 * spec.parameters.map((p) => p.name); // ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
 * ```
 */
export function describeModel(layerSpecs: readonly LayerSpec[], trainable: readonly string[] | null): ModelSpec {
  const issues: { path: string; message: string }[] = [];
  const names = new Set<string>();
  const layers: Layer[] = [];
  let width: number | null = null;
  let inFeatures = 0;

  const isTrainable = (layerName: string, paramName: string) =>
    trainable === null || trainable.includes(layerName) || trainable.includes(paramName);

  layerSpecs.forEach((spec, index) => {
    const name = spec.name ?? String(index);
    const path = `model.layers[${index}]`;
    if (names.has(name)) issues.push({ path: `${path}.name`, message: `duplicate layer name "${name}"` });
    names.add(name);
    if (spec.type === "linear") {
      if (width === null) inFeatures = spec.in_features;
      else if (spec.in_features !== width) {
        issues.push({
          path: `${path}.in_features`,
          message: `is ${spec.in_features} but the previous layer outputs ${width} features`,
        });
      }
      const weightName = `${name}.weight`;
      const biasName = `${name}.bias`;
      const weight: Parameter = {
        name: weightName,
        shape: [spec.out_features, spec.in_features],
        size: spec.out_features * spec.in_features,
        trainable: isTrainable(name, weightName),
        offset: 0,
      };
      const bias: Parameter | null = spec.bias
        ? { name: biasName, shape: [spec.out_features], size: spec.out_features, trainable: isTrainable(name, biasName), offset: 0 }
        : null;
      layers.push({ kind: "linear", name, inFeatures: spec.in_features, outFeatures: spec.out_features, weight, bias });
      width = spec.out_features;
      return;
    }
    if (width === null) {
      issues.push({ path: `${path}.type`, message: `the first layer must be linear (got ${spec.type})` });
      width = 0;
    }
    if (spec.type === "dropout") {
      layers.push({ kind: "dropout", name, width, p: spec.p });
    } else {
      const kind = spec.type === "gelu" && spec.approximate === "tanh" ? "gelu_tanh" : spec.type;
      const slope = spec.type === "leaky_relu" ? spec.negative_slope : 0;
      layers.push({ kind, name, width, slope });
    }
  });

  const parameters = layers.flatMap((l) => (l.kind === "linear" ? (l.bias ? [l.weight, l.bias] : [l.weight]) : []));
  if (trainable !== null) {
    const known = new Set([...layers.map((l) => l.name), ...parameters.map((p) => p.name)]);
    trainable.forEach((t, i) => {
      if (!known.has(t)) {
        issues.push({ path: `trainable[${i}]`, message: `"${t}" is not a layer or parameter of the model (have: ${[...known].join(", ")})` });
      }
    });
    if (parameters.every((p) => !p.trainable) && issues.length === 0) {
      issues.push({ path: "trainable", message: "selects no parameters: nothing would be trained" });
    }
  }
  if (issues.length > 0) throw new UnprocessableError("invalid_model", issues);

  // trainable tensors first, then frozen ones, each group in state_dict order
  let offset = 0;
  for (const p of parameters) if (p.trainable) (p.offset = offset), (offset += p.size);
  const trainableCount = offset;
  for (const p of parameters) if (!p.trainable) (p.offset = offset), (offset += p.size);

  const linears = layers.filter((l): l is LinearLayer => l.kind === "linear");
  const firstTrainableLayer = layers.findIndex(
    (l) => l.kind === "linear" && (l.weight.trainable || (l.bias?.trainable ?? false)),
  );
  const forwardFlopsPerRow = layers.reduce(
    (s, l) => s + (l.kind === "linear" ? 2 * l.inFeatures * l.outFeatures + (l.bias ? l.outFeatures : 0) : 4 * l.width),
    0,
  );
  return {
    layers,
    parameters,
    inFeatures,
    outFeatures: width ?? 0,
    paramCount: offset,
    trainableCount,
    maxWidth: Math.max(inFeatures, ...layers.map((l) => (l.kind === "linear" ? l.outFeatures : l.width))),
    maxWeight: Math.max(...linears.map((l) => l.inFeatures * l.outFeatures)),
    firstTrainableLayer,
    forwardFlopsPerRow,
    backwardFlopsPerRow: 2 * forwardFlopsPerRow,
  };
}

/**
 * Where a model's buffers sit in the arena. Plain data (pointers and lengths), so another
 * thread sharing the memory can run the same model over the same parameters.
 */
export interface ModelLayout {
  maxRows: number;
  /** [paramCount] all parameters, trainable ones first */
  params: Region;
  /** [trainableCount] gradients of the trainable parameters */
  grads: Region;
  /** outputs[l]: [maxRows, width_l] output of layer l */
  outputs: Region[];
  /** masks[l]: [maxRows, width] dropout mask of the last training forward (dropout layers with p > 0) */
  masks: (Region | null)[];
  /** two [maxRows, maxWidth] buffers for activation gradients, used alternately */
  gradA: Region;
  gradB: Region;
  /** [maxWeight] W^T packing scratch for matmul_nt */
  scratch: Region;
}

/**
 * Allocates a model's buffers for up to `maxRows` rows; `params` shares existing parameters
 * (a data-parallel shard) instead of allocating them.
 *
 * @example
 * ```ts
 * const layout = allocateModel(spec, arena, 64);
 * const shard = allocateModel(spec, arena, 32, layout.params);
 * ```
 */
export function allocateModel(spec: ModelSpec, arena: Arena, maxRows: number, params?: Region): ModelLayout {
  return {
    maxRows,
    params: params ?? arena.alloc(spec.paramCount),
    grads: arena.alloc(spec.trainableCount),
    outputs: spec.layers.map((l) => arena.alloc(maxRows * (l.kind === "linear" ? l.outFeatures : l.width))),
    masks: spec.layers.map((l) => (l.kind === "dropout" && l.p > 0 ? arena.alloc(maxRows * l.width) : null)),
    gradA: arena.alloc(maxRows * spec.maxWidth),
    gradB: arena.alloc(maxRows * spec.maxWidth),
    scratch: arena.alloc(spec.maxWeight),
  };
}

/**
 * A model with memory: its forward and backward passes as kernel calls over a layout.
 *
 * @example
 * ```ts
 * const model = new Model(spec, kernels, memory, allocateModel(spec, arena, batchSize));
 * const logits = model.forward(xPtr, rows, true, seed);
 * model.backward(rows);
 * ```
 */
export class Model {
  readonly spec: ModelSpec;
  readonly layout: ModelLayout;
  /** [paramCount] all parameters, trainable ones first */
  readonly params: Region;
  /** [trainableCount] gradients of the trainable parameters */
  readonly grads: Region;
  readonly maxRows: number;
  /** whether the last forward applied dropout masks */
  private trainingForward = false;
  /** input of the last forward, per layer (layer 0 reads the batch) */
  private readonly inputs: Ptr[];
  private readonly memory: WebAssembly.Memory;
  private readonly k: Kernels;

  constructor(spec: ModelSpec, kernels: Kernels, memory: WebAssembly.Memory, layout: ModelLayout) {
    this.spec = spec;
    this.k = kernels;
    this.memory = memory;
    this.layout = layout;
    this.maxRows = layout.maxRows;
    this.params = layout.params;
    this.grads = layout.grads;
    this.inputs = spec.layers.map(() => 0);
  }

  /** Byte offset of a parameter tensor. */
  paramPtr(p: Parameter): Ptr {
    return this.params.ptr + p.offset * 4;
  }

  /** Byte offset of a trainable parameter's gradient (0 when frozen). */
  gradPtr(p: Parameter): Ptr {
    return p.trainable ? this.grads.ptr + p.offset * 4 : 0;
  }

  /** The gradient buffer the loss writes dL/dlogits into: [maxRows, outFeatures]. */
  get logitsGrad(): Region {
    return this.layout.gradA;
  }

  /** The output buffer of the last layer: [maxRows, outFeatures]. */
  get logits(): Region {
    return this.layout.outputs.at(-1)!;
  }

  /**
   * Forward pass over `rows` rows at `x` ([rows, inFeatures]); returns the logits pointer
   * ([rows, outFeatures]). `training` enables dropout, with masks derived from `seed`.
   */
  forward(x: Ptr, rows: number, training: boolean, seed = 0): Ptr {
    const k = this.k;
    let inp = x;
    this.trainingForward = training;
    const layers = this.spec.layers;
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i]!;
      this.inputs[i] = inp;
      const out = this.layout.outputs[i]!.ptr;
      switch (l.kind) {
        case "linear":
          k.matmul_nt(out, inp, this.paramPtr(l.weight), l.bias ? this.paramPtr(l.bias) : 0, this.layout.scratch.ptr, rows, l.outFeatures, l.inFeatures);
          break;
        case "relu":
          k.relu_forward(out, inp, rows * l.width);
          break;
        case "leaky_relu":
          k.leaky_relu_forward(out, inp, l.slope, rows * l.width);
          break;
        case "gelu":
          k.gelu_forward(out, inp, rows * l.width);
          break;
        case "gelu_tanh":
          k.gelu_tanh_forward(out, inp, rows * l.width);
          break;
        case "tanh":
          k.tanh_forward(out, inp, rows * l.width);
          break;
        case "sigmoid":
          k.sigmoid_forward(out, inp, rows * l.width);
          break;
        case "dropout":
          if (training && this.layout.masks[i]) k.dropout_forward(out, this.layout.masks[i]!.ptr, inp, l.p, (seed + i * 0x9e3779b9) >>> 0, rows * l.width);
          else k.copy(out, inp, rows * l.width);
          break;
      }
      inp = out;
    }
    return inp;
  }

  /**
   * Backward pass of the last training forward: reads dL/dlogits from `logitsGrad`,
   * accumulates (+=) parameter gradients into `grads`. Call zeroGrad() first.
   */
  backward(rows: number): void {
    const k = this.k;
    const layers = this.spec.layers;
    let dout = this.layout.gradA.ptr;
    let dinp = this.layout.gradB.ptr;
    for (let i = layers.length - 1; i >= 0 && i >= this.spec.firstTrainableLayer; i--) {
      const l = layers[i]!;
      const inp = this.inputs[i]!;
      const out = this.layout.outputs[i]!.ptr;
      // the input gradient is needed only if a layer below still has trainable parameters
      const needInputGrad = i > this.spec.firstTrainableLayer;
      switch (l.kind) {
        case "linear":
          if (l.weight.trainable) k.matmul_tn(this.gradPtr(l.weight), dout, inp, l.outFeatures, l.inFeatures, rows, 1);
          if (l.bias?.trainable) k.bias_grad(this.gradPtr(l.bias), dout, rows, l.outFeatures);
          if (needInputGrad) k.matmul_nn(dinp, dout, this.paramPtr(l.weight), rows, l.inFeatures, l.outFeatures, 0);
          break;
        case "relu":
          k.relu_backward(dinp, dout, out, rows * l.width);
          break;
        case "leaky_relu":
          k.leaky_relu_backward(dinp, dout, inp, l.slope, rows * l.width);
          break;
        case "gelu":
          k.gelu_backward(dinp, dout, inp, rows * l.width);
          break;
        case "gelu_tanh":
          k.gelu_tanh_backward(dinp, dout, inp, rows * l.width);
          break;
        case "tanh":
          k.tanh_backward(dinp, dout, out, rows * l.width);
          break;
        case "sigmoid":
          k.sigmoid_backward(dinp, dout, out, rows * l.width);
          break;
        case "dropout":
          if (this.trainingForward && this.layout.masks[i]) k.mul(dinp, dout, this.layout.masks[i]!.ptr, rows * l.width);
          else k.copy(dinp, dout, rows * l.width);
          break;
      }
      const t = dout;
      dout = dinp;
      dinp = t;
    }
  }

  /** grads = 0 */
  zeroGrad(): void {
    this.k.fill(this.grads.ptr, 0, this.grads.length);
  }

  /** Copies parameter values in from state_dict tensors (already shape-checked). */
  loadParameters(values: ReadonlyMap<string, Float32Array>): void {
    for (const p of this.spec.parameters) new Float32Array(this.memory.buffer, this.paramPtr(p), p.size).set(values.get(p.name)!);
  }

  /** The current parameter values, state_dict order (copies). */
  readParameters(): { name: string; shape: number[]; data: Float32Array }[] {
    return this.spec.parameters.map((p) => ({
      name: p.name,
      shape: [...p.shape],
      data: new Float32Array(this.memory.buffer, this.paramPtr(p), p.size).slice(),
    }));
  }
}
