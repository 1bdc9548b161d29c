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
  return error.issues.flatMap((issue): FieldIssue[] => {
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({ path: formatPath([...issue.path, key], root), message: "is not a known field" }));
    }
    return [{ path: formatPath(issue.path, root), message: issue.message }];
  });
}
