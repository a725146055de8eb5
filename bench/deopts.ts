/**
 * `npm run bench:deopts -- [realistic|realistic-off|minimal] [--requests N] [--warmup N]`:
 * what V8 throws away inside workerd under load. Runs the config the way
 * `isthmus serve` would, on bare workerd with V8's own traces on
 * (`v8Flags = ["--trace-deopt", "--trace-gc"]` in the generated workerd
 * config), pinned to the SUT core; after `--warmup` requests (the first
 * optimizations and their early deopts), sends `--requests` more closed loop
 * from the generator core and counts, among what V8 printed meanwhile:
 * - major GCs (`Mark-Compact`);
 * - code marked for deoptimization (lazy: another object changed under it,
 *   e.g. "embedded weak objects cleared" after a major GC), by function and reason;
 * - bailouts (a check in optimized code failed: eager or soft), by function and reason.
 *
 * A function deoptimized at every major GC is recompiled each time: that
 * is the burst of TurboFan work bench/NOTES.md (tenth and twelfth passes)
 * finds in some rounds of `bench:instructions`. Usually the cause is a
 * per-request object that gains fields one at a time (ARCHITECTURE.md,
 * "Per-request objects are created whole").
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { workerdBinary } from "../src/cli/commands/serve.ts";
import { minimal, realistic, type BenchConfig } from "./configs.ts";
import { startServe } from "./contenders.ts";
import { freePort, runLoad, startPinned, stopProc, waitForPort } from "./processes.ts";
import { startSideServers } from "./side-servers.ts";

const GEN_CPU = "0";
const SUT_CPU = "1";

const { values, positionals } = parseArgs({ options: { requests: { type: "string" }, warmup: { type: "string" } }, allowPositionals: true });
const which = positionals[0] ?? "realistic";
if (!["realistic", "realistic-off", "minimal"].includes(which)) throw new Error(`expected realistic, realistic-off or minimal, got ${which}`);
const requests = Number(values.requests ?? "30000");
const warmup = Number(values.warmup ?? "4000");
const log = (s: string) => console.error(`deopts: ${s}`);

/** How often each key occurs, largest first, as markdown table rows. */
function rows(keys: string[]): string[] {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `| ${n} | ${k} |`);
}

/** What V8 printed, summarized: major GCs, lazy deoptimizations and bailouts by function and reason. */
function summarizeDeopts(trace: string): { majorGcs: number; lazy: string[]; eager: string[] } {
  const lines = trace.split("\n");
  const lazy: string[] = [];
  const eager: string[] = [];
  for (const line of lines) {
    const marked = /marking dependent code .*<SharedFunctionInfo ([^>]*)>.*reason: ([^\]]*)/.exec(line);
    if (marked) lazy.push(`\`${marked[1] || "(anonymous)"}\` | ${marked[2]}`);
    // A lazy bailout is marked code being left when next reached: already counted where it was marked.
    const bailout = /\[bailout \(kind: ([^,]+), reason: (.*?)\): begin\. deoptimizing \S+ <JSFunction ([^ >(]*)/.exec(line);
    if (bailout && bailout[1] !== "deopt-lazy") eager.push(`\`${bailout[3] || "(anonymous)"}\` | ${bailout[2]} (${bailout[1]})`);
  }
  return { majorGcs: lines.filter((l) => l.includes("Mark-Compact")).length, lazy, eager };
}

const side = await startSideServers(GEN_CPU);
const dir = mkdtempSync(join(tmpdir(), "isthmus-deopts-"));
try {
  const { upstreamPort, idp, otlpEndpoint } = side.env;
  const config: BenchConfig =
    which === "minimal" ? minimal(upstreamPort) : realistic(upstreamPort, which === "realistic-off" ? { telemetry: false, jwt: idp } : { telemetry: true, jwt: idp, otlpEndpoint });
  const port = await freePort();
  // isthmus serve applies the config and writes its workerd config; workerd then runs it alone, traced.
  await stopProc(await startServe(dir, config.yaml, port, SUT_CPU));
  const capnp = join(dir, "state", "run", "isthmus.capnp");
  const opening = "const config :Workerd.Config = (\n";
  const generated = readFileSync(capnp, "utf8");
  if (!generated.includes(opening)) throw new Error(`${capnp}: no "${opening.trim()}" to add v8Flags to`);
  writeFileSync(capnp, generated.replace(opening, `${opening}  v8Flags = ["--trace-deopt", "--trace-gc"],\n`));
  const workerd = startPinned(SUT_CPU, workerdBinary(), ["serve", "--experimental", capnp]);
  try {
    await waitForPort(port, 60_000, workerd);
    const send = (count: number) => runLoad(GEN_CPU, { mode: "closed", port, requests: config.requests, durationMs: 3_600_000, warmupMs: 0, connections: 8, count }, "deopts");
    log(`${which}: warming up (${warmup} requests)`);
    await send(warmup);
    const from = workerd.output().length;
    log(`${which}: ${requests} requests, V8 tracing`);
    const out = await send(requests);
    if (out.completed !== requests || out.non200 > 0) throw new Error(`expected ${requests} answers 200, got ${out.completed} (${out.non200} not 200)`);
    const { majorGcs, lazy, eager } = summarizeDeopts(workerd.output().slice(from));
    console.log(`V8 inside workerd, ${which} config, ${requests} requests after ${warmup}: ${majorGcs} major GCs, ${lazy.length} functions marked for deoptimization, ${eager.length} bailouts.\n`);
    if (lazy.length > 0) console.log(["| times | function | reason |", "|---|---|---|", ...rows(lazy)].join("\n") + "\n");
    if (eager.length > 0) console.log(["| times | function | reason (kind) |", "|---|---|---|", ...rows(eager)].join("\n"));
  } finally {
    await stopProc(workerd);
  }
} finally {
  await side.stop();
  rmSync(dir, { recursive: true, force: true });
}
