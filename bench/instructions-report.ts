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
 * round, and the passthrough's count divided by each row's (the throughput
 * ratio to expect when both are CPU-bound), when a `passthrough` row exists.
 */
export function instructionTable(rows: readonly InstructionRow[], run: { requests: number; rounds: number; warmup: number }): string {
  const base = rows.find((r) => r.id === "passthrough");
  const k = (n: number) => `${(n / 1000).toFixed(0)}k`;
  const lines = [
    `Instructions per request inside workerd (callgrind; ${run.rounds} rounds of ${run.requests} requests after ${run.warmup} to warm up; median round):`,
    "",
    "| contender | instructions per request | rounds | passthrough ÷ this |",
    "|---|---|---|---|",
  ];
  for (const row of rows) {
    const m = median(row.perRequest);
    const ratio = base ? `${((median(base.perRequest) / m) * 100).toFixed(0)}%` : "—";
    lines.push(`| ${row.label} (\`${row.id}\`) | ${k(m)} | ${row.perRequest.map(k).join(", ")} | ${ratio} |`);
  }
  return lines.join("\n");
}
