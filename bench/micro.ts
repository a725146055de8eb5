/**
 * Micro-benchmarks of the pure core, in Node (V8, as in workerd; Request,
 * Response and Headers are Node's, which are slower than workerd's native
 * ones). Run as its own process (`node --expose-gc bench/micro.ts [--smoke]`)
 * so the harness can pin it to a core; prints MicroResults as JSON.
 *
 * The pipeline figure is also measured inside workerd with the same harness
 * (bench/workerd-pipeline.ts, blocks timed between 1 ms timers because
 * workerd's clock only advances on I/O); the harness adds it to these
 * results as `workerdPipeline`.
 */
import { performance } from "node:perf_hooks";
import { buildConfig } from "../src/config/build.ts";
import { hydrate, type RuntimeSnapshot } from "../src/routing/hydrate.ts";
import { packSnapshot, type StoredSnapshot } from "../src/config/snapshot-packing.ts";
import { lookupHost, selectRoute } from "../src/routing/select.ts";
import { ingress } from "../src/gateway/ingress.ts";
import type { RequestFacts } from "../src/gateway/facts.ts";
import { realistic, routeTable, type BenchConfig, type RequestSpec } from "./configs.ts";
import { benchKeys } from "./idp.ts";
import { measureJwt, type JwtCosts } from "./jwt-measure.ts";
import { measureAuthz, type AuthzCost } from "./authz-measure.ts";
import type { WorkerdPipeline } from "./workerd-pipeline.ts";
import { interleavedMeans, memoryDeps, OTLP_ENDPOINT, pipelineHarness, toRequest } from "./pipeline-harness.ts";

export interface LookupResult {
  routes: number;
  shape: string;
  nsPerLookup: number;
}

export interface MicroResults {
  lookups: LookupResult[];
  compile10k: {
    routes: number;
    hosts: number;
    buildMs: number;
    /** The first JSON.parse + hydrate of the stored (packed) text in this process (cold JIT, as in a fresh isolate). */
    firstLoadMs: number;
    /** Median of later loads (warm JIT), split into parse and hydrate. */
    loadMs: number;
    parseMs: number;
    hydrateMs: number;
    /** The same load of the compiled (plain, format 1) layout, median, warm: what the packing saves. */
    plainLoadMs: number;
    /** What a virtual host's first request adds: its text parsed, its 20 routes and rules hydrated (mean over every host, median of rounds). */
    hostFirstUs: number;
    /** The stored (packed) text, and the compiled snapshot's JSON. */
    snapshotBytes: number;
    plainBytes: number;
    /** Heap held by the hydrated snapshot after the load, and once every host has been reached. */
    heapBytes: number;
    heapAllHostsBytes: number;
  };
  /**
   * meanUs/p50Us/p99Us: the whole request, ends included; endsUs: the same requests through a
   * passthrough (the client's Request, one in-memory upstream fetch, reading the body);
   * gatewayUs = meanUs − endsUs, the gateway's own CPU per request.
   */
  pipeline: { routes: number; meanUs: number; p50Us: number; p99Us: number; endsUs: number; gatewayUs: number; rounds: number; telemetryExports: number };
  /** RS256 through the gateway's authentication code (bench/jwt-measure.ts), in Node. */
  jwt: JwtCosts;
  /** One request's policy decision at 10 and 1,000 AuthorizationPolicies, two shapes (bench/authz-measure.ts). */
  authz: AuthzCost[];
  /** The same pipeline harness inside workerd (bench/workerd-pipeline.ts), when it ran. */
  workerdPipeline?: WorkerdPipeline;
}

const smoke = process.argv.includes("--smoke");
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

async function load(config: BenchConfig): Promise<RuntimeSnapshot> {
  const result = await buildConfig([{ path: "bench.yaml", text: config.yaml }]);
  if (!result.snapshot) throw new Error(`bench config does not build: ${JSON.stringify(result.problems.slice(0, 3))}`);
  return hydrate(result.snapshot);
}

function factsFor(runtime: RuntimeSnapshot, requests: RequestSpec[]): RequestFacts[] {
  return requests.map((r) => {
    const entered = ingress(toRequest(r), runtime.snapshot.settings, memoryDeps());
    if (!entered.ok) throw new Error(`ingress rejected ${r.path}`);
    return entered.facts;
  });
}

