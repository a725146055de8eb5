/**
 * `npm run bench:instructions -- [--requests N] [--rounds N] [--warmup N] [--chunk N] [--chunked] [--repeat N] [--only id,id | --ladder] [--keep]`:
 * machine instructions per request inside workerd, counted by Valgrind's
 * callgrind, for the passthrough Workers and Isthmus's configs.
 *
 * Throughput on this shared 2-core machine drifts by tens of percent over
 * minutes, so a difference of a few percent (the telemetry target, one
 * small fix) is below what the load runs resolve. Instruction counts do not
 * depend on what else the machine is doing: the same requests give the same
 * count within about 2%. The gateway is CPU-bound, so at saturation its
 * throughput follows its instructions per request (kernel work aside), and
 * the ratio passthrough ÷ contender is the throughput ratio to expect.
 *
 * Each contender's workerd runs under `valgrind --tool=callgrind
 * --instr-atstart=no` pinned to the SUT core (Isthmus: the config `isthmus
 * serve` generated, without the CLI around it). After `--warmup` requests,
 * each round turns counting on, sends exactly `--requests` requests closed
 * loop from the generator core, turns it off and dumps; the report is the
 * median round. The profiles stay in the printed directory with `--keep`
 * (`callgrind_annotate --inclusive=yes FILE` lists them by function).
 *
 * What it does not show: the kernel's work (syscalls, TCP), and work that
 * happens per second rather than per request — the rate limiter's floor
 * writes (at most about two a second per key), config refreshes. Valgrind
 * runs workerd ~50 times slower, so each request carries ~50 times its share
 * of that work (bench/NOTES.md, tenth pass). Telemetry's metric exports are
 * such work too, and large (an export of Istio's series is hundreds of KiB):
 * counted, they would add ~30 times their full-speed share to the
 * telemetry-on row. So that subject runs with a 25 s flushInterval and is
 * counted in chunks (`--chunk`, else what it serves in 8 s while counted), each
 * sent right after a metrics export reached the sink, counted and dumped on
 * its own, and left out and sent again if one reached it meanwhile. Between
 * chunks, uncounted requests keep the gateway as busy as the other subjects
 * (an idle gateway rebuilds its Durable Object and compiled code on the next
 * requests: NOTES, twelfth pass). The exports' cost is left out (at full
 * speed it is ~0.2–0.3% of a request, NOTES, eleventh pass).
 *
 * `--chunked` counts every subject that way (one without metric exports
 * gets ~22 s of uncounted traffic between chunks, about what the other
 * waits for its next export), and the table then gives each one's median
 * chunk, and the median of each chunk less what V8's optimizing compilers
 * did in it (read with `callgrind_annotate` once the subject is done). A
 * round holds whatever compiling fell into it: V8 compiles code again
 * after a major GC threw it away, in bursts of 1.3–2× a chunk's cost, and
 * most chunks hold a little (NOTES, twelfth and thirteenth passes). With
 * both realistic subjects, the table ends with telemetry's share.
 *
 * `--repeat N` runs the whole list of subjects N times over, one pass
 * after the other (off, on, off, on…), each subject in a fresh workerd.
 * The same subject's median chunk differs by 2–3% between runs (which
 * code V8 optimized and when its major GCs fell), as much as the margin
 * the telemetry target leaves, so telemetry's share is given for each pass
 * and as the median of the passes (NOTES, fourteenth pass).
 *
 * `--ladder` counts the realistic config (telemetry off), then the same
 * leaving out one more part at each step (the rate limit, the policies,
 * JWT, retries), the minimal config, the header-contract passthrough and
 * the passthrough, and tabulates what each part costs per request: the
 * difference between consecutive steps (instructions-report.ts LADDER).
 * A subject counted whole is annotated too, each round less its compiling.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { workerdBinary } from "../src/cli/commands/serve.ts";
import { minimal, realistic, type BenchConfig, type RealisticPart, type RequestSpec } from "./configs.ts";
import { PASSTHROUGH, PASSTHROUGH_ENVOY_HEADERS, PASSTHROUGH_OBJECT, startServe, UPSTREAM_REQUEST, writeBareWorker, type BenchEnv } from "./contenders.ts";
import { debianBinary, ensureDebianPackage } from "./debian.ts";
import { callgrindTotal, compilerInstructions, instructionTable, LADDER, type InstructionRow } from "./instructions-report.ts";
import { freePort, runLoad, startPinned, stopProc, waitForPort } from "./processes.ts";
import { startSideServers } from "./side-servers.ts";

const GEN_CPU = "0";
const SUT_CPU = "1";

interface Subject {
  id: string;
  label: string;
  /** Exports metrics to the sink: counted in chunks between exports (see above). */
  exportsMetrics?: boolean;
  /** Writes the workerd config into `dir`; returns it, the flags workerd needs and the requests to send. */
  prepare(dir: string, env: BenchEnv, port: number): Promise<{ capnp: string; flags: string[]; requests: RequestSpec[] }>;
}

