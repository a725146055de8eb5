/**
 * `npm run bench`: the benchmark harness. Starts a 1 KiB JSON upstream and
 * every contender, runs a saturation round then open-loop rounds at 25% and
 * 50% of the passthrough Worker's saturation, interleaving the contenders
 * (their order rotates each round), then the micro-benchmarks, and writes
 * docs/BENCHMARKS.md. The load generator, the upstream and the OTLP sink
 * run on one core, every system under test on the other (taskset); the
 * JWKS server runs in this process (asked once per gateway isolate).
 * Before measuring, each realistic gateway must show that its security is
 * on (a bench request 200, without its token 403, forged 401).
 *
 *   npm run bench                 full run (~17 minutes), writes docs/BENCHMARKS.md
 *   npm run bench -- --smoke      a few seconds per step, nginx skipped, checks that
 *                                 every contender answered every request with 200
 *                                 and that the telemetry-on gateway exported metrics
 *   options: --rounds N  --duration SECONDS  --out FILE  --no-nginx
 */
import { execFileSync, spawnSync } from "node:child_process";
import { cpus, loadavg, totalmem, release } from "node:os";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startSideServers } from "./side-servers.ts";
import type { RequestSpec } from "./configs.ts";
import { send } from "../test/helpers/http.ts";
import { opensslRsaVerify } from "./crypto-floor.ts";
import { workerdOps, direct, ensureNginx, isthmusLease, isthmusMinimal, isthmusNoTelemetry, isthmusRealistic, nginx, nginxBinary, passthrough, passthroughEnvoyHeaders, passthroughWithObject, type Contender, type Running } from "./contenders.ts";
import { cpuTimeMs, runLoad } from "./processes.ts";
import type { LoadOutput, LoadSpec } from "./load/main.ts";
import type { MicroResults } from "./micro.ts";
import { workerdBinary } from "../src/cli/commands/serve.ts";
import { workerdPipeline } from "./workerd-pipeline.ts";
import { median, pairLabel, renderReport, type Measurement, type OtlpStats, type RunInfo } from "./report.ts";

const GEN_CPU = "0";
const SUT_CPU = "1";

const { values } = parseArgs({
  options: {
    smoke: { type: "boolean" },
    rounds: { type: "string" },
    duration: { type: "string" },
    out: { type: "string" },
    "no-nginx": { type: "boolean" },
  },
});
const smoke = values.smoke ?? false;
const rounds = Number(values.rounds ?? (smoke ? 1 : 2));
const durationMs = Number(values.duration ?? (smoke ? 1 : 10)) * 1000;
const satDurationMs = smoke ? 1000 : 5000;
const warmupMs = smoke ? 300 : 2000;
/** Back-to-back pairs per compared couple, and each half's warm-up and measured window. */
const pairCount = smoke ? 1 : 8;
const pairTiming = smoke ? { durationMs: 500, warmupMs: 200 } : { durationMs: 3000, warmupMs: 1000 };
const out = values.out ?? (smoke ? join(tmpdir(), "isthmus-bench-smoke.md") : "docs/BENCHMARKS.md");
const node = process.execPath;
const log = (s: string) => console.error(`bench: ${s}`);

const info: RunInfo = {
  date: new Date().toISOString(),
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
  smoke,
  rounds,
  durationMs,
  satDurationMs,
  warmupMs,
  pairs: { count: pairCount, ...pairTiming },
  cpu: `${cpus()[0]?.model ?? "unknown"} × ${cpus().length}`,
  memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
  kernel: release(),
  node: process.versions.node,
  workerd: execFileSync(workerdBinary(), ["--version"], { encoding: "utf8" }).trim(),
  nginx: "not run",
  commit: git(["rev-parse", "--short", "HEAD"]) + (git(["status", "--porcelain", "--", "src", "bench"]) ? " (with uncommitted changes)" : ""),
  loadBefore: loadavg().map((l) => l.toFixed(2)).join(", "),
  loadAfter: "",
  genCpu: GEN_CPU,
  sutCpu: SUT_CPU,
};

const contenders: Contender[] = [direct, passthrough, passthroughEnvoyHeaders, passthroughWithObject];
if (!smoke && !values["no-nginx"]) {
  const bin = ensureNginx(log);
  if (bin) {
    contenders.push(nginx);
    info.nginx = (spawnSync(bin, ["-v"], { encoding: "utf8" }).stderr || "").trim().replace(/^nginx version: /, "");
  } else log("nginx could not be installed; it is left out of this run");
} else if (nginxBinary()) info.nginx = "skipped (smoke)";
contenders.push(isthmusRealistic, isthmusLease, isthmusNoTelemetry, isthmusMinimal);

