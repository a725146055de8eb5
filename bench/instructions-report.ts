/**
 * The pure part of `npm run bench:instructions` (bench/instructions.ts):
 * reading a callgrind dump's total and rendering the table.
 */
import { median } from "./report.ts";

export interface InstructionRow {
  id: string;
  label: string;
  /** Which pass over the subjects (`--repeat`) counted this row; undefined with one pass. */
  pass?: number;
  /** Instructions per request, one per round. */
  perRequest: number[];
  /** Instructions per request of each counted chunk, when the subject was counted in chunks. */
  chunks?: number[];
  /** Of each chunk's (or, counted whole, each round's), those in V8's optimizing compilers (`compilerInstructions`), per request. */
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
 * telemetry's share (`telemetryShare`); with the ladder's subjects
 * (`--ladder`), a table of what each part costs (`ladderTable`).
 *
 * A round's mean holds whatever recompiling (V8 compiling again after a
 * major GC) fell into it, up to ±20% for the realistic config; the median
 * chunk less its compiling is the request's own work (bench/NOTES.md,
 * twelfth and thirteenth passes).
 */
export function instructionTable(rows: readonly InstructionRow[], run: { requests: number; rounds: number; warmup: number; passes?: number }): string {
  const passes = run.passes ?? 1;
  const lines = [
    `Instructions per request inside workerd (callgrind; ${run.rounds} rounds of ${run.requests} requests after ${run.warmup} to warm up; median round${passes > 1 ? `; ${passes} passes over the subjects, one after the other` : ""}):`,
    "",
    "| contender | instructions per request | rounds | median chunk | without compiling (median chunk, else round) | passthrough ÷ this |",
    "|---|---|---|---|---|---|",
  ];
  for (const row of rows) {
    const m = median(row.perRequest);
    // Each row against the passthrough of its own pass.
    const base = rows.find((r) => r.id === "passthrough" && r.pass === row.pass);
    const ratio = base ? `${((median(base.perRequest) / m) * 100).toFixed(0)}%` : "—";
    const chunk = row.chunks?.length ? `${thousands(median(row.chunks))} (${row.chunks.length} chunks)` : "—";
    const own = ownWork(row);
    const label = row.pass === undefined ? row.label : `${row.label}, pass ${row.pass}`;
    lines.push(`| ${label} (\`${row.id}\`) | ${thousands(m)} | ${row.perRequest.map(thousands).join(", ")} | ${chunk} | ${own === undefined ? "—" : thousands(own)} | ${ratio} |`);
  }
  const share = telemetryShare(rows);
  if (share) lines.push("", share);
  const ladder = ladderTable(rows);
  if (ladder) lines.push("", ladder);
  return lines.join("\n");
}

/**
 * The median over chunks (or, for a subject counted whole, over rounds) of
 * each one's instructions less its compiling; undefined unless both are known.
 */
function ownWork(row: InstructionRow): number | undefined {
  const { compiling } = row;
  const parts = row.chunks?.length ? row.chunks : row.perRequest;
  if (parts.length === 0 || compiling?.length !== parts.length) return undefined;
  return median(parts.map((c, i) => c - (compiling[i] as number)));
}

/**
 * `--ladder`'s subjects, in order: the realistic config (telemetry off),
 * then one part left out at each step, down to the passthrough. `part`
 * names what the step from the subject before to this one leaves out.
 */
export const LADDER: readonly { id: string; part?: string }[] = [
  { id: "isthmus-telemetry-off" },
  { id: "ladder-no-ratelimit", part: "the GLOBAL rate limit (one Durable Object call per request)" },
  { id: "ladder-no-authorization", part: "the 20 AuthorizationPolicies" },
  { id: "ladder-no-jwt", part: "JWT authentication (a verified-token cache hit)" },
  { id: "ladder-no-retries", part: "the retry policy on every route" },
  { id: "isthmus-minimal", part: "999 more routes over 50 hosts (exact, prefix, regex, header and weighted matches)" },
  { id: "passthrough-envoy-headers", part: "the rest of Isthmus's pipeline (one route, above Envoy's header contract)" },
  { id: "passthrough", part: "Envoy's header contract" },
];

/**
 * What each part of the realistic config costs per request: the
 * difference between consecutive `LADDER` subjects, each read by its
 * median without compiling (median round where not annotated; the median
 * over passes with `--repeat`). Undefined unless the ladder's first two
 * subjects were counted.
 *
 * @example
 * ladderTable(rows); // "What each part of the realistic config costs …\n\n| part left out | … |"
 */
