/** The SDK against the real app: an injected fetch that calls `app.request()`, and an in-process job runner. */
import { runClaimedJob } from "../../src/jobs/runner.js";
import { Edgetune, type ClientOptions } from "../../src/sdk/index.js";
import { testApp } from "../api/app.js";

export interface Call {
  url: string;
  init: RequestInit;
}

type AppOptions = Parameters<typeof testApp>[0];

/** The real app, and a client whose fetch records every call and answers through app.request(). */
export async function sdkSetup(options: { app?: AppOptions; client?: ClientOptions; wrap?: (url: string, init: RequestInit, res: Response) => Response | Promise<Response> } = {}) {
  const t = await testApp(options.app);
  const calls: Call[] = [];
  const client = new Edgetune({
    baseURL: "http://edge.test",
    ...options.client,
    fetch: async (url, init = {}) => {
      calls.push({ url, init });
      const res = await t.app.request(url, init);
      return options.wrap ? options.wrap(url, init, res) : res;
    },
  });
  /** Runs the next queued edge job in-process (the Worker's queue consumer); false when none waits. */
  const runNext = async () => {
    const claim = await t.store.takeEdgeJob("consumer");
    if (!claim) return false;
    return (await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" })) === "completed";
  };
  return { ...t, client, calls, runNext };
}

/** The header `name` of a recorded call. */
export function header(call: Call, name: string): string | null {
  return new Headers(call.init.headers).get(name);
}
