/**
 * EnvoyFilter local_ratelimit patches translated into LOCAL rules, with the
 * shapes Istio's documentation uses; what does not map is reported.
 */
import { describe, expect, it } from "vitest";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { rateLimitEnv } from "../../../src/ratelimit/decide.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { build, errors, snapshotOf, warnings } from "../support.ts";

const productpage = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: bookinfo}
spec:
  hosts: [productpage.bookinfo.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1, labels: {app: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: bookinfo}
spec:
  hosts: [bookinfo.test]
  http:
  - name: health
    match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: "healthy"}}
  - name: pages
    route: [{destination: {host: productpage.bookinfo.internal}}]
`;

/** The local rate limit example of Istio's "Enabling Rate Limits using Envoy" task. */
const istioExample = (value = "") => `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-local-ratelimit-svc, namespace: bookinfo}
spec:
  workloadSelector:
    labels: {app: productpage}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter: {name: "envoy.filters.network.http_connection_manager"}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          value:
            stat_prefix: http_local_rate_limiter
            token_bucket: {max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s}
            filter_enabled:
              runtime_key: local_rate_limit_enabled
              default_value: {numerator: 100, denominator: HUNDRED}
            filter_enforced:
              runtime_key: local_rate_limit_enforced
              default_value: {numerator: 100, denominator: HUNDRED}
            response_headers_to_add:
            - append_action: APPEND_IF_EXISTS_OR_ADD
              header: {key: x-local-rate-limit, value: 'true'}${value}`;

const deps = (): PipelineDeps => ({
  fetch: async () => new Response("page"),
  balancer: new Balancer(() => 0),
  random: () => 0,
  requestId: () => "rid",
  now: () => 1_000,
  sleep: async () => {},
  rateLimits: rateLimitEnv(),
});

describe("EnvoyFilter local_ratelimit", () => {
  it("translates Istio's example into a LOCAL rule for the selected workload, enforced with its 429 headers", async () => {
    const result = await build(productpage, istioExample());
    expect([errors(result), warnings(result)]).toEqual([[], []]);
    const rule = result.snapshot?.rateLimits?.rules[0];
    expect(rule).toMatchObject({
      source: "EnvoyFilter/bookinfo/filter-local-ratelimit-svc",
      name: "http_local_rate_limiter",
      scope: "LOCAL",
      mode: "ENFORCE",
      key: [],
      limits: [{ requests: 4, windowMs: 60_000, burst: 4 }],
      headers: { format: "NONE", onAllowed: false, onLimited: [["x-local-rate-limit", "true"]] },
    });
    const runtime = hydrate(result.snapshot!);
    const isolate = deps();
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 5; i++) {
      last = (await runPipeline(new Request("http://bookinfo.test/productpage"), runtime, isolate)).response;
      statuses.push(last.status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
    expect([await last?.text(), last?.headers.get("x-local-rate-limit")]).toEqual(["local_rate_limited", "true"]);
    // Traffic that does not reach productpage (a direct response) is not limited by the workload's filter.
    expect((await runPipeline(new Request("http://bookinfo.test/health"), runtime, isolate)).response.status).toBe(200);
  });

  it("attaches a root-namespace SIDECAR_INBOUND patch to every destination, never gateway-wide: requests no route takes are not counted", async () => {
    const rootInbound = istioExample()
      .replace("namespace: bookinfo}", "namespace: istio-system}")
      .replace("  workloadSelector:\n    labels: {app: productpage}\n", "")
      .replace("max_tokens: 4, tokens_per_fill: 4", "max_tokens: 1, tokens_per_fill: 1");
    const result = await build(productpage, rootInbound);
    expect([errors(result), warnings(result)]).toEqual([[], []]);
    const rl = result.snapshot!.rateLimits!;
    // Not in the gateway's scope (Istio runs SIDECAR_INBOUND patches only at sidecars), in every cluster's.
    expect(rl.scopes[0]).toEqual([]);
    expect(Object.keys(rl.clusterScopes)).toEqual(Object.keys(result.snapshot!.clusters));
    const runtime = hydrate(result.snapshot!);
    const isolate = deps();
    const status = async (url: string) => (await runPipeline(new Request(url), runtime, isolate)).response.status;
    // Unrouted 404s and direct responses spend no token of the bucket the destinations share.
    expect([await status("http://nohost.example.com/a"), await status("http://nohost.example.com/b"), await status("http://bookinfo.test/health")]).toEqual([404, 404, 200]);
    expect([await status("http://bookinfo.test/productpage"), await status("http://bookinfo.test/productpage")]).toEqual([200, 429]);
  });

  it("maps filter_enforced 0% to SHADOW, skips a filter that is not enabled, and warns about partial percentages", async () => {
    const enforcedOff = istioExample().replace("default_value: {numerator: 100, denominator: HUNDRED}\n            response", "default_value: {numerator: 0, denominator: HUNDRED}\n            response");
    expect((await snapshotOf(productpage, enforcedOff)).rateLimits?.rules[0]?.mode).toBe("SHADOW");
    const notEnabled = istioExample().replace(/ *filter_enabled:\n.*\n.*\n/, "");
    const skipped = await build(productpage, notEnabled);
    expect(skipped.snapshot?.rateLimits).toBeUndefined();
    expect(warnings(skipped)).toEqual([expect.stringMatching(/filter_enabled: is 0% \(Envoy's default when unset\), so this local rate limit does nothing/)]);
    const partial = await build(productpage, istioExample().replace("numerator: 100, denominator: HUNDRED}\n            filter_enforced", "numerator: 5000, denominator: TEN_THOUSAND}\n            filter_enforced"));
    expect(warnings(partial)).toEqual([expect.stringMatching(/filter_enabled: partial filter_enabled \(50%\) has no edge equivalent; treated as 100%$/)]);
  });

  it("translates a per-route configuration into one bucket per route, narrowed to the gateway virtual host and route named", async () => {
    const filter = `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: per-route, namespace: istio-system}
