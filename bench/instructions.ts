/**
 * `npm run bench:instructions -- [--requests N] [--rounds N] [--warmup N] [--only id,id] [--keep]`:
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
 * happens per second rather than per request — telemetry's metric exports
 * every flushInterval, the rate limiter's floor writes (at most about two a
 * second per key), config refreshes. Valgrind runs workerd ~50 times slower,
 * so each request carries ~50 times its share of that work: read the
 * telemetry-on row as an upper bound (bench/NOTES.md, tenth pass).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { workerdBinary } from "../src/cli/commands/serve.ts";
import { minimal, realistic, type BenchConfig, type RequestSpec } from "./configs.ts";
import { PASSTHROUGH, PASSTHROUGH_ENVOY_HEADERS, PASSTHROUGH_OBJECT, startServe, UPSTREAM_REQUEST, writeBareWorker, type BenchEnv } from "./contenders.ts";
import { debianBinary, ensureDebianPackage } from "./debian.ts";
import { callgrindTotal, instructionTable, type InstructionRow } from "./instructions-report.ts";
import { freePort, runLoad, startPinned, stopProc, waitForPort } from "./processes.ts";
import { startSideServers } from "./side-servers.ts";

const GEN_CPU = "0";
const SUT_CPU = "1";

interface Subject {
  id: string;
  label: string;
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
function isthmus(id: string, label: string, build: (env: BenchEnv) => BenchConfig): Subject {
  return {
    id,
    label,
    async prepare(dir, env, port) {
      const config = build(env);
      await stopProc(await startServe(dir, config.yaml, port, SUT_CPU));
      return { capnp: join(dir, "state", "run", "isthmus.capnp"), flags: ["--experimental"], requests: config.requests };
    },
  };
}

const SUBJECTS: Subject[] = [
  bare(PASSTHROUGH),
  bare(PASSTHROUGH_OBJECT),
  bare(PASSTHROUGH_ENVOY_HEADERS),
  isthmus("isthmus-minimal", "Isthmus, minimal config (one route)", (e) => minimal(e.upstreamPort)),
  isthmus("isthmus-telemetry-off", "Isthmus, realistic config, telemetry off", (e) => realistic(e.upstreamPort, { telemetry: false, jwt: e.idp })),
  isthmus("isthmus", "Isthmus, realistic config (telemetry on)", (e) => realistic(e.upstreamPort, { telemetry: true, jwt: e.idp, otlpEndpoint: e.otlpEndpoint })),
];

const { values } = parseArgs({
  options: { requests: { type: "string" }, rounds: { type: "string" }, warmup: { type: "string" }, only: { type: "string" }, keep: { type: "boolean" } },
});
const requests = Number(values.requests ?? "3000");
const rounds = Number(values.rounds ?? "3");
const warmup = Number(values.warmup ?? "4000");
const only = values.only?.split(",");
const subjects = only ? SUBJECTS.filter((s) => only.includes(s.id)) : SUBJECTS;
if (subjects.length === 0) throw new Error(`--only: none of ${only?.join(", ")}; expected ids among ${SUBJECTS.map((s) => s.id).join(", ")}`);
const log = (s: string) => console.error(`instructions: ${s}`);
const valgrind = ensureDebianPackage("valgrind", "valgrind", log);
const control = debianBinary("callgrind_control");
if (!valgrind || !control) throw new Error("valgrind is not installed and could not be (Debian package valgrind; apt-get needs root)");

/** Sends exactly `count` requests, 8 connections, closed loop, from the generator core; `checked`: every one must be answered 200. */
async function send(port: number, specs: RequestSpec[], count: number, checked: boolean): Promise<void> {
  const out = await runLoad(GEN_CPU, { mode: "closed", port, requests: specs, durationMs: 3_600_000, warmupMs: 0, connections: 8, count }, "instructions");
  if (checked && (out.completed !== count || out.non200 > 0)) throw new Error(`expected ${count} answers 200, got ${out.completed} answers (${out.non200} not 200) and ${out.failed} failures`);
}

const root = mkdtempSync(join(tmpdir(), "isthmus-instructions-"));
const side = await startSideServers(GEN_CPU);
const rows: InstructionRow[] = [];
try {
  for (const subject of subjects) {
    const dir = join(root, subject.id);
    mkdirSync(dir);
    const port = await freePort();
    const { capnp, flags, requests: specs } = await subject.prepare(dir, side.env, port);
    const out = join(dir, "callgrind.out");
    const proc = startPinned(SUT_CPU, valgrind, ["--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file", `--callgrind-out-file=${out}`, workerdBinary(), "serve", ...flags, capnp]);
    try {
      await waitForPort(port, 300_000, proc);
      const pid = String(proc.child.pid);
      log(`${subject.id}: warming up (${warmup} requests)`);
      // The first requests may land before the gateway has loaded its config (503 NC): not counted, not checked.
      await send(port, specs, warmup, false);
      const perRequest: number[] = [];
      for (let r = 1; r <= rounds; r++) {
        spawnSync(control, ["--zero", pid]);
        spawnSync(control, ["--instr=on", pid]);
        await send(port, specs, requests, true);
        spawnSync(control, ["--instr=off", pid]);
        spawnSync(control, ["--dump", pid]);
        const dump = latestDump(dir);
        perRequest.push(callgrindTotal(readFileSync(dump, "utf8")) / requests);
        log(`${subject.id}: round ${r}: ${(perRequest.at(-1) as number).toFixed(0)} instructions per request (${dump})`);
      }
      rows.push({ id: subject.id, label: subject.label, perRequest });
    } finally {
      await stopProc(proc);
    }
  }
} finally {
  await side.stop();
  if (!values.keep) rmSync(root, { recursive: true, force: true });
}
console.log(instructionTable(rows, { requests, rounds, warmup }));
if (values.keep) log(`profiles kept in ${root}`);

/** The newest numbered dump callgrind wrote (`callgrind.out.N`). */
function latestDump(dir: string): string {
  const dumps = readdirSync(dir)
    .filter((f) => /^callgrind\.out\.\d+$/.test(f))
    .sort((a, b) => Number(a.split(".").pop()) - Number(b.split(".").pop()));
  if (dumps.length === 0) throw new Error(`callgrind wrote no dump in ${dir}`);
  return join(dir, dumps.at(-1) as string);
}
