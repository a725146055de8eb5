/**
 * Outlier detection as Envoy does it (semantics reference §2.5, §7.21–22):
 * consecutive errors eject inline, the sweep returns endpoints on the
 * interval grid, ejection time grows linearly with consecutive ejections
 * and decays while healthy, maxEjectionPercent caps ejections.
 */
import { describe, expect, it } from "vitest";
import type { OutlierDetectionDef } from "../../../src/config/snapshot.ts";
import { OutlierDetector, type Observation } from "../../../src/upstream/outlier.ts";

const def = (over: Partial<OutlierDetectionDef> = {}): OutlierDetectionDef => ({
  consecutive5xxErrors: 3,
  consecutiveGatewayErrors: 0,
  splitExternalLocalOriginErrors: false,
  consecutiveLocalOriginFailures: 5,
  intervalMs: 1_000,
  baseEjectionTimeMs: 10_000,
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 100,
  ...over,
});
const s500: Observation = { type: "status", status: 500 };
const s503: Observation = { type: "status", status: 503 };
const s200: Observation = { type: "status", status: 200 };

describe("consecutive errors", () => {
  it("ejects on the Nth consecutive 5xx, and a success in between resets the count", () => {
    const d = def();
    const od = new OutlierDetector(d, 0);
    expect(od.observe("a", s500, d, 3, 100)).toBeUndefined();
    expect(od.observe("a", s500, d, 3, 110)).toBeUndefined();
    expect(od.observe("a", s200, d, 3, 120)).toBeUndefined();
    expect(od.observe("a", s500, d, 3, 130)).toBeUndefined();
    expect(od.observe("a", s500, d, 3, 140)).toBeUndefined();
    const ejection = od.observe("a", s500, d, 3, 150);
    expect(ejection).toMatchObject({ endpoint: "a", reason: "consecutive-5xx", at: 150, multiplier: 1 });
    expect(od.isEjected("a", d, 151)).toBe(true);
    expect(od.isEjected("b", d, 151)).toBe(false);
  });

  it("counts connect failures and timeouts as 503 and 504 (no split of local-origin errors)", () => {
    const d = def({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2 });
    const od = new OutlierDetector(d, 0);
    expect(od.observe("a", { type: "connect-failure" }, d, 2, 1)).toBeUndefined();
    expect(od.observe("a", { type: "timeout" }, d, 2, 2)?.reason).toBe("consecutive-gateway-errors");
  });

  it("counts only 502/503/504 as gateway errors; a 500 resets that count", () => {
    const d = def({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2 });
    const od = new OutlierDetector(d, 0);
    od.observe("a", s503, d, 2, 1);
    od.observe("a", s500, d, 2, 2);
    expect(od.observe("a", s503, d, 2, 3)).toBeUndefined();
    expect(od.observe("a", s503, d, 2, 4)?.reason).toBe("consecutive-gateway-errors");
  });

  it("with splitExternalLocalOriginErrors counts local failures separately, reset by any response", () => {
    const d = def({ consecutive5xxErrors: 3, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2 });
    const od = new OutlierDetector(d, 0);
    od.observe("a", { type: "connect-failure" }, d, 2, 1);
    od.observe("a", s500, d, 2, 2);
    expect(od.observe("a", { type: "connect-failure" }, d, 2, 3)).toBeUndefined();
    expect(od.observe("a", { type: "timeout" }, d, 2, 4)?.reason).toBe("consecutive-local-origin-failures");
  });

  it("does nothing with consecutive5xxErrors: 0 and no gateway errors", () => {
    const d = def({ consecutive5xxErrors: 0 });
    const od = new OutlierDetector(d, 0);
    for (let i = 0; i < 20; i++) expect(od.observe("a", s500, d, 2, i)).toBeUndefined();
  });
});

