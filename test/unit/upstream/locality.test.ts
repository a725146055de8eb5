/**
 * Locality load balancing (semantics reference §2.3, §2.6): priority
 * levels by proximity, failover rules, failoverPriority labels and
 * distribute weights, Envoy's spill-over with overprovisioning 1.4, and
 * panic mode — through the same picker the gateway uses.
 */
import { describe, expect, it } from "vitest";
import type { ClusterDef, EndpointDef, LocalityLbDef } from "../../../src/config/snapshot.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { LocalityResolver } from "../../../src/upstream/locality.ts";
import { pickEndpoint } from "../../../src/upstream/picker.ts";
import { levelHealth, planPriorities, priorityLoads } from "../../../src/upstream/priority.ts";

const ep = (address: string, locality?: string, labels: Record<string, string> = {}): EndpointDef => ({ address, port: 80, labels, weight: 1, ...(locality ? { locality } : {}) });

const cluster = (endpoints: EndpointDef[], locality?: LocalityLbDef, panicThreshold = 0): ClusterDef => ({
  name: "outbound|80||app",
  service: "app",
  source: "ServiceEntry/ns/app",
  namespace: "ns",
  port: 80,
  scheme: "http",
  endpoints,
  loadBalancer: "ROUND_ROBIN",
  panicThreshold,
  ...(locality ? { locality } : {}),
});

const names = (c: ClusterDef, levels: number[][]) => levels.map((l) => l.map((i) => c.endpoints[i]!.address).sort());
const levelsOf = (c: ClusterDef, client: string | undefined, labels?: Record<string, string>) =>
  names(
    c,
    planPriorities(c, client, labels).levels.map((l) => l.groups.flatMap((g) => g.members)),
  );

