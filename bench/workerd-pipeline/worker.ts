/**
 * The pipeline micro-benchmark inside workerd: the same harness as the Node
 * one (bench/pipeline-harness.ts), so the gateway's JavaScript runs on
 * workerd's V8 with workerd's native Request, Response and Headers.
 *
 * workerd's clock only advances across I/O, so each block of requests is
 * bracketed by 1 ms timers and that millisecond is subtracted (as in
 * bench/workerd-ops). GET / answers `{ meanUs, endsUs, gatewayUs, rounds,
 * exports, roundsGatewayUs }`: blocks of the pipeline and of the ends alone,
 * interleaved, the fastest round's means kept, and every round's difference.
 */
import type { Snapshot } from "../../src/config/snapshot.ts";
import { hydrate } from "../../src/routing/hydrate.ts";
import type { RequestSpec } from "../configs.ts";
import type { BenchKeys } from "../idp.ts";
import { interleavedMeans, pipelineHarness, type BlockTimer } from "../pipeline-harness.ts";

interface Env {
  /** JSON: { snapshot, requests, keys, iterations, rounds }. */
  INPUT: string;
}

interface Input {
  snapshot: Snapshot;
  requests: RequestSpec[];
  keys: BenchKeys;
  iterations: number;
  rounds: number;
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

/** Milliseconds `body` takes, to the millisecond workerd's clock allows. */
const timed: BlockTimer = async (body) => {
  await tick();
  const t0 = Date.now();
  await body();
  await tick();
  return Math.max(0, Date.now() - t0 - 1);
};

export default {
  async fetch(_request: Request, env: Env): Promise<Response> {
    const input = JSON.parse(env.INPUT) as Input;
    const h = pipelineHarness(hydrate(input.snapshot), input.requests, input.keys);
    const { meanUs, endsUs, roundsGatewayUs } = await interleavedMeans(h, { iterations: input.iterations, rounds: input.rounds, time: timed });
    const exports = h.exports();
    // The after-response work is not awaited: a scheduled flush sleeps until its interval.
    return Response.json({ meanUs, endsUs, gatewayUs: meanUs - endsUs, rounds: input.rounds, exports, roundsGatewayUs });
  },
};
