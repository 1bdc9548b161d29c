/** The SSE stream cap's decision (src/jobs/streams.ts) and the in-memory store's slots. */
import { describe, expect, it } from "vitest";
import { admitStream } from "../../src/jobs/streams.js";
import { MemoryJobStore } from "../../src/jobs/memory-store.js";

describe("admitStream", () => {
  const limits = { maxPerKey: 2, leaseMs: 1000 };

  it("admits under the cap and refuses at it, with the time until the soonest lease lapses", () => {
    expect(admitStream(new Map(), "a", 0, limits)).toEqual({ admission: { ok: true }, expired: [], leaseUntil: 1000 });
    const full = new Map([["a", 5000], ["b", 3000]]);
    expect(admitStream(full, "c", 0, limits).admission).toEqual({ ok: false, open: 2, retryAfterMs: 3000 });
  });

  it("drops lapsed slots and does not count them", () => {
    const r = admitStream(new Map([["dead", 100], ["live", 5000]]), "c", 100, limits);
    expect(r.expired).toEqual(["dead"]);
    expect(r.admission).toEqual({ ok: true });
  });

  it("a stream already holding a slot is not counted against itself; Retry-After is at least a second", () => {
    expect(admitStream(new Map([["a", 5000], ["b", 5000]]), "a", 0, limits).admission).toEqual({ ok: true });
    expect(admitStream(new Map([["a", 10], ["b", 10]]), "c", 0, limits).admission).toEqual({ ok: false, open: 2, retryAfterMs: 1000 });
  });
});

describe("MemoryJobStore streams", () => {
  it("counts per owner, frees on close, and lets a lapsed slot go", async () => {
    const store = new MemoryJobStore();
    const limits = { maxPerKey: 1, leaseMs: 60_000 };
    expect(await store.openStream("o1", "s1", limits)).toEqual({ ok: true });
    expect((await store.openStream("o1", "s2", limits)).ok).toBe(false);
    expect(await store.openStream("o2", "s3", limits)).toEqual({ ok: true });
    await store.closeStream("o1", "s1");
    expect(await store.openStream("o1", "s2", limits)).toEqual({ ok: true });
    // a slot renewed with a lease already over counts no more
    await store.renewStream("o1", "s2", -1);
    expect(await store.openStream("o1", "s4", limits)).toEqual({ ok: true });
  });
});
