#!/usr/bin/env node
// `npm run build:browser`: the browser library, served by the Worker as static files (Workers
// Static Assets, [assets] in wrangler.toml) at /lib/*:
//   build/public/lib/edgetune.js          src/browser/index.ts bundled (ESM, minified) + .map
//   build/public/lib/edgetune-worker.js   src/browser/worker.ts, a module Web Worker importing ./edgetune.js + .map
//   build/public/lib/sdk.js               src/sdk/index.ts: the API client for browser apps (fetch only) + .map
//   build/public/lib/simd.wasm            copies of build/wasm (npm run build:wasm): the kernel core
//   build/public/lib/relaxed-simd.wasm
//   build/public/playground/app.js        src/playground/main.ts: the playground page's script (GET / is its HTML shell) + .map
//   build/public/playground/app.css       src/playground/style.css
//   build/public/favicon.svg, favicon.ico the icon (the .ico rasterised here from the same drawing)
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
const playgroundOut = join(root, "build", "public", "playground");
for (const dir of [out, playgroundOut]) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
}

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

// the playground: typed modules using the SDK and src/formats; /lib/edgetune.js is imported at run
// time by URL (not bundled), so the page and its Web Worker share one copy of the library
await build({ ...common, entryPoints: { app: "src/playground/main.ts" }, outdir: playgroundOut, plugins: [englishOnly] });
await build({ ...common, entryPoints: { app: "src/playground/style.css" }, outdir: playgroundOut, sourcemap: false });
copyFileSync(join(root, "src", "playground", "favicon.svg"), join(root, "build", "public", "favicon.svg"));
writeFileSync(join(root, "build", "public", "favicon.ico"), faviconIco(32));

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
writeFileSync(
  join(root, "build", "public", "_headers"),
  ["/lib/*", "/playground/*", "/favicon.*", "/docs/assets/*"].map((path) => `${path}\n  X-Content-Type-Options: nosniff\n`).join(""),
);

for (const dir of [out, playgroundOut]) {
  for (const file of readdirSync(dir).filter((f) => !f.endsWith(".map")).sort()) {
    console.log(`${relative(root, join(dir, file))}  ${(statSync(join(dir, file)).size / 1024).toFixed(1)} KiB`);
  }
}

/**
 * src/playground/favicon.svg's drawing (a dark rounded square, a falling blue loss curve, an
 * orange last point) as a size x size 32-bit ICO (one BMP image, 4x4 supersampled), for
 * browsers that ask for /favicon.ico whatever the page links.
 */
function faviconIco(size) {
  const scale = size / 32;
  const curve = [[6, 8], [11, 17], [16, 21], [21, 23.5], [26, 24.5]];
  const segmentDistance = (x, y, [ax, ay], [bx, by]) => {
    const dx = bx - ax;
    const dy = by - ay;
    const t = Math.max(0, Math.min(1, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)));
    return Math.hypot(x - ax - t * dx, y - ay - t * dy);
  };
  const inRoundedSquare = (x, y) => {
    const r = 6;
    const cx = Math.min(Math.max(x, r), 32 - r);
    const cy = Math.min(Math.max(y, r), 32 - r);
    return Math.hypot(x - cx, y - cy) <= r;
  };
  const colourAt = (x, y) => {
    if (Math.hypot(x - 26, y - 24.5) <= 2.5) return [232, 89, 12, 255];
    for (let i = 1; i < curve.length; i++) if (segmentDistance(x, y, curve[i - 1], curve[i]) <= 1.5) return [90, 162, 255, 255];
    return inRoundedSquare(x, y) ? [29, 36, 48, 255] : [0, 0, 0, 0];
  };
  const pixels = Buffer.alloc(size * size * 4);
  const n = 4;
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const sum = [0, 0, 0, 0];
      for (let sy = 0; sy < n; sy++) {
        for (let sx = 0; sx < n; sx++) {
          const c = colourAt((px + (sx + 0.5) / n) / scale, (py + (sy + 0.5) / n) / scale);
          for (let k = 0; k < 3; k++) sum[k] += c[k] * c[3];
          sum[3] += c[3];
        }
      }
      const alpha = sum[3] / (n * n);
      const o = ((size - 1 - py) * size + px) * 4; // BMP rows run bottom-up, BGRA
      const channel = (k) => (sum[3] ? Math.round(sum[k] / sum[3]) : 0);
      pixels[o] = channel(2);
      pixels[o + 1] = channel(1);
      pixels[o + 2] = channel(0);
      pixels[o + 3] = Math.round(alpha);
    }
  }
  const mask = Buffer.alloc(Math.ceil(size / 32) * 4 * size); // the AND mask: unused with an alpha channel
  const info = Buffer.alloc(40);
  info.writeUInt32LE(40, 0);
  info.writeInt32LE(size, 4);
  info.writeInt32LE(size * 2, 8); // XOR image and AND mask
  info.writeUInt16LE(1, 12);
  info.writeUInt16LE(32, 14);
  info.writeUInt32LE(pixels.length + mask.length, 20);
  const image = Buffer.concat([info, pixels, mask]);
  const head = Buffer.alloc(22);
  head.writeUInt16LE(0, 0);
  head.writeUInt16LE(1, 2); // an icon
  head.writeUInt16LE(1, 4); // one image
  head.writeUInt8(size % 256, 6);
  head.writeUInt8(size % 256, 7);
  head.writeUInt16LE(1, 10);
  head.writeUInt16LE(32, 12);
  head.writeUInt32LE(image.length, 14);
  head.writeUInt32LE(22, 18);
  return Buffer.concat([head, image]);
}