export function ladderTable(rows: readonly InstructionRow[]): string | undefined {
  const steps = LADDER.map(({ id, part }) => {
    const same = rows.filter((r) => r.id === id).map((r) => ownWork(r) ?? median(r.perRequest));
    return { id, part, value: same.length > 0 ? median(same) : undefined };
  });
  const top = steps[0]?.value;
  if (top === undefined || steps[1]?.value === undefined) return undefined;
  const share = (n: number) => `${((n / top) * 100).toFixed(1)}%`;
  const lines = [
    "What each part of the realistic config (telemetry off) costs per request: the ladder's subjects, each leaving one more part out (without compiling, else the median round):",
    "",
    "| part left out | instructions per request it cost | share of the realistic request |",
    "|---|---|---|",
  ];
  let last = { id: steps[0]?.id as string, value: top };
  for (const [i, step] of steps.entries()) {
    const before = steps[i - 1]?.value;
    if (step.value === undefined) continue;
    if (before !== undefined) lines.push(`| ${step.part} | ${thousands(before - step.value)} | ${share(before - step.value)} |`);
    last = { id: step.id, value: step.value };
  }
  lines.push(`| what is left (\`${last.id}\`) | ${thousands(last.value)} | ${share(last.value)} |`);
  return lines.join("\n");
}

/** Instructions in thousands, as the table and the telemetry lines print them: `1321k`. */
function thousands(n: number): string {
  return `${(n / 1000).toFixed(0)}k`;
}

/** One reading of telemetry's cost: the telemetry-on and -off subjects' instructions per request by one measure. */
interface Reading {
  by: string;
  on: number;
  off: number;
}

/**
 * The readings of one on/off pair, the preferred first: the median chunk
 * without compiling and the median chunk when both subjects were counted
 * in chunks (`--chunked`) and annotated; the median chunk when only
 * chunked; else the median round of each.
 */
function readings(on: InstructionRow, off: InstructionRow): Reading[] {
  const [ownOn, ownOff] = [ownWork(on), ownWork(off)];
  const chunked = on.chunks?.length && off.chunks?.length ? { by: "median chunk", on: median(on.chunks), off: median(off.chunks) } : undefined;
  if (ownOn !== undefined && ownOff !== undefined && chunked) return [{ by: "median chunk without compiling", on: ownOn, off: ownOff }, chunked];
  if (chunked) return [chunked];
  const round = { by: "median round", on: median(on.perRequest), off: median(off.perRequest) };
  // Rounds less their compiling only when neither was chunked: a chunked subject's own work is over chunks, not rounds.
  if (ownOn !== undefined && ownOff !== undefined && !on.chunks?.length && !off.chunks?.length) return [{ by: "median round without compiling", on: ownOn, off: ownOff }, round];
  return [round];
}

/** The measures `readings` gives, the preferred first. */
const MEASURES = ["median chunk without compiling", "median chunk", "median round without compiling", "median round"];

/** CPU-bound throughput follows 1 / instructions: on serves off/on as many requests, so 1 − off/on fewer (percent). */
function fewer(r: Reading): number {
  return (1 - r.off / r.on) * 100;
}

/**
 * What telemetry costs the realistic request, on − off, and the throughput
 * difference that makes when CPU-bound (1 − off/on, the target's measure);
 * undefined without both rows. Judged by the median chunk without
 * compiling when both subjects were counted in chunks (`--chunked`) and
 * annotated, then by the median chunk; else by the median round of each.
 * With several passes over the subjects (`--repeat`), each pass's on is
 * read against its own off, and each measure gives every pass and their
 * median.
 */
export function telemetryShare(rows: readonly InstructionRow[]): string | undefined {
  const pairs: { pass: number; readings: Reading[] }[] = [];
  for (const on of rows) {
    if (on.id !== "isthmus") continue;
    const off = rows.find((r) => r.id === "isthmus-telemetry-off" && r.pass === on.pass);
    if (off) pairs.push({ pass: on.pass ?? 1, readings: readings(on, off) });
  }
  const first = pairs[0];
  if (!first) return undefined;
  if (pairs.length === 1) {
    return first.readings
      .map((r) => `Telemetry (on − off, by the ${r.by} of each): ${thousands(r.on - r.off)} instructions per request (+${(((r.on - r.off) / r.off) * 100).toFixed(1)}% over off), so ${fewer(r).toFixed(1)}% less throughput when CPU-bound (target ≤ 5%).`)
      .join("\n");
  }
  // Every measure some pass was read by, the preferred first; a pass read otherwise is named, not dropped silently.
  const measures = MEASURES.filter((by) => pairs.some((p) => p.readings.some((r) => r.by === by)));
  return measures
    .map((by) => {
      const same = pairs.flatMap((p) => p.readings.filter((r) => r.by === by));
      const unread = pairs.filter((p) => !p.readings.some((r) => r.by === by)).map((p) => p.pass);
      const shares = same.map(fewer);
      const line = `Telemetry (1 − off/on by the ${by} of each, pass by pass): ${shares.map((x) => `${x.toFixed(1)}%`).join(", ")} (on − off ${same.map((x) => thousands(x.on - x.off)).join(", ")} instructions per request); median of ${shares.length} ${shares.length === 1 ? "pass" : "passes"} ${median(shares).toFixed(1)}% less throughput when CPU-bound (target ≤ 5%).`;
      return unread.length > 0 ? `${line} Not read by this measure: pass ${unread.join(", ")}.` : line;
    })
    .join("\n");
}