/** ns per (virtual host + route) lookup, cycling through the request set for about `budgetMs`. */
function timeLookups(runtime: RuntimeSnapshot, facts: RequestFacts[], budgetMs: number): number {
  let found = 0;
  const once = (n: number) => {
    for (let i = 0; i < n; i++) {
      const f = facts[i % facts.length] as RequestFacts;
      const vh = runtime.virtualHosts[lookupHost(runtime.hosts, f.host) as number];
      if (vh && selectRoute(vh, f)) found++;
    }
  };
  // Warm up (JIT) and size the run from a first estimate.
  let n = facts.length;
  let t0 = performance.now();
  once(n);
  while (performance.now() - t0 < budgetMs / 10) {
    n *= 2;
    t0 = performance.now();
    once(n);
  }
  const iterations = Math.max(facts.length, Math.round((n * budgetMs) / Math.max(1e-3, performance.now() - t0)));
  found = 0;
  t0 = performance.now();
  once(iterations);
  const ns = ((performance.now() - t0) * 1e6) / iterations;
  if (found !== iterations) throw new Error(`only ${found} of ${iterations} lookups found their route`);
  return ns;
}

/**
 * Each size is timed in several short rounds, interleaved with the other
 * sizes, and the fastest round is kept: on a shared machine, interference
 * only ever adds time.
 */
async function lookups(): Promise<LookupResult[]> {
  const out: LookupResult[] = [];
  const sizes = smoke ? [10, 1_000] : [10, 1_000, 10_000];
  const rounds = smoke ? 1 : 7;
  for (const regex of [false, true]) {
    const cases = [];
    for (const routes of sizes) {
      const config = routeTable(8080, { hosts: 1, routesPerHost: routes, regex });
      const runtime = await load(config);
      cases.push({ routes, runtime, facts: factsFor(runtime, config.requests), best: Infinity });
    }
    for (let round = 0; round < rounds; round++) {
      for (const c of cases) c.best = Math.min(c.best, timeLookups(c.runtime, c.facts, smoke ? 50 : 200));
    }
    for (const c of cases) out.push({ routes: c.routes, shape: regex ? "with regex routes (every 10th)" : "exact and prefix routes", nsPerLookup: c.best });
  }
  return out;
}

async function compile10k(): Promise<MicroResults["compile10k"]> {
  const hosts = smoke ? 50 : 500;
  const config = routeTable(8080, { hosts, routesPerHost: 20, regex: true });
  let t = performance.now();
  const built = await buildConfig([{ path: "bench.yaml", text: config.yaml }]);
  const buildMs = performance.now() - t;
  if (!built.snapshot) throw new Error("10k-route config does not build");
  // What the store holds and an isolate reads (src/config/snapshot-packing.ts).
  const text = JSON.stringify(packSnapshot(built.snapshot));
  const plainText = JSON.stringify(built.snapshot);
  t = performance.now();
  hydrate(JSON.parse(text) as StoredSnapshot);
  const firstLoadMs = performance.now() - t;
  const parse: number[] = [];
  const hyd: number[] = [];
  const plain: number[] = [];
  const hostFirst: number[] = [];
  for (let i = 0; i < (smoke ? 2 : 7); i++) {
    t = performance.now();
    const snapshot = JSON.parse(text) as StoredSnapshot;
    parse.push(performance.now() - t);
    t = performance.now();
    const runtime = hydrate(snapshot);
    hyd.push(performance.now() - t);
    t = performance.now();
    for (const vh of runtime.virtualHosts) if (vh.routes.length === 0) throw new Error("unreachable");
    hostFirst.push(((performance.now() - t) * 1000) / runtime.virtualHosts.length);
    t = performance.now();
    hydrate(JSON.parse(plainText) as StoredSnapshot);
    plain.push(performance.now() - t);
  }
  // Memory held (the second of two measures: the first also counts code and caches created once per process).
  heldBytes(text);
  const { heapBytes, heapAllHostsBytes } = heldBytes(text);
  const parseMs = median(parse);
  const hydrateMs = median(hyd);
  return {
    routes: hosts * 20,
    hosts,
    buildMs,
    firstLoadMs,
    loadMs: parseMs + hydrateMs,
    parseMs,
    hydrateMs,
    plainLoadMs: median(plain),
    hostFirstUs: median(hostFirst),
    snapshotBytes: Buffer.byteLength(text),
    plainBytes: Buffer.byteLength(plainText),
    heapBytes,
    heapAllHostsBytes,
  };
}

