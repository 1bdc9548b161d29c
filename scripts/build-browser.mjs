#!/usr/bin/env node
// `npm run build:browser`: the browser library, served by the Worker as static files (Workers
// Static Assets, [assets] in wrangler.toml) at /lib/*:
//   build/public/lib/edgetune.js          src/browser/index.ts bundled (ESM, minified) + .map
//   build/public/lib/edgetune-worker.js   src/browser/worker.ts, a module Web Worker importing ./edgetune.js + .map
//   build/public/lib/sdk.js               src/sdk/index.ts: the API client for browser apps (fetch only) + .map
//   build/public/lib/simd.wasm            copies of build/wasm (npm run build:wasm): the kernel core
//   build/public/lib/relaxed-simd.wasm
//   build/public/docs/assets/scalar-api-reference.js   the /docs reference UI: @scalar/api-reference's
//                                         standalone bundle, copied from node_modules (nothing from a CDN)
// Run after build:wasm. esbuild is a devDependency; its platform binary comes as an optional
// dependency package, so nothing is downloaded at install time.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "build", "public", "lib");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// zod re-exports every locale (`z.locales`, 260 KB minified); edgetune's messages are English
// and nothing uses z.locales, so the bundle gets a namespace with "en" only
const englishOnly = {
  name: "zod-english-only",
  setup(b) {
    b.onResolve({ filter: /\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]/.test(args.importer) ? { path: "zod-locales-en", namespace: "edgetune" } : undefined,
    );
    b.onLoad({ filter: /^zod-locales-en$/, namespace: "edgetune" }, () => ({
      contents: 'export { default as en } from "zod/v4/locales/en.js";',
      resolveDir: root,
      loader: "js",
    }));
  },
};

const common = {
  bundle: true,
  format: "esm",
  platform: "browser",
  // Chrome 91 / Firefox 89 / Safari 16.4 also bring WebAssembly SIMD, which the kernels need
  target: ["es2022", "chrome91", "firefox89", "safari16.4"],
  minify: true,
  sourcemap: "linked",
  sourcesContent: true,
  legalComments: "none",
  logLevel: "warning",
  absWorkingDir: root,
};

// one file: the engine's WebGPU backend (a dynamic import in train.ts, about 40 KiB of it) is
// inlined rather than split into chunks, so that the library stays edgetune.js + its worker
await build({ ...common, entryPoints: { edgetune: "src/browser/index.ts" }, outdir: out, plugins: [englishOnly] });
await build({
  ...common,
  entryPoints: { "edgetune-worker": "src/browser/worker.ts" },
  outdir: out,
  plugins: [
    {
      // the worker imports the library beside it instead of bundling a second copy
      name: "edgetune-external",
      setup(b) {
        b.onResolve({ filter: /^\.\/index\.js$/ }, (args) =>
          args.importer.endsWith(join("src", "browser", "worker.ts")) ? { path: "./edgetune.js", external: true } : undefined,
        );
      },
    },
  ],
});

// the SDK alone (no engine): what a browser app needs to call an edgetune server
await build({ ...common, entryPoints: { sdk: "src/sdk/index.ts" }, outdir: out });

for (const file of ["simd.wasm", "relaxed-simd.wasm"]) {
  const from = join(root, "build", "wasm", file);
  if (!existsSync(from)) throw new Error(`${relative(root, from)} is missing: run \`npm run build:wasm\` first`);
  copyFileSync(from, join(out, file));
}
// the reference UI of /docs (src/api/docs.ts): Scalar's one-file browser bundle, without its
// source map comment (the map stays out of the assets: 20 MB, and nothing asks for it)
const docsAssets = join(root, "build", "public", "docs", "assets");
rmSync(docsAssets, { recursive: true, force: true });
mkdirSync(docsAssets, { recursive: true });
const scalar = join(root, "node_modules", "@scalar", "api-reference", "dist", "browser", "standalone.js");
if (!existsSync(scalar)) throw new Error(`${relative(root, scalar)} is missing: run \`npm install\``);
writeFileSync(join(docsAssets, "scalar-api-reference.js"), readFileSync(scalar, "utf8").replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n"));

// Workers Static Assets' header rules (not served itself): the files are public, never sniffed
writeFileSync(join(root, "build", "public", "_headers"), "/lib/*\n  X-Content-Type-Options: nosniff\n/docs/assets/*\n  X-Content-Type-Options: nosniff\n");

for (const file of readdirSync(out).filter((f) => !f.endsWith(".map")).sort()) {
  console.log(`${relative(root, join(out, file))}  ${(statSync(join(out, file)).size / 1024).toFixed(1)} KiB`);
}
