/**
 * The pipeline micro-benchmark inside workerd: the same harness as the Node
 * one (bench/pipeline-harness.ts), so the gateway's JavaScript runs on
 * workerd's V8 with workerd's native Request, Response and Headers.
 *
 * workerd's clock only advances across I/O, so each block of requests is
 * bracketed by 1 ms timers and that millisecond is subtracted (as in
 * bench/workerd-ops). GET / answers `{ meanUs, endsUs, gatewayUs, rounds,
 * exports }`: blocks of the pipeline and of the ends alone, interleaved,
 * the fastest round's means kept.
 */
import type { Snapshot } from "../../src/config/snapshot.ts";
import { hydrate } from "../../src/routing/hydrate.ts";
import type { RequestSpec } from "../configs.ts";
import type { BenchKeys } from "../idp.ts";
import { pipelineHarness } from "../pipeline-harness.ts";

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
async function timed(body: () => Promise<void>): Promise<number> {
  await tick();
  const t0 = Date.now();
  await body();
  await tick();
  return Math.max(0, Date.now() - t0 - 1);
}

export default {
  async fetch(_request: Request, env: Env): Promise<Response> {
    const input = JSON.parse(env.INPUT) as Input;
    const h = pipelineHarness(hydrate(input.snapshot), input.requests, input.keys);
    for (let i = 0; i < Math.min(input.iterations, 5_000); i++) {
      await h.run(i);
      await h.ends(i);
    }
    const BLOCK = 1_000;
    const perRound = Math.ceil(input.iterations / input.rounds);
    let meanUs = Infinity;
    let endsUs = Infinity;
    for (let round = 0; round < input.rounds; round++) {
      let pipelineMs = 0;
      let endsMs = 0;
      for (let start = round * perRound; start < (round + 1) * perRound; start += BLOCK) {
        const end = Math.min((round + 1) * perRound, start + BLOCK);
        pipelineMs += await timed(async () => {
          for (let i = start; i < end; i++) await h.run(i);
        });
        endsMs += await timed(async () => {
          for (let i = start; i < end; i++) await h.ends(i);
        });
      }
      const roundMean = (pipelineMs * 1000) / perRound;
      if (roundMean < meanUs) {
        meanUs = roundMean;
        endsUs = (endsMs * 1000) / perRound;
      }
    }
    const exports = h.exports();
    // The after-response work is not awaited: a scheduled flush sleeps until its interval.
    return Response.json({ meanUs, endsUs, gatewayUs: meanUs - endsUs, rounds: input.rounds, exports });
  },
};