/**
 * Heap held by a hydrated snapshot: after a GC with four loads of `text`
 * alive, minus without, per load; then again once a request has reached
 * every virtual host of each.
 */
function heldBytes(text: string): { heapBytes: number; heapAllHostsBytes: number } {
  const copies = 4;
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const held: RuntimeSnapshot[] = [];
  for (let i = 0; i < copies; i++) held.push(hydrate(JSON.parse(text) as StoredSnapshot));
  gc();
  gc();
  const heapBytes = (process.memoryUsage().heapUsed - before) / copies;
  for (const runtime of held) for (const vh of runtime.virtualHosts) if (vh.routes.length === 0) throw new Error("unreachable");
  gc();
  gc();
  const heapAllHostsBytes = (process.memoryUsage().heapUsed - before) / copies;
  return { heapBytes, heapAllHostsBytes };
}

/**
 * The whole realistic pipeline per request, as the Worker runs it, with I/O
 * replaced by in-memory ends (bench/pipeline-harness.ts). The token of every
 * request is in the verified-token cache after the warm-up (one token per
 * bench user). Telemetry's after-response work runs concurrently, as under
 * waitUntil, within the timed loop, so the mean carries its amortized cost.
 */
async function pipeline(): Promise<MicroResults["pipeline"]> {
  const keys = await benchKeys("https://idp.bench.example");
  const config = realistic(8080, { telemetry: true, jwt: keys, otlpEndpoint: OTLP_ENDPOINT });
  const h = pipelineHarness(await load(config), config.requests, keys);
  const iterations = smoke ? 2_000 : 50_000;
  const rounds = smoke ? 1 : 5;
  // p50 and p99 pool every request of every round.
  const samples = new Float64Array(Math.ceil(iterations / rounds) * rounds);
  const { meanUs, endsUs } = await interleavedMeans(h, {
    iterations,
    rounds,
    time: async (body) => {
      const t0 = performance.now();
      await body();
      return performance.now() - t0;
    },
    run: async (i) => {
      const t = performance.now();
      await h.run(i);
      samples[i] = (performance.now() - t) * 1000;
    },
  });
  samples.sort();
  await h.settle();
  if (h.exports() === 0) throw new Error("the pipeline exported no telemetry");
  return {
    routes: 1_000,
    meanUs,
    p50Us: samples[Math.floor(samples.length * 0.5)] as number,
    p99Us: samples[Math.floor(samples.length * 0.99)] as number,
    endsUs,
    gatewayUs: meanUs - endsUs,
    rounds,
    telemetryExports: h.exports(),
  };
}

/** RS256: a new token each time (key imported and cached) and a verified-token cache hit; best of rounds. */
function jwt(): Promise<JwtCosts> {
  return smoke ? measureJwt("RS256", 100, 5_000, 1) : measureJwt("RS256", 300, 20_000, 5);
}

/** Authorization at 10 and 1,000 policies; about the same time per round whatever the count. */
async function authz(): Promise<AuthzCost[]> {
  const out: AuthzCost[] = [];
  for (const shape of ["every policy applies", "spread over namespaces"] as const) {
    for (const policies of [10, 1_000]) out.push(await measureAuthz(policies, shape, Math.max(100, Math.round((smoke ? 20_000 : 200_000) / policies)), smoke ? 1 : 5));
  }
  return out;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

// `--only lookups|compile|pipeline|jwt|authz` runs one part (for profiling with --cpu-prof, and before/after checks).
const only = process.argv[process.argv.indexOf("--only") + 1];
if (process.argv.includes("--only")) {
  const part = only === "lookups" ? await lookups() : only === "compile" ? await compile10k() : only === "jwt" ? await jwt() : only === "authz" ? await authz() : await pipeline();
  process.stdout.write(JSON.stringify(part));
} else {
  // compile10k first: its first load must find hydrate's code not yet optimized, as a fresh isolate does.
  const compile = await compile10k();
  const results: MicroResults = { compile10k: compile, lookups: await lookups(), pipeline: await pipeline(), jwt: await jwt(), authz: await authz() };
  process.stdout.write(JSON.stringify(results));
}
