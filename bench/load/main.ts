/**
 * The load generator as its own process, so the harness can pin it to a
 * core (taskset) apart from the system under test. Reads a LoadSpec as JSON
 * from stdin (the realistic requests carry tokens: too long for one
 * argument), prints a LoadOutput as JSON on stdout.
 */
import { getRequest } from "./connection.ts";
import { closedLoop, openLoop, type RunResult } from "./generator.ts";

export interface LoadSpec {
  mode: "open" | "closed";
  port: number;
  requests: { host: string; path: string; headers?: Record<string, string> }[];
  durationMs: number;
  warmupMs: number;
  /** open: requests per second. */
  rate?: number;
  /** open: initial pool; closed: the fixed connection count. */
  connections: number;
  /** closed: send exactly this many requests (`durationMs` caps the time). */
  count?: number;
  maxConnections?: number;
}

export interface LoadOutput extends Omit<RunResult, "latencies"> {
  /** Latencies in µs (integers). */
  latenciesUs: number[];
}

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
const spec = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as LoadSpec;
const target = { port: spec.port, requests: spec.requests.map((r) => getRequest(r.host, r.path, r.headers)) };
const run = (durationMs: number): Promise<RunResult> =>
  spec.mode === "open"
    ? openLoop(target, { rate: spec.rate ?? 100, durationMs, connections: spec.connections, maxConnections: spec.maxConnections ?? 256 })
    : closedLoop(target, { connections: spec.connections, durationMs, count: spec.count });

if (spec.warmupMs > 0) await run(spec.warmupMs);
const result = await run(spec.durationMs);
const { latencies, ...rest } = result;
const output: LoadOutput = { ...rest, latenciesUs: Array.from(latencies, (ms) => Math.round(ms * 1000)) };
process.stdout.write(JSON.stringify(output));