function bare(worker: typeof PASSTHROUGH): Subject {
  return {
    id: worker.id,
    label: worker.label,
    prepare: async (dir, env, port) => ({ capnp: writeBareWorker(dir, worker, env.upstreamPort, port), flags: [], requests: UPSTREAM_REQUEST }),
  };
}

/** Isthmus with `build`'s config: `isthmus serve` applies it and writes its workerd config, then stops; workerd runs that config alone. */
function isthmus(id: string, label: string, build: (env: BenchEnv) => BenchConfig, exportsMetrics = false): Subject {
  return {
    id,
    label,
    exportsMetrics,
    async prepare(dir, env, port) {
      const config = build(env);
      await stopProc(await startServe(dir, config.yaml, port, SUT_CPU));
      return { capnp: join(dir, "state", "run", "isthmus.capnp"), flags: ["--experimental"], requests: config.requests };
    },
  };
}

/** The realistic config, telemetry off, less `without`: one step of the feature ladder (`--ladder`). */
function rung(id: string, label: string, without: RealisticPart[]): Subject {
  return isthmus(id, label, (e) => realistic(e.upstreamPort, { telemetry: false, jwt: e.idp, without }));
}

/** The subjects the ladder adds, in its order (instructions-report.ts LADDER names what each step leaves out). */
const RUNGS: Subject[] = [
  rung("ladder-no-ratelimit", "realistic, telemetry off, without the rate limit", ["rateLimit"]),
  rung("ladder-no-authorization", "… and without the 20 policies", ["rateLimit", "authorization"]),
  rung("ladder-no-jwt", "… and without JWT", ["rateLimit", "authorization", "jwt"]),
  rung("ladder-no-retries", "… and without retries (1,000 routes only)", ["rateLimit", "authorization", "jwt", "retries"]),
];

const SUBJECTS: Subject[] = [
  bare(PASSTHROUGH),
  bare(PASSTHROUGH_OBJECT),
  bare(PASSTHROUGH_ENVOY_HEADERS),
  isthmus("isthmus-minimal", "Isthmus, minimal config (one route)", (e) => minimal(e.upstreamPort)),
  isthmus("isthmus-telemetry-off", "Isthmus, realistic config, telemetry off", (e) => realistic(e.upstreamPort, { telemetry: false, jwt: e.idp })),
  isthmus(
    "isthmus",
    "Isthmus, realistic config (telemetry on; metric exports not counted)",
    (e) => realistic(e.upstreamPort, { telemetry: true, jwt: e.idp, otlpEndpoint: e.otlpEndpoint, flushInterval: "25s" }),
    true,
  ),
];

const { values } = parseArgs({
  options: {
    requests: { type: "string" },
    rounds: { type: "string" },
    warmup: { type: "string" },
    chunk: { type: "string" },
    chunked: { type: "boolean" },
    repeat: { type: "string" },
    only: { type: "string" },
    ladder: { type: "boolean" },
    keep: { type: "boolean" },
  },
});
const requests = Number(values.requests ?? "3000");
const rounds = Number(values.rounds ?? "3");
const warmup = Number(values.warmup ?? "4000");
const passes = Number(values.repeat ?? "1");
if (!Number.isInteger(passes) || passes < 1) throw new Error(`--repeat: expected a whole number of passes of at least 1, got ${values.repeat}`);
/** Requests per counted chunk between two metric exports (25 s apart); default: what a probe says it serves in 8 s while counted. */
const fixedChunk = values.chunk === undefined ? undefined : Number(values.chunk);
const only = values.only?.split(",");
const every = [...SUBJECTS, ...RUNGS];
const byId = (id: string): Subject => {
  const subject = every.find((s) => s.id === id);
  if (!subject) throw new Error(`--ladder: no subject ${id} (instructions-report.ts LADDER and this file's subjects disagree)`);
  return subject;
};
if (values.ladder && only) throw new Error("--ladder and --only: give one (the ladder runs its own list)");
const subjects = values.ladder
  ? LADDER.map(({ id }) => byId(id))
  : only
    ? every.filter((s) => only.includes(s.id))
    : SUBJECTS;
