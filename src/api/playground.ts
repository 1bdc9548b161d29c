/**
 * GET /: the playground, a self-contained page (no CDN, nothing fetched from elsewhere) that
 * runs a fine-tune through the API of the origin that served it. Pick a built-in demo (XOR,
 * two moons, a noisy sine; data generated in the page with a seeded PRNG) or upload a CSV
 * (plus, optionally, safetensors weights and a model or request JSON); set loss, optimizer,
 * learning rate, schedule, batch size and epochs; Start sends an async job, follows its
 * events (EventSource, or fetch with a stream reader when an API key must be sent), plots
 * every epoch's losses live on a <canvas>, shows the final metrics and offers the weights.
 *
 * "Train on: this device" runs the same request in the browser instead: the page imports
 * /lib/edgetune.js (the browser library, served as a static asset) and trains in its module Web
 * Worker (/lib/edgetune-worker.js); epochs come from onProgress instead of SSE, the weights
 * download from a Blob, and nothing is sent to the server.
 *
 * For tests and curious users the page keeps its state in `window.__edgetune`:
 * `{ status, final, where, jobId, epochsPlotted, points, lastJob, kernel, weightsUrl, weightsBytes, transport, error }`,
 * and mirrors `status` and `final` on `#status` as `data-status` / `data-final`.
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
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgetune playground</title>
<style>${STYLE}</style></head><body>
${BODY}
<script>${SCRIPT}</script></body></html>`;
}

const STYLE = `
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{padding:.8rem 1.2rem;background:#1d2430;color:#fff;display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap}
header h1{font-size:1.15rem;margin:0}header a{color:#9cc7ff}header span{color:#c5ccd6}
main{display:grid;grid-template-columns:minmax(18rem,25rem) 1fr;gap:1rem;padding:1rem 1.2rem;max-width:90rem;margin:auto}
@media (max-width:60rem){main{grid-template-columns:1fr}}
section{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:.8rem 1rem;margin-bottom:1rem}
h2{font-size:.95rem;margin:.1rem 0 .6rem;text-transform:uppercase;letter-spacing:.04em;color:#4b5563}
label{display:block;margin:.45rem 0 .15rem;font-weight:500}
.row{display:grid;grid-template-columns:1fr 1fr;gap:0 .7rem}
input,select,textarea,button{font:inherit}
input[type=number],input[type=text],input[type=password],select,textarea{width:100%;padding:.28rem .4rem;border:1px solid #c3cad3;border-radius:5px;background:#fff}
textarea{font:12px/1.4 ui-monospace,monospace;min-height:8.5rem;resize:vertical}
input[type=file]{width:100%;font-size:12.5px}
.hint{color:#6b7280;font-size:12.5px;margin:.2rem 0}
.buttons{display:flex;gap:.6rem;margin-top:.8rem;flex-wrap:wrap}
button{padding:.4rem 1.1rem;border-radius:6px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f6feb}button:disabled{opacity:.45;cursor:default}
#status{font-weight:600;padding:.45rem .6rem;border-radius:6px;background:#eef1f4;margin:.2rem 0 .6rem}
#status[data-status=succeeded]{background:#e3f6ea;color:#0b6e4f}
#status[data-status=failed],#status[data-status=diverged],#status[data-status=error]{background:#fde8e8;color:#a11}
#status[data-status=cancelled]{background:#fff4e0;color:#8a4b08}
#chart{width:100%;height:20rem;display:block}
.legend{display:flex;gap:1rem;align-items:center;font-size:12.5px;color:#4b5563}
.sw{display:inline-block;width:1.4rem;height:3px;vertical-align:middle;margin-right:.3rem}
table{border-collapse:collapse;width:100%;font:12.5px ui-monospace,monospace}
th,td{text-align:right;padding:.15rem .5rem;border-bottom:1px solid #eef0f2}th{color:#4b5563;font-weight:600}
#history-wrap{max-height:18rem;overflow:auto}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.3rem 0}dt{color:#6b7280}dd{margin:0;font-family:ui-monospace,monospace}
pre{background:#f4f6f8;padding:.5rem;overflow:auto;max-height:14rem;font:12px/1.4 ui-monospace,monospace;margin:.3rem 0}
#download{display:inline-block;margin:.4rem 0;padding:.4rem 1rem;border-radius:6px;background:#0b6e4f;color:#fff;text-decoration:none}
[hidden]{display:none!important}
`;

const BODY = `
<header><h1>edgetune playground</h1><span>fine-tune a small model in the Worker or on this device and watch it learn</span>
<a href="/docs">API docs</a><a href="/openapi.json">openapi.json</a></header>
<main>
<div>
<section><h2>Data</h2>
<label for="demo">Dataset</label>
<select id="demo">
<option value="moons">Two moons: 2-D classification, 300 points</option>
<option value="xor">XOR: the four-row toy</option>
<option value="sine">Noisy sine: 1-D regression, 256 points</option>
<option value="upload">Upload a CSV…</option>
</select>
<div id="upload-fields" hidden>
<label for="csv">Training CSV (header row; numbers only)</label><input id="csv" type="file" accept=".csv,.jsonl,text/csv">
<div class="row"><div><label for="target">Target column(s)</label><input id="target" type="text" value="y"></div>
<div><label for="val-csv">Validation CSV (optional)</label><input id="val-csv" type="file" accept=".csv,.jsonl,text/csv"></div></div>
<label for="weights">Weights (optional .safetensors, state_dict names)</label><input id="weights" type="file" accept=".safetensors,application/octet-stream">
<label for="model-file">Model or request JSON (optional)</label><input id="model-file" type="file" accept=".json,application/json">
<p class="hint">A request JSON (like examples/seed-mlp/request.json) also sets the training options.</p>
</div>
<p class="hint" id="data-summary"></p>
</section>
<section><h2>Model</h2>
<label for="model">Model (JSON: the layers in PyTorch nn.Sequential order, and an optional input shape such as {"input": {"shape": [1, 8, 8]}, "layers": [...]})</label>
<textarea id="model" spellcheck="false" wrap="off"></textarea>
</section>
<section><h2>Training</h2>
<div class="row">
<div><label for="loss">Loss</label><select id="loss">
<option value="mse">mse</option><option value="l1">l1</option><option value="huber">huber</option><option value="smooth_l1">smooth_l1</option>
<option value="cross_entropy">cross_entropy</option><option value="bce_with_logits">bce_with_logits</option>
<option value="hinge">hinge</option><option value="multi_margin">multi_margin</option></select></div>
<div><label for="optimizer">Optimizer</label><select id="optimizer">
<option value="adam">adam</option><option value="adamw">adamw</option><option value="sgd">sgd</option>
<option value="rmsprop">rmsprop</option><option value="adagrad">adagrad</option></select></div>
<div><label for="lr">Learning rate</label><input id="lr" type="number" step="any" min="0" value="0.01"></div>
<div><label for="schedule">Schedule</label><select id="schedule">
<option value="constant">constant</option><option value="step">step</option><option value="multistep">multistep</option>
<option value="exponential">exponential</option><option value="cosine">cosine</option><option value="linear">linear</option>
<option value="onecycle">onecycle</option><option value="plateau">plateau</option><option value="sequential">warm-up then cosine</option></select></div>
<div><label for="batch">Batch size</label><input id="batch" type="number" min="1" step="1" value="32"></div>
<div><label for="epochs">Epochs</label><input id="epochs" type="number" min="1" step="1" value="30"></div>
<div><label for="val-split">Validation split</label><input id="val-split" type="number" min="0" max="0.9" step="0.05" value="0.2"></div>
<div><label for="seed">Seed</label><input id="seed" type="number" min="0" step="1" value="0"></div>
</div>
<label for="schedule-params">Schedule options (JSON)</label><input id="schedule-params" type="text" value="{}" spellcheck="false">
</section>
<section><h2>Run</h2>
<label for="where">Train on</label><select id="where">
<option value="server">the server (an async job)</option><option value="device">this device (nothing uploaded)</option></select>
<div id="device-fields" hidden><label for="device-kernel">Kernels</label><select id="device-kernel">
<option value="wasm">WebAssembly SIMD (CPU)</option><option value="webgpu">WebGPU (GPU)</option></select>
<p class="hint">The data, weights and results stay in this browser: the page loads the edgetune library and its WASM kernels from /lib/ and trains in a Web Worker.</p></div>
<form class="row" id="server-fields" autocomplete="off" onsubmit="return false">
<div><label for="placement">Placement</label><select id="placement">
<option value="edge">edge (in the Worker)</option><option value="auto">auto</option><option value="gpu-node">gpu-node</option></select></div>
<div><label for="api-key">API key</label><input id="api-key" type="password" autocomplete="off" placeholder="none if the API is open"></div>
</form>
<div class="buttons"><button id="start" type="button">Start fine-tune</button><button id="cancel" type="button" class="secondary" disabled>Cancel</button></div>
<details><summary class="hint">Request sent</summary><pre id="request-preview">(nothing sent yet)</pre></details>
</section>
</div>
<div>
<section><h2>Loss</h2>
<div id="status" data-status="idle" data-final="false">Pick a dataset and press Start.</div>
<canvas id="chart" aria-label="training and validation loss per epoch" role="img"></canvas>
<div class="legend"><span><span class="sw" style="background:#1f6feb"></span>train_loss</span>
<span><span class="sw" style="background:#e8590c"></span>val_loss</span>
<label style="margin:0;font-weight:400"><input id="logy" type="checkbox"> log scale</label></div>
</section>
<section id="result" hidden><h2>Result</h2>
<dl id="summary"></dl>
<a id="download" hidden>Download weights</a>
<pre id="tensors" hidden></pre>
</section>
<section><h2>Epochs</h2>
<div id="history-wrap"><table><thead><tr><th>epoch</th><th>train_loss</th><th>val_loss</th><th>val_accuracy</th><th>lr</th><th>attempt</th></tr></thead>
<tbody id="history"></tbody></table></div>
</section>
<section><h2>Events</h2><pre id="log"></pre></section>
</div>
</main>`;

// The client script. Plain ES2020 with no template literals or "${", so it can sit in String.raw.
const SCRIPT = String.raw`
"use strict";
var $ = function (id) { return document.getElementById(id); };
var FINAL = { succeeded: 1, failed: 1, cancelled: 1, diverged: 1 };
var ET = window.__edgetune = {
  status: "idle", final: false, where: "server", jobId: null, epochsPlotted: 0, points: [], lastJob: null, kernel: null,
  weightsUrl: null, weightsBytes: 0, transport: null, error: null, plannedEpochs: 0
};
// the run being followed: { id, lastId (last SSE id seen), ctrl (AbortController), es (EventSource) };
// an on-device run has device: true and, once done, weights (the safetensors bytes)
var run = null;

// ---------------------------------------------------------------- demo data (seeded)
function mulberry32(a) {
  return function () {
    a |= 0; a = (a + 0x6d2b79f5) | 0;
    var t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function gauss(rand) { var u = 1 - rand(), v = rand(); return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v); }
var r4 = function (v) { return Math.round(v * 1e4) / 1e4; };
function moons(n, noise, seed) {
  var rand = mulberry32(seed), x = [], y = [];
  for (var i = 0; i < n; i++) {
    var c = i % 2, t = Math.PI * rand();
    var px = c === 0 ? Math.cos(t) : 1 - Math.cos(t), py = c === 0 ? Math.sin(t) : 0.5 - Math.sin(t);
    x.push([r4(px + noise * gauss(rand)), r4(py + noise * gauss(rand))]); y.push(c);
  }
  return { x: x, y: y };
}
function sine(n, noise, seed) {
  var rand = mulberry32(seed), x = [], y = [];
  for (var i = 0; i < n; i++) { var v = (rand() * 2 - 1) * Math.PI; x.push([r4(v)]); y.push(r4(Math.sin(v) + noise * gauss(rand))); }
  return { x: x, y: y };
}
function linear(name, i, o) { return { type: "linear", name: name, in_features: i, out_features: o }; }
var DEMOS = {
  moons: {
    data: function () { return moons(300, 0.15, 7); }, summary: "300 rows, 2 features, classes 0 and 1 (generated in the page, seed 7)",
    model: { layers: [linear("fc1", 2, 32), { type: "relu" }, linear("fc2", 32, 32), { type: "relu" }, linear("fc3", 32, 2)] },
    training: { loss: "cross_entropy", optimizer: "adam", lr: 0.01, schedule: "cosine", batch: 32, epochs: 30, split: 0.2 }
  },
  xor: {
    data: function () { return { x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [0, 1, 1, 0] }; }, summary: "4 rows, 2 features, targets 0/1 (no validation: too few rows)",
    model: { layers: [linear("fc1", 2, 8), { type: "tanh" }, linear("fc2", 8, 1)] },
    training: { loss: "bce_with_logits", optimizer: "adam", lr: 0.05, schedule: "constant", batch: 4, epochs: 150, split: 0 }
  },
  sine: {
    data: function () { return sine(256, 0.05, 3); }, summary: "256 rows, y = sin(x) + noise on [-pi, pi] (generated in the page, seed 3)",
    model: { layers: [linear("fc1", 1, 32), { type: "tanh" }, linear("fc2", 32, 32), { type: "tanh" }, linear("fc3", 32, 1)] },
    training: { loss: "mse", optimizer: "adam", lr: 0.01, schedule: "constant", batch: 32, epochs: 60, split: 0.2 }
  }
};
var SCHEDULE_PARAMS = {
  constant: {}, step: { step_size: 10, gamma: 0.5 }, multistep: { milestones: [10, 20], gamma: 0.1 },
  exponential: { gamma: 0.95 }, cosine: { eta_min: 0 }, linear: { start_factor: 0.1, total_iters: 5 },
  onecycle: { pct_start: 0.3 }, plateau: { factor: 0.5, patience: 3 },
  sequential: { schedulers: [{ type: "linear", start_factor: 0.1, total_iters: 5 }, { type: "cosine", T_max: 25 }], milestones: [5] }
};
function scheduleParams(type) {
  var p = JSON.parse(JSON.stringify(SCHEDULE_PARAMS[type] || {}));
  if (type === "sequential") p.schedulers[1].T_max = Math.max(1, (Number($("epochs").value) || 30) - 5); // cosine over the epochs after the warm-up
  return JSON.stringify(p);
}
/** The model one layer a line (and its input shape, when it has one). */
function modelText(model) {
  var head = model.input ? '{"input": ' + JSON.stringify(model.input) + ',\n "layers": [\n' : '{"layers": [\n';
  return head + model.layers.map(function (l) { return "  " + JSON.stringify(l); }).join(",\n") + "\n]}";
}