spec:
  configPatches:
  - applyTo: HTTP_ROUTE
    match:
      context: GATEWAY
      routeConfiguration:
        vhost:
          name: "bookinfo.test:80"
          route: {name: pages, action: ANY}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:
            "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            stat_prefix: pages
            token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 1s}
            filter_enabled: {default_value: {numerator: 100}}
            filter_enforced: {default_value: {numerator: 100}}
            enable_x_ratelimit_headers: DRAFT_VERSION_03`;
    const snapshot = await snapshotOf(productpage, filter);
    const rl = snapshot.rateLimits!;
    expect(rl.rules[0]).toMatchObject({
      match: [{ attribute: "request.host", values: ["bookinfo.test", "bookinfo.test:*"] }, { attribute: "route.name", values: ["pages"] }],
      key: [{ attribute: "route" }],
      limits: [{ requests: 1, windowMs: 1000, burst: 2 }],
      headers: { format: "DRAFT_VERSION_03", onAllowed: true },
    });
    expect(rl.scopes[0]).toEqual([0]);
    const runtime = hydrate(snapshot);
    const isolate = deps();
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push((await runPipeline(new Request("http://bookinfo.test/p"), runtime, isolate)).response);
    expect(replies.map((r) => r.status)).toEqual([200, 200, 429]);
    expect([replies[0]?.headers.get("x-ratelimit-limit"), replies[0]?.headers.get("x-ratelimit-remaining")]).toEqual(["2, 1;w=1", "1"]);
  });

  /** One GATEWAY patch of the local rate limit filter: the filter's own, a virtual host's or a route's. */
  const patch = (applyTo: "HTTP_FILTER" | "VIRTUAL_HOST" | "HTTP_ROUTE", name: string, bucket: string, options: { vhost?: string; route?: string; enabled?: number } = {}) => {
    const config = `
            "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            stat_prefix: ${name}
            token_bucket: ${bucket}
            filter_enabled: {default_value: {numerator: ${options.enabled ?? 100}}}
            filter_enforced: {default_value: {numerator: 100}}`;
    if (applyTo === "HTTP_FILTER") {
      return `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:${config.replace(/^ {12}/gm, "          ")}`;
    }
    const route = options.route ? `, route: {name: ${options.route}, action: ANY}` : "";
    return `
  - applyTo: ${applyTo}
    match:
      context: GATEWAY
      routeConfiguration: {vhost: {name: "${options.vhost ?? "bookinfo.test:80"}"${route}}}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          envoy.filters.http.local_ratelimit:${config}`;
  };
  const envoyFilter = (...patches: string[]) => `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: layered, namespace: istio-system}
