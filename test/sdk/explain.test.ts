/** client.fineTunes.explain against the real app (app.request() as the injected fetch). */
import { describe, expect, it } from "vitest";
import { UnprocessableEntityError } from "../../src/sdk/index.js";
import { seedRequest } from "../helpers.js";
import { header, sdkSetup } from "./helpers.js";

describe("client.fineTunes.explain", () => {
  it("posts the explain object and answers the explanations; bad input is UnprocessableEntityError naming the field", async () => {
    const { client, calls } = await sdkSetup();
    const result = await client.fineTunes.create({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "sync" });
    const e = await client.fineTunes.explain(result.id, { method: "integrated_gradients", steps: 32, target: 0 });
    const call = calls.at(-1)!;
    expect(call.url).toBe(`http://edge.test/v1/fine-tunes/${result.id}/explain`);
    expect(header(call, "content-type")).toBe("application/json");
    expect(JSON.parse(call.init.body as string)).toEqual({ method: "integrated_gradients", steps: 32, target: 0 });
    expect(e.method).toBe("integrated_gradients");
    expect(e.attributions).toHaveLength(64); // no validation rows: the first 100 (all) training rows
    expect(e.convergence_delta).toHaveLength(64);
    const error = await client.fineTunes.explain(result.id, { method: "kernel_shap", rows: [[1, 2]] }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(UnprocessableEntityError);
    expect((error as UnprocessableEntityError).errors.map((i) => i.path)).toContain("rows[0]");
  });
});