function setTraining(t) {
  if (t.loss) $("loss").value = t.loss;
  if (t.optimizer) $("optimizer").value = t.optimizer;
  if (t.lr !== undefined) $("lr").value = t.lr;
  if (t.batch !== undefined) $("batch").value = t.batch;
  if (t.epochs !== undefined) $("epochs").value = t.epochs;
  if (t.schedule) { $("schedule").value = t.schedule; $("schedule-params").value = t.scheduleParams ? JSON.stringify(t.scheduleParams) : scheduleParams(t.schedule); }
  if (t.split !== undefined) $("val-split").value = t.split;
}
function pickDemo() {
  var name = $("demo").value, demo = DEMOS[name];
  $("upload-fields").hidden = name !== "upload";
  if (demo) {
    $("model").value = modelText(demo.model);
    setTraining(demo.training);
    $("data-summary").textContent = demo.summary;
  } else {
    $("data-summary").textContent = "Choose a CSV: every column but the target is a feature.";
    if ($("csv").files.length) inspectCsv();
  }
}
$("demo").onchange = pickDemo;
$("where").onchange = function () {
  var device = $("where").value === "device";
  $("server-fields").hidden = device; $("device-fields").hidden = !device;
};
if (!navigator.gpu) { $("device-kernel").options[1].disabled = true; $("device-kernel").options[1].textContent += ": not in this browser"; }
$("schedule").onchange = function () { $("schedule-params").value = scheduleParams($("schedule").value); };

