/**
 * Consistent hashing tables: a key stays on one endpoint, weights shape
 * the share, and when one of N endpoints leaves only about 1/N of the keys
 * move (those that were on it).
 */
import { describe, expect, it } from "vitest";
import { buildMaglev, buildRing, hashOf, type HashMember } from "../../../src/upstream/hash-ring.ts";

const members = (n: number, weight = () => 1): HashMember[] => Array.from({ length: n }, (_, i) => ({ key: `10.0.0.${i + 1}:8080`, weight: weight() }));
const keys = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);

/** Ring points per member depend on the whole cluster's weight (5 here), not on who is left. */
for (const [name, build, strays] of [
  ["ring hash", (m: HashMember[]) => buildRing(m, 1024, 5), 0],
  // Maglev rebuilds every permutation's claims; a few keys of the members that stay move too (the paper's "minimal disruption").
  ["maglev", (m: HashMember[]) => buildMaglev(m, 65_537), 0.03],
] as const) {
  describe(name, () => {
    it("maps a key to the same endpoint every time, and tables built alike agree", () => {
      const a = build(members(5));
      const b = build(members(5));
      for (const k of keys.slice(0, 500)) expect(a.pick(hashOf(k))).toBe(b.pick(hashOf(k)));
    });

    it("spreads keys evenly over equal endpoints (each within ±25% of its share)", () => {
      const table = build(members(5));
      const counts = [0, 0, 0, 0, 0];
      for (const k of keys) counts[table.pick(hashOf(k))]!++;
      for (const c of counts) expect(Math.abs(c - keys.length / 5)).toBeLessThan((keys.length / 5) * 0.25);
    });

    it("gives a weight-3 endpoint about three times the keys of a weight-1 one", () => {
      const table = build([
        { key: "a:80", weight: 3 },
        { key: "b:80", weight: 1 },
      ]);
      let a = 0;
      for (const k of keys) if (table.pick(hashOf(k)) === 0) a++;
      expect(a / keys.length).toBeGreaterThan(0.68);
      expect(a / keys.length).toBeLessThan(0.82);
    });

    it("moves about 1/N of the keys when one of N endpoints leaves, and only keys that were on it", () => {
      const n = 5;
      const all = members(n);
      const before = build(all);
      const leaving = 2;
      const rest = all.filter((_, i) => i !== leaving);
      const after = build(rest);
      let moved = 0;
      let fromStaying = 0;
      for (const k of keys) {
        const was = all[before.pick(hashOf(k))]!.key;
        const now = rest[after.pick(hashOf(k))]!.key;
        if (was !== now) {
          moved++;
          if (was !== all[leaving]!.key) fromStaying++;
        }
      }
      expect(moved / keys.length).toBeGreaterThan(0.5 / n);
      expect(moved / keys.length).toBeLessThan(1.5 / n);
      expect(fromStaying / keys.length).toBeLessThanOrEqual(strays);
    });

    it("walks on to the next endpoint not skipped (host selection on a retry)", () => {
      const table = build(members(3));
      for (const k of keys.slice(0, 200)) {
        const first = table.pick(hashOf(k));
        const second = table.pick(hashOf(k), (m) => m === first);
        expect(second).not.toBe(first);
        expect(table.pick(hashOf(k), () => true)).toBe(first);
      }
    });
  });
}
