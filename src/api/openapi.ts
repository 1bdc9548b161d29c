/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate requests
 * (zod 4's JSON Schema output is draft 2020-12, the dialect of OpenAPI 3.1).
 */
import { z } from "zod";
import { FineTuneRequest } from "../schema/request.js";
import { FineTuneResult } from "../schema/result.js";
import { Job, JobList, Problem } from "../schema/job.js";
import { ClaimRequest, ClaimResponse, CompleteRequest, HeartbeatRequest, LeaseStatus, ProgressRequest, StopRequest } from "../schema/node.js";

type JsonSchema = Record<string, unknown>;

/**
 * The components of the document: each zod schema as JSON Schema. Schemas that zod emits as
 * `$defs` (the recursive layer union) become components of their own, and their references
 * point there: in OpenAPI "#/..." resolves against the whole document, not the schema.
 */
function schemaComponents(entries: Record<string, [z.ZodType, "input" | "output"]>): Record<string, JsonSchema> {
  const out: Record<string, JsonSchema> = {};
  const relink = (node: unknown): JsonSchema => JSON.parse(JSON.stringify(node).replaceAll('"#/$defs/', '"#/components/schemas/')) as JsonSchema;
  for (const [name, [schema, io]] of Object.entries(entries)) {
    const { $schema: _dialect, $defs, ...rest } = z.toJSONSchema(schema, { io, target: "draft-2020-12", unrepresentable: "any" }) as JsonSchema;
    for (const [defName, def] of Object.entries(($defs ?? {}) as Record<string, unknown>)) {
      const linked = relink(def);
      if (out[defName] !== undefined && JSON.stringify(out[defName]) !== JSON.stringify(linked)) {
        throw new Error(`openapi: two different schemas are both named ${defName}`);
      }
      out[defName] = linked;
    }
    out[name] = relink(rest);
  }
  return out;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const problemResponses = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [String(s), { description: PROBLEM_DESCRIPTIONS[s] ?? "Error", content: { "application/problem+json": { schema: ref("Problem") } } }]),
  );
const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: "The request does not match the schema; `errors[].path` names each field.",
  401: "No API key, or an unknown one.",
  404: "No such fine-tune (or not yours).",
  409: "The job is not in a state that allows this.",
  413: "The body is larger than the limit.",
  415: "The body's content type is not JSON or multipart.",
  422: "Well-formed but cannot be trained as asked (shapes, labels, budget).",
  503: "Not configured: a deployment without EDGETUNE_API_KEYS (api_keys_not_configured) or EDGETUNE_NODE_TOKENS (node_tokens_not_configured).",
};
const idParam = { name: "id", in: "path", required: true, schema: { type: "string", pattern: "^ft_[0-9a-f]{32}$" } };
const bearer = [{ bearer: [] }];

/**
 * Builds the OpenAPI document for a server URL.
 *
 * @example
 * ```ts
 * const doc = openApiDocument("http://localhost:8787", "0.1.0");
 * doc.paths["/v1/fine-tunes"].post.operationId; // "createFineTune"
 * ```
 */