// ---------------------------------------------------------------- uploads
function targets() { return $("target").value.split(",").map(function (s) { return s.trim(); }).filter(Boolean); }
async function inspectCsv() {
  var file = $("csv").files[0];
  if (!file) return;
  var text = await file.text();
  if (/\.jsonl$/i.test(file.name) || text.trimStart().charAt(0) === "{") { $("data-summary").textContent = file.name + ": JSONL; write the model by hand."; return; }
  var lines = text.split(/\r?\n/).filter(function (l) { return l.trim() !== ""; });
  var header = lines[0].split(",").map(function (h) { return h.trim().replace(/^"|"$/g, ""); });
  var tcols = targets(), ti = tcols.map(function (t) { return header.indexOf(t); });
  if (ti.some(function (i) { return i < 0; })) { $("data-summary").textContent = "The CSV has no column named " + tcols.join(", ") + " (columns: " + header.join(", ") + ")."; return; }
  var features = header.length - ti.length, values = [];
  for (var i = 1; i < lines.length; i++) { var cells = lines[i].split(","); values.push(Number(cells[ti[0]])); }
  var integral = values.every(function (v) { return Number.isInteger(v) && v >= 0; });
  var classes = integral ? Math.max.apply(null, values) + 1 : 0;
  var classify = tcols.length === 1 && integral && classes >= 2 && classes <= 50;
  var outputs = classify ? classes : tcols.length;
  $("data-summary").textContent = file.name + ": " + (lines.length - 1) + " rows, " + features + " features, " +
    (classify ? classes + " classes (cross_entropy suggested)" : tcols.length + " regression target(s)");
  if (!$("model-file").files.length) {
    $("model").value = modelText({ layers: [linear("fc1", features, 32), { type: "relu" }, linear("fc2", 32, outputs)] });
    $("loss").value = classify ? "cross_entropy" : "mse";
  }
}
$("csv").onchange = inspectCsv;
$("target").onchange = inspectCsv;
$("model-file").onchange = async function () {
  var file = $("model-file").files[0];
  if (!file) return;
  try {
    var doc = JSON.parse(await file.text());
    var model = doc.model || (doc.layers ? { layers: doc.layers } : null);
    if (!model) throw new Error("it has neither model nor layers");
    $("model").value = Array.isArray(model.layers) ? modelText(model) : JSON.stringify(model, null, 1);
    var t = doc.training || {};
    setTraining({
      loss: t.loss && t.loss.type, optimizer: t.optimizer && t.optimizer.type, lr: t.optimizer && t.optimizer.lr,
      schedule: t.schedule && t.schedule.type, scheduleParams: t.schedule ? strip(t.schedule, "type") : undefined,
      batch: t.batch_size, epochs: t.epochs, split: doc.data && doc.data.validation_split
    });
    if (doc.data && doc.data.target) $("target").value = [].concat(doc.data.target).join(",");
    if (t.seed !== undefined) $("seed").value = t.seed;
  } catch (e) { setStatus("error", "The model file is not usable: " + e.message); }
};
function strip(obj, key) { var out = {}; for (var k in obj) if (k !== key) out[k] = obj[k]; return out; }

