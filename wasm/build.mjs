// Builds the kernel core variants with the AssemblyScript compiler:
//   build/wasm/simd.wasm          f32x4 SIMD (runs everywhere: workerd, Node 20, browsers)
//   build/wasm/relaxed-simd.wasm  + relaxed_madd (chosen at run time when WebAssembly.validate accepts it)
//   build/wasm/*-threads.wasm     the same over a shared memory, for data-parallel training on worker_threads
// Memory is imported (env.memory), so the TypeScript arena owns it; the runtime is the stub
// (no GC, no allocator) and there is no abort import: kernels never allocate or trap on purpose.
import asc from "assemblyscript/asc";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join, relative } from "node:path";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const outDir = join(root, "build", "wasm");
mkdirSync(outDir, { recursive: true });

const common = [
  join(root, "wasm/assembly/index.ts"),
  "--runtime", "stub",
  "--importMemory",
  "--initialMemory", "1",
  "--noAssert",
  "--use", "abort=",
  "--optimizeLevel", "3",
  "--shrinkLevel", "0",
  "--converge",
  "--enable", "simd",
];

// the -threads builds declare their imported memory shared (worker_threads on Node share it)
const threads = ["--enable", "threads", "--sharedMemory", "--maximumMemory", "65536"];
const variants = [
  { name: "simd", flags: [] },
  { name: "relaxed-simd", flags: ["--enable", "relaxed-simd"] },
  { name: "simd-threads", flags: threads },
  { name: "relaxed-simd-threads", flags: ["--enable", "relaxed-simd", ...threads] },
];

for (const variant of variants) {
  const out = join(outDir, `${variant.name}.wasm`);
  const { error, stderr } = await asc.main([...common, ...variant.flags, "--outFile", out, "--textFile", out.replace(/\.wasm$/, ".wat")]);
  if (error) {
    console.error(stderr.toString());
    console.error(`wasm build failed (${variant.name}): ${error.message}`);
    process.exit(1);
  }
  console.log(`built ${relative(root, out)}`);
}