if (subjects.length === 0) throw new Error(`--only: none of ${only?.join(", ")}; expected ids among ${every.map((s) => s.id).join(", ")}`);
const log = (s: string) => console.error(`instructions: ${s}`);
const valgrind = ensureDebianPackage("valgrind", "valgrind", log);
const control = debianBinary("callgrind_control");
const annotate = debianBinary("callgrind_annotate");
if (!valgrind || !control) throw new Error("valgrind is not installed and could not be (Debian package valgrind; apt-get needs root)");

/** Sends exactly `count` requests, 8 connections, closed loop, from the generator core; `checked`: every one must be answered 200. */
async function send(port: number, specs: RequestSpec[], count: number, checked: boolean): Promise<void> {
  const out = await runLoad(GEN_CPU, { mode: "closed", port, requests: specs, durationMs: 3_600_000, warmupMs: 0, connections: 8, count }, "instructions");
  if (checked && (out.completed !== count || out.non200 > 0)) throw new Error(`expected ${count} answers 200, got ${out.completed} answers (${out.non200} not 200) and ${out.failed} failures`);
}

const root = mkdtempSync(join(tmpdir(), "isthmus-instructions-"));
const side = await startSideServers(GEN_CPU);
const rows: InstructionRow[] = [];
/** Every subject once per pass, the passes one after the other. */
const runs = Array.from({ length: passes }, (_, i) => subjects.map((subject) => ({ subject, pass: i + 1 }))).flat();
try {
  for (const { subject, pass } of runs) {
    const name = passes > 1 ? `${subject.id}-${pass}` : subject.id;
    const dir = join(root, name);
    mkdirSync(dir);
    const port = await freePort();
    const { capnp, flags, requests: specs } = await subject.prepare(dir, side.env, port);
    const out = join(dir, "callgrind.out");
    const proc = startPinned(SUT_CPU, valgrind, ["--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file", `--callgrind-out-file=${out}`, workerdBinary(), "serve", ...flags, capnp]);
    try {
      await waitForPort(port, 300_000, proc);
      const pid = String(proc.child.pid);
      log(`${name}: warming up (${warmup} requests)`);
      // The first requests may land before the gateway has loaded its config (503 NC): not counted, not checked.
      await send(port, specs, warmup, false);
      // The chunks' size: what it serves in 8 s while callgrind counts (~3 times slower than not), by the
      // harness's clock, from 200 more requests after 50 (callgrind's first requests re-instrument code).
      // Checked, not counted: the counts are zeroed before each chunk.
      const inChunks = subject.exportsMetrics === true || values.chunked === true;
      let chunk = fixedChunk ?? 0;
      if (inChunks && fixedChunk === undefined) {
        spawnSync(control, ["--instr=on", pid]);
        await send(port, specs, 50, true);
        const probeStart = Date.now();
        await send(port, specs, 200, true);
        chunk = Math.max(10, Math.floor((200 * 8_000) / (Date.now() - probeStart)));
        spawnSync(control, ["--instr=off", pid]);
        log(`${name}: chunks of ${chunk} requests`);
      }
      const perRequest: number[] = [];
      /** Unchunked: each round's dump, annotated like the chunks' once the subject is done. */
      const roundDumps: string[] = [];
      /** Each counted chunk's dump, size and instructions per request; annotated once the subject is done (no idle gaps between chunks). */
      const chunks: { dump: string; n: number; perRequest: number }[] = [];
      /** Counts `n` requests: zeroes, counts, dumps; returns the dump's total instructions and its path. */
      const counted = async (n: number): Promise<{ total: number; dump: string }> => {
        spawnSync(control, ["--zero", pid]);
        spawnSync(control, ["--instr=on", pid]);
        await send(port, specs, n, true);
        spawnSync(control, ["--instr=off", pid]);
        spawnSync(control, ["--dump", pid]);
        const dump = latestDump(dir);
        return { total: callgrindTotal(readFileSync(dump, "utf8")), dump };
      };
      for (let r = 1; r <= rounds; r++) {
        let total = 0;
        let where: string;
        if (inChunks) {
          // Chunks, each dumped; one that held a metrics export is left out and sent again.
          let sent = 0;
          let held = 0;
          const dumps: string[] = [];
          const meanwhile = () => send(port, specs, 25, true);
          while (sent < requests) {
            // Uncounted traffic keeps flowing while it waits, as at full speed: an idle gateway lets workerd
            // evict the rate limiter's object and V8 drop compiled code, and the first requests after the
            // gap would carry their rebuilding (~3.5M instructions of SQLite statements alone, NOTES twelfth pass).
            // A subject without metric exports gets as much as the other waits for its next export (the 25 s
            // interval less a chunk's ~8 s, then 5 s without one), so that both meet the same major GCs between chunks.
            if (subject.exportsMetrics) await afterNextMetricsExport(side.env.otlpEndpoint, meanwhile);
            else await busyFor(22_000, meanwhile);
            const before = subject.exportsMetrics ? await metricsExports(side.env.otlpEndpoint) : 0;
            const n = Math.min(chunk, requests - sent);
            const part = await counted(n);
            if (!subject.exportsMetrics || (await metricsExports(side.env.otlpEndpoint)) === before) {
              total += part.total;
              sent += n;
              dumps.push(part.dump);
              chunks.push({ dump: part.dump, n, perRequest: part.total / n });
            } else if (++held > 5) throw new Error(`${name}: metric exports keep landing among counted requests; try a smaller --chunk than ${chunk}`);
            else log(`${name}: a metrics export landed in a chunk of ${n} (left out, sent again)`);
          }
          where = `${dumps.length} dumps of up to ${chunk} requests, the last ${dumps.at(-1)}`;
        } else {
          const all = await counted(requests);
          total = all.total;
          where = all.dump;
          roundDumps.push(all.dump);
        }
        perRequest.push(total / requests);
        log(`${name}: round ${r}: ${(perRequest.at(-1) as number).toFixed(0)} instructions per request (${where})`);
      }
      await stopProc(proc);
      const compiling = !annotate
        ? undefined
        : inChunks
          ? chunks.map(({ dump, n }) => compilerInstructions(listing(dump)) / n)
          : roundDumps.map((dump) => compilerInstructions(listing(dump)) / requests);
      rows.push({ id: subject.id, label: subject.label, pass: passes > 1 ? pass : undefined, perRequest, chunks: inChunks ? chunks.map((c) => c.perRequest) : undefined, compiling });
    } finally {
      await stopProc(proc);
    }
  }
} finally {
  await side.stop();
  if (!values.keep) rmSync(root, { recursive: true, force: true });
}
console.log(instructionTable(rows, { requests, rounds, warmup, passes }));
if (values.keep) log(`profiles kept in ${root}`);

