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
 * y[m, :] = weight[ids[m], :] for m = rows * tokens (nn.Embedding); the gradient scatter-adds
 * into the rows of weight in token order, except padding_idx's row.
 * https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html
 */
export interface EmbeddingOp extends OpBase {
  readonly kind: "embedding";
  readonly weight: number;
  /** Token ids per sample (T). */
  readonly tokens: number;
  /** embedding_dim (D). */
  readonly dim: number;
  /** The row that gets no gradient (padding_idx, made non-negative), or -1. */
  readonly paddingIdx: number;
}

/** y = x + weight[:T] over x [T, D] (learned positions): the first n = T * D elements of weight. */
export interface AddPositionOp extends OpBase {
  readonly kind: "add_position";
  readonly weight: number;
  readonly n: number;
}

/**
 * Pooling over the tokens of x [T, D] into [D], honouring the attention mask when `inputs` has
 * it (inputs[1]): mode 0 mean, 1 max, 2 cls, 3 last (layers/tokens.ts POOL_MODES).
 */
export interface TokenPoolOp extends OpBase {
  readonly kind: "token_pool";
  readonly mode: number;
  readonly tokens: number;
  readonly dim: number;
  /** Saved [rows, D]: the token each max took (-1 for the other modes). */
  readonly argmax: number;
}

/** Every op. */
export type Op = LinearOp | ActivationOp | DropoutOp | AddOp | EmbeddingOp | AddPositionOp | TokenPoolOp;
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
