/**
 * Queued GPU-node jobs cost nothing while they wait (issue 20, finding 5): no periodic
 * re-dispatch. A job's one timer (set at creation) dispatches it once more and marks it
 * waiting_for_node when no node polls; after that it has no alarm, and it is still claimed as
 * soon as a node asks. Edge jobs keep their re-send timer (a Queue message can be lost).
 */
import { SELF, env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { classificationData } from "../helpers.js";

const auth = { authorization: "Bearer worker-test-key" };
const nodeAuth = { authorization: "Bearer edgetune-dev-node-token", "content-type": "application/json" };

function gpuJob() {
  return {
    mode: "async",
    placement: "gpu-node",
    model: { layers: [{ type: "linear", in_features: 4, out_features: 3 }] },
    data: { train: classificationData(16) },
    training: { epochs: 1, batch_size: 8, loss: { type: "cross_entropy" } },
  };
}

const alarmOf = (id: string) => runInDurableObject(env.JOBS.get(env.JOBS.idFromName(id)), (_instance, state) => state.storage.getAlarm());

describe("queued GPU-node jobs while no node polls (issue 20, finding 5)", () => {
  it("one timer, then none: the alarm does not re-arm, the job says waiting_for_node, and a node still claims it", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(gpuJob()) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(await alarmOf(id)).not.toBeNull(); // the creation's one check

    expect(await runDurableObjectAlarm(env.JOBS.get(env.JOBS.idFromName(id)))).toBe(true);
    expect(await alarmOf(id)).toBeNull(); // nothing more until a node asks
    expect(await runDurableObjectAlarm(env.JOBS.get(env.JOBS.idFromName(id)))).toBe(false);

    const job = (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}`, { headers: auth })).json()) as { status: string; hint?: string };
    expect(job.status).toBe("queued");
    expect(job.hint).toMatch(/No GPU node is polling/);

    // claims until this job comes (other tests' jobs may wait in the same dispatcher)
    let claimed: { job: { id: string } } | null = null;
    for (let i = 0; i < 50 && claimed?.job.id !== id; i++) {
      const claim = await SELF.fetch("http://edgetune.test/v1/nodes/claim", { method: "POST", headers: nodeAuth, body: JSON.stringify({ node: "late-node" }) });
      expect(claim.status).toBe(200);
      claimed = (await claim.json()) as { job: { id: string } };
    }
    expect(claimed!.job.id).toBe(id);
    expect(await alarmOf(id)).not.toBeNull(); // now the lease's timer
  });
});
