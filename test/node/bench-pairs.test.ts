/**
 * The benchmark judges its throughput targets on back-to-back pairs: each
 * half of a pair is matched with the other half of the same pair, never
 * with a half measured minutes apart.
 */
import { describe, expect, it } from "vitest";
import { median, pairLabel, pairs, telemetryVerdict, type Measurement } from "../../bench/report.ts";

const half = (contender: string, round: number, load: string, throughput: number, cpuUsPerRequest: number): Measurement => ({
  contender,
  round,
  load,
  sent: 0,
  completed: 0,
  non200: 0,
  failed: 0,
  throughput,
  latenciesUs: [],
  cpuUsPerRequest,
});

describe("bench pairs", () => {
  it("matches the halves of each pair by round and couple", () => {
    const label = pairLabel("isthmus-minimal", "passthrough");
    const measurements = [
      half("passthrough", 0, label, 4000, 200),
      half("isthmus-minimal", 0, label, 3000, 300),
      // The other order, on a slower machine: the ratio holds although both halves moved.
      half("isthmus-minimal", 1, label, 1500, 600),
      half("passthrough", 1, label, 2000, 400),
      // A half without its partner (the run stopped) and other loads are left out.
      half("isthmus-minimal", 2, label, 9999, 1),
      half("passthrough", 1, "saturation", 8000, 100),
      half("passthrough", 1, pairLabel("isthmus", "passthrough"), 8000, 100),
    ];
    const p = pairs(measurements, "isthmus-minimal", "passthrough");
    expect(p.ratio).toEqual([0.75, 0.75]);
    expect(p.cpuDeltaUs).toEqual([100, 200]);
    expect(p.cpuShare).toEqual([0.5, 0.5]);
    expect(pairs(measurements, "isthmus", "isthmus-telemetry-off").ratio).toEqual([]);
  });

  it("takes the median (the mean of the middle two for an even count)", () => {
    expect(median([0.9, 0.5, 0.7])).toBe(0.7);
    expect(median([0.4, 0.9, 0.5, 0.7])).toBeCloseTo(0.6);
    expect(median([])).toBeNaN();
  });
});

describe("the telemetry target from load pairs", () => {
  it("is judged on the median when the pairs agree", () => {
    expect(telemetryVerdict([0.01, 0.02, 0.03, 0.02, 0.04])).toBe("met");
    expect(telemetryVerdict([0.09, 0.1, 0.11, 0.12])).toBe("**not met**");
    expect(telemetryVerdict([-0.02, -0.03, -0.01])).toBe("met");
  });

  it("is not judged when the middle half of the pairs spreads more than the target's margin", () => {
    // This stop's run: a median near 0% from pairs between −32% and +19%.
    const verdict = telemetryVerdict([-0.32, -0.05, -0.03, -0.0, 0.01, 0.03, 0.15, 0.19]);
    // Quartiles at the 3rd and 6th of the 8 sorted pairs: −3% and +3%.
    expect(verdict).toMatch(/^not resolved by these pairs \(their middle half spreads over 6 points/);
    expect(verdict).toContain("bench:instructions");
    expect(telemetryVerdict([])).toMatch(/^not resolved/);
  });
});
