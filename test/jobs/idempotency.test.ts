/** Idempotency-Key reservations after their request died (issue 20, finding 4), on the in-process store. */
import { describe, expect, it } from "vitest";
import { MemoryJobStore } from "../../src/jobs/memory-store.js";
import { IDEMPOTENCY_TTL_MS, reservationHolds } from "../../src/jobs/store.js";
import { requestBudgetMs, DEFAULT_EDGE_BUDGET } from "../../src/api/budget.js";

describe("Idempotency-Key reservations", () => {
  const stored = (ids: string[]) => async (id: string) => ids.includes(id);

  it("a reservation holds while its request may run, and for a day once its job is stored", async () => {
    const r = { id: "ft_a", fingerprint: "f", at: 1000, pendingUntil: 2000 };
    expect(await reservationHolds(r, 1999, stored([]))).toBe(true);
    expect(await reservationHolds(r, 2000, stored([]))).toBe(false); // the request died: free
    expect(await reservationHolds(r, 2000, stored(["ft_a"]))).toBe(true);
    expect(await reservationHolds(r, 1000 + IDEMPOTENCY_TTL_MS, stored(["ft_a"]))).toBe(false);
    expect(await reservationHolds(undefined, 0, stored([]))).toBe(false);
    // stored before pendingUntil was kept: held for the whole TTL, as before
    expect(await reservationHolds({ id: "ft_b", fingerprint: "f", at: 1000 }, 5_000_000, stored([]))).toBe(true);
  });

  it("MemoryJobStore frees a key whose request's budget ran out without a job; never one whose job was stored", async () => {
    const store = new MemoryJobStore();
    expect(await store.reserveIdempotencyKey("o", "k", "ft_dead", "f", 0)).toBeNull();
    // ft_dead's request never stored its job and its budget (0 ms) has passed: the retry takes the key
    expect(await store.reserveIdempotencyKey("o", "k", "ft_retry", "f", 60_000)).toBeNull();
    // ft_retry's request is within its budget: held
    expect(await store.reserveIdempotencyKey("o", "k", "ft_third", "f", 60_000)).toMatchObject({ id: "ft_retry" });
  });

  it("the budget of a create request is twice its CPU budget plus 5 s", () => {
    expect(requestBudgetMs(DEFAULT_EDGE_BUDGET)).toBe(25_000);
  });
});
