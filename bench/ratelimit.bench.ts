/**
 * Benchmarks of rate limiting (`npm run bench:ratelimit`; not part of
 * `npm test`):
 *
 * 1. The cost of one LOCAL decision (key hash + isolate bucket) and of the
 *    whole stage with a LOCAL rule, in Node, through the same code the
 *    gateway runs.
 * 2. The latency a GLOBAL decision adds to a request, through the real
 *    Worker bundle and its RateLimiter Durable Objects in workerd
 *    (Miniflare, over local HTTP): a route answered at the edge, with no rule, with a LOCAL
 *    rule, with a GLOBAL rule on one warm key (a minute limit, persisted;
 *    a per-second limit, kept in memory), on a new key per request (a new
 *    object each time), and with leases of 10 and 100.
 * 3. Durable Object calls per request in lease mode, read from the
 *    isolate's decision counters (admin /status).
 *
 * Locally the object runs in the same process, so (2) measures the cost of
 * the call machinery and the object's work, not the network: in
 * production an object may be a region away (5–20 ms per check is
 * reported for Durable Object limiters; performance-security-anchors §4).
 * Requests are sent one at a time; the machine is shared, so treat
 * differences under ~0.1 ms as noise.
 */
import { build } from "esbuild";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfig } from "../src/config/build.ts";
import { applySnapshot } from "../src/config/store.ts";
import { runPipeline, type PipelineDeps } from "../src/gateway/pipeline.ts";
import { decideLocal, rateLimitEnv } from "../src/ratelimit/decide.ts";
import { hydrate } from "../src/routing/hydrate.ts";
import type { RuntimeRule } from "../src/ratelimit/hydrate.ts";
import { localBucketKey } from "../src/ratelimit/key.ts";
import { Balancer } from "../src/routing/balancer.ts";
import { send } from "../test/helpers/http.ts";
import { COMPATIBILITY } from "./runtime.ts";

process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = 200;
const ADMIN = "bench-admin";

const rule = (host: string, body: string) => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${host.split(".")[0]}, namespace: istio-system}
spec:
  hosts: [${host}]
  http:
  - directResponse: {status: 200, body: {string: "ok"}}
