/**
 * The input of an asynchronous run as one file: a safetensors whose tensors are the initial
 * state (state_dict names, buffers included) and the data (`@train.x` or `@train.input_ids`,
 * `@train.y`, `@train.attention_mask`, `@train.token_type_ids`, and the same for `@validation`;
 * text rows are stored tokenized, so the tokenizer is not kept; `@` cannot start a
 * parameter name), with the validated request in the metadata. It is written once at submission (R2), and read by whoever runs the job, which
 * validates it again with prepareRun.
 */
import { prepareRun, type PreparedRun } from "../engine/prepare.js";
import { parseSafetensors, readTensorF32, writeSafetensors, type WritableTensor } from "../formats/safetensors.js";
import type { Table } from "../formats/dataset.js";
import { UnprocessableError } from "../errors.js";
import { transpose } from "../engine/huggingface/checkpoint.js";
import { peftKey } from "../engine/adapters/resolve.js";
import { stateDtype } from "../engine/model.js";
import { StateValues } from "../engine/state-values.js";

const MARKER = "edgetune-run-input/1";

/**
 * Encodes a prepared run (after validation_split) for storage; `state: false` leaves out the
 * starting state (the runner then starts from training.seed's initialisation).
 *
 * @example
 * ```ts
 * await bucket.put(`inputs/${id}.safetensors`, encodeRunInput(prepared));
 * ```
 */
export function encodeRunInput(prepared: PreparedRun, options: { state?: boolean } = {}): Uint8Array {
  const { data, weights: _weights, adapter_weights: _adapterWeights, tokenizer: _tokenizer, ...request } = prepared.request;
  const stored = { ...request, data: { target: data.target }, training: openLearningRates(prepared) };
  // without given weights the runner initialises from training.seed (bit-identical), so none are stored
  // state: false (a sync run's input, kept for explanations, which read the trained weights
  // from the stored weights file): the model and data only, not a second copy of the checkpoint
  const state = options.state === false ? null : prepared.initialState;
  // an adapter's tensors are stored as adapter weights (`@adapter.` + PEFT's key): the runner continues them
  const adapter = new Set(prepared.model.lora?.modules.flatMap((m) => [m.a, m.b]) ?? []);
  const tensors: WritableTensor[] = state
    ? prepared.model.state.map((t, i) => {
        // stored as the state_dict holds it (GPT-2's Conv1D [in, out]): the runner reads it as a checkpoint again
        const name = adapter.has(i) ? `@adapter.${peftKey(t.name)}` : t.name;
        // a frozen tensor of a 16-bit base_dtype in that dtype: the run holds it rounded so (the
        // same rounding), and the stored input is half the size of a float32 copy; bits the
        // checkpoint gave in that dtype are written as they are (never widened)
        const half = stateDtype(prepared.model, t);
        const bits = state instanceof StateValues ? state.half(t.name) : undefined;
        if (half !== 0 && bits?.dtype === half && !t.transposed) return { name, shape: [...t.shape], data: bits.bits, dtype: half === 1 ? ("F16" as const) : ("BF16" as const) };
        const data = state.get(t.name)!;
        const dtype = t.dtype === "I64" ? ("I64" as const) : half === 1 ? ("F16" as const) : half === 2 ? ("BF16" as const) : null;
        return { name, shape: [...t.shape], data: t.transposed ? transpose(data, t.shape[1]!, t.shape[0]!) : data, ...(dtype ? { dtype } : {}) };
      })
    : [];
  const causal = prepared.huggingface?.task === "causal-lm";
  const table = (name: string, t: Table): WritableTensor[] => [
    { name: `@${name}.${t.ids ? "input_ids" : "x"}`, shape: [t.rows, t.features], data: t.x },
    { name: `@${name}.y`, shape: [t.rows, t.targets], data: causal ? unshiftLabels(t) : t.y },
    ...(t.mask ? [{ name: `@${name}.attention_mask`, shape: [t.rows, t.features], data: t.mask }] : []),
    ...(t.tokenTypes ? [{ name: `@${name}.token_type_ids`, shape: [t.rows, t.features], data: t.tokenTypes }] : []),
  ];
  tensors.push(...table("train", prepared.train));
  if (prepared.validation) tensors.push(...table("validation", prepared.validation));
  const metadata: Record<string, string> = { format: MARKER, request: JSON.stringify(stored) };
  if (prepared.huggingface) metadata.huggingface = JSON.stringify({ initialized: prepared.huggingface.initialized, dropped: prepared.huggingface.dropped });
  return writeSafetensors(tensors, { metadata });
}