/** `callgrind_annotate`'s listing of a dump: every function with its own instructions. */
function listing(dump: string): string {
  const out = spawnSync(annotate as string, ["--threshold=100", dump], { encoding: "utf8", maxBuffer: 512 * 1024 * 1024 });
  if (out.status !== 0) throw new Error(`callgrind_annotate ${dump} failed: ${out.stderr}`);
  return out.stdout;
}

/** Runs `meanwhile` again and again for `ms`. */
async function busyFor(ms: number, meanwhile: () => Promise<void>): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) await meanwhile();
}

/** Metrics exports the benchmark's OTLP sink has received. */
async function metricsExports(otlpEndpoint: string): Promise<number> {
  const stats = (await (await fetch(`${otlpEndpoint}/stats`)).json()) as { metrics: { exports: number } };
  return stats.metrics.exports;
}

/**
 * Resolves once the sink has received one more metrics export and then none
 * for 5 s (data measured while an export runs goes in a follow-up export as
 * soon as it ends), so that workerd is done with them. The exporter sends one
 * when a request finds the 25 s interval over. `meanwhile` runs again and
 * again until then (the uncounted traffic between chunks).
 */
async function afterNextMetricsExport(otlpEndpoint: string, meanwhile: () => Promise<void>): Promise<void> {
  const start = await metricsExports(otlpEndpoint);
  const deadline = Date.now() + 90_000;
  let seen = start;
  let quietSince = 0;
  while (seen === start || Date.now() - quietSince < 5_000) {
    if (Date.now() > deadline) throw new Error("no metrics export reached the sink, or they kept coming, for 90 s");
    await meanwhile();
    const now = await metricsExports(otlpEndpoint);
    if (now !== seen) {
      seen = now;
      quietSince = Date.now();
    }
  }
}

/** The newest numbered dump callgrind wrote (`callgrind.out.N`). */
function latestDump(dir: string): string {
  const dumps = readdirSync(dir)
    .filter((f) => /^callgrind\.out\.\d+$/.test(f))
    .sort((a, b) => Number(a.split(".").pop()) - Number(b.split(".").pop()));
  if (dumps.length === 0) throw new Error(`callgrind wrote no dump in ${dir}`);
  return join(dir, dumps.at(-1) as string);
}
