/**
 * The op vocabulary: what layers lower into and what every backend executes. An op is plain
 * data (value ids, state tensor indices, sizes); its maths lives once per backend, in
 * ops/<kind>.ts (the WASM kernel core and its TypeScript twins) and webgpu/ops.ts (WGSL).
 *
 * Conventions: `inputs` and `outputs` are value ids ([rows, size] f32 buffers); state tensors
 * are indices into CompiledModel.state (-1: absent); sizes are per sample, and an op over
 * `rows` samples runs on rows * (its per-sample count) elements.
 */
import type { Ptr } from "../kernels.js";

interface OpBase {
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
}

/**
 * y[m, out] = x[m, in] · W[out, in]^T + b, for m = rows * tokens (nn.Linear on the last dim).
 * https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 */
export interface LinearOp extends OpBase {
  readonly kind: "linear";
  readonly weight: number;
  readonly bias: number;
  readonly in: number;
  readonly out: number;
  /** Rows of the product per sample (positions of a sequence; 1 for flat features). */
  readonly tokens: number;
}

/** y = f(x) elementwise; `fn` is the activation's code (layers/activations.ts ACTIVATIONS). */
export interface ActivationOp extends OpBase {
  readonly kind: "activation";
  readonly fn: number;
  /** LeakyReLU's negative_slope (0 for the others). */
  readonly slope: number;
  readonly n: number;
}

/** nn.Dropout(p): y = x * mask / (1 - p) in training, y = x in evaluation. */
export interface DropoutOp extends OpBase {
  readonly kind: "dropout";
  readonly p: number;
  readonly n: number;
  /** Saved mask [rows, n] (-1 when p is 0). */
  readonly mask: number;
  /** Mixed into the step's seed, so two dropouts of one model draw different masks. */
  readonly salt: number;
}

/** y = a + b (residual connections). */
export interface AddOp extends OpBase {
  readonly kind: "add";
  readonly n: number;
}

/**
 * Where a sliding window reads a sample's image [C, H, W] (1-d ops: H = KH = SH = DH = 1, PH = 0):
 * output (oh, ow) reads rows oh*SH - PH + kh*DH for kh < KH and columns ow*SW - PW + kw*DW for
 * kw < KW. PH and PW are the top and left padding; the bottom and right follow from OH and OW
 * (padding "same" pads one more at the bottom and right when the total is odd, as torch does).
 */
export interface WindowGeometry {
  readonly C: number;
  readonly H: number;
  readonly W: number;
  readonly KH: number;
  readonly KW: number;
  readonly SH: number;
  readonly SW: number;
  readonly PH: number;
  readonly PW: number;
  readonly DH: number;
  readonly DW: number;
  readonly OH: number;
  readonly OW: number;
}

/**
 * nn.Conv1d / nn.Conv2d (padding_mode "zeros"): y[O, OH, OW] from x[C, H, W] with
 * weight [O, C/groups, KH, KW] and bias [O]. https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
 */
export interface ConvOp extends OpBase, WindowGeometry {
  readonly kind: "conv";
  readonly weight: number;
  readonly bias: number;
  /** Output channels. */
  readonly O: number;
  readonly groups: number;
  /** Output rows unfolded into the workspace at a time (ops/conv.ts convRowChunk). */
  readonly rowChunk: number;
}

/**
 * nn.MaxPool1d / nn.MaxPool2d over each of C planes; the argmax of every output (i32, ih*W + iw)
 * is saved for the backward pass. https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html
 */
export interface MaxPoolOp extends OpBase, WindowGeometry {
  readonly kind: "max_pool";
  /** Saved argmax indices [rows, C*OH*OW]. */
  readonly indices: number;
}

/**
 * nn.AvgPool1d / nn.AvgPool2d over each of C planes (DH = DW = 1), or, when `adaptive`,
 * nn.AdaptiveAvgPool1d/2d (windows from H, W, OH, OW only; K, S, P unused).
 * https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html
 */
export interface AvgPoolOp extends OpBase, WindowGeometry {
  readonly kind: "avg_pool";
  readonly adaptive: boolean;
  readonly countIncludePad: boolean;
  /** divisor_override, 0 for none. */
  readonly divisor: number;
}

/** Every op. */
export type Op = LinearOp | ActivationOp | DropoutOp | AddOp | ConvOp | MaxPoolOp | AvgPoolOp;
export type OpKind = Op["kind"];
export type OpOf<K extends OpKind> = Extract<Op, { kind: K }>;

/** What one op asks of the kernel core while it runs (pointers into the arena). */
export interface KernelOpContext {
  readonly k: import("../kernels.js").Kernels;
  /** A value's [rows, size] buffer. */
  value(id: number): Ptr;
  /** A state tensor (parameter or buffer); 0 for index -1. */
  state(index: number): Ptr;
  /** A trainable parameter's gradient (accumulate into it); 0 when frozen or index -1. */
  grad(index: number): Ptr;
  /** A saved buffer; 0 for id -1. */
  saved(id: number): Ptr;
  /** Scratch shared by every op: at least the largest `workspace` any op asked for. */
  readonly workspace: Ptr;
  readonly training: boolean;
  /** The step's seed (dropout masks). */
  readonly seed: number;
}

/**
 * An op kind as the planner and the kernel core see it.
 *
 * @example
 * ```ts
 * const addOp: OpDef<AddOp> = {
 *   flops: (op) => ({ forward: op.n, backward: 0 }),
 *   kernel: {
 *     forward: (c, op, rows) => c.k.add(c.value(op.outputs[0]), c.value(op.inputs[0]), c.value(op.inputs[1]), rows * op.n),
 *     backward: (c, op, rows, dy, dx) => { for (const d of dx) if (d) c.k.copy(d, dy[0], rows * op.n); },
 *   },
 * };
 * ```
 */
export interface OpDef<O extends Op> {
  /** FLOPs per sample of the forward and the backward pass. */
  flops(op: O): { forward: number; backward: number };
  /** Workspace elements for `rows` samples (shared scratch; default none). */
  workspace?(op: O, rows: number): number;
  /** Whether the op mixes the rows of a batch (the batch cannot be split across threads). */
  couplesRows?: boolean;
  kernel: {
    forward(c: KernelOpContext, op: O, rows: number): void;
    /**
     * dy: the gradients of the outputs; dx: of the inputs, written (0 = not needed).
     * Parameter gradients accumulate (+=) into c.grad(...).
     */
    backward(c: KernelOpContext, op: O, rows: number, dy: readonly Ptr[], dx: readonly Ptr[]): void;
  };
}
