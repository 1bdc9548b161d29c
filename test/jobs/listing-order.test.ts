import { describe, expect, it } from "vitest";
import { newId } from "../../src/engine/loop.js";
import { listingKey } from "../../src/jobs/store.js";

describe("job ids and listing keys keep creation order", () => {
  it("ids made in one millisecond sort in the order they were made, and keep the ft_ + 32 hex form", () => {
    const ids = Array.from({ length: 2000 }, () => newId());
    for (const id of ids) expect(id).toMatch(/^ft_[0-9a-f]{32}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("the listing key puts the newest job first, also when two share a created_at", () => {
    const at = "2026-12-01T12:00:00.000Z";
    const [a, b, c] = [newId(), newId(), newId()];
    const keys = [
      { id: a, key: listingKey(at, a) },
      { id: b, key: listingKey(at, b) },
      { id: c, key: listingKey("2026-12-01T11:59:59.999Z", c) },
    ];
    expect(keys.sort((x, y) => (x.key < y.key ? -1 : 1)).map((k) => k.id)).toEqual([b, a, c]);
  });
});
