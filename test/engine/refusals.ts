/** Shared by the engine tests (not a test file): train() on a bad request, and the typed error it throws. */
import { expect } from "vitest";
import type { TrainRequest } from "../../src/engine/train.js";
import { EdgetuneError } from "../../src/errors.js";
import { train } from "../../src/node/index.js";

/** The EdgetuneError train() rejects `request` with (fails when it is accepted or throws anything else). */
export async function rejection(request: unknown): Promise<EdgetuneError> {
  try {
    await train(request as TrainRequest);
  } catch (e) {
    expect(e).toBeInstanceOf(EdgetuneError);
    return e as EdgetuneError;
  }
  throw new Error("train() accepted a bad request");
}
