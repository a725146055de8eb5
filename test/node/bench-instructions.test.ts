/**
 * `npm run bench:instructions` reads callgrind's dumps and reports the
 * passthrough's count over each contender's: the throughput ratio to expect
 * when both are CPU-bound.
 */
import { describe, expect, it } from "vitest";
import { callgrindTotal, compilerInstructions, instructionTable, ladderTable, LADDER, type InstructionRow } from "../../bench/instructions-report.ts";

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
    expect(table).toContain("| passthrough (`passthrough`) | 463k | 480k, 456k, 463k | — | — | 100% |");
    // 463 / 719 = 64%
    expect(table).toContain("| minimal (`isthmus-minimal`) | 719k | 742k, 716k, 719k | — | — | 64% |");
  });

  it("leaves the ratio out without a passthrough row", () => {
    const table = instructionTable([{ id: "isthmus", label: "realistic", perRequest: [1_600_000] }], run);
    expect(table).toContain("| realistic (`isthmus`) | 1600k | 1600k | — | — | — |");
  });
});

describe("telemetry's share", () => {
  const run = { requests: 1500, rounds: 3, warmup: 4000 };

  it("compares median chunks when both subjects were counted in chunks, as a throughput difference", () => {
    const table = instructionTable(
      [
        { id: "isthmus-telemetry-off", label: "off", perRequest: [1_240_000, 1_243_000, 1_245_000], chunks: [1_250_000, 1_238_000, 1_240_000, 1_900_000] },
        // A round holding a recompilation burst is far above the typical chunk.
        { id: "isthmus", label: "on", perRequest: [1_355_000, 1_605_000, 1_374_000], chunks: [1_331_000, 1_325_000, 1_340_000, 2_892_000] },
      ],
      run,
    );
    expect(table).toContain("| on (`isthmus`) | 1374k | 1355k, 1605k, 1374k | 1336k (4 chunks) | — | — |");
    // median chunks 1,336k and 1,245k: +91k, +7.3% over off, 1 − 1245/1336 = 6.8% less throughput.
    expect(table).toContain("Telemetry (on − off, by the median chunk of each): 91k instructions per request (+7.3% over off), so 6.8% less throughput when CPU-bound (target ≤ 5%).");
  });

  it("falls back to median rounds when off was counted whole", () => {
    const table = instructionTable(
      [
        { id: "isthmus-telemetry-off", label: "off", perRequest: [1_000_000] },
        { id: "isthmus", label: "on", perRequest: [1_100_000], chunks: [1_050_000] },
      ],
      run,
    );
    expect(table).toContain("| off (`isthmus-telemetry-off`) | 1000k | 1000k | — | — | — |");
    expect(table).toContain("Telemetry (on − off, by the median round of each): 100k instructions per request (+10.0% over off), so 9.1% less throughput when CPU-bound (target ≤ 5%).");
  });
});

describe("compilerInstructions", () => {
  it("sums what V8's optimizing compilers did, and nothing else", () => {
    const listing = [
      "--------------------------------------------------------------------------------",
      "1,939,221,301 (100.0%)  PROGRAM TOTALS",
      "  12,000 ( 0.01%)  ???:v8::internal::compiler::GraphReducer::ReduceTop() [/x/workerd]",
      "   3,400 ( 0.00%)  ???:v8::internal::maglev::MaglevGraphBuilder::Build() [/x/workerd]",
      "     600 ( 0.00%)  ???:v8::internal::compiler::turboshaft::Assembler::Emit() [/x/workerd]",
      "  90,000 ( 0.05%)  ???:v8::internal::Scavenger::Process(v8::JobDelegate*) [/x/workerd]",
      "  50,000 ( 0.03%)  ???:0x000000000a1b2c3d [???]",
    ].join("\n");
    expect(compilerInstructions(listing)).toBe(16_000);
  });

  it("judges telemetry by each chunk less its compiling when both subjects were annotated", () => {
    const table = instructionTable(
      [
        // The off subject's second chunk compiled 60k per request, the on subject's third 1,500k.
        { id: "isthmus-telemetry-off", label: "off", perRequest: [1_250_000], chunks: [1_230_000, 1_300_000, 1_240_000], compiling: [0, 60_000, 5_000] },
        { id: "isthmus", label: "on", perRequest: [1_400_000], chunks: [1_310_000, 1_320_000, 2_800_000], compiling: [0, 4_000, 1_500_000] },
      ],
      { requests: 1500, rounds: 1, warmup: 4000 },
    );
    expect(table).toContain("| on (`isthmus`) | 1400k | 1400k | 1320k (3 chunks) | 1310k | — |");
    // Without compiling: off 1,230k, 1,240k, 1,235k → 1,235k; on 1,310k, 1,316k, 1,300k → 1,310k.
    expect(table).toContain("Telemetry (on − off, by the median chunk without compiling of each): 75k instructions per request (+6.1% over off), so 5.7% less throughput when CPU-bound (target ≤ 5%).");
    expect(table).toContain("Telemetry (on − off, by the median chunk of each): 80k instructions per request");
  });
});

