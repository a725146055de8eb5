/**
 * The realistic pipeline per request with I/O replaced by in-memory ends,
 * shared by the Node micro-benchmark (bench/micro.ts) and the same
 * measurement inside workerd (bench/workerd-pipeline/): only the clock
 * differs between the two.
 *
 * `run(i)` is one request as the Worker runs it (src/index.ts): the
 * upstream and the JWKS answer at once, the rate limit's objects are in
 * memory, and OTLP exports go to a fetch that discards them. `ends(i)` is
 * what the load runs subtract as the passthrough Worker: the client's
 * Request, one fetch to the same in-memory upstream, reading the body.
 * Telemetry's after-response work (metrics, the 1% of spans, flushes every
 * 500 requests) is left running, as under waitUntil; `settle()` awaits it.
 */
import { runPipeline, type PipelineDeps } from "../src/gateway/pipeline.ts";
import { Balancer } from "../src/routing/balancer.ts";
import type { RuntimeSnapshot } from "../src/routing/hydrate.ts";
import { JwksCache } from "../src/authz/jwt/jwks-cache.ts";
import { rateLimitEnv, type RateLimiterNamespace } from "../src/ratelimit/decide.ts";
import { acquire, type BucketSet } from "../src/ratelimit/bucket-set.ts";
import { Telemetry } from "../src/telemetry/telemetry.ts";
import type { Fetch } from "../src/routing/forward.ts";
import type { BenchKeys } from "./idp.ts";
import type { RequestSpec } from "./configs.ts";

export const BODY = "x".repeat(1024);
/** Where the realistic config sends OTLP in these runs (answered in memory). */
export const OTLP_ENDPOINT = "http://otlp.bench.example";

export interface PipelineHarness {
  run(i: number): Promise<void>;
  ends(i: number): Promise<void>;
  /** OTLP exports made so far. */
  exports(): number;
  /** Awaits the after-response work (a scheduled flush sleeps until its interval). */
  settle(): Promise<void>;
}

export function toRequest(r: RequestSpec): Request {
  return new Request(`http://${r.host}${r.path}`, { headers: { host: r.host, ...r.headers } });
}

/** The pipeline's dependencies with an in-memory upstream. */
export function memoryDeps(): PipelineDeps {
  return {
    fetch: async () => new Response(BODY, { status: 200, headers: { "content-type": "application/json", "content-length": "1024" } }),
    balancer: new Balancer(),
    random: Math.random,
    requestId: () => "00000000-0000-4000-8000-000000000000",
    now: () => Date.now(),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}

function memoryLimiters(): RateLimiterNamespace {
  const sets = new Map<string, BucketSet>();
  return {
    getByName: (name) => ({
      acquire: async (request) => {
        const { set, grant } = acquire(sets.get(name), request, Date.now());
        sets.set(name, set);
        return grant;
      },
    }),
  };
}

/**
 * @example
 * const h = pipelineHarness(hydrate(snapshot), config.requests, keys);
 * await h.run(0); await h.ends(0); await h.settle();
 */
export function pipelineHarness(runtime: RuntimeSnapshot, requests: RequestSpec[], keys: BenchKeys): PipelineHarness {
  let exports = 0;
  const fetch: Fetch = async (url, init) => {
    if (url === keys.jwksUri) return Response.json(keys.jwks);
    if (url.startsWith(`${OTLP_ENDPOINT}/`)) {
      exports++;
      await new Response(init.body).arrayBuffer();
      return new Response(null, { status: 200 });
    }
    return new Response(BODY, { status: 200, headers: { "content-type": "application/json", "content-length": "1024" } });
  };
  const now = () => Date.now();
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  const deps: PipelineDeps = { ...memoryDeps(), fetch, jwks: new JwksCache(fetch, now), rateLimits: rateLimitEnv(memoryLimiters()) };
  const telemetry = new Telemetry({ fetch, now, sleep, random: Math.random, secret: () => undefined, log: (message, fields) => console.error(JSON.stringify({ message, ...fields })) });
  const pending: Promise<unknown>[] = [];
  const waitUntil = (p: Promise<unknown>) => void pending.push(p);
  const spec = (i: number) => requests[i % requests.length] as RequestSpec;
  return {
    async run(i) {
      const request = toRequest(spec(i));
      telemetry.serving(runtime);
      const result = await runPipeline(request, runtime, deps, waitUntil);
      const response = telemetry.observe(request, result, runtime, waitUntil);
      if (response.status !== 200) throw new Error(`pipeline answered ${response.status} for ${request.url}: ${await response.text()}`);
      await response.arrayBuffer();
    },
    async ends(i) {
      const request = toRequest(spec(i));
      // As the passthrough Worker forwards: a URL and an init, no Request built in JavaScript.
      const response = await fetch(`http://upstream.bench.example${new URL(request.url).pathname}`, { method: request.method, headers: request.headers, redirect: "manual" });
      await response.arrayBuffer();
    },
    exports: () => exports,
    async settle() {
      await Promise.all(pending);
    },
  };
}

/** Measures `time` takes for a block of work: elapsed ms (each runtime brings its own clock). */
export type BlockTimer = (body: () => Promise<void>) => Promise<number>;

export interface InterleavedMeans {
  /** Mean µs per request of the whole path, in the fastest round. */
  meanUs: number;
  /** Mean µs per request of the ends alone, in that same round. */
  endsUs: number;
  /** Every round's whole path less its ends, µs per request, in round order: how far one reading can move. */
  roundsGatewayUs: number[];
}

/**
 * Warms up, then times blocks of 1,000 requests through the pipeline and
 * through the ends alone, interleaved, so machine noise falls on both
 * alike; over several rounds the fastest round's means are kept (on a
 * shared machine interference only adds time). `run` replaces `h.run` when
 * the caller times each request too.
 *
 * @example
 * const { meanUs, endsUs } = await interleavedMeans(h, { iterations: 50_000, rounds: 5, time: nodeTimer });
 */
export async function interleavedMeans(h: PipelineHarness, opts: { iterations: number; rounds: number; time: BlockTimer; run?: (i: number) => Promise<void> }): Promise<InterleavedMeans> {
  const run = opts.run ?? ((i: number) => h.run(i));
  for (let i = 0; i < Math.min(opts.iterations, 5_000); i++) {
    await h.run(i);
    await h.ends(i);
  }
  const BLOCK = 1_000;
  const perRound = Math.ceil(opts.iterations / opts.rounds);
  let best = { meanUs: Infinity, endsUs: Infinity };
  const roundsGatewayUs: number[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    let pipelineMs = 0;
    let endsMs = 0;
    for (let start = round * perRound; start < (round + 1) * perRound; start += BLOCK) {
      const end = Math.min((round + 1) * perRound, start + BLOCK);
      pipelineMs += await opts.time(async () => {
        for (let i = start; i < end; i++) await run(i);
      });
      endsMs += await opts.time(async () => {
        for (let i = start; i < end; i++) await h.ends(i);
      });
    }
    const meanUs = (pipelineMs * 1000) / perRound;
    const endsUs = (endsMs * 1000) / perRound;
    roundsGatewayUs.push(meanUs - endsUs);
    if (meanUs < best.meanUs) best = { meanUs, endsUs };
  }
  return { ...best, roundsGatewayUs };
}