// ---------------------------------------------------------------- the request
function num(id, what) {
  var v = Number($(id).value);
  if ($(id).value === "" || !Number.isFinite(v)) throw new Error(what + " must be a number");
  return v;
}
function buildRequest() {
  var model;
  try { model = JSON.parse($("model").value); } catch (e) { throw new Error("The model is not valid JSON: " + e.message); }
  if (model && model.model) model = model.model;
  var params;
  try { params = JSON.parse($("schedule-params").value || "{}"); } catch (e) { throw new Error("The schedule options are not valid JSON: " + e.message); }
  var schedule = Object.assign({}, params, { type: $("schedule").value });
  var training = {
    epochs: num("epochs", "Epochs"), batch_size: num("batch", "Batch size"), seed: num("seed", "Seed"),
    loss: { type: $("loss").value }, optimizer: { type: $("optimizer").value, lr: num("lr", "The learning rate") }, schedule: schedule
  };
  var split = Number($("val-split").value || "0");
  var data = {};
  if (split > 0) data.validation_split = split;
  return { model: model, data: data, training: training, mode: "async", placement: $("placement").value };
}
function headers(extra) {
  var h = Object.assign({}, extra || {}), key = $("api-key").value.trim();
  if (key) h.authorization = "Bearer " + key;
  return h;
}
function preview(request) {
  var shown = JSON.parse(JSON.stringify(request));
  var t = shown.data && shown.data.train;
  if (t) { var n = t.x.length; t.x = t.x.slice(0, 3).concat(["… " + n + " rows in all"]); t.y = t.y.slice(0, 3).concat(["…"]); }
  $("request-preview").textContent = JSON.stringify(shown, null, 1);
}
async function createJob() {
  var request = buildRequest(), name = $("demo").value, init;
  if (DEMOS[name]) {
    request.data.train = DEMOS[name].data();
    preview(request);
    init = { method: "POST", headers: headers({ "content-type": "application/json" }), body: JSON.stringify(request) };
  } else {
    var csv = $("csv").files[0];
    if (!csv) throw new Error("Choose a training CSV first.");
    request.data.target = targets().length === 1 ? targets()[0] : targets();
    var form = new FormData();
    form.append("request", JSON.stringify(request));
    form.append("train", csv, csv.name);
    if ($("val-csv").files[0]) { delete request.data.validation_split; form.set("request", JSON.stringify(request)); form.append("validation", $("val-csv").files[0], $("val-csv").files[0].name); }
    if ($("weights").files[0]) form.append("weights", $("weights").files[0], $("weights").files[0].name);
    preview(Object.assign({}, request, { "(parts)": ["train: " + csv.name].concat($("weights").files[0] ? ["weights: " + $("weights").files[0].name] : []) }));
    init = { method: "POST", headers: headers(), body: form };
  }
  ET.plannedEpochs = request.training.epochs;
  var res = await fetch("/v1/fine-tunes", init);
  var body = await res.json().catch(function () { return null; });
  if (!res.ok) throw new Error(problemText(res, body));
  return body;
}
function problemText(res, body) {
  if (!body) return res.status + " " + res.statusText;
  var text = res.status + " " + (body.code || body.title || "") + ": " + (body.detail || "");
  if (res.status === 401) text += " Type an API key in the Run box.";
  var more = (body.errors || []).map(function (e) { return e.path + (e.line ? " line " + e.line : "") + ": " + e.message; })
    .filter(function (line) { return (body.detail || "").indexOf(line) < 0; });
  if (more.length) text += " [" + more.slice(0, 5).join("; ") + (more.length > 5 ? "; …" : "") + "]";
  return text;
}

