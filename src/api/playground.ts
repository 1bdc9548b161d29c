/**
 * GET /: the playground's HTML shell. The page's script and style are static assets built from
 * src/playground (scripts/build-browser.mjs: /playground/app.js, /playground/app.css), so this
 * markup carries no inline script or style and the page runs under a CSP without
 * 'unsafe-inline' (`PLAYGROUND_CSP` in app.ts). See docs/playground.md.
 */

/**
 * The playground page HTML.
 *
 * @example
 * ```ts
 * app.get("/", (c) => c.html(playgroundPage()));
 * ```
 */
export function playgroundPage(): string {
  return PAGE;
}

const option = (value: string, text = value) => `<option value="${value}">${text}</option>`;
const options = (values: string[]) => values.map((v) => option(v)).join("");

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgetune playground</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/playground/app.css">
<script type="module" src="/playground/app.js"></script>
</head><body>
<header><h1>edgetune playground</h1><span>fine-tune a small model in the Worker or on this device and watch it learn</span>
<nav><a href="/docs">API docs</a> <a href="/openapi.json">openapi.json</a></nav></header>
<main>
<div class="column">
<section><h2>Data</h2>
<label for="demo">Dataset</label>
<select id="demo">
${option("moons", "Two moons: 2-D classification, 300 points")}${option("xor", "XOR: the four-row toy")}${option("sine", "Noisy sine: 1-D regression, 256 points")}${option("upload", "Upload a CSV…")}
</select>
<div id="upload-fields" hidden>
<label for="csv">Training CSV (header row; numbers only)</label><input id="csv" type="file" accept=".csv,.jsonl,text/csv">
<div class="row"><div><label for="target">Target column(s)</label><input id="target" type="text" value="y"></div>
<div><label for="val-csv">Validation CSV (optional)</label><input id="val-csv" type="file" accept=".csv,.jsonl,text/csv"></div></div>
<label for="weights">Weights (optional .safetensors, state_dict names)</label><input id="weights" type="file" accept=".safetensors,application/octet-stream">
<label for="model-file">Model or request JSON (optional)</label><input id="model-file" type="file" accept=".json,application/json">
<p class="hint">A request JSON (like examples/seed-mlp/request.json) sets every training option: what it leaves out takes the API's default.</p>
</div>
<p class="hint" id="data-summary"></p>
</section>
<section><h2>Model</h2>
<label for="model">Model (JSON: the layers in PyTorch nn.Sequential order, and an optional input shape such as {"input": {"shape": [1, 8, 8]}, "layers": [...]})</label>
<textarea id="model" spellcheck="false" wrap="off"></textarea>
</section>
<section><h2>Training</h2>
<div class="row">
<div><label for="loss">Loss</label><select id="loss">${options(["mse", "l1", "huber", "smooth_l1", "cross_entropy", "bce_with_logits", "hinge", "multi_margin", "auto"])}</select></div>
<div><label for="optimizer">Optimizer</label><select id="optimizer">${options(["adam", "adamw", "sgd", "rmsprop", "adagrad"])}</select></div>
<div><label for="lr">Learning rate</label><input id="lr" type="text" inputmode="decimal" list="lr-choices" value="0.001" spellcheck="false"><datalist id="lr-choices"><option value="auto"><option value="0.001"><option value="0.01"></datalist></div>
<div><label for="schedule">Schedule</label><select id="schedule">${options(["constant", "step", "multistep", "exponential", "cosine", "linear", "onecycle", "plateau"])}${option("sequential", "warm-up then cosine")}</select></div>
<div><label for="batch">Batch size</label><input id="batch" type="text" inputmode="numeric" list="batch-choices" value="32" spellcheck="false"><datalist id="batch-choices"><option value="auto"><option value="32"><option value="128"></datalist></div>
<div><label for="epochs">Epochs</label><input id="epochs" type="number" min="1" step="1" value="20"></div>
<div><label for="val-split">Validation split</label><input id="val-split" type="number" min="0" max="0.9" step="0.05" value="0"></div>
<div><label for="seed">Seed</label><input id="seed" type="number" min="0" step="1" value="0"></div>
</div>
<label for="schedule-params">Schedule options (JSON)</label><input id="schedule-params" type="text" value="{}" spellcheck="false">
<label class="check"><input id="restore-best" type="checkbox"> Keep the best epoch's weights (restore_best_weights), not the last epoch's</label>
<div class="row">
<div><label for="patience">Early-stopping patience</label><input id="patience" type="number" min="0" step="1" placeholder="none: every epoch"></div>
<div><label for="monitor">Best by</label><select id="monitor">${option("auto")}${options(["val_loss", "train_loss", "val_accuracy"])}</select></div>
</div>
<p class="hint">Best by auto: val_loss when there is validation data, else train_loss. Learning rate "auto": a range test picks it before training; batch size "auto": the largest power of two (at most 256) that fits (docs/strategy.md).</p>
<details><summary>More options (JSON)</summary>
<label for="loss-params">Loss options</label><input id="loss-params" type="text" value="{}" spellcheck="false">
<label for="optimizer-params">Optimizer options (betas, weight_decay, momentum, …)</label><input id="optimizer-params" type="text" value="{}" spellcheck="false">
<label for="training-extra">Other training options (shuffle, clip_grad_norm, …)</label><input id="training-extra" type="text" value="{}" spellcheck="false">
<label for="request-extra">Other request fields (trainable, adapter, privacy, output, …)</label><input id="request-extra" type="text" value="{}" spellcheck="false">
</details>
</section>
<section><h2>Run</h2>
<label for="where">Train on</label><select id="where">${option("server", "the server (an async job)")}${option("device", "this device (nothing uploaded)")}</select>
<div id="device-fields" hidden><label for="device-kernel">Kernels</label><select id="device-kernel">${option("wasm", "WebAssembly SIMD (CPU)")}${option("webgpu", "WebGPU (GPU)")}</select>
<p class="hint">The data, weights and results stay in this browser: the page loads the edgetune library and its WASM kernels from /lib/ and trains in a Web Worker.</p></div>
<form class="row" id="server-fields" autocomplete="off">
<div><label for="placement">Placement</label><select id="placement">${option("edge", "edge (Worker)")}${options(["auto", "gpu-node"])}</select></div>
<div><label for="api-key">API key</label><input id="api-key" type="password" autocomplete="off" placeholder="none if the API is open"></div>
</form>
<div class="buttons"><button id="start" type="button">Start fine-tune</button><button id="cancel" type="button" class="secondary" disabled>Cancel</button></div>
<details><summary>Request sent</summary><pre id="request-preview">(nothing sent yet)</pre></details>
</section>
</div>
<div class="column">
<section><h2>Loss</h2>
<div id="status" data-status="idle" data-final="false">Pick a dataset and press Start.</div>
<canvas id="chart" aria-label="training and validation loss per epoch" role="img"></canvas>
<div class="legend"><span><span class="swatch train"></span>train_loss</span><span><span class="swatch val"></span>val_loss</span>
<label class="check"><input id="logy" type="checkbox"> log scale</label></div>
</section>
<section id="result" hidden><h2>Result</h2>
<dl id="summary"></dl>
<canvas id="lr-finder" hidden aria-label="the learning-rate range test: smoothed loss against the learning rate" role="img"></canvas>
<a id="download" hidden>Download weights</a>
<pre id="tensors" hidden></pre>
</section>
<section id="explanations" hidden><h2>Explanations</h2><div id="explanations-body"></div></section>
<section><h2>Epochs</h2>
<div id="history-wrap"><table><thead><tr><th>epoch</th><th>train_loss</th><th>val_loss</th><th>val_accuracy</th><th>lr</th><th title="privacy spent by the end of the epoch (request privacy)">ε</th><th>attempt</th></tr></thead>
<tbody id="history"></tbody></table></div>
</section>
<section><h2>Events</h2><pre id="log"></pre></section>
</div>
</main>
</body></html>`;
