/**
 * GET /docs: the API reference (Scalar, served offline from this deployment's own assets) over
 * /openapi.json, and the problem codes the API answers with (the `type` of each problem points
 * here).
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
  webhooks_not_configured: "503: a request with a webhook, on a deployment without EDGETUNE_WEBHOOK_SECRET; set the secret (whsec_ and at least 24 base64 bytes).",
  job_active: "409: the job is queued or running, so it cannot be deleted; cancel it first.",
  too_many_active_jobs: "429: the key has MAX_ACTIVE_JOBS_PER_KEY jobs queued or running; retry after Retry-After, once one has ended.",
  too_many_streams: "429: the key has MAX_STREAMS_PER_KEY event streams open; close one, or retry after Retry-After.",
  storage_quota_exceeded: "429: the job would take the key's stored inputs and weights past MAX_STORED_BYTES_PER_KEY; delete ended jobs or wait for them to expire.",
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
  over_budget: "422: a sync job exceeds the in-Worker budget (CPU, or memory with its parsed body); use mode async. As error.code of a 200 sync result with status cancelled: the run stopped itself before a step that would pass the budget, with the weights so far.",
  sync_on_gpu_node: "422: sync jobs run in the Worker, not on GPU nodes.",
  output_overflow: "422: a float16/bfloat16 output weight is beyond the format's range (it would be Inf); errors[].message names the tensor. Ask for output.overflow \"clamp\", or float32.",
  invalid_weights: "422 (GPU nodes): the uploaded weights are not the file this job's run writes (names, shapes, dtype, finite values); errors[].message names the tensor.",
  weights_not_uploaded: "422 (GPU nodes): the completion's weights_key names no stored weights.",
  invalid_progress: "422 (GPU nodes): reported epochs skip one after the last reported, or pass the run's epochs.",
  invalid_outcome: "422 (GPU nodes): the completion's history skips an epoch or passes the run's epochs.",
  lease_lost: "409 (GPU nodes): this node no longer holds the job's lease; abandon the attempt.",
  worker_lost: "a job's workers stopped reporting MAX_ATTEMPTS times; the job failed (error.code of the job).",
  diverged: "a non-finite loss, gradient or weight ended the run (error.code of the job; weights are the last finite ones).",
  internal_error: "500: a bug; it was logged.",
};

/** Where the reference UI's bundle is served (Workers Static Assets, copied by `npm run build:browser`). */
export const REFERENCE_UI_SCRIPT = "/docs/assets/scalar-api-reference.js";

/**
 * The docs page HTML: Scalar's API reference over /openapi.json (the public API; the node
 * protocol has its own document, /openapi.nodes.json), from a bundle this deployment serves
 * itself, with no fonts, telemetry or proxy from elsewhere; then the problem codes, each with
 * the anchor that a problem's `type` links to.
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
  const config = {
    url: "/openapi.json",
    withDefaultFonts: false,
    telemetry: false,
    showDeveloperTools: "never",
    agent: { disabled: true },
    hideClientButton: false,
    defaultOpenAllTags: true,
    metaData: { title: "edgetune API" },
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgetune API</title>
<link rel="icon" href="data:,">
<style>
#problem-codes{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem 2rem;color:#1d2430}
#problem-codes code{font:13px ui-monospace,monospace}#problem-codes li:target{background:#fff3c4}
</style></head><body>
<noscript>The API reference needs JavaScript; the contract is <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</noscript>
<div id="reference"></div>
<section id="problem-codes"><h2>Problem codes</h2>
<p>Errors are <code>application/problem+json</code> (RFC 9457); <code>code</code> is one of these, and <code>errors[].path</code> names each field at fault.</p>
<ul>${codes}</ul></section>
<script src="${REFERENCE_UI_SCRIPT}"></script>
<script>Scalar.createApiReference("#reference", ${JSON.stringify(config)});</script>
</body></html>`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