/** Picks `n` times with a seeded generator and counts endpoints. */
function spread(c: ClusterDef, client: string | undefined, healthy: (address: string) => boolean, n = 2_000): Record<string, number> {
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const balancer = new Balancer(random);
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const pick = pickEndpoint({ cluster: c, client, gatewayLabels: undefined, healthy: (j) => healthy(c.endpoints[j]!.address), balancer, random });
    const key = pick ? pick.endpoint.address : "none";
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

const multiCloud = [
  ep("aws-a1", "aws/us-east-1/us-east-1a"),
  ep("aws-a2", "aws/us-east-1/us-east-1a"),
  ep("aws-b", "aws/us-east-1/us-east-1b"),
  ep("aws-west", "aws/us-west-2/us-west-2a"),
  ep("gcp", "gcp/us-central1/a"),
];

describe("priority levels (failover by proximity)", () => {
  it("orders same subzone, same zone, same region, elsewhere — without gaps", () => {
    const c = cluster(multiCloud, { failover: true });
    expect(levelsOf(c, "aws/us-east-1/us-east-1a")).toEqual([["aws-a1", "aws-a2"], ["aws-b"], ["aws-west"], ["gcp"]]);
    expect(levelsOf(c, "gcp/us-central1/a")).toEqual([["gcp"], ["aws-a1", "aws-a2", "aws-b", "aws-west"]]);
  });

  it("puts regions a failover rule does not name behind the one it names", () => {
    const c = cluster(multiCloud, { failover: true, failoverRules: [{ from: "aws", to: "gcp" }] });
    expect(levelsOf(c, "aws/us-east-1/us-east-1a")).toEqual([["aws-a1", "aws-a2"], ["aws-b"], ["aws-west"], ["gcp"]]);
    const west = cluster([ep("a", "aws/x/1"), ep("g", "gcp/y/1"), ep("z", "azure/z/1")], { failover: true, failoverRules: [{ from: "aws", to: "azure" }] });
    expect(levelsOf(west, "aws/x/1")).toEqual([["a"], ["z"], ["g"]]);
  });

  it("ranks by failoverPriority labels: all match first, then fewer leading matches", () => {
    const c = cluster(
      [ep("both", undefined, { tier: "gold", env: "prod" }), ep("tier", undefined, { tier: "gold", env: "dev" }), ep("none", undefined, { tier: "silver", env: "prod" })],
      { failover: true, failoverPriority: ["tier", "env"] },
    );
    expect(levelsOf(c, undefined, { tier: "gold", env: "prod" })).toEqual([["both"], ["tier"], ["none"]]);
    // `label=value` compares with the given value instead of the gateway's own.
    const pinned = cluster(c.endpoints, { failover: true, failoverPriority: ["tier=silver"] });
    expect(levelsOf(pinned, undefined, { tier: "gold" })).toEqual([["none"], ["both", "tier"]]);
  });

  it("derives topology labels from localities for failoverPriority", () => {
    const c = cluster(multiCloud, { failover: true, failoverPriority: ["topology.kubernetes.io/region", "topology.kubernetes.io/zone"] });
    expect(levelsOf(c, "aws/us-east-1/us-east-1a")).toEqual([["aws-a1", "aws-a2", "aws-b"], ["aws-west"], ["gcp"]]);
  });

  it("keeps one level when the request maps to no locality", () => {
    const c = cluster(multiCloud, { failover: true });
    expect(levelsOf(c, undefined)).toEqual([["aws-a1", "aws-a2", "aws-b", "aws-west", "gcp"]]);
  });
});

describe("Envoy's priority load (overprovisioning factor 1.4)", () => {
  it("keeps all traffic on P0 until it is below ~72% healthy, then spills the rest over", () => {
    expect(levelHealth(3, 4)).toBe(100);
    expect(levelHealth(1, 2)).toBe(70);
    expect(priorityLoads([100, 100]).loads).toEqual([100, 0]);
    expect(priorityLoads([70, 100]).loads).toEqual([70, 30]);
    expect(priorityLoads([0, 100]).loads).toEqual([0, 100]);
    // Not enough health anywhere: loads are scaled up to 100.
    expect(priorityLoads([28, 14]).loads).toEqual([67, 33]);
    expect(priorityLoads([0, 0]).loads).toEqual([100, 0]);
    // Nothing available anywhere (total panic): split by the levels' endpoint counts, as Envoy's recalculateLoadInTotalPanic.
    expect(priorityLoads([0, 0], [3, 1]).loads).toEqual([75, 25]);
    expect(priorityLoads([0, 0, 0], [0, 2, 1]).loads).toEqual([0, 67, 33]);
  });

  it("sends a failing locality's traffic to the next priority and back when it heals", () => {
    const c = cluster(multiCloud, { failover: true });
    const client = "aws/us-east-1/us-east-1a";
    expect(spread(c, client, () => true)).toEqual({ "aws-a1": 1000, "aws-a2": 1000 });
    const down = new Set(["aws-a1", "aws-a2"]);
    expect(spread(c, client, (a) => !down.has(a))).toEqual({ "aws-b": 2000 });
    down.add("aws-b");
    expect(spread(c, client, (a) => !down.has(a))).toEqual({ "aws-west": 2000 });
    expect(spread(c, client, () => true)).toEqual({ "aws-a1": 1000, "aws-a2": 1000 });
  });

  it("spills 30% to the next level when half of P0 is healthy", () => {
    const c = cluster(multiCloud, { failover: true });
    const counts = spread(c, "aws/us-east-1/us-east-1a", (a) => a !== "aws-a1", 4_000);
    expect(counts["aws-a1"]).toBeUndefined();
    expect(Math.abs((counts["aws-a2"] ?? 0) / 4_000 - 0.7)).toBeLessThan(0.04);
    expect(Math.abs((counts["aws-b"] ?? 0) / 4_000 - 0.3)).toBeLessThan(0.04);
  });
});

describe("panic mode", () => {
  it("with outlier detection (threshold 0) never panics: everything unhealthy means no endpoint (503 UH)", () => {
    const c = cluster([ep("a"), ep("b")], undefined, 0);
    expect(spread(c, undefined, () => false, 10)).toEqual({ none: 10 });
  });

  it("with Envoy's default 50% threshold balances over every endpoint once fewer than half are healthy", () => {
    const c = cluster([ep("a"), ep("b"), ep("c")], undefined, 50);
    expect(Object.keys(spread(c, undefined, (a) => a === "a", 300)).sort()).toEqual(["a", "b", "c"]);
    expect(Object.keys(spread(c, undefined, (a) => a !== "c", 300)).sort()).toEqual(["a", "b"]);
  });

  it("in total panic (nothing healthy at any level) spreads traffic over every level by its endpoint count, as Envoy does", () => {
    const c = cluster(multiCloud, { failover: true }, 50);
    const counts = spread(c, "aws/us-east-1/us-east-1a", () => false, 5_000);
    // Five endpoints, one each in four levels but two in the client's subzone: 2/5 there, 1/5 in each other level.
    expect(Math.abs(((counts["aws-a1"] ?? 0) + (counts["aws-a2"] ?? 0)) / 5_000 - 0.4)).toBeLessThan(0.03);
    for (const far of ["aws-b", "aws-west", "gcp"]) expect(Math.abs((counts[far] ?? 0) / 5_000 - 0.2)).toBeLessThan(0.03);
  });
});

describe("distribute", () => {
  const endpoints = [ep("east-a", "us/east/a"), ep("east-b", "us/east/b"), ep("west", "us/west/a"), ep("eu", "eu/west/a")];

  it("splits by the weights of the first `from` that matches the client; unlisted localities get nothing", () => {
    const c = cluster(endpoints, { distribute: [{ from: "us/east/*", to: [["us/east/*", 80], ["us/west/*", 20]] }] });
    const counts = spread(c, "us/east/a", () => true, 5_000);
    expect(counts.eu).toBeUndefined();
    expect(Math.abs(((counts["east-a"] ?? 0) + (counts["east-b"] ?? 0)) / 5_000 - 0.8)).toBeLessThan(0.03);
    expect(Math.abs((counts.west ?? 0) / 5_000 - 0.2)).toBeLessThan(0.03);
    // A client the rule does not cover is balanced over every locality.
    expect(Object.keys(spread(c, "eu/west/a", () => true, 400)).sort()).toEqual(["east-a", "east-b", "eu", "west"]);
  });
});

describe("request locality from request.cf", () => {
  const resolver = new LocalityResolver({
    rules: [
      { colos: ["FRA", "AMS"], locality: "gcp/europe-west3/a" },
      { countries: ["US"], regions: ["US-CA", "US-OR"], locality: "aws/us-west-2/us-west-2a" },
      { continents: ["NA"], locality: "aws/us-east-1/us-east-1a" },
    ],
    default: "aws/us-east-1/us-east-1b",
  });

  it("takes the first rule whose fields all match, else the default", () => {
    expect(resolver.resolve({ colo: "FRA", country: "DE", continent: "EU" })).toBe("gcp/europe-west3/a");
    expect(resolver.resolve({ colo: "SJC", country: "US", continent: "NA", regionCode: "CA" })).toBe("aws/us-west-2/us-west-2a");
    expect(resolver.resolve({ colo: "DFW", country: "US", continent: "NA", regionCode: "TX" })).toBe("aws/us-east-1/us-east-1a");
    expect(resolver.resolve({ colo: "NRT", country: "JP", continent: "AS" })).toBe("aws/us-east-1/us-east-1b");
    expect(new LocalityResolver(undefined).resolve({ colo: "FRA" })).toBeUndefined();
  });

  it("reads a request's cf only when a rule needs it (Cloudflare builds it on first read)", () => {
    let reads = 0;
    const request = {
      get cf() {
        reads++;
        return { colo: "AMS", country: "NL", continent: "EU" };
      },
    };
    expect(new LocalityResolver({ rules: [], default: "only/default" }).resolveFor(request)).toBe("only/default");
    expect(new LocalityResolver(undefined).resolveFor(request)).toBeUndefined();
    expect(reads).toBe(0);
    expect(resolver.resolveFor(request)).toBe("gcp/europe-west3/a");
    expect(reads).toBe(1);
  });
});

describe("one level, one locality (the shape without localityLbSetting)", () => {
  const c = cluster([ep("a"), ep("b"), ep("c")], undefined, 50);
  const pick = (healthy: (a: string) => boolean, exclude?: Set<number>) =>
    pickEndpoint({ cluster: c, client: undefined, gatewayLabels: undefined, healthy: (j) => healthy(c.endpoints[j]!.address), exclude, balancer: new Balancer(() => 0.5), random: () => 0.5 });

  it("round-robins over every endpoint when all are healthy", () => {
    expect(spread(c, undefined, () => true, 300)).toEqual({ a: 100, b: 100, c: 100 });
  });

  it("leaves an unhealthy endpoint out while at least the panic threshold is healthy", () => {
    expect(spread(c, undefined, (a) => a !== "b", 300)).toEqual({ a: 150, c: 150 });
  });

  it("returns the one endpoint left, with its index, level and no panic", () => {
    expect(pick((a) => a !== "a", new Set([1]))).toEqual({ index: 2, endpoint: c.endpoints[2], level: 0, panic: false });
  });

  it("goes back to an endpoint an earlier attempt used when every usable one was tried", () => {
    expect(pick((a) => a === "a" || a === "b", new Set([0, 1]))?.endpoint.address).toMatch(/^[ab]$/);
    expect(pick(() => true, new Set([0, 1, 2]))).toBeDefined();
  });

  it("in panic picks among all endpoints, healthy or not", () => {
    const picked = pick((a) => a === "a", new Set([0]));
    expect(picked?.panic).toBe(true);
    expect(picked?.index).not.toBe(0);
  });
});