// ---------------------------------------------------------------- running and events
function setStatus(status, text) {
  ET.status = status;
  ET.final = !!FINAL[status] || status === "error";
  $("status").dataset.status = status;
  $("status").dataset.final = String(ET.final);
  $("status").textContent = text;
}
function log(line) {
  var el = $("log");
  el.textContent += line + "\n";
  el.scrollTop = el.scrollHeight;
}
function reset() {
  ET.final = false; ET.jobId = null; ET.epochsPlotted = 0; ET.points = []; ET.lastJob = null; ET.kernel = null;
  ET.where = $("where").value; ET.weightsUrl = null; ET.weightsBytes = 0; ET.error = null; ET.transport = null;
  rowsByEpoch = {}; newRows = []; if (frame) cancelAnimationFrame(frame); frame = 0;
  $("history").replaceChildren(); $("log").textContent = ""; $("result").hidden = true;
  $("download").hidden = true; $("tensors").hidden = true;
  var a = $("download"); if (a.href && a.href.indexOf("blob:") === 0) URL.revokeObjectURL(a.href);
  a.removeAttribute("href");
  drawChart();
}
$("start").onclick = async function () {
  if (run) return;
  reset();
  $("start").disabled = true;
  if (ET.where === "device") return trainOnDevice();
  setStatus("submitting", "Submitting…");
  try {
    var job = await createJob();
    ET.jobId = job.id; ET.lastJob = job;
    run = { id: job.id, lastId: 0, ctrl: new AbortController(), es: null };
    $("cancel").disabled = false;
    setStatus(job.status, job.id + ": " + job.status + " (" + job.plan.placement + ", " + job.plan.steps + " steps planned)");
    log("202 " + job.id + " queued, placement " + job.plan.placement);
    follow(run);
  } catch (e) {
    fail(e);
  }
};
$("cancel").onclick = async function () {
  if (!run) return;
  if (run.device) { run.ctrl.abort(); log("cancel: asked the training worker to stop"); return; }
  var res = await fetch("/v1/fine-tunes/" + run.id + "/cancel", { method: "POST", headers: headers() });
  log("cancel: " + res.status);
};
function fail(e) {
  ET.error = String(e && e.message || e);
  setStatus("error", ET.error);
  end();
}
function end() {
  if (run) { run.ctrl.abort(); if (run.es) run.es.close(); }
  run = null;
  $("start").disabled = false; $("cancel").disabled = true;
}