export function openApiDocument(serverUrl: string, version: string) {
  return {
    openapi: "3.1.0",
    info: {
      title: "edgetune",
      version,
      description:
        "Serverless edge fine-tuning with PyTorch semantics. POST a model, weights (safetensors) and data; get the fine-tuned weights and metrics. Errors are RFC 9457 problem+json.",
    },
    servers: [{ url: serverUrl }],
    security: bearer,
    paths: {
      "/v1/fine-tunes": {
        post: {
          operationId: "createFineTune",
          summary: "Create a fine-tune",
          description:
            'mode "sync" trains now and answers 200 with the result; "async" answers 202 with the queued job (it runs in the Worker\'s queue consumer, or on a GPU node with placement "gpu-node"); "auto" (default) runs sync when the plan fits the in-Worker budget and offloads to a GPU node otherwise.',
          requestBody: {
            required: true,
            content: {
              "application/json": { schema: ref("FineTuneRequest") },
              "multipart/form-data": {
                schema: {
                  type: "object",
                  required: ["request"],
                  properties: {
                    request: { type: "string", description: "The request JSON, without weights and without data.train / data.validation when those are parts." },
                    weights: { type: "string", format: "binary", description: "safetensors with state_dict names (a Hub model.safetensors as it is, for model.huggingface)" },
                    config: { type: "string", format: "binary", description: "A Hugging Face config.json: becomes model.huggingface.config" },
                    tokenizer: { type: "string", format: "binary", description: "a Hugging Face tokenizer.json, for text rows (text, text_pair)" },
                    train: { type: "string", format: "binary", description: "CSV (header row; target column data.target, default y) or JSONL ({\"x\":[...],\"y\":...} per line); text rows: a text column (and text_pair), or {\"text\": ...} lines" },
                    validation: { type: "string", format: "binary", description: "as train" },
                  },
                },
              },
            },
          },
          responses: {
            "200": {
              description: "The finished run (sync). Location points at the stored job.",
              headers: { Location: { schema: { type: "string" } } },
              content: { "application/json": { schema: ref("FineTuneResult") } },
            },
            "202": {
              description: "Accepted (async): the queued job; follow it at Location, its events, or poll it.",
              headers: { Location: { schema: { type: "string" } } },
              content: { "application/json": { schema: ref("Job") } },
            },
            ...problemResponses(400, 401, 413, 415, 422),
          },
        },
        get: {
          operationId: "listFineTunes",
          summary: "List your fine-tunes, newest first",
          parameters: [
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 100, default: 20 } },
            { name: "cursor", in: "query", schema: { type: "string" }, description: "next_cursor of the previous page" },
          ],
          responses: { "200": { description: "A page of jobs", content: { "application/json": { schema: ref("JobList") } } }, ...problemResponses(400, 401) },
        },
      },
      "/v1/fine-tunes/{id}": {
        get: {
          operationId: "retrieveFineTune",
          summary: "Retrieve a fine-tune",
          parameters: [idParam],
          responses: { "200": { description: "The job", content: { "application/json": { schema: ref("Job") } } }, ...problemResponses(401, 404) },
        },
      },
      "/v1/fine-tunes/{id}/weights": {
        get: {
          operationId: "downloadFineTuneWeights",
          summary: "Download the fine-tuned weights (safetensors)",
          parameters: [
            idParam,
            {
              name: "format",
              in: "query",
              required: false,
              description: "Adapter runs: full, peft (adapter_model.safetensors) or merged; default: the request's output.format",
              schema: { type: "string", enum: ["full", "peft", "merged"] },
            },
          ],
          responses: {
            "200": { description: "safetensors bytes", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
            ...problemResponses(401, 404, 409, 422),
          },
        },
      },
      "/v1/fine-tunes/{id}/adapter_config.json": {
        get: {
          operationId: "downloadAdapterConfig",
          summary: "An adapter run's adapter_config.json, as PEFT writes it",
          parameters: [idParam],
          responses: {
            "200": { description: "adapter_config.json", content: { "application/json": { schema: { type: "object" } } } },
            ...problemResponses(401, 404, 409),
          },
        },
      },
      "/v1/fine-tunes/{id}/events": {
        get: {
          operationId: "streamFineTuneEvents",
          summary: "Server-Sent Events: status, epoch, then done or error",
          description: "A new connection replays the job's events from the start, or after Last-Event-ID (header) / last_event_id (query).",
          parameters: [idParam, { name: "Last-Event-ID", in: "header", schema: { type: "string" } }],
          responses: { "200": { description: "text/event-stream", content: { "text/event-stream": { schema: { type: "string" } } } }, ...problemResponses(401, 404) },
        },
      },
      "/v1/fine-tunes/{id}/cancel": {
        post: {
          operationId: "cancelFineTune",
          summary: "Cancel a queued or running fine-tune",
          parameters: [idParam],
          responses: { "200": { description: "The job", content: { "application/json": { schema: ref("Job") } } }, ...problemResponses(401, 404, 409) },
        },
      },
      "/v1/nodes/claim": {
        post: {
          operationId: "claimJob",
          summary: "GPU nodes: claim the next offloaded job (long poll with wait_ms)",
          security: [{ nodeToken: [] }],
          requestBody: { required: true, content: { "application/json": { schema: ref("ClaimRequest") } } },
          responses: {
            "200": { description: "A job and its lease", content: { "application/json": { schema: ref("ClaimResponse") } } },
            "204": { description: "No job is waiting" },
            ...problemResponses(400, 401, 503),
          },
        },
      },
      "/v1/nodes/stop": {
        post: {
          operationId: "stopNode",
          summary: "GPU nodes: the node is shutting down; nothing more is claimed for it, a long poll in flight included",
          security: [{ nodeToken: [] }],
          requestBody: { required: true, content: { "application/json": { schema: ref("StopRequest") } } },
          responses: { "200": { description: "Stopped", content: { "application/json": { schema: { type: "object", properties: { stopped: { type: "boolean" } } } } } }, ...problemResponses(400, 401, 503) },
        },
      },
      "/v1/nodes/jobs/{id}/release": {
        post: {
          operationId: "releaseJob",
          summary: "GPU nodes: hand a claimed job back untrained (queued again; the attempt is not counted)",
          security: [{ nodeToken: [] }],
          parameters: [idParam],
          requestBody: { required: true, content: { "application/json": { schema: ref("HeartbeatRequest") } } },
          responses: { "200": { description: "Whether it was applied", content: { "application/json": { schema: { type: "object", properties: { accepted: { type: "boolean" } } } } } }, ...problemResponses(400, 401) },
        },
      },
      "/v1/nodes/jobs/{id}/input": {
        get: {
          operationId: "readJobInput",
          summary: "GPU nodes: the run input (safetensors with the request, initial weights and data)",
          security: [{ nodeToken: [] }],
          parameters: [idParam, { name: "lease_id", in: "query", required: true, schema: { type: "string" } }],
          responses: { "200": { description: "bytes", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } }, ...problemResponses(401, 409) },
        },
      },
      "/v1/nodes/jobs/{id}/progress": {
        post: {
          operationId: "reportProgress",
          summary: "GPU nodes: finished epochs; renews the lease; says whether to stop",
          security: [{ nodeToken: [] }],
          parameters: [idParam],
          requestBody: { required: true, content: { "application/json": { schema: ref("ProgressRequest") } } },
          responses: { "200": { description: "Lease status", content: { "application/json": { schema: ref("LeaseStatus") } } }, ...problemResponses(400, 401, 409) },
        },
      },
      "/v1/nodes/jobs/{id}/heartbeat": {
        post: {
          operationId: "heartbeat",
          summary: "GPU nodes: renew the lease",
          security: [{ nodeToken: [] }],
          parameters: [idParam],
          requestBody: { required: true, content: { "application/json": { schema: ref("HeartbeatRequest") } } },
          responses: { "200": { description: "Lease status", content: { "application/json": { schema: ref("LeaseStatus") } } }, ...problemResponses(400, 401, 409) },
        },
      },
      "/v1/nodes/jobs/{id}/weights": {
        put: {
          operationId: "uploadWeights",
          summary: "GPU nodes: upload the fine-tuned safetensors under the lease",
          security: [{ nodeToken: [] }],
          parameters: [idParam, { name: "lease_id", in: "query", required: true, schema: { type: "string" } }],
          requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
          responses: { "200": { description: "Stored", content: { "application/json": { schema: { type: "object", properties: { weights_key: { type: "string" } } } } } }, ...problemResponses(401, 409) },
        },
      },
      "/v1/nodes/jobs/{id}/complete": {
        post: {
          operationId: "completeJob",
          summary: "GPU nodes: finish the job (idempotent: a repeat or a stale lease is not applied)",
          security: [{ nodeToken: [] }],
          parameters: [idParam],
          requestBody: { required: true, content: { "application/json": { schema: ref("CompleteRequest") } } },
          responses: { "200": { description: "Whether it was applied", content: { "application/json": { schema: { type: "object", properties: { accepted: { type: "boolean" } } } } } }, ...problemResponses(400, 401) },
        },
      },
      "/healthz": {
        get: {
          operationId: "health",
          summary: "Liveness, build and kernel variant",
          security: [],
          responses: { "200": { description: "OK", content: { "application/json": { schema: { type: "object" } } } } },
        },
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "A key from EDGETUNE_API_KEYS" },
        nodeToken: { type: "http", scheme: "bearer", description: "A GPU-node token from EDGETUNE_NODE_TOKENS" },
      },
      schemas: schemaComponents({
        FineTuneRequest: [FineTuneRequest, "input"],
        FineTuneResult: [FineTuneResult, "output"],
        Job: [Job, "output"],
        JobList: [JobList, "output"],
        Problem: [Problem, "output"],
        ClaimRequest: [ClaimRequest, "input"],
        ClaimResponse: [ClaimResponse, "output"],
        ProgressRequest: [ProgressRequest, "input"],
        HeartbeatRequest: [HeartbeatRequest, "input"],
        StopRequest: [StopRequest, "input"],
        LeaseStatus: [LeaseStatus, "output"],
        CompleteRequest: [CompleteRequest, "input"],
      }),
    },
  };
}