log(`load average before: ${info.loadBefore}`);
const side = await startSideServers(GEN_CPU);
const { env, idp } = side;
let otlp: OtlpStats | undefined;
const running = new Map<string, Running>();
const measurements: Measurement[] = [];
let failed = false;

try {
  log(`starting ${contenders.map((c) => c.id).join(", ")}`);
  const started = await Promise.allSettled(contenders.map(async (c) => running.set(c.id, await c.start(env, SUT_CPU))));
  for (const s of started) if (s.status === "rejected") throw s.reason;
  for (const c of [isthmusRealistic, isthmusLease, isthmusNoTelemetry]) await checkEnforced(c.id, running.get(c.id) as Running);
  const order = (round: number) => contenders.map((_, i) => contenders[(i + round) % contenders.length] as Contender);

  // Saturation (closed loop, 32 connections).
  for (let round = 0; round < rounds; round++) {
    for (const c of order(round)) measurements.push(await measure(c, round, { mode: "closed", connections: 32 }, "saturation"));
  }
  const passSat = measurements.filter((m) => m.contender === "passthrough" && m.load === "saturation");
  const satRps = median(passSat.map((m) => m.throughput));
  const rates = smoke ? [{ load: "25%", rate: 100 }, { load: "50%", rate: 200 }] : [{ load: "25%", rate: Math.round(satRps * 0.25) }, { load: "50%", rate: Math.round(satRps * 0.5) }];
  log(`passthrough saturates at ${Math.round(satRps)} req/s; open-loop rates ${rates.map((r) => r.rate).join(", ")} req/s`);

  // Open loop at fixed rates.
  for (let round = 0; round < rounds; round++) {
    for (const { load, rate } of rates) {
      for (const c of order(round)) measurements.push(await measure(c, round, { mode: "open", rate, connections: 16, maxConnections: 256 }, load));
    }
  }

  // The throughput targets in short back-to-back pairs (closed loop): one saturation round per contender
  // is too coarse on this shared machine, while a drift over a few seconds falls on both halves of a pair.
  const couples: [Contender, Contender][] = [
    [isthmusRealistic, passthrough],
    [isthmusMinimal, passthrough],
    [passthroughEnvoyHeaders, passthrough],
    [isthmusRealistic, isthmusNoTelemetry],
  ];
  for (let pair = 0; pair < pairCount; pair++) {
    for (const [a, b] of couples) {
      const two = pair % 2 === 0 ? [a, b] : [b, a];
      for (const c of two) measurements.push(await measure(c, pair, { mode: "closed", connections: 32 }, pairLabel(a.id, b.id), pairTiming));
    }
  }
} catch (error) {
  failed = true;
  log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
} finally {
  for (const [id, r] of running) {
    await r.stop().catch((e: unknown) => log(`stopping ${id}: ${String(e)}`));
  }
  // Read after the gateways stopped: their last flush has then been sent.
  otlp = await fetch(`${env.otlpEndpoint}/stats`)
    .then((r) => r.json() as Promise<OtlpStats>)
    .catch(() => undefined);
  if (otlp) otlp.jwksFetches = idp.jwksFetches();
  await side.stop();
}
if (otlp) log(`OTLP sink received: ${(["traces", "metrics", "logs"] as const).map((s) => `${s} ${otlp?.[s].exports} exports (${otlp?.[s].bytes} bytes)`).join(", ")}; JWKS fetched ${otlp.jwksFetches} times`);
// Telemetry on must have reached the collector: metrics are exported at every flush.
if (!failed && !(otlp && otlp.metrics.exports > 0)) {
  failed = true;
  log("the OTLP sink received no metrics export from the telemetry-on gateway");
}