spec:
  configPatches:${patches.join("")}`;
  const statuses = async (runtime: ReturnType<typeof hydrate>, isolate: PipelineDeps, path: string, n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await runPipeline(new Request(`http://bookinfo.test${path}`), runtime, isolate)).response.status);
    return out;
  };

  it("applies the most specific configuration, as Envoy does: a route's replaces its host's and the filter's, a host's the filter's", async () => {
    const result = await build(
      productpage,
      envoyFilter(
        patch("HTTP_FILTER", "everything", "{max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s}"),
        patch("VIRTUAL_HOST", "bookinfo", "{max_tokens: 2, tokens_per_fill: 2, fill_interval: 60s}"),
        patch("HTTP_ROUTE", "pages", "{max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 1s}", { route: "pages" }),
      ),
    );
    expect([errors(result), warnings(result)]).toEqual([[], []]);
    const [filterRule, hostRule, routeRule] = result.snapshot!.rateLimits!.rules;
    const host = { attribute: "request.host", values: ["bookinfo.test", "bookinfo.test:*"] };
    const pages = { attribute: "route.name", values: ["pages"] };
    expect(filterRule?.unless).toEqual([[host], [host, pages]]);
    expect(hostRule?.unless).toEqual([[host, pages]]);
    expect(routeRule?.unless).toBeUndefined();
    const runtime = hydrate(result.snapshot!);
    const isolate = deps();
    // pages: only its own 1,000 per second (the filter's 3 and the host's 2 per minute would refuse the 3rd and 4th).
    expect(await statuses(runtime, isolate, "/p", 6)).toEqual([200, 200, 200, 200, 200, 200]);
    // health, another route of the host: the host's 2 per minute, not the filter's 3.
    expect(await statuses(runtime, isolate, "/health", 3)).toEqual([200, 200, 429]);
  });

  it("lets a root-namespace SIDECAR_INBOUND route configuration replace the filter-wide ones at sidecars, not the gateway's", async () => {
    const inboundRoute = patch("HTTP_ROUTE", "pages", "{max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 1s}", { route: "pages", vhost: "inbound|http|9080" }).replace(
      "context: GATEWAY",
      "context: SIDECAR_INBOUND",
    );
    const gatewayWide = envoyFilter(patch("HTTP_FILTER", "everything", "{max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s}"));
    const result = await build(productpage, `${istioExample()}\n`, `${gatewayWide}\n`, envoyFilter(inboundRoute).replace("name: layered", "name: inbound-pages"));
    expect([errors(result), warnings(result)]).toEqual([[], []]);
    const rules = result.snapshot!.rateLimits!.rules;
    const pages = [{ attribute: "route.name", values: ["pages"] }];
    expect(rules.map((r) => [r.name, r.unless])).toEqual([
      ["http_local_rate_limiter", [pages]],
      ["everything", undefined],
      ["pages", undefined],
    ]);
  });

  it("exempts the routes whose own configuration has filter_enabled 0% from the filter's limit, and says so", async () => {
    const result = await build(
      productpage,
      envoyFilter(
        patch("HTTP_FILTER", "everything", "{max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s}"),
        patch("HTTP_ROUTE", "health", "{max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s}", { route: "health", enabled: 0 }),
      ),
    );
    expect(errors(result)).toEqual([]);
    expect(warnings(result)).toEqual([expect.stringMatching(/filter_enabled: is 0% .*these routes are not limited, not even by a less specific configuration/)]);
    expect(result.snapshot!.rateLimits!.rules).toHaveLength(1);
    const runtime = hydrate(result.snapshot!);
    const isolate = deps();
    expect(await statuses(runtime, isolate, "/health", 5)).toEqual([200, 200, 200, 200, 200]);
    expect(await statuses(runtime, isolate, "/p", 4)).toEqual([200, 200, 200, 429]);
  });

  it("refuses what would change which requests are limited, and ignores every other patch with a warning", async () => {
    const descriptors = istioExample(`
            descriptors:
            - entries: [{key: user, value: alice}]
              token_bucket: {max_tokens: 1, fill_interval: 60s}`);
    expect(errors(await build(productpage, descriptors))).toEqual([
      expect.stringMatching(/EnvoyFilter\/bookinfo\/filter-local-ratelimit-svc: spec\.configPatches\[0\]\.patch\.value\.typed_config\.value\.descriptors: descriptors need the route's rate_limits actions/),
    ]);
    const cluster = istioExample(`
            local_cluster_rate_limit: {}`);
    expect(errors(await build(productpage, cluster))).toEqual([expect.stringMatching(/local_cluster_rate_limit: shares one bucket across the gateway's replicas/)]);
    const tooFast = istioExample().replace("fill_interval: 60s", "fill_interval: 0.01s");
    expect(errors(await build(productpage, tooFast))).toEqual([expect.stringMatching(/token_bucket\.fill_interval: expected a duration of at least 50ms/)]);

    const other = `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: istio-system}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.lua, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua}}}`;
    const ignored = await build(other);
    expect(errors(ignored)).toEqual([]);
    expect(warnings(ignored)).toEqual([
      "config.yaml:3: warning: EnvoyFilter/istio-system/lua: kind: ignored: EnvoyFilter patches Envoy's own configuration, which Isthmus does not run (only envoy.filters.http.local_ratelimit is translated, into LOCAL rate limits; see docs/CONFIG.md)",
    ]);
    const outbound = await build(productpage, istioExample().replace("context: SIDECAR_INBOUND", "context: SIDECAR_OUTBOUND"));
    expect(warnings(outbound)).toEqual([expect.stringMatching(/match\.context: SIDECAR_OUTBOUND limits traffic leaving mesh workloads, which never passes the edge; ignored/)]);
    expect(outbound.snapshot?.rateLimits).toBeUndefined();
  });
});