${body ? `---
apiVersion: isthmus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: ${host.split(".")[0]}, namespace: istio-system}
spec:
  rules:
  - name: r
    match: {hosts: [${host}]}
    key: ["request.headers[x-key]"]
    decisionTimeout: 5s
${body}` : ""}`;

const SCENARIOS: [name: string, host: string, body: string, key: "same" | "new"][] = [
  ["no rule (baseline)", "none.bench", "", "same"],
  ["LOCAL rule", "local.bench", "    scope: LOCAL\n    limits: [{requests: 100000000, unit: minute}]", "same"],
  ["GLOBAL, warm key, minute limit (persisted)", "minute.bench", "    limits: [{requests: 100000000, unit: minute}]", "same"],
  ["GLOBAL, warm key, second limit (in memory)", "second.bench", "    limits: [{requests: 10000000, unit: second}]", "same"],
  ["GLOBAL, new key per request (new object)", "cold.bench", "    limits: [{requests: 100000000, unit: minute}]", "new"],
  ["GLOBAL, lease of 10", "lease10.bench", "    limits: [{requests: 100000000, unit: minute}]\n    lease: {size: 10}", "same"],
  ["GLOBAL, lease of 100", "lease100.bench", "    limits: [{requests: 100000000, unit: minute}]\n    lease: {size: 100}", "same"],
];

function signed(n: number, digits = 3): string {
  return `${n < 0 ? "−" : "+"}${Math.abs(n).toFixed(digits)}`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function localDecisions(): Promise<string[]> {
  const yaml = rule("local.bench", "    scope: LOCAL\n    limits: [{requests: 100000000, unit: minute}]");
  const result = await buildConfig([{ path: "bench.yaml", text: yaml }]);
  if (!result.snapshot) throw new Error(JSON.stringify(result.problems));
  const runtime = hydrate(result.snapshot);
  const local = runtime.rateLimits?.rules[0] as RuntimeRule;
  const env = rateLimitEnv();
  const n = 50_000;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const name = await localBucketKey(local.def.id, [`client-${i % 1000}`]);
    decideLocal(local, name, local.base, env, Date.now());
  }
  const decision = ((performance.now() - start) * 1000) / n;

  const deps: PipelineDeps = { fetch: () => Promise.reject(new Error("none")), balancer: new Balancer(), random: Math.random, requestId: () => "r", now: Date.now, sleep: async () => {}, rateLimits: env };
  const none = hydrate((await buildConfig([{ path: "b.yaml", text: rule("local.bench", "") }])).snapshot!);
  const timePipeline = async (rt: typeof runtime) => {
    const m = 10_000;
    for (let i = 0; i < 2_000; i++) await runPipeline(new Request("http://local.bench/", { headers: { "x-key": `c${i % 1000}` } }), rt, deps);
    const t = performance.now();
    for (let i = 0; i < m; i++) await runPipeline(new Request("http://local.bench/", { headers: { "x-key": `c${i % 1000}` } }), rt, deps);
    return ((performance.now() - t) * 1000) / m;
  };
  // Alternate, and keep each one's best run, so warm-up and GC do not favour either.
  let base = Number.POSITIVE_INFINITY;
  let withRule = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3; round++) {
    base = Math.min(base, await timePipeline(none));
    withRule = Math.min(withRule, await timePipeline(runtime));
  }
  return [
    `| LOCAL decision (bucket key + bucket) | ${decision.toFixed(2)} µs |`,
    `| whole pipeline, route answered at the edge, no rule | ${base.toFixed(2)} µs |`,
    `| whole pipeline, same route with a LOCAL rule | ${withRule.toFixed(2)} µs (${signed(withRule - base, 2)} µs) |`,
  ];
}

async function workerd(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-bench-"));
  const script = join(dir, "worker.js");
  await build({
    entryPoints: ["src/index.ts"],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*", "node:*"],
    outfile: script,
    logLevel: "error",
  });
  const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      modules: true,
      scriptPath: script,
      modulesRoot: dir,
      ...COMPATIBILITY,
      kvNamespaces: { CONFIG: "isthmus-config" },
      durableObjects: { RATE_LIMITER: { className: "RateLimiter", useSQLite: true } },
      bindings: { ADMIN_TOKEN: ADMIN },
    }),
  );
  try {
    const yaml = SCENARIOS.map(([, host, body]) => rule(host, body)).join("\n---\n");
    const result = await buildConfig([{ path: "bench.yaml", text: yaml }]);
    if (!result.snapshot) throw new Error(JSON.stringify(result.problems));
    const kv = (await mf.getKVNamespace("CONFIG")) as unknown as { get(k: string): Promise<string | null>; put(k: string, v: string): Promise<void>; delete(k: string): Promise<void> };
    await applySnapshot({ get: (k) => kv.get(k), put: (k, v) => kv.put(k, v), delete: (k) => kv.delete(k) }, result.snapshot, result.sources, new Date());
    // Over HTTP with a Host header (Miniflare's dispatchFetch cannot set one).
    const base = (await mf.ready).toString();
    const call = async (host: string, key: string) => {
      const res = await send(base, "/", { host, headers: { "x-key": key } });
      if (res.status !== 200) throw new Error(`${host}: ${res.status} ${res.body}`);
    };
    const status = async () => {
      const res = await send(base, "/__isthmus/status", { host: "none.bench", headers: { authorization: `Bearer ${ADMIN}` } });
      return (JSON.parse(res.body) as { rateLimitDecisions: Record<string, number> | null }).rateLimitDecisions ?? {};
    };
    for (let i = 0; i < 30; i++) {
      try {
        await call("none.bench", "x");
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // Warm every path (JIT, objects) before measuring any.
    for (const [, host, , keys] of SCENARIOS) for (let i = 0; i < WARMUP; i++) await call(host, keys === "new" ? `warm-${i}` : "k");
    // Latency: warm-key scenarios interleaved request by request, so drift (JIT, GC, other load) hits
    // them alike; the new-object scenario runs on its own afterwards (creating objects disturbs the rest).
    const times: number[][] = SCENARIOS.map(() => []);
    const timed = async (s: number, i: number) => {
      const [, host, , keys] = SCENARIOS[s] as (typeof SCENARIOS)[number];
      const t = performance.now();
      await call(host, keys === "new" ? `k-${i}` : "k");
      times[s]?.push(performance.now() - t);
    };
    const warm = SCENARIOS.map((sc, s) => (sc[3] === "same" ? s : -1)).filter((s) => s >= 0);
    const cold = SCENARIOS.map((sc, s) => (sc[3] === "new" ? s : -1)).filter((s) => s >= 0);
    for (let i = 0; i < REQUESTS; i++) for (const s of warm) await timed(s, i);
    for (const s of cold) for (let i = 0; i < REQUESTS; i++) await timed(s, i);
    // Object calls per request: each scenario on its own, read from the isolate's decision counters.
    const perRequest: string[] = [];
    for (const [, host, body, keys] of SCENARIOS) {
      if (!body) {
        perRequest.push("—");
        continue;
      }
      const before = await status();
      const n = 1_000;
      for (let i = 0; i < n; i++) await call(host, keys === "new" ? `count-${i}` : "k");
      const after = await status();
      perRequest.push((((after.object ?? 0) - (before.object ?? 0)) / n).toFixed(3));
    }
    const rows: string[] = [];
    const p50s = times.map((t) => percentile(t.sort((a, b) => a - b), 50));
    const baseline = p50s[0] as number;
    SCENARIOS.forEach(([name, host], s) => {
      const t = times[s] as number[];
      const p50 = p50s[s] as number;
      rows.push(`| ${name} | ${p50.toFixed(3)} | ${percentile(t, 90).toFixed(3)} | ${percentile(t, 99).toFixed(3)} | ${host === "none.bench" ? "—" : signed(p50 - baseline)} | ${perRequest[s]} |`);
    });
    return rows;
  } finally {
    await mf.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

const local = await localDecisions();
const global = await workerd();
console.log(`Node ${process.version}; workerd through Miniflare; ${REQUESTS} requests per scenario, one at a time, scenarios interleaved, after ${WARMUP} warm-up requests each\n`);
console.log("| in Node | cost |");
console.log("|---|---:|");
for (const r of local) console.log(r);
console.log("\n| through the Worker in workerd | p50 ms | p90 ms | p99 ms | added at p50 ms | object calls per request |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of global) console.log(r);