// ---------------------------------------------------------------- training on this device
var edgetuneLib = null;
function loadLibrary() {
  edgetuneLib = edgetuneLib || import("/lib/edgetune.js").catch(function (e) {
    edgetuneLib = null;
    throw new Error("The browser library /lib/edgetune.js did not load (" + (e && e.message) + "); build it with npm run build.");
  });
  return edgetuneLib;
}
/** The same request as for the server, trained in this browser: nothing goes to the API. */
async function trainOnDevice() {
  var r = run = { id: null, device: true, lastId: 0, ctrl: new AbortController(), es: null, weights: null };
  $("cancel").disabled = false;
  setStatus("loading", "Loading the edgetune library and its WASM kernels…");
  try {
    var lib = await loadLibrary();
    var request = buildRequest(), name = $("demo").value, tables = {};
    delete request.mode; delete request.placement;
    if (DEMOS[name]) {
      request.data.train = DEMOS[name].data();
      preview(request);
    } else {
      var csv = $("csv").files[0], val = $("val-csv").files[0], weights = $("weights").files[0];
      if (!csv) throw new Error("Choose a training CSV first.");
      var target = targets().length === 1 ? targets()[0] : targets();
      tables.train = lib.readDataset(await csv.text(), { name: csv.name, target: target, field: "data.train" });
      if (val) { delete request.data.validation_split; tables.validation = lib.readDataset(await val.text(), { name: val.name, target: target, field: "data.validation" }); }
      if (weights) request.weights = new Uint8Array(await weights.arrayBuffer());
      preview(Object.assign({}, request, { weights: weights ? "(" + weights.name + ", " + weights.size + " bytes)" : undefined,
        "(files, read in the page)": ["train: " + csv.name].concat(val ? ["validation: " + val.name] : []) }));
    }
    ET.plannedEpochs = request.training.epochs;
    // a module Web Worker keeps the page responsive; without Worker, the page's own thread trains
    var inWorker = typeof Worker === "function";
    ET.transport = inWorker ? "worker" : "main-thread";
    setStatus("running", "Training on this device…");
    log("training on this device (" + (inWorker ? "Web Worker" : "main thread") + "); nothing is sent to the server");
    var result = await (inWorker ? lib.trainInWorker : lib.train)(request, {
      tables: tables, signal: r.ctrl.signal, kernel: $("device-kernel").value,
      onProgress: function (e) {
        if (run !== r || e.type !== "epoch") return;
        plotEpoch(e);
        setStatus("running", "this device: epoch " + e.epoch + "/" + ET.plannedEpochs + ", train_loss " + fmt(e.train_loss) +
          (e.val_loss !== undefined ? ", val_loss " + fmt(e.val_loss) : ""));
      }
    });
    if (run !== r) return;
    r.id = ET.jobId = result.id;
    r.weights = lib.decodeBase64(result.weights);
    ET.kernel = result.engine.kernel;
    var job = Object.assign({}, result);
    delete job.weights;
    log("done: " + result.status + " on this device, kernel " + result.engine.kernel + (result.error ? " (" + result.error.code + ": " + result.error.message + ")" : ""));
    await finish(r, job);
  } catch (e) {
    if (run !== r) return;
    fail(e && e.status ? new Error(e.status + " " + e.code + ": " + e.message) : e);
  }
}
function follow(r) {
  var url = "/v1/fine-tunes/" + r.id + "/events";
  if (!$("api-key").value.trim() && typeof EventSource === "function") {
    // EventSource cannot send Authorization, so it is used only when no key is needed
    ET.transport = "eventsource";
    var es = r.es = new EventSource(url);
    ["status", "epoch", "done"].forEach(function (name) {
      es.addEventListener(name, function (ev) { onEvent(r, name, ev.lastEventId, ev.data); });
    });
    es.addEventListener("error", function (ev) {
      if (ev.data !== undefined) return onEvent(r, "error", ev.lastEventId, ev.data); // the job's own error event
      if (es.readyState === EventSource.CLOSED && run === r) fail(new Error("The event stream closed (" + url + ")."));
    });
  } else {
    ET.transport = "fetch";
    streamWithFetch(r, url, 0);
  }
}
async function streamWithFetch(r, url, retries) {
  try {
    var h = headers({ accept: "text/event-stream" });
    if (r.lastId) h["last-event-id"] = String(r.lastId);
    var res = await fetch(url, { headers: h, signal: r.ctrl.signal });
    if (!res.ok) throw new Error(problemText(res, await res.json().catch(function () { return null; })));
    var reader = res.body.pipeThrough(new TextDecoderStream()).getReader(), buf = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buf += chunk.value;
      var blocks = buf.split(/\r?\n\r?\n/);
      buf = blocks.pop();
      blocks.forEach(function (block) {
        var id = "", name = "message", data = [];
        block.split(/\r?\n/).forEach(function (line) {
          if (line === "" || line.charAt(0) === ":") return;
          var i = line.indexOf(":"), field = i < 0 ? line : line.slice(0, i), value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "id") id = value; else if (field === "event") name = value; else if (field === "data") data.push(value);
        });
        if (data.length) onEvent(r, name, id, data.join("\n"));
      });
    }
    if (run === r) throw new Error("the stream ended early");
  } catch (e) {
    if (run !== r || r.ctrl.signal.aborted) return;
    if (retries >= 5) return fail(e);
    log("stream interrupted (" + (e && e.message) + "); resuming after event " + r.lastId);
    setTimeout(function () { streamWithFetch(r, url, retries + 1); }, 500 * (retries + 1));
  }
}
function onEvent(r, name, id, raw) {
  if (run !== r) return;
  var n = Number(id);
  if (n && n <= r.lastId) return; // already seen (a replay after reconnecting)
  if (n) r.lastId = n;
  var data;
  try { data = JSON.parse(raw); } catch (e) { data = raw; }
  if (name === "status") {
    log("status " + data.status + (data.attempt ? " (attempt " + data.attempt + ")" : ""));
    if (!FINAL[data.status]) setStatus(data.status, r.id + ": " + data.status + (data.attempt > 1 ? " (attempt " + data.attempt + ")" : ""));
  } else if (name === "epoch") {
    plotEpoch(data);
    setStatus("running", r.id + ": epoch " + data.epoch + "/" + ET.plannedEpochs + ", train_loss " + fmt(data.train_loss) +
      (data.val_loss !== undefined ? ", val_loss " + fmt(data.val_loss) : ""));
  } else if (name === "done" || name === "error") {
    log(name + ": " + data.status + (data.error ? " (" + data.error.code + ": " + data.error.message + ")" : ""));
    finish(r, data);
  }
}
// data updates at once (the hooks count them); the DOM and the canvas once per frame, so that
// a burst of replayed events costs one layout, not one per epoch
var rowsByEpoch = {}, newRows = [], frame = 0;
function plotEpoch(e) {
  var point = { epoch: e.epoch, train: e.train_loss, val: e.val_loss, acc: e.val_accuracy, lr: e.lr, attempt: e.attempt };
  var pts = ET.points, last = pts[pts.length - 1];
  if (!last || last.epoch < e.epoch) pts.push(point);
  else {
    var at = pts.findIndex(function (p) { return p.epoch === e.epoch; });
    if (at >= 0) pts[at] = point; // a retried attempt reports the epoch again
    else { pts.push(point); pts.sort(function (a, b) { return a.epoch - b.epoch; }); }
  }
  ET.epochsPlotted = pts.length;
  var row = rowsByEpoch[e.epoch];
  if (!row) { row = rowsByEpoch[e.epoch] = document.createElement("tr"); row.id = "epoch-" + e.epoch; newRows.push(row); }
  row.replaceChildren.apply(row, [e.epoch, fmt(e.train_loss), fmt(e.val_loss), e.val_accuracy === undefined ? "" : (100 * e.val_accuracy).toFixed(1) + "%", fmt(e.lr), e.attempt || ""].map(function (v) {
    var td = document.createElement("td"); td.textContent = String(v); return td;
  }));
  if (!frame) frame = requestAnimationFrame(render);
}
function render() {
  if (frame) cancelAnimationFrame(frame);
  frame = 0;
  if (newRows.length) { $("history").append.apply($("history"), newRows); newRows = []; }
  drawChart();
}
async function finish(r, job) {
  ET.lastJob = job;
  if (r.es) r.es.close();
  r.ctrl.abort();
  render();
  var m = job.metrics, h = m ? m.history : [];
  var rows = [["status", job.status], ["job", job.id], ["placement", r.device ? "this device (" + job.engine.runtime + ")" : job.plan.placement],
    ["parameters", job.plan.params + " (" + job.plan.trainable_params + " trainable)"]];
  if (m) {
    // a job keeps its last 100 epochs (metrics.epochs counts them all); a local run has them all
    var total = m.epochs !== undefined ? m.epochs : h.length, from = m.history_truncated && h.length ? "epoch " + h[0].epoch + ": " : "";
    rows.push(["epochs", total + (total < ET.plannedEpochs ? " of " + ET.plannedEpochs + (job.status === "succeeded" ? " (early stopping)" : "") : "")]);
    if (h.length) rows.push(["train_loss", from + fmt(h[0].train_loss) + " → " + fmt(h[h.length - 1].train_loss)]);
    if (h.length && h[h.length - 1].val_loss !== undefined) rows.push(["val_loss", from + fmt(h[0].val_loss) + " → " + fmt(h[h.length - 1].val_loss)]);
    if (h.length && h[h.length - 1].val_accuracy !== undefined) rows.push(["val_accuracy", (100 * h[h.length - 1].val_accuracy).toFixed(1) + "%"]);
    rows.push(["best epoch", m.best_epoch], ["optimizer steps", m.steps], ["samples/s", Math.round(m.samples_per_second)], ["duration", (m.duration_ms / 1000).toFixed(2) + " s"]);
  }
  if (job.engine) rows.push(["engine", job.engine.kernel + " on " + job.engine.runtime + ", " + job.engine.threads + " thread(s)"]);
  if (job.error) rows.push(["error", job.error.code + ": " + job.error.message]);
  $("summary").replaceChildren.apply($("summary"), [].concat.apply([], rows.map(function (kv) {
    var dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = kv[0]; dd.textContent = kv[1] === null || kv[1] === undefined ? "-" : String(kv[1]);
    return [dt, dd];
  })));
  $("result").hidden = false;
  if (r.device) showWeights(job.id, r.weights);
  else if (job.status !== "failed") await fetchWeights(job);
  setStatus(job.status, job.id + ": " + job.status + (m ? " after " + h.length + " epochs" : "") + (r.device ? " on this device (" + job.engine.kernel + ")" : "") +
    (job.error ? " (" + job.error.code + ")" : ""));
  end();
}
async function fetchWeights(job) {
  var url = job.weights_url || "/v1/fine-tunes/" + job.id + "/weights";
  ET.weightsUrl = new URL(url, location.href).href;
  try {
    var res = await fetch(url, { headers: headers() });
    if (!res.ok) throw new Error(problemText(res, await res.json().catch(function () { return null; })));
    showWeights(job.id, new Uint8Array(await res.arrayBuffer()));
  } catch (e) {
    log("weights: " + e.message);
  }
}
/** The download link (a Blob URL) and the tensors' names, dtypes and shapes. */
function showWeights(id, bytes) {
  ET.weightsBytes = bytes.length;
  var a = $("download");
  a.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  if (ET.where === "device") ET.weightsUrl = a.href;
  a.download = id + ".safetensors";
  a.textContent = "Download weights (" + (bytes.length / 1024).toFixed(1) + " KiB, " + id + ".safetensors)";
  a.hidden = false;
  $("tensors").textContent = describeSafetensors(bytes);
  $("tensors").hidden = false;
}
function describeSafetensors(bytes) {
  var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  var n = Number(view.getBigUint64(0, true));
  var header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return Object.keys(header).filter(function (k) { return k !== "__metadata__"; }).map(function (k) {
    return k + "  " + header[k].dtype + " [" + header[k].shape.join(", ") + "]";
  }).join("\n");
}

