/**
 * zod issues as edgetune field issues: a path the way a user writes it
 * (`training.optimizer.betas[1]`, `weights["fc1.weight"]`) and one issue per unknown key.
 */
import type { z } from "zod";
import type { FieldIssue } from "../errors.js";

/**
 * Formats a zod path: identifiers joined with dots, numbers in brackets, other keys quoted.
 *
 * @example
 * ```ts
 * formatPath(["training", "optimizer", "betas", 1]); // "training.optimizer.betas[1]"
 * formatPath(["weights", "fc1.weight"]);             // 'weights["fc1.weight"]'
 * ```
 */
export function formatPath(path: readonly PropertyKey[], root = ""): string {
  let out = root;
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (typeof p === "string" && /^[A-Za-z_$][\w$]*$/.test(p)) out += out === "" ? p : `.${p}`;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out || "(body)";
}

/**
 * Field issues of a failed safeParse; unrecognized keys become one issue per key, at that key.
 *
 * @example
 * ```ts
 * const r = FineTuneRequest.safeParse(body);
 * if (!r.success) throw new RequestValidationError(zodIssues(r.error));
 * ```
 */
export function zodIssues(error: z.ZodError, root = ""): FieldIssue[] {
  const out: FieldIssue[] = [];
  let total = 0;
  for (const issue of error.issues) {
    const keys = issue.code === "unrecognized_keys" ? issue.keys : [null];
    for (const key of keys) {
      // a list of a million wrong values is a million zod issues: the report keeps the first
      // MAX_REPORTED_ISSUES (as the dataset readers do) and says how many there were
      if (++total > MAX_REPORTED_ISSUES) continue;
      out.push(key === null ? { path: formatPath(issue.path, root), message: issue.message } : { path: formatPath([...issue.path, key], root), message: "is not a known field" });
    }
  }
  if (total > MAX_REPORTED_ISSUES) {
    const last = out[out.length - 1]!;
    out[out.length - 1] = { ...last, message: `${last.message} (and ${total - MAX_REPORTED_ISSUES} more issues: showing the first ${MAX_REPORTED_ISSUES})` };
  }
  return out;
}

/**
 * Issues one report lists at most (the dataset readers stop at the same count).
 *
 * @example
 * ```ts
 * zodIssues(error).length <= MAX_REPORTED_ISSUES; // true
 * ```
 */
export const MAX_REPORTED_ISSUES = 20;
