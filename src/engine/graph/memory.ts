/**
 * Where the kernel core keeps the gradient slots: in activation buffers the values do not need
 * while a slot is live, or in buffers of their own (themselves shared by slots that are not live
 * together).
 *
 * The backward schedule (compile.ts scheduleBackward) already shares slots among gradients by
 * liveness: a gradient's slot is free once its producer's backward has consumed it. The
 * activation buffers are shared among values the same way (planValueBuffers,
 * planCheckpointedBuffers). Both were planned apart, so a buffer that holds a value only
 * during the forward pass (a GELU's output, read by the next Linear and by nothing in the
 * backward) sat unused while the gradients had memory of their own. This pass lays the
 * forward pass, the loss, and the backward pass with its recomputed segments (gradient
 * checkpointing: Model.backward's order) on one timeline, takes each buffer's busy intervals
 * from the values it holds (a value is live from its write to its last read: forward readers,
 * and the backward steps that read it, OpDef.backwardReads) and each slot's from the gradients
 * it holds (from the step that writes one to the last step that reads it), and places each slot
 * into a buffer whose intervals it does not meet.
 *
 * An op whose backward may write dx over dy (OpDef.backwardInPlace: an elementwise backward
 * reads dy[i] before it writes dx[i], as activation_backward does) lets its dx slot share its dy
 * slot's buffer: the dy interval ends in the first half of the step and dx's begins in the
 * second. The kernels, their arguments and their order do not change, only addresses: training
 * gives the same bits (test/engine/buffers.test.ts).
 *
 * The WebGPU backend keeps one buffer per value and per slot and does not read this plan.
 */
import { OPS } from "../ops/index.js";
import type { Op } from "../ops/types.js";
import type { BackwardStep, ValueInfo } from "./types.js";

/** What the placement reads of a compiled model (graph/compile.ts). */
export interface GradientPlacementInput {
  readonly ops: readonly Op[];
  readonly values: readonly ValueInfo[];
  readonly steps: readonly BackwardStep[];
  /** The values each step's backward reads (same order as `steps`). */
  readonly stepReads: readonly (readonly number[])[];
  /** Gradient slots: elements per sample. */
  readonly slots: readonly number[];
  /** The slot the loss writes dL/d(output) into. */
  readonly outputSlot: number;
  /** An input-gradient model's dL/d(target) slot, read after the backward pass (-1: none). */
  readonly targetSlot: number;
  /** Gradient checkpointing's segments (null: none). */
  readonly segments: readonly { readonly start: number; readonly end: number }[] | null;
  /** value id -> activation buffer (-1 for the graph's inputs), and each buffer's elements per sample. */
  readonly valueBuffer: readonly number[];
  readonly bufferSizes: readonly number[];
  /** Values read after the passes (the output, an input-gradient model's target). */
  readonly kept: readonly number[];
}

/** Inclusive [from, to] in half-steps: event e spans 2e (its writes) to 2e + 1 (its reads). */
type Interval = [number, number];

/**
 * Places the gradient slots into activation buffers or buffers of their own.
 *
 * @example
 * ```ts
 * const { slotBuffers, sizes } = placeGradientSlots({ ops, values, steps, stepReads, slots, outputSlot, targetSlot: -1, segments, valueBuffer, bufferSizes, kept: [output] });
 * sizes.length >= bufferSizes.length; // the activation buffers first, then any the slots needed
 * slotBuffers[outputSlot]; // the buffer dL/dlogits is written into
 * ```
 */
