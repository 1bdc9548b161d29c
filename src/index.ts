/**
 * edgetune's runtime-agnostic core: the engine (inject a compiled kernel module), the shared
 * request/result schemas, the formats and the typed errors. Node users import "edgetune",
 * which adds a ready `train()`; Workers and browsers use `createEngine({ module, ... })`.
 *
 * @example
 * ```ts
 * import { createEngine } from "edgetune/core";
 * import kernels from "edgetune/wasm/simd.wasm"; // a compiled WebAssembly.Module on Workers
 * const engine = createEngine({ module: kernels, variant: "wasm-simd", runtime: "workerd" });
 * const result = await engine.train(request);
 * ```
 */
export { createEngine, prepareRun, runPrepared, type EngineRuntime, type TrainOptions, type TrainRequest, type PreparedRun } from "./engine/train.js";
export { FineTuneRequest, type FineTuneRequestInput } from "./schema/request.js";
export { FineTuneResult, type ProgressEvent, type EpochMetrics, type Plan, type EngineInfo } from "./schema/result.js";
export * from "./errors.js";
export { encodeBase64, decodeBase64 } from "./formats/base64.js";
export { parseSafetensors, readTensorF32, writeSafetensors, type SafetensorsFile, type TensorInfo } from "./formats/safetensors.js";
export { parseCsv, parseJsonl, tableFromInline, type Table } from "./formats/dataset.js";
export { looksLikeSafetensors, tableFromSafetensors, type SafetensorsTableOptions } from "./formats/dataset-safetensors.js";