describe("maxEjectionPercent", () => {
  it("skips an ejection that would take the ejected share above the cap (the default 10% ejects nothing among 3)", () => {
    const d = def({ maxEjectionPercent: 10 });
    const od = new OutlierDetector(d, 0);
    for (let i = 0; i < 10; i++) expect(od.observe("a", s500, d, 3, i)).toBeUndefined();
    expect(od.isEjected("a", d, 20)).toBe(false);
  });

  it("allows one of three at 34% but not a second, counting ejections made by other isolates", () => {
    const d = def({ maxEjectionPercent: 34 });
    const od = new OutlierDetector(d, 0);
    for (let i = 0; i < 3; i++) od.observe("a", s500, d, 3, i);
    expect(od.isEjected("a", d, 5)).toBe(true);
    for (let i = 0; i < 3; i++) od.observe("b", s500, d, 3, 10 + i);
    expect(od.isEjected("b", d, 20)).toBe(false);
    const other = new OutlierDetector(d, 0);
    for (let i = 0; i < 3; i++) expect(other.observe("c", s500, d, 3, i, 1)).toBeUndefined();
  });

  it("tries again after as many errors more when the cap spared an endpoint, as Envoy resets the count either way", () => {
    const d = def({ maxEjectionPercent: 34, baseEjectionTimeMs: 10_000, intervalMs: 1_000 });
    const od = new OutlierDetector(d, 0);
    for (let i = 0; i < 3; i++) od.observe("a", s500, d, 3, i);
    // b reaches the threshold while a is out: spared by the cap, and its count starts again.
    for (let i = 0; i < 3; i++) expect(od.observe("b", s500, d, 3, 10 + i)).toBeUndefined();
    expect(od.state("b", d, 20).consecutive5xx).toBe(0);
    // a comes back at the first sweep 10 s after its ejection; b keeps failing: ejected at its next third error, not never.
    expect(od.isEjected("a", d, 11_000)).toBe(false);
    expect(od.observe("b", s500, d, 3, 11_100)).toBeUndefined();
    expect(od.observe("b", s500, d, 3, 11_200)).toBeUndefined();
    expect(od.observe("b", s500, d, 3, 11_300)).toMatchObject({ endpoint: "b", reason: "consecutive-5xx" });
  });
});

describe("ejection time", () => {
  const eject = (od: OutlierDetector, d: OutlierDetectionDef, at: number) => {
    let e;
    for (let i = 0; i < d.consecutive5xxErrors; i++) e = od.observe("a", s500, d, 2, at);
    return e;
  };

  it("returns the endpoint at the first sweep at or after base × multiplier, on the interval grid", () => {
    const d = def({ baseEjectionTimeMs: 10_000, intervalMs: 1_000 });
    const od = new OutlierDetector(d, 0);
    const e = eject(od, d, 2_500);
    expect(e?.until).toBe(13_000);
    expect(od.isEjected("a", d, 12_999)).toBe(true);
    expect(od.isEjected("a", d, 13_000)).toBe(false);
  });

  it("grows linearly with consecutive ejections (base, 2×base, 3×base), not exponentially", () => {
    const d = def({ baseEjectionTimeMs: 10_000, intervalMs: 1_000 });
    const od = new OutlierDetector(d, 0);
    expect(eject(od, d, 500)?.until).toBe(11_000);
    expect(eject(od, d, 11_000)?.until).toBe(31_000);
    expect(eject(od, d, 31_000)?.until).toBe(61_000);
  });

  it("is capped at max(300 s, base)", () => {
    const d = def({ baseEjectionTimeMs: 200_000, maxEjectionTimeMs: 300_000, intervalMs: 1_000 });
    const od = new OutlierDetector(d, 0);
    expect(eject(od, d, 0)?.until).toBe(200_000);
    expect(eject(od, d, 200_000)?.until).toBe(500_000);
  });

  it("decays the multiplier by one per healthy interval after the endpoint returns", () => {
    const d = def({ baseEjectionTimeMs: 10_000, intervalMs: 1_000 });
    const od = new OutlierDetector(d, 0);
    eject(od, d, 500); // ×1, back at 11 000
    eject(od, d, 11_000); // ×2, back at 31 000
    // Healthy from 31 000: the sweeps at 32 000 and 33 000 each take one off.
    expect(od.state("a", d, 33_500).multiplier).toBe(0);
    expect(eject(od, d, 33_500)?.multiplier).toBe(1);
  });

  it("resets the consecutive counters when the endpoint returns", () => {
    const d = def();
    const od = new OutlierDetector(d, 0);
    eject(od, d, 0);
    expect(od.isEjected("a", d, 10_000)).toBe(false);
    expect(od.observe("a", s500, d, 2, 10_001)).toBeUndefined();
    expect(od.state("a", d, 10_002).consecutive5xx).toBe(1);
  });
});
