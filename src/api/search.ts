/**
 * POST /v1/fine-tunes with `search` (issue 15, item 4; docs/strategy.md, "Searches"): plans
 * every trial (each one's request validated and prepared as a fine-tune of its own), admits the
 * search under the key's quotas, and submits the search job, which creates its trials.
 */
import type { Context } from "hono";
import { EdgetuneError, RequestValidationError, UnprocessableError } from "../errors.js";
import { newId } from "../engine/loop.js";
import { prepareRun } from "../engine/prepare.js";
import type { TrainRequest } from "../engine/prepare.js";
import { checkSpace, searchIssues, searchMode, trialParams, withParams, type TrialParams } from "../engine/search.js";
import { queuedJob, reportedPlan } from "../jobs/job.js";
import { encodeRunInput } from "../jobs/run-input.js";
import { createSearch, type TrialSlot } from "../jobs/search.js";
import { chargedBytes, DEFAULT_QUOTAS, inputKeyOf, type Admission, type QuotaLimits } from "../jobs/store.js";
import { zodIssues } from "../schema/issues.js";
import { SearchSpec } from "../schema/search.js";
import type { CreateBody } from "./body.js";
import { decide } from "./budget.js";
import type { AppEnv } from "./deps.js";

/** One planned trial: its values, its run input, its plan and where it runs. */
interface PlannedTrial {
  id: string;
  params: TrialParams;
  input: Uint8Array;
  slot: TrialSlot;
  params_count: number;
}

/**
 * The parsed `search` of a request, or null when it has none; a 400 naming `search.<field>` when
 * it does not match the schema, a 422 for a sync search.
 *
 * @example
 * ```ts
 * const spec = searchOf(request); // null: an ordinary fine-tune
 * ```
 */
export function searchOf(request: TrainRequest): SearchSpec | null {
  const raw = (request as { search?: unknown }).search;
  if (raw === undefined || raw === null) return null;
  const parsed = SearchSpec.safeParse(raw);
  if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error, "search"));
  if (request.mode === "sync") {
    throw new UnprocessableError("sync_search", [{ path: "mode", message: 'a search is always an async job (its trials are jobs of their own): send mode "async" or "auto"' }]);
  }
  return parsed.data;
}

/** Plans each trial: its request with the trial's values, prepared and encoded as any fine-tune's. */
function planTrials(body: CreateBody, spec: SearchSpec, memoryBudgetBytes: number | undefined, budget: AppEnv["Variables"]["deps"]["budget"]): PlannedTrial[] {
  const base = body.request as unknown as Record<string, unknown>;
  const all = trialParams(spec);
  checkSpace(base, spec.space);
  return all.map((params) => {
    const { request, created } = withParams(base, params);
    let prepared;
    try {
      prepared = prepareRun(request as unknown as TrainRequest, body.tables, { memoryBudgetBytes });
    } catch (e) {
      if (!(e instanceof EdgetuneError)) throw e;
      const { search, other } = searchIssues(e.errors, params, created);
      if (search.length === 0) throw e;
      throw new UnprocessableError("invalid_search", [...search, ...other]);
    }
    if (spec.metric !== "train_loss" && prepared.validation === null) {
      throw new UnprocessableError("invalid_search", [
        { path: "search.metric", message: `ranks trials by ${spec.metric}, but the request has no validation data: give data.validation or data.validation_split, or rank by train_loss` },
      ]);
    }
    const decision = decide(prepared.request, prepared.plan, budget);
    const placement = decision.run === "async" ? decision.placement : "edge";
    const plan = prepared.plan;
    const slot: TrialSlot = {
      id: newId(),
      placement,
      plan: reportedPlan(plan, placement),
      epochs: prepared.request.training.epochs,
      restoresBest: prepared.request.training.early_stopping?.restore_best_weights === true,
      weightsKey: null,
    };
    return { id: slot.id, params, input: encodeRunInput(prepared), slot, params_count: plan.params };
  });
}

/**
 * Creates a search job: plans and validates every trial, admits the search (it holds
 * min(parallel, trials) of the key's active jobs until it ends, and is charged every trial's
 * input and weights), and submits it. Answers 202 with the search job.
 *
 * @example
 * ```ts
 * const spec = searchOf(body.request);
 * if (spec) return createSearchJob(c, body, spec, memoryBudgetBytes, { refuse: quotaProblem, reserve: async () => null, release: async () => {} });
 * ```
 */
export async function createSearchJob(
  c: Context<AppEnv>,
  body: CreateBody,
  spec: SearchSpec,
  memoryBudgetBytes: number | undefined,
  hooks: {
    /** The 429 of a quota's refusal. */
    refuse: (refusal: Exclude<Admission, { ok: true }>, limits: QuotaLimits) => Response;
    /** Reserves the request's Idempotency-Key for search `id`: the first create's answer when it was taken, else null. */
    reserve: (id: string) => Promise<Response | null>;
    /** Frees that reservation (the create failed). */
    release: (id: string) => Promise<void>;
  },
): Promise<Response> {
  const { deps } = c.var;
  const createdAt = new Date().toISOString();
  const limits = deps.quotas ?? DEFAULT_QUOTAS;
  const trials = planTrials(body, spec, memoryBudgetBytes, deps.budget);
  const slots = Math.min(spec.parallel, trials.length);
  if (slots > limits.maxActiveJobs) {
    throw new UnprocessableError("invalid_search", [
      { path: "search.parallel", message: `is ${spec.parallel}, but this key may have at most ${limits.maxActiveJobs} active jobs (MAX_ACTIVE_JOBS_PER_KEY): a search holds one per parallel trial` },
    ]);
  }
  const id = newId();
  const replayed = await hooks.reserve(id);
  if (replayed) return replayed;
  const bytes = trials.reduce((sum, t) => sum + chargedBytes(t.input.byteLength, t.params_count), 0) + 4 * Math.max(...trials.map((t) => t.params_count));
  const admission = await deps.store.admit(c.var.owner, id, { active: true, slots, bytes }, limits);
  if (!admission.ok) {
    await hooks.release(id);
    return hooks.refuse(admission, limits);
  }
  try {
    const first = trials[0]!.slot;
    const webhook = (body.request as { webhook?: { url: string } | null }).webhook;
    const job = queuedJob(id, createdAt, first.plan, {
      ...(webhook ? { webhook: { url: webhook.url } } : {}),
      search: spec,
      trials: trials.map((t) => ({ id: t.id, params: t.params, status: "pending", metric: null, epoch: null })),
      best_trial: null,
    });
    const asha = spec.early_termination ? { grace: spec.early_termination.grace_epochs, factor: spec.early_termination.reduction_factor, rungs: {} } : undefined;
    const run = { metric: spec.metric, mode: searchMode(spec), parallel: slots, slots: trials.map((t) => t.slot), ...(asha ? { asha } : {}) };
    const { state, start } = createSearch(job, c.var.owner, run, inputKeyOf(id), Date.now());
    await deps.store.submitSearch(state, start, new Map(trials.map((t) => [t.id, t.input])));
    c.header("Location", `/v1/fine-tunes/${id}`);
    return c.json(state.job, 202);
  } catch (e) {
    await deps.store.cancelAdmission(c.var.owner, id);
    await hooks.release(id);
    throw e;
  }
}