/**
 * Decodes and re-validates a stored run input.
 *
 * @example
 * ```ts
 * const prepared = decodeRunInput(new Uint8Array(await object.arrayBuffer()));
 * const result = await runPrepared(runtime, prepared);
 * ```
 */
export function decodeRunInput(bytes: Uint8Array): PreparedRun {
  const file = parseSafetensors(bytes, { field: "input" });
  if (file.metadata?.format !== MARKER || typeof file.metadata.request !== "string") {
    throw new UnprocessableError("invalid_input", [{ path: "input", message: `is not an ${MARKER} file` }]);
  }
  const request = JSON.parse(file.metadata.request) as Record<string, unknown>;
  const params: WritableTensor[] = [];
  const adapterTensors: WritableTensor[] = [];
  for (const [name, info] of file.tensors) {
    if (name.startsWith("@adapter.")) {
      adapterTensors.push({ name: name.slice("@adapter.".length), shape: info.shape, data: readTensorF32(file, name, "input") });
      continue;
    }
    if (name.startsWith("@")) continue;
    const integer = info.dtype === "I64";
    params.push({ name, shape: info.shape, data: readTensorF32(file, name, "input", { integers: integer }), ...(integer ? { dtype: "I64" as const } : {}) });
  }
  const table = (name: string): Table | undefined => {
    const ids = file.tensors.has(`@${name}.input_ids`);
    const xName = `@${name}.${ids ? "input_ids" : "x"}`;
    const x = file.tensors.get(xName);
    const y = file.tensors.get(`@${name}.y`);
    if (!x || !y) return undefined;
    const mask = file.tensors.has(`@${name}.attention_mask`) ? readTensorF32(file, `@${name}.attention_mask`, "input") : null;
    const tokenTypes = file.tensors.has(`@${name}.token_type_ids`) ? readTensorF32(file, `@${name}.token_type_ids`, "input") : null;
    return {
      rows: x.shape[0]!,
      features: x.shape[1]!,
      targets: y.shape[1]!,
      x: readTensorF32(file, xName, "input"),
      y: readTensorF32(file, `@${name}.y`, "input"),
      targetsWereScalar: y.shape[1] === 1,
      ...(ids ? { ids } : {}),
      ...(mask ? { mask } : {}),
      ...(tokenTypes ? { tokenTypes } : {}),
    };
  };
  const train = table("train");
  const validation = table("validation");
  const prepared = prepareRun(
    {
      ...(request as object),
      weights: params.length > 0 ? writeSafetensors(params) : null,
      ...(adapterTensors.length > 0 ? { adapter_weights: writeSafetensors(adapterTensors) } : {}),
    } as Parameters<typeof prepareRun>[0],
    { ...(train ? { train } : {}), ...(validation ? { validation } : {}) },
  );
  // what reading the user's checkpoint did at submission (the stored state is complete)
  if (prepared.huggingface && typeof file.metadata.huggingface === "string") Object.assign(prepared.huggingface, JSON.parse(file.metadata.huggingface));
  return prepared;
}

/**
 * A causal LM's next-token targets back to the labels they were shifted from (labels[0] is
 * never scored: -100), so that prepareRun's shift gives the same targets again.
 */
function unshiftLabels(t: Table): Float32Array {
  const T = t.features;
  const labels = new Float32Array(t.rows * T);
  for (let r = 0; r < t.rows; r++) {
    labels[r * T] = -100;
    for (let i = 1; i < T; i++) labels[r * T + i] = t.y[r * T + i - 1]!;
  }
  return labels;
}

/**
 * The training settings as stored: lr and max_lr "auto" again where the run's range test
 * chooses them (prepareRun keeps a placeholder until then), so that the runner tests again.
 */
function openLearningRates(prepared: PreparedRun): Record<string, unknown> {
  const t = prepared.request.training;
  const finder = prepared.lrFinder;
  if (!finder) return t;
  return {
    ...t,
    optimizer: finder.lr ? { ...t.optimizer, lr: "auto" } : t.optimizer,
    schedule: finder.maxLr ? { ...t.schedule, max_lr: "auto" } : t.schedule,
  };
}
