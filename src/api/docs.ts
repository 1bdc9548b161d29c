/**
 * GET /docs: a self-contained interactive page over /openapi.json (no CDN, nothing fetched
 * from elsewhere): every operation with its parameters and schemas, a "try it" form, and the
 * problem codes the API answers with (the `type` of each problem points here).
 */

/** Problem codes and what they mean, listed on the docs page. */
export const PROBLEM_CODES: Record<string, string> = {
  invalid_request: "400: the body does not match the schema; errors[].path names each field.",
  unauthorized: "401: no API key, or one that is not configured.",
  api_keys_not_configured: "503: a deployment without EDGETUNE_API_KEYS refuses every request; set the secret (or EDGETUNE_ALLOW_OPEN=true for an open API on purpose).",
  node_tokens_not_configured: "503 (GPU nodes): a deployment without EDGETUNE_NODE_TOKENS accepts no node; set the secret.",
  not_found: "404: no such fine-tune, or it belongs to another key.",
  weights_not_ready: "409: the job has not ended with weights yet.",
  already_finished: "409: the job has already ended.",
  payload_too_large: "413: the body is larger than MAX_BODY_BYTES.",
  unsupported_media_type: "415: send application/json or multipart/form-data (CSV or JSONL data parts).",
  invalid_model: "422: the layers do not form a valid model, or trainable names nothing.",
  weights_mismatch: "422: the weights do not match the model (names, shapes, finite values).",
  shape_mismatch: "422: the data's width does not match the model.",
  invalid_dataset: "422: ragged rows, non-numbers, NaN/Inf, labels that do not fit the loss, or text rows longer than max_length without truncation.",
  invalid_tokenizer: "422: the tokenizer.json cannot be loaded (an unsupported model or post-processor, a malformed vocab or merges); errors[].path names the section.",
  tokenizer_required: "422: text rows need a tokenizer (the tokenizer.json part or field).",
  invalid_tokenization: "422: data.tokenization cannot be applied: max_length over the model's positions, or missing where truncation or padding needs it.",
  loss_mismatch: "422: class weights or pos_weight do not match the model's outputs.",
  invalid_plan: "422: the schedule, batch size or early stopping cannot run on this data.",
  over_budget: "422: a sync job exceeds the in-Worker budget; use mode async.",
  sync_on_gpu_node: "422: sync jobs run in the Worker, not on GPU nodes.",
  lease_lost: "409 (GPU nodes): this node no longer holds the job's lease; abandon the attempt.",
  worker_lost: "a job's workers stopped reporting MAX_ATTEMPTS times; the job failed (error.code of the job).",
  diverged: "a non-finite loss, gradient or weight ended the run (error.code of the job; weights are the last finite ones).",
  internal_error: "500: a bug; it was logged.",
};

/**
 * The docs page HTML.
 *
 * @example
 * ```ts
 * app.get("/docs", (c) => c.html(docsPage()));
 * ```
 */
export function docsPage(): string {
  const codes = Object.entries(PROBLEM_CODES)
    .map(([code, text]) => `<li id="problem-${code}"><code>${code}</code> ${escapeHtml(text)}</li>`)
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgetune API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2430}
code,pre,textarea{font:13px ui-monospace,monospace}pre{background:#f4f6f8;padding:.75rem;overflow:auto;max-height:24rem}
details{border:1px solid #d8dee4;border-radius:6px;margin:.5rem 0;padding:.5rem .75rem}summary{cursor:pointer}
.m{display:inline-block;min-width:3.5rem;font-weight:600}.get{color:#0b6e4f}.post{color:#8a4b08}
textarea{width:100%;min-height:8rem}input{font:inherit;width:100%}label{display:block;margin:.5rem 0 .2rem}
button{font:inherit;padding:.3rem .9rem;margin-top:.5rem}
</style></head><body>
<h1>edgetune API</h1>
<p>Fine-tune small models with PyTorch semantics. The machine-readable contract is <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).
Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>. Errors are <code>application/problem+json</code>.</p>
<h2>Try it</h2>
<label>API key <input id="key" placeholder="(none when the API is open)"></label>
<label>Request <input id="path" value="POST /v1/fine-tunes"></label>
<label>JSON body</label><textarea id="body">${escapeHtml(EXAMPLE)}</textarea>
<button id="send">Send</button><pre id="out"></pre>
<h2>Operations</h2><div id="ops">Loading /openapi.json…</div>
<h2>Problem codes</h2><ul>${codes}</ul>
<script>
const $ = (id) => document.getElementById(id);
$("send").onclick = async () => {
  const [method, path] = $("path").value.trim().split(/\\s+/);
  const headers = { "content-type": "application/json" };
  if ($("key").value) headers.authorization = "Bearer " + $("key").value;
  $("out").textContent = "…";
  try {
    const res = await fetch(path, { method, headers, body: method === "GET" ? undefined : $("body").value });
    const text = await res.text();
    let shown = text; try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch {}
    $("out").textContent = res.status + " " + res.statusText + "\\n" + shown;
  } catch (e) { $("out").textContent = String(e); }
};
fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(item)) {
    const el = document.createElement("details");
    const s = document.createElement("summary");
    s.innerHTML = '<span class="m ' + method + '">' + method.toUpperCase() + "</span> <code></code> ";
    s.querySelector("code").textContent = path;
    s.append(op.summary || "");
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify({ description: op.description, parameters: op.parameters, requestBody: op.requestBody, responses: op.responses }, null, 2);
    el.append(s, pre);
    ops.push(el);
  }
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    const el = document.createElement("details");
    const s = document.createElement("summary");
    s.textContent = "schema " + name;
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(schema, null, 2);
    el.append(s, pre);
    ops.push(el);
  }
  $("ops").replaceChildren(...ops);
});
</script></body></html>`;
}

const EXAMPLE = JSON.stringify(
  {
    model: { layers: [{ type: "linear", name: "fc1", in_features: 2, out_features: 4 }, { type: "relu" }, { type: "linear", name: "fc2", in_features: 4, out_features: 1 }] },
    data: { train: { x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [0, 1, 1, 0] } },
    training: { epochs: 200, batch_size: 4, optimizer: { type: "adam", lr: 0.05 }, loss: { type: "mse" } },
  },
  null,
  2,
);

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
