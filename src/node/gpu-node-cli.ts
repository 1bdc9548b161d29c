#!/usr/bin/env node
/**
 * `npm run gpu-node`: a GPU node configured from the environment (EDGETUNE_URL, default
 * http://127.0.0.1:8787; EDGETUNE_NODE_TOKEN, default the development token). On SIGINT or
 * SIGTERM it stops claiming at once (a claim's long poll in flight is aborted) and exits after
 * the job in hand (SIGKILL drops it: its lease lapses and another node takes the job over).
 */
import { optionsFromEnv, runGpuNode } from "./gpu-node.js";

const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (!controller.signal.aborted) console.log(`[gpu-node] ${signal}: no more claims; finishing the job in hand, if any`);
    controller.abort();
  });
}
await runGpuNode({ ...optionsFromEnv(), signal: controller.signal });
