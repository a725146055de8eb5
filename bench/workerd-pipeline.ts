/**
 * Runs the pipeline micro-benchmark inside workerd (bench/workerd-pipeline/
 * worker.ts): the realistic config is built here, the Worker is bundled
 * with it and served by bare workerd pinned to the SUT core, and one
 * request runs the measurement.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/config/build.ts";
import { bundleWorker } from "../src/cli/serve/bundle.ts";
import { realistic } from "./configs.ts";
import { benchKeys } from "./idp.ts";
import { OTLP_ENDPOINT } from "./pipeline-harness.ts";
import { answerOnce } from "./contenders.ts";
import { freePort } from "./processes.ts";
import { compatibilityCapnp } from "./runtime.ts";

export interface WorkerdPipeline {
  meanUs: number;
  endsUs: number;
  gatewayUs: number;
  rounds: number;
  exports: number;
  /** Every round's whole path less its ends, µs per request. */
  roundsGatewayUs: number[];
}

/**
 * @example
 * const { gatewayUs } = await workerdPipeline("1", { iterations: 50_000, rounds: 5 });
 */
export async function workerdPipeline(sutCpu: string, run: { iterations: number; rounds: number; telemetry?: boolean }, inspector?: { port: number; around: (ask: () => Promise<WorkerdPipeline>) => Promise<WorkerdPipeline> }): Promise<WorkerdPipeline> {
  const keys = await benchKeys("https://idp.bench.example");
  const telemetry = run.telemetry ?? true;
  const config = realistic(8080, { telemetry, jwt: keys, otlpEndpoint: OTLP_ENDPOINT });
  const built = await buildConfig([{ path: "bench.yaml", text: config.yaml }]);
  if (!built.snapshot) throw new Error(`bench config does not build: ${JSON.stringify(built.problems.slice(0, 3))}`);
  const dir = mkdtempSync(join(tmpdir(), "isthmus-bench-workerd-pipeline-"));
  try {
    await bundleWorker("bench/workerd-pipeline/worker.ts", join(dir, "worker.js"));
    writeFileSync(join(dir, "input.json"), JSON.stringify({ snapshot: built.snapshot, requests: config.requests, keys, iterations: run.iterations, rounds: run.rounds }));
    const port = await freePort();
    writeFileSync(
      join(dir, "pipeline.capnp"),
      `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = (
    modules = [(name = "worker.js", esModule = embed "worker.js")],
    ${compatibilityCapnp()}, # as wrangler.toml (and isthmus serve) set them
    bindings = [(name = "INPUT", text = embed "input.json")]))],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
`,
    );
    const result = await answerOnce<WorkerdPipeline>(sutCpu, join(dir, "pipeline.capnp"), port, inspector);
    if (telemetry && result.exports === 0) throw new Error("the workerd pipeline benchmark exported no telemetry");
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
