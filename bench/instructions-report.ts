/**
 * The pure part of `npm run bench:instructions` (bench/instructions.ts):
 * reading a callgrind dump's total and rendering the table.
 */
import { median } from "./report.ts";

export interface InstructionRow {
  id: string;
  label: string;
  /** Instructions per request, one per round. */
  perRequest: number[];
  /** Instructions per request of each counted chunk, when the subject was counted in chunks. */
  chunks?: number[];
  /** Of each chunk's, those in V8's optimizing compilers (`compilerInstructions`), per request. */
  compiling?: number[];
}

/**
 * The instructions a `callgrind_annotate` listing charges to V8's
 * optimizing compilers (TurboFan, Turboshaft, Maglev): code compiled
 * again after a major GC threw it away, in bursts (bench/NOTES.md, twelfth
 * and thirteenth passes).
 *
 * @example
 * compilerInstructions("1,200 ( 0.01%)  ???:v8::internal::compiler::GraphReducer::ReduceTop() [/x/workerd]\n"); // 1200
 */
export function compilerInstructions(listing: string): number {
  let total = 0;
  for (const line of listing.split("\n")) {
    const m = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line);
    if (!m || (m[2] as string).includes("PROGRAM TOTALS")) continue;
    if (/v8::internal::(compiler|maglev|turboshaft)::/.test(m[2] as string)) total += Number((m[1] as string).replaceAll(",", ""));
  }
  return total;
}

/**
 * The instruction count of a callgrind dump (its `totals:` line, or
 * `summary:` in dumps that have no totals).
 *
 * @example
 * callgrindTotal("events: Ir\nsummary: 0\ntotals: 948377846\n"); // 948377846
 */
export function callgrindTotal(dump: string): number {
  const m = /^totals:\s+(\d+)/m.exec(dump) ?? /^summary:\s+(\d+)/m.exec(dump);
  if (!m) throw new Error("not a callgrind dump: it has no totals or summary line");
  return Number(m[1]);
}

/**
 * A Markdown table: median instructions per request (thousands), every
 * round, for subjects counted in chunks the median chunk and the median
 * chunk less its compiling, and the passthrough's count divided by each
 * row's (the throughput ratio to expect when both are CPU-bound), when a
 * `passthrough` row exists. With the realistic config counted both with
 * telemetry on (`isthmus`) and off (`isthmus-telemetry-off`), a line gives
 * telemetry's share (`telemetryShare`).
 *
 * A round's mean holds whatever recompiling (V8 compiling again after a
 * major GC) fell into it, up to ±20% for the realistic config; the median
 * chunk less its compiling is the request's own work (bench/NOTES.md,
 * twelfth and thirteenth passes).
 */
export function instructionTable(rows: readonly InstructionRow[], run: { requests: number; rounds: number; warmup: number }): string {
  const base = rows.find((r) => r.id === "passthrough");
  const k = (n: number) => `${(n / 1000).toFixed(0)}k`;
  const lines = [
    `Instructions per request inside workerd (callgrind; ${run.rounds} rounds of ${run.requests} requests after ${run.warmup} to warm up; median round):`,
    "",
    "| contender | instructions per request | rounds | median chunk | median chunk without compiling | passthrough ÷ this |",
    "|---|---|---|---|---|---|",
  ];
  for (const row of rows) {
    const m = median(row.perRequest);
    const ratio = base ? `${((median(base.perRequest) / m) * 100).toFixed(0)}%` : "—";
    const chunk = row.chunks?.length ? `${k(median(row.chunks))} (${row.chunks.length} chunks)` : "—";
    const own = ownWork(row);
    lines.push(`| ${row.label} (\`${row.id}\`) | ${k(m)} | ${row.perRequest.map(k).join(", ")} | ${chunk} | ${own === undefined ? "—" : k(own)} | ${ratio} |`);
  }
  const share = telemetryShare(rows);
  if (share) lines.push("", share);
  return lines.join("\n");
}

/** The median over chunks of each chunk's instructions less its compiling; undefined unless both are known. */
function ownWork(row: InstructionRow): number | undefined {
  const { chunks, compiling } = row;
  if (!chunks?.length || compiling?.length !== chunks.length) return undefined;
  return median(chunks.map((c, i) => c - (compiling[i] as number)));
}

/**
 * What telemetry costs the realistic request, on − off, and the throughput
 * difference that makes when CPU-bound (1 − off/on, the target's measure);
 * undefined without both rows. Judged by the median chunk without
 * compiling when both subjects were counted in chunks (`--chunked`) and
 * annotated, then by the median chunk; else by the median round of each.
 */
export function telemetryShare(rows: readonly InstructionRow[]): string | undefined {
  const on = rows.find((r) => r.id === "isthmus");
  const off = rows.find((r) => r.id === "isthmus-telemetry-off");
  if (!on || !off) return undefined;
  const line = (by: string, a: number, b: number) => {
    // CPU-bound throughput follows 1 / instructions: on serves off/on as many requests, so 1 − off/on fewer.
    const fewer = (1 - b / a) * 100;
    return `Telemetry (on − off, ${by}): ${((a - b) / 1000).toFixed(0)}k instructions per request (+${(((a - b) / b) * 100).toFixed(1)}% over off), so ${fewer.toFixed(1)}% less throughput when CPU-bound (target ≤ 5%).`;
  };
  const [ownOn, ownOff] = [ownWork(on), ownWork(off)];
  if (ownOn !== undefined && ownOff !== undefined) {
    return [line("median chunk without compiling, each", ownOn, ownOff), line("median chunk of each", median(on.chunks as number[]), median(off.chunks as number[]))].join("\n");
  }
  if (on.chunks?.length && off.chunks?.length) return line("median chunk of each", median(on.chunks), median(off.chunks));
  return line("median round of each", median(on.perRequest), median(off.perRequest));
}