describe("telemetry's share over several passes (--repeat)", () => {
  it("reads each pass's on against its own off, then the median of the passes", () => {
    const pass = (p: number, off: number, on: number): InstructionRow[] => [
      { id: "passthrough", label: "passthrough", pass: p, perRequest: [470_000 + p * 10_000] },
      { id: "isthmus-telemetry-off", label: "off", pass: p, perRequest: [off], chunks: [off, off + 1_000, off - 1_000], compiling: [0, 0, 0] },
      { id: "isthmus", label: "on", pass: p, perRequest: [on], chunks: [on, on + 2_000, on - 2_000], compiling: [0, 0, 0] },
    ];
    // Pass 1: off 1,240k, on 1,321k (6.1%); pass 2: off 1,266k, on 1,316k (3.8%); pass 3: off 1,250k, on 1,310k (4.6%).
    const table = instructionTable([...pass(1, 1_240_000, 1_321_000), ...pass(2, 1_266_000, 1_316_000), ...pass(3, 1_250_000, 1_310_000)], { requests: 1500, rounds: 1, warmup: 4000, passes: 3 });
    expect(table).toContain("; 3 passes over the subjects, one after the other):");
    // Each row against its own pass's passthrough: 480k / 1,321k, 490k / 1,316k.
    expect(table).toContain("| on, pass 1 (`isthmus`) | 1321k | 1321k | 1321k (3 chunks) | 1321k | 36% |");
    expect(table).toContain("| on, pass 2 (`isthmus`) | 1316k | 1316k | 1316k (3 chunks) | 1316k | 37% |");
    expect(table).toContain(
      "Telemetry (1 − off/on by the median chunk without compiling of each, pass by pass): 6.1%, 3.8%, 4.6% (on − off 81k, 50k, 60k instructions per request); median of 3 passes 4.6% less throughput when CPU-bound (target ≤ 5%).",
    );
    expect(table).toContain("Telemetry (1 − off/on by the median chunk of each, pass by pass): 6.1%, 3.8%, 4.6%");
  });

  it("names a pass that could not be read by a measure instead of leaving it out silently", () => {
    const table = instructionTable(
      [
        { id: "isthmus-telemetry-off", label: "off", pass: 1, perRequest: [1_000_000], chunks: [1_000_000], compiling: [0] },
        { id: "isthmus", label: "on", pass: 1, perRequest: [1_060_000], chunks: [1_060_000], compiling: [10_000] },
        // Pass 2's dumps were not annotated (no compiling known): read by the median chunk alone.
        { id: "isthmus-telemetry-off", label: "off", pass: 2, perRequest: [1_000_000], chunks: [1_000_000] },
        { id: "isthmus", label: "on", pass: 2, perRequest: [1_040_000], chunks: [1_040_000] },
      ],
      { requests: 1500, rounds: 1, warmup: 4000, passes: 2 },
    );
    // Pass 1 without compiling: 1 − 1000/1050 = 4.8%; by the median chunk 1 − 1000/1060 = 5.7% and pass 2 1 − 1000/1040 = 3.8%, median 4.8%.
    expect(table).toContain("Telemetry (1 − off/on by the median chunk without compiling of each, pass by pass): 4.8% (on − off 50k instructions per request); median of 1 pass 4.8% less throughput when CPU-bound (target ≤ 5%). Not read by this measure: pass 2.");
    expect(table).toContain("Telemetry (1 − off/on by the median chunk of each, pass by pass): 5.7%, 3.8% (on − off 60k, 40k instructions per request); median of 2 passes 4.8% less throughput when CPU-bound (target ≤ 5%).");
  });

  it("leaves a pass without both subjects out of telemetry's share", () => {
    const table = instructionTable(
      [
        { id: "isthmus-telemetry-off", label: "off", pass: 1, perRequest: [1_000_000] },
        { id: "isthmus", label: "on", pass: 1, perRequest: [1_050_000] },
        { id: "isthmus", label: "on", pass: 2, perRequest: [2_000_000] },
      ],
      { requests: 1500, rounds: 1, warmup: 4000, passes: 2 },
    );
    // Only pass 1 pairs: one pass, read as such (1 − 1000/1050 = 4.8%).
    expect(table).toContain("Telemetry (on − off, by the median round of each): 50k instructions per request (+5.0% over off), so 4.8% less throughput when CPU-bound (target ≤ 5%).");
  });
});