// ---------------------------------------------------------------- the chart
function fmt(v) {
  if (v === undefined || v === null) return "";
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
  var a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
function niceStep(span, count) {
  var raw = span / Math.max(1, count), p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}
function ticks(lo, hi, count) {
  var step = niceStep(hi - lo || 1, count), out = [];
  for (var v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}
function drawChart() {
  var cv = $("chart"), dpr = window.devicePixelRatio || 1, w = cv.clientWidth || 600, h = cv.clientHeight || 320;
  if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr); }
  var ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  var L = 62, R = 16, T = 12, B = 38, pw = w - L - R, ph = h - T - B;
  var pts = ET.points, values = [];
  pts.forEach(function (p) { [p.train, p.val].forEach(function (v) { if (typeof v === "number" && Number.isFinite(v)) values.push(v); }); });
  var xmax = Math.max(2, ET.plannedEpochs || 0, pts.length ? pts[pts.length - 1].epoch : 0), xmin = 1;
  var logy = $("logy").checked && values.length > 0 && values.every(function (v) { return v > 0; });
  var tr = logy ? function (v) { return Math.log10(v); } : function (v) { return v; };
  var lo, hi;
  if (values.length) {
    lo = Math.min.apply(null, values.map(tr)); hi = Math.max.apply(null, values.map(tr));
    var pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.1 || 1;
    lo -= pad; hi += pad;
    if (!logy && lo < 0 && Math.min.apply(null, values) >= 0) lo = 0;
  } else { lo = 0; hi = 1; }
  var X = function (e) { return L + (e - xmin) / (xmax - xmin) * pw; };
  var Y = function (v) { return T + ph - (tr(v) - lo) / (hi - lo) * ph; };
  // grid and axes
  ctx.font = "11px system-ui,sans-serif"; ctx.lineWidth = 1;
  ctx.strokeStyle = "#e5e8ec"; ctx.fillStyle = "#4b5563";
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  ticks(lo, hi, 5).forEach(function (t) {
    var y = T + ph - (t - lo) / (hi - lo) * ph;
    ctx.beginPath(); ctx.moveTo(L, y + 0.5); ctx.lineTo(L + pw, y + 0.5); ctx.stroke();
    ctx.fillText(fmt(logy ? Math.pow(10, t) : t), L - 6, y);
  });
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  ticks(xmin, xmax, Math.min(10, xmax - xmin)).filter(function (t) { return Number.isInteger(t); }).forEach(function (t) {
    var x = X(t);
    ctx.beginPath(); ctx.moveTo(x + 0.5, T); ctx.lineTo(x + 0.5, T + ph); ctx.stroke();
    ctx.fillText(String(t), x, T + ph + 5);
  });
  ctx.strokeStyle = "#6b7280";
  ctx.beginPath(); ctx.moveTo(L + 0.5, T); ctx.lineTo(L + 0.5, T + ph + 0.5); ctx.lineTo(L + pw, T + ph + 0.5); ctx.stroke();
  ctx.fillText("epoch", L + pw / 2, T + ph + 21);
  ctx.save(); ctx.translate(14, T + ph / 2); ctx.rotate(-Math.PI / 2); ctx.textBaseline = "middle"; ctx.fillText(logy ? "loss (log)" : "loss", 0, 0); ctx.restore();
  if (!pts.length) {
    ctx.fillStyle = "#9ca3af"; ctx.textBaseline = "middle";
    ctx.fillText(run ? "waiting for the first epoch…" : "the loss curve appears here, one point per epoch", L + pw / 2, T + ph / 2);
    return;
  }
  // series
  [["train", "#1f6feb"], ["val", "#e8590c"]].forEach(function (s) {
    var series = pts.filter(function (p) { return typeof p[s[0]] === "number" && Number.isFinite(p[s[0]]) && (!logy || p[s[0]] > 0); });
    if (!series.length) return;
    ctx.strokeStyle = s[1]; ctx.fillStyle = s[1]; ctx.lineWidth = 2; ctx.lineJoin = "round";
    ctx.beginPath();
    series.forEach(function (p, i) { var x = X(p.epoch), y = Y(p[s[0]]); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    ctx.stroke();
    if (series.length <= 60) series.forEach(function (p) { ctx.beginPath(); ctx.arc(X(p.epoch), Y(p[s[0]]), 2.5, 0, 2 * Math.PI); ctx.fill(); });
  });
}
$("logy").onchange = drawChart;
window.addEventListener("resize", drawChart);
pickDemo();
drawChart();
`;