export function placeGradientSlots(input: GradientPlacementInput): { slotBuffers: number[]; sizes: number[] } {
  const { ops, values, steps, stepReads, slots, valueBuffer, bufferSizes } = input;
  const valueLive = values.map(() => [] as Interval[]);
  const slotLive = slots.map(() => [] as Interval[]);
  const openValue = new Map<number, Interval>();
  const openSlot = new Map<number, Interval>();
  const write = (open: Map<number, Interval>, live: Interval[][], id: number, at: number) => {
    const iv: Interval = [at, at];
    live[id]!.push(iv);
    open.set(id, iv);
  };
  const read = (open: Map<number, Interval>, id: number, at: number) => {
    const iv = open.get(id);
    if (iv && at > iv[1]) iv[1] = at;
  };
  let event = 0;
  const forwardOp = (i: number) => {
    const op = ops[i]!;
    for (const v of op.inputs) read(openValue, v, 2 * event + 1);
    for (const v of op.outputs) write(openValue, valueLive, v, 2 * event);
    event++;
  };
  // the forward pass
  for (let i = 0; i < ops.length; i++) forwardOp(i);
  // the loss: reads the output, writes dL/d(output)
  for (const v of input.kept) read(openValue, v, 2 * event + 1);
  write(openSlot, slotLive, input.outputSlot, 2 * event);
  event++;
  // the backward pass, with each earlier segment's forward run again as Model.backward does
  const segments = input.segments;
  let segment = segments ? segments.length - 1 : -1;
  steps.forEach((s, k) => {
    if (segments) {
      while (segment > 0 && s.op < segments[segment]!.start) {
        segment--;
        for (let i = segments[segment]!.start; i < segments[segment]!.end; i++) forwardOp(i);
      }
    }
    const op = ops[s.op]!;
    const def = OPS[op.kind] as { backwardInPlace?: boolean };
    const inPlace = def.backwardInPlace === true && s.dy.length === 1 && s.dx.length === 1 && s.dy[0]! >= 0 && s.dx[0]! >= 0 && slots[s.dy[0]!] === slots[s.dx[0]!];
    for (const v of stepReads[k]!) read(openValue, v, 2 * event + 1);
    for (const slot of s.dy) if (slot >= 0) read(openSlot, slot, inPlace ? 2 * event : 2 * event + 1);
    for (const slot of s.dx) if (slot >= 0) write(openSlot, slotLive, slot, inPlace ? 2 * event + 1 : 2 * event);
    for (const a of s.accumulate) {
      read(openSlot, a.into, 2 * event + 1);
      read(openSlot, a.from, 2 * event + 1);
    }
    event++;
  });
  // read after the passes
  for (const v of input.kept) read(openValue, v, 2 * event + 1);
  if (input.targetSlot >= 0) read(openSlot, input.targetSlot, 2 * event + 1);

  // each buffer's busy intervals, sorted and merged
  const busy: Interval[][] = bufferSizes.map(() => []);
  valueBuffer.forEach((b, v) => {
    if (b >= 0) busy[b]!.push(...valueLive[v]!);
  });
  const sizes = [...bufferSizes];
  const merged = busy.map(merge);
  const slotBuffers = slots.map(() => -1);
  // the largest slots first: they save the most
  const order = slots.map((_, s) => s).sort((a, b) => slots[b]! - slots[a]! || a - b);
  for (const s of order) {
    const need = merge(slotLive[s]!);
    if (need.length === 0 && s !== input.outputSlot) continue; // never written: placed below
    let best = -1;
    for (let b = 0; b < sizes.length; b++) {
      if (sizes[b]! < slots[s]! || (best >= 0 && sizes[b]! >= sizes[best]!)) continue;
      if (disjoint(merged[b]!, need)) best = b;
    }
    if (best < 0) {
      sizes.push(slots[s]!);
      merged.push([]);
      best = sizes.length - 1;
    }
    merged[best] = merge([...merged[best]!, ...need]);
    slotBuffers[s] = best;
  }
  // a slot no step writes (none in practice): a buffer of its own
  slots.forEach((size, s) => {
    if (slotBuffers[s]! >= 0) return;
    sizes.push(size);
    slotBuffers[s] = sizes.length - 1;
  });
  return { slotBuffers, sizes };
}

/** Sorts intervals and merges the ones that meet. */
function merge(intervals: readonly Interval[]): Interval[] {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  const out: Interval[] = [];
  for (const [from, to] of sorted) {
    const last = out.at(-1);
    if (last && from <= last[1]) last[1] = Math.max(last[1], to);
    else out.push([from, to]);
  }
  return out;
}

/** Whether two sorted, merged interval lists share no half-step. */
function disjoint(a: readonly Interval[], b: readonly Interval[]): boolean {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i]![1] < b[j]![0]) i++;
    else if (b[j]![1] < a[i]![0]) j++;
    else return false;
  }
  return true;
}