describe("the feature ladder (--ladder)", () => {
  const run = { requests: 1500, rounds: 3, warmup: 4000 };
  /** A ladder row counted whole: three rounds, each with its compiling. */
  const row = (id: string, rounds: number[], compiling: number[]): InstructionRow => ({ id, label: id, perRequest: rounds, compiling });

  it("charges each part the difference between the steps either side of it, each round less its compiling", () => {
    const rows = [
      // A round holding a recompiling burst: without compiling it is like the others.
      row("isthmus-telemetry-off", [1_250_000, 1_450_000, 1_260_000], [10_000, 200_000, 10_000]),
      row("ladder-no-ratelimit", [950_000, 960_000, 955_000], [0, 5_000, 0]),
      row("ladder-no-authorization", [900_000, 900_000, 900_000], [0, 0, 0]),
    ];
    const table = ladderTable(rows) as string;
    // Without compiling: 1,240k, 1,250k, 1,250k → median 1,250k; 950k, 955k, 955k → 955k; 900k.
    expect(table).toContain("| the GLOBAL rate limit (one Durable Object call per request) | 295k | 23.6% |");
    expect(table).toContain("| the 20 AuthorizationPolicies | 55k | 4.4% |");
    expect(table).toContain("| what is left (`ladder-no-authorization`) | 900k | 72.0% |");
    expect(instructionTable(rows, run)).toContain(table);
    // The whole-counted row's own work is shown too.
    expect(instructionTable(rows, run)).toContain("| isthmus-telemetry-off (`isthmus-telemetry-off`) | 1260k | 1250k, 1450k, 1260k | — | 1250k | — |");
  });

  it("skips a step whose subject was not counted, and needs the first two", () => {
    const rows = [row("isthmus-telemetry-off", [1_000_000], [0]), row("ladder-no-ratelimit", [700_000], [0]), row("passthrough", [400_000], [0])];
    const table = ladderTable(rows) as string;
    expect(table).toContain("| the GLOBAL rate limit (one Durable Object call per request) | 300k | 30.0% |");
    expect(table).not.toContain("20 AuthorizationPolicies");
    expect(table).toContain("| what is left (`passthrough`) | 400k | 40.0% |");
    expect(ladderTable([row("isthmus-telemetry-off", [1_000_000], [0])])).toBeUndefined();
  });

  it("runs from the realistic config down to the passthrough", () => {
    expect(LADDER[0]?.id).toBe("isthmus-telemetry-off");
    expect(LADDER.at(-1)?.id).toBe("passthrough");
    expect(LADDER.slice(1).every((s) => s.part !== undefined)).toBe(true);
  });

  it("reads telemetry by rounds less their compiling when neither subject was chunked", () => {
    const table = instructionTable([row("isthmus-telemetry-off", [1_000_000, 1_200_000, 1_010_000], [0, 200_000, 0]), row("isthmus", [1_050_000, 1_060_000, 1_300_000], [0, 0, 250_000])], run);
    // Without compiling: off 1,000k, on 1,050k: 1 − 1000/1050 = 4.8%; by rounds: off 1,010k, on 1,060k: 4.7%.
    expect(table).toContain("Telemetry (on − off, by the median round without compiling of each): 50k instructions per request (+5.0% over off), so 4.8% less throughput when CPU-bound (target ≤ 5%).");
    expect(table).toContain("by the median round of each");
  });
});
