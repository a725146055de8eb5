/**
 * Endpoint selection within a cluster: ROUND_ROBIN spreads by weight,
 * RANDOM follows the injected random source, LEAST_REQUEST prefers the
 * less loaded of two picks.
 */
import { describe, expect, it } from "vitest";
import type { ClusterDef, EndpointDef } from "../../../src/config/snapshot.ts";
import { Balancer } from "../../../src/routing/balancer.ts";

const endpoint = (address: string, weight = 1): EndpointDef => ({ address, port: 80, labels: {}, weight });
const cluster = (loadBalancer: ClusterDef["loadBalancer"], endpoints: EndpointDef[], name = "outbound|80||svc"): ClusterDef => ({
  name,
  service: "svc",
  source: "ServiceEntry/default/svc",
  namespace: "default",
  port: 80,
  scheme: "http",
  endpoints,
  loadBalancer,
});
/** A random source that returns the given values in turn. */
const sequence = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length] as number;
};
const count = (picks: (EndpointDef | undefined)[]) => {
  const out: Record<string, number> = {};
  for (const p of picks) if (p) out[p.address] = (out[p.address] ?? 0) + 1;
  return out;
};

describe("Balancer", () => {
  it("returns nothing for no endpoints and the only one for one", () => {
    const b = new Balancer(sequence(0.5));
    expect(b.pick(cluster("RANDOM", []), [])).toBeUndefined();
    const only = endpoint("10.0.0.1");
    expect(b.pick(cluster("LEAST_REQUEST", [only]), [only])).toBe(only);
  });

  it("ROUND_ROBIN spreads evenly and honours weights, interleaving (smooth weighted)", () => {
    const eps = [endpoint("a", 5), endpoint("b", 1), endpoint("c", 1)];
    const c = cluster("ROUND_ROBIN", eps);
    const b = new Balancer(() => {
      throw new Error("round robin must not draw random numbers");
    });
    const picks = Array.from({ length: 70 }, () => b.pick(c, eps));
    expect(count(picks)).toEqual({ a: 50, b: 10, c: 10 });
    // Nginx's smooth weighted round robin: a a b a c a a, repeated.
    expect(picks.slice(0, 7).map((p) => p?.address)).toEqual(["a", "a", "b", "a", "c", "a", "a"]);
    const equal = [endpoint("x"), endpoint("y"), endpoint("z")];
    const c2 = cluster("ROUND_ROBIN", equal, "other");
    expect(Array.from({ length: 6 }, () => b.pick(c2, equal)?.address)).toEqual(["x", "y", "z", "x", "y", "z"]);
  });

  it("RANDOM picks by weight from the injected random source", () => {
    const eps = [endpoint("a", 1), endpoint("b", 3)];
    const b = new Balancer(sequence(0, 0.24, 0.25, 0.99));
    const c = cluster("RANDOM", eps);
    expect(Array.from({ length: 4 }, () => b.pick(c, eps)?.address)).toEqual(["a", "a", "b", "b"]);
  });

  it("LEAST_REQUEST prefers the less loaded of two random picks", () => {
    const eps = [endpoint("a"), endpoint("b")];
    const c = cluster("LEAST_REQUEST", eps);
    // Draws: first pick a (0.1), second pick b (0.9).
    const b = new Balancer(sequence(0.1, 0.9));
    const doneA1 = b.begin(c, eps[0]!);
    b.begin(c, eps[0]!);
    expect(b.pick(c, eps)?.address).toBe("b");
    // Once a has fewer requests in flight than b, it wins.
    doneA1();
    b.begin(c, eps[1]!);
    b.begin(c, eps[1]!);
    expect(b.pick(c, eps)?.address).toBe("a");
  });

  it("LEAST_REQUEST compares load relative to endpoint weight", () => {
    const eps = [endpoint("heavy", 4), endpoint("light", 1)];
    const c = cluster("LEAST_REQUEST", eps);
    const b = new Balancer(sequence(0.1, 0.95));
    for (let i = 0; i < 3; i++) b.begin(c, eps[0]!);
    b.begin(c, eps[1]!);
    // 3/4 in flight per unit of weight on heavy vs 1/1 on light.
    expect(b.pick(c, eps)?.address).toBe("heavy");
  });

  it("counts a finished request only once", () => {
    const eps = [endpoint("a"), endpoint("b")];
    const c = cluster("LEAST_REQUEST", eps);
    const b = new Balancer(sequence(0.1, 0.9));
    const done = b.begin(c, eps[1]!);
    done();
    done();
    b.begin(c, eps[0]!);
    // b has 0 in flight (not -1), a has 1: b wins; with a double decrement b would still win, so check ties too.
    expect(b.pick(c, eps)?.address).toBe("b");
    b.begin(c, eps[1]!);
    // Now both have 1 in flight: a tie goes to the first pick (a).
    expect(b.pick(c, eps)?.address).toBe("a");
  });
  it("LEAST_REQUEST keeps an endpoint's in-flight count across a new snapshot, and apart per cluster", () => {
    const eps = [endpoint("a"), endpoint("b")];
    const c = cluster("LEAST_REQUEST", eps);
    const b = new Balancer(sequence(0.1, 0.9));
    b.begin(c, eps[0]!);
    b.begin(c, eps[0]!);
    expect(b.pick(c, eps)?.address).toBe("b");
    // A new snapshot: new definitions of the same endpoints still carry a's two requests in flight.
    const next = [endpoint("a"), endpoint("b")];
    expect(b.pick(cluster("LEAST_REQUEST", next), next)?.address).toBe("b");
    // Another cluster that lists the same endpoint definition counts its own requests: a is idle there.
    const other = cluster("LEAST_REQUEST", eps, "outbound|80||other");
    expect(b.pick(other, eps)?.address).toBe("a");
    b.begin(other, eps[0]!);
    b.begin(other, eps[0]!);
    b.begin(other, eps[0]!);
    expect(b.pick(other, eps)?.address).toBe("b");
    // …and its requests do not count in the first cluster: a has 2 in flight there, b none.
    b.begin(c, eps[1]!);
    b.begin(c, eps[1]!);
    expect(b.pick(c, eps)?.address).toBe("a");
  });
});