let micro: MicroResults | undefined;
let ops: { name: string; us: number }[] | undefined;
if (!failed) {
  log("runtime operations in workerd");
  try {
    ops = await workerdOps(SUT_CPU);
    const floor = opensslRsaVerify(SUT_CPU, smoke ? 1 : 3);
    if (floor) ops.push(floor);
    else log("openssl is not available: the RS256 floor is left out");
  } catch (error) {
    failed = true;
    log(`workerd operations failed: ${String(error)}`);
  }
}
if (!failed) {
  log("micro-benchmarks");
  const microProc = spawnSync("taskset", ["-c", SUT_CPU, node, "--expose-gc", "bench/micro.ts", ...(smoke ? ["--smoke"] : [])], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (microProc.status === 0) micro = JSON.parse(microProc.stdout) as MicroResults;
  else {
    failed = true;
    log(`micro-benchmarks failed:\n${microProc.stderr}`);
  }
}
if (micro) {
  log("the pipeline micro-benchmark inside workerd");
  try {
    micro.workerdPipeline = await workerdPipeline(SUT_CPU, smoke ? { iterations: 2_000, rounds: 1 } : { iterations: 100_000, rounds: 10 });
  } catch (error) {
    failed = true;
    log(`the workerd pipeline benchmark failed: ${String(error)}`);
  }
}
info.loadAfter = loadavg().map((l) => l.toFixed(2)).join(", ");
log(`load average after: ${info.loadAfter}`);

const bad = measurements.filter((m) => m.failed > 0 || m.non200 > 0);
for (const m of bad) log(`${m.contender} (${m.load}, round ${m.round + 1}): ${m.failed} failed, ${m.non200} non-200 of ${m.sent}`);
if (!failed && measurements.length > 0) {
  writeFileSync(out, renderReport(info, contenders, measurements, micro, ops, otlp));
  log(`wrote ${out}`);
}
if (smoke && bad.length > 0) failed = true;
console.log(failed ? "bench: FAILED" : `bench: ok (${measurements.length} load runs${micro ? ", micro-benchmarks" : ""})`);
process.exit(failed ? 1 : 0);

async function measure(
  c: Contender,
  round: number,
  load: Omit<LoadSpec, "port" | "requests" | "durationMs" | "warmupMs">,
  label: string,
  timing = { durationMs: load.mode === "closed" ? satDurationMs : durationMs, warmupMs },
): Promise<Measurement> {
  const r = running.get(c.id) as Running;
  const spec: LoadSpec = { ...load, port: r.port, requests: r.requests, durationMs: timing.durationMs, warmupMs: 0 };
  // Warm up in a separate generator run, so the CPU reading covers only the measured window.
  await generate(c, { ...spec, durationMs: timing.warmupMs });
  const pid = r.pid || side.upstreamPid;
  const cpuBefore = cpuTimeMs(pid);
  const result = await generate(c, spec);
  const cpuAfter = cpuTimeMs(pid);
  const m: Measurement = {
    contender: c.id,
    round,
    load: label,
    rate: load.rate,
    sent: result.sent,
    completed: result.completed,
    non200: result.non200,
    failed: result.failed,
    throughput: (result.completed * 1000) / result.elapsedMs,
    latenciesUs: result.latenciesUs,
    cpuUsPerRequest: ((cpuAfter - cpuBefore) * 1000) / Math.max(1, result.completed),
  };
  log(`${c.id.padEnd(22)} ${label.padEnd(10)} round ${round + 1}: ${Math.round(m.throughput)} req/s, errors ${m.failed + m.non200}`);
  return m;
}

function generate(c: Contender, spec: LoadSpec): Promise<LoadOutput> {
  return runLoad(GEN_CPU, spec, c.id);
}

/**
 * The realistic config's security must be on, not just out of the way: a
 * bench request passes (200), the same request without its token is
 * refused by authorization (403), and with a forged signature by
 * authentication (401).
 */
async function checkEnforced(id: string, r: Running): Promise<void> {
  const spec = r.requests[0] as RequestSpec;
  const base = `http://127.0.0.1:${r.port}`;
  const { authorization, ...rest } = spec.headers ?? {};
  const [head, body] = (authorization ?? "").split(".");
  const forged = `${head}.${body}.${Buffer.from("not the signature").toString("base64url")}`;
  const cases: [string, Record<string, string>, number][] = [
    ["with its token", spec.headers ?? {}, 200],
    ["without a token", rest, 403],
    ["with a forged signature", { ...rest, authorization: forged }, 401],
  ];
  for (const [what, headers, expected] of cases) {
    const reply = await send(base, spec.path, { host: spec.host, headers });
    if (reply.status !== expected) throw new Error(`${id}: a bench request ${what} got ${reply.status} (expected ${expected}): ${reply.body}`);
  }
  log(`${id}: a bench request passes; without a token 403, with a forged signature 401`);
}

function git(args: string[]): string {
  const r = spawnSync("git", args, { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown";
}
