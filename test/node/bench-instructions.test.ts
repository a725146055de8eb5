/**
 * `npm run bench:instructions` reads callgrind's dumps and reports the
 * passthrough's count over each contender's: the throughput ratio to expect
 * when both are CPU-bound.
 */
import { describe, expect, it } from "vitest";
import { callgrindTotal, instructionTable } from "../../bench/instructions-report.ts";

describe("callgrindTotal", () => {
  it("reads the totals line of a dump", () => {
    const dump = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 9618\nevents: Ir\nsummary: 0\n\nfn=(1) main\n3 12\n\ntotals: 948377846\n";
    expect(callgrindTotal(dump)).toBe(948377846);
  });

  it("falls back to the summary line", () => {
    expect(callgrindTotal("events: Ir\nsummary: 1234\n")).toBe(1234);
  });

  it("refuses what is not a dump", () => {
    expect(() => callgrindTotal("<html>")).toThrow(/not a callgrind dump/);
  });
});

describe("instructionTable", () => {
  const run = { requests: 2000, rounds: 3, warmup: 3000 };

  it("gives each row's median round and the passthrough's median over it", () => {
    const table = instructionTable(
      [
        { id: "passthrough", label: "passthrough", perRequest: [480_000, 456_000, 463_000] },
        { id: "isthmus-minimal", label: "minimal", perRequest: [742_000, 716_000, 719_000] },
      ],
      run,
    );
    expect(table).toContain("| passthrough (`passthrough`) | 463k | 480k, 456k, 463k | 100% |");
    // 463 / 719 = 64%
    expect(table).toContain("| minimal (`isthmus-minimal`) | 719k | 742k, 716k, 719k | 64% |");
  });

  it("leaves the ratio out without a passthrough row", () => {
    const table = instructionTable([{ id: "isthmus", label: "realistic", perRequest: [1_600_000] }], run);
    expect(table).toContain("| realistic (`isthmus`) | 1600k | 1600k | — |");
  });
});
