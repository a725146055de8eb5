/**
 * Telemetry end to end: the real gateway (`isthmus serve`, bare workerd)
 * in front of real Node origins, exporting to a real OTLP/HTTP receiver
 * that decodes with the official OTLP schema. Asserts span trees and the
 * ids the origin saw, Istio's metrics after a known burst, the access log,
 * and that a failing or hanging collector changes no response and no
 * latency.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { startIdp, type Idp } from "../helpers/idp.ts";
import { send, type Reply } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { requestAuthentication, routedService, serviceEntry } from "../helpers/istio-yaml.ts";
import { logsOf, pointsOf, resourceOf, spansOf, startOtlpReceiver, type OtlpReceiver } from "../helpers/otlp-receiver.ts";

let gw: Gateway;
let app: Origin;
let burst: Origin;
let flaky: Origin;
let shadow: Origin;
let idp: Idp;
let rx: OtlpReceiver;
let token: string;
let secrets: string;

const TRACE = "0af7651916cd43dd8448eb211c80319c";
const PARENT = "b7ad6b7169203331";

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  telemetry:
    flushInterval: 1s
    resourceAttributes: {deployment.environment: e2e}
    propagators: [tracecontext, b3multi]
  extensionProviders:
  - name: otel
    opentelemetry:
      endpoint: "${rx.url}"
      timeout: 2s
      headers: [{name: authorization, secret: OTLP_TOKEN}]
      signals: [traces, metrics, logs]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - randomSamplingPercentage: 100
    customTags:
      team: {literal: {value: edge}}
      tenant: {header: {name: x-tenant, defaultValue: none}}
  accessLogging:
  - providers: [{name: envoy}, {name: otel}]
    filter: {expression: "response.code >= 400"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: burst, namespace: burst}
spec:
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        request_host: {value: "request.host"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: principals, namespace: shop}
spec:
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        request_principal: {value: "request.auth.principal"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet, namespace: quiet}
spec:
  tracing: [{randomSamplingPercentage: 0}]
---
${requestAuthentication(idp, { name: "jwt" })}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shop, namespace: shop}
spec:
  rules: [{to: [{operation: {notPaths: ["/forbidden"]}}]}]
---
apiVersion: isthmus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: ceiling, namespace: shop}
spec:
  rules: [{name: all, limits: [{requests: 100000, unit: minute}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: [shop.test]
  http:
  - name: flaky
    match: [{uri: {prefix: /flaky}}]
    retries: {attempts: 2, retryOn: "503"}
    route: [{destination: {host: flaky.shop.internal}}]
  - name: mirrored
    match: [{uri: {prefix: /mirrored}}]
    mirror: {host: shadow.shop.internal}
    route: [{destination: {host: app.shop.internal, subset: v1}}]
  - name: api
    route: [{destination: {host: app.shop.internal, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: shop}
spec:
  host: app.shop.internal
  subsets: [{name: v1, labels: {version: v1}}]
---
${serviceEntry({ name: "app", namespace: "shop", endpoints: [{ port: app.port, labels: { app: "shop", version: "v1" }, locality: "aws/us-east-1/us-east-1a" }] })}
---
${serviceEntry({ name: "flaky", namespace: "shop", endpoints: [flaky.port] })}
---
${serviceEntry({ name: "shadow", namespace: "shop", endpoints: [shadow.port] })}
---
${routedService({ hosts: "burst.test", name: "burst", namespace: "burst", endpoints: [burst.port] })}
---
${routedService({ hosts: "quiet.test", name: "quiet", namespace: "quiet", endpoints: [burst.port] })}
`;

beforeAll(async () => {
  [app, burst, flaky, shadow, idp, rx] = await Promise.all([startOrigin("app"), startOrigin("burst"), startOrigin("flaky"), startOrigin("shadow"), startIdp(), startOtlpReceiver()]);
  let calls = 0;
  // Every other request fails with 503, so each request is answered on its first retry.
  flaky.respond((_req, res) => {
    calls++;
    res.writeHead(calls % 2 === 1 ? 503 : 200, { "content-type": "text/plain" });
    res.end(calls % 2 === 1 ? "busy" : "ok");
  });
  token = await idp.sign({ sub: "alice" });
  const dir = mkdtempSync(join(tmpdir(), "isthmus-secrets-"));
  secrets = join(dir, ".dev.vars");
  writeFileSync(secrets, "OTLP_TOKEN=Bearer collector-secret\n");
  gw = await startGateway(config(), { command: "serve", args: ["--env-file", secrets] });
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app?.close(), burst?.close(), flaky?.close(), shadow?.close(), idp?.close(), rx?.close()]);
  if (secrets) rmSync(join(secrets, ".."), { recursive: true, force: true });
});

const shop = (path: string, headers: Record<string, string> = {}): Promise<Reply> => send(gw.url, path, { host: "shop.test", headers: { authorization: `Bearer ${token}`, ...headers } });

type Span = Record<string, unknown> & { spanId: string; parentSpanId?: string; name: string; kind: number; attributes: { key: string; value: Record<string, unknown> }[] };
const attrs = (s: Span): Record<string, unknown> => Object.fromEntries(s.attributes.map((a) => [a.key, a.value.stringValue ?? (a.value.intValue !== undefined ? Number(a.value.intValue) : a.value.boolValue)]));
const spansOfTrace = (traceId: string) => (spansOf(rx.exports) as Span[]).filter((s) => s.traceId === traceId);

describe("traces", () => {
  it("joins the client's trace: one SERVER span, stage and attempt children, and the origin's parent is the attempt span", async () => {
    const reply = await shop("/api/items?x=1", { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: "vendor=1", "x-tenant": "acme" });
    expect(reply.status).toBe(200);
    const seen = app.received.at(-1)?.headers ?? {};
    const upstream = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(seen.traceparent));
    expect(upstream?.[1]).toBe(TRACE);
    expect(seen.tracestate).toBe("vendor=1");
    // B3 is configured too: the same ids in x-b3-* headers.
    expect([seen["x-b3-traceid"], seen["x-b3-spanid"], seen["x-b3-sampled"]]).toEqual([TRACE, upstream?.[2], "1"]);
    // Envoy's sampled mark in x-request-id.
    expect(String(seen["x-request-id"])[14]).toBe("9");

    const spans = await rx.waitFor(() => {
      const s = spansOfTrace(TRACE);
      return s.length >= 5 && s;
    });
    const server = spans.find((s) => s.kind === 2) as Span;
    expect(server.parentSpanId).toBe(PARENT);
    expect(server.name).toBe("app.shop.internal:80/*");
    expect(server.traceState).toBe("vendor=1");
    expect(attrs(server)).toMatchObject({
      "http.request.method": "GET",
      "url.path": "/api/items",
      "url.query": "x=1",
      "http.response.status_code": 200,
      response_flags: "-",
      upstream_cluster: "outbound|80|v1|app.shop.internal",
      "guid:x-request-id": seen["x-request-id"],
      "isthmus.request.principal": `${idp.issuer}/alice`,
      team: "edge",
      tenant: "acme",
    });
    const children = spans.filter((s) => s.parentSpanId === server.spanId);
    expect(children.map((s) => s.name).sort()).toEqual(["authentication", "authorization", "rate_limit", "router outbound|80|v1|app.shop.internal egress"]);
    const attempt = children.find((s) => s.kind === 3) as Span;
    expect(attempt.spanId).toBe(upstream?.[2]);
    expect(attrs(attempt)).toMatchObject({ "http.response.status_code": 200, "isthmus.attempt": 1, "server.address": "127.0.0.1", "server.port": app.port });
    const authn = children.find((s) => s.name === "authentication") as Span;
    expect(attrs(authn)).toMatchObject({ "isthmus.authn.result": "verified", "isthmus.authn.principal": `${idp.issuer}/alice` });

    const traceExport = rx.exports.find((e) => e.signal === "traces");
    expect(traceExport?.headers.authorization).toBe("Bearer collector-secret");
    expect(traceExport?.contentType).toBe("application/x-protobuf");
    expect(resourceOf(traceExport as never)).toMatchObject({ "service.name": "isthmus", "deployment.environment": "e2e", "cloud.provider": "cloudflare" });
  });

  it("starts a new root when the client sent no context", async () => {
    const reply = await shop("/api/root");
    expect(reply.status).toBe(200);
    const seen = String(app.received.at(-1)?.headers.traceparent);
    const [, traceId, spanId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(seen) ?? [];
    const spans = await rx.waitFor(() => {
      const s = spansOfTrace(traceId as string);
      return s.length >= 5 && s;
    });
    const server = spans.find((s) => s.kind === 2) as Span;
    expect(server.parentSpanId ?? "").toBe("");
    expect(spans.find((s) => s.kind === 3)?.spanId).toBe(spanId);
  });

  it("follows an unsampled parent: context propagated with the flag off, x-request-id marked unsampled, no spans", async () => {
    const trace = "1".repeat(32);
    await shop("/api/unsampled", { traceparent: `00-${trace}-${PARENT}-00` });
    const seen = app.received.at(-1)?.headers ?? {};
    expect(String(seen.traceparent)).toMatch(new RegExp(`^00-${trace}-[0-9a-f]{16}-00$`));
    expect(String(seen["x-request-id"])[14]).toBe("4");
    // A sampled request sent afterwards is exported; the unsampled one never is.
    await shop("/api/after", { traceparent: `00-${"2".repeat(32)}-${PARENT}-01` });
    await rx.waitFor(() => spansOfTrace("2".repeat(32)).length > 0);
    expect(spansOfTrace(trace)).toEqual([]);
  });

  it("samples at the rate a namespace's Telemetry sets for its traffic (0% here)", async () => {
    const reply = await send(gw.url, "/q", { host: "quiet.test" });
    expect(reply.status).toBe(200);
    const seen = String(burst.received.at(-1)?.headers.traceparent);
    expect(seen).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  it("traces a request the client forces with x-client-trace-id, even at 0%, and marks x-request-id `b` as Envoy does", async () => {
    const reply = await send(gw.url, "/forced", { host: "quiet.test", headers: { "x-client-trace-id": "debug-session-7" } });
    expect(reply.status).toBe(200);
    const seen = burst.received.at(-1)?.headers;
    const [, traceId, , flags] = String(seen?.traceparent).split("-");
    expect(flags).toBe("01");
    expect(String(seen?.["x-request-id"])[14]).toBe("b");
    const server = await rx.waitFor(() => spansOfTrace(traceId as string).find((s) => s.kind === 2));
    expect(attrs(server)["url.path"]).toBe("/forced");
  });

  it("one CLIENT span per attempt, with the retry number, and the retry count metric", async () => {
    const trace = "3".repeat(32);
    const reply = await shop("/flaky", { traceparent: `00-${trace}-${PARENT}-01` });
    expect(reply.status).toBe(200);
    const parents = flaky.received.slice(-2).map((r) => String(r.headers.traceparent).split("-")[2]);
    const spans = await rx.waitFor(() => {
      const s = spansOfTrace(trace).filter((x) => x.kind === 3);
      return s.length >= 2 && s;
    });
    const sorted = spans.sort((a, b) => Number(attrs(a)["isthmus.attempt"]) - Number(attrs(b)["isthmus.attempt"]));
    expect(sorted.map((s) => s.spanId)).toEqual(parents);
    expect(attrs(sorted[0] as Span)).toMatchObject({ "http.response.status_code": 503, "isthmus.attempt": 1 });
    expect(attrs(sorted[1] as Span)).toMatchObject({ "http.response.status_code": 200, "isthmus.attempt": 2, "http.request.resend_count": 1 });
    expect(sorted[0]?.status).toMatchObject({ code: 2 });
    await rx.waitFor(() => pointsOf(rx.exports).some((p) => p.name === "isthmus_upstream_retries_total" && p.attributes.upstream_cluster === "outbound|80||flaky.shop.internal"));
  });

  it("a CLIENT span for the mirrored copy, whose traceparent names it", async () => {
    const trace = "4".repeat(32);
    await shop("/mirrored", { traceparent: `00-${trace}-${PARENT}-01` });
    const mirror = await rx.waitFor(() => spansOfTrace(trace).find((s) => s.name === "mirror outbound|80||shadow.shop.internal"));
    const copy = shadow.received.find((r) => String(r.headers.traceparent).includes(trace));
    expect(String(copy?.headers.traceparent).split("-")[2]).toBe(mirror.spanId);
    // Not sampled, as Istio marks a mirror (trace_sampled: false): the shadow service's spans stay out of the trace.
    expect(String(copy?.headers.traceparent).split("-")[3]).toBe("00");
    expect(attrs(mirror as Span)).toMatchObject({ "isthmus.mirror.outcome": "sent", "http.response.status_code": 200 });
    await rx.waitFor(() => pointsOf(rx.exports).some((p) => p.name === "isthmus_mirror_requests_total" && p.attributes.outcome === "sent"));
  });
});

describe("metrics", () => {
  it("reports Istio's metrics with their labels and values after a known burst", async () => {
    const replies: Reply[] = [];
    for (let i = 0; i < 20; i++) replies.push(await send(gw.url, `/ok/${i}`, { host: "burst.test" }));
    for (let i = 0; i < 5; i++) replies.push(await send(gw.url, "/nowhere", { host: "no-such-host.test" }));
    expect(replies.map((r) => r.status)).toEqual([...Array(20).fill(200), ...Array(5).fill(404)]);
    const sum = (name: string, where: (a: Record<string, unknown>) => boolean) =>
      pointsOf(rx.exports)
        .filter((p) => p.name === name && where(p.attributes))
        .reduce((n, p) => n + p.value, 0);
    const toBurst = (a: Record<string, unknown>) => a.destination_service === "burst.burst.internal";
    await rx.waitFor(() => sum("istio_requests_total", toBurst) >= 20 && sum("istio_requests_total", (a) => a.response_code === "404" && a.response_flags === "NR") >= 5, 20_000);
    // Give a late export the chance to overcount before asserting exact values.
    await new Promise((r) => setTimeout(r, 1500));
    expect(sum("istio_requests_total", toBurst)).toBe(20);
    expect(sum("istio_requests_total", (a) => a.response_flags === "NR")).toBe(5);
    const point = pointsOf(rx.exports).find((p) => p.name === "istio_requests_total" && toBurst(p.attributes));
    expect(point?.temporality).toBe(1);
    expect(point?.attributes).toMatchObject({
      reporter: "source",
      source_workload: "isthmus",
      source_workload_namespace: "istio-system",
      destination_service: "burst.burst.internal",
      destination_service_name: "burst.burst.internal",
      destination_service_namespace: "burst",
      destination_version: "unknown",
      request_protocol: "http",
      response_code: "200",
      response_flags: "-",
      connection_security_policy: "unknown",
      grpc_response_status: "",
      // The namespace's Telemetry adds a label to REQUEST_COUNT only.
      request_host: "burst.test",
    });
    const durations = pointsOf(rx.exports).filter((p) => p.name === "istio_request_duration_milliseconds" && toBurst(p.attributes));
    expect(durations.reduce((n, p) => n + p.value, 0)).toBe(20);
    expect(durations[0]?.attributes.request_host).toBeUndefined();
    expect(durations[0]?.explicitBounds?.slice(0, 4)).toEqual([0.5, 1, 5, 10]);
    // Response sizes are wire bytes: more than the bodies alone.
    const bodies = replies.slice(0, 20).reduce((n, r) => n + Buffer.byteLength(r.body), 0);
    const responseBytes = pointsOf(rx.exports).filter((p) => p.name === "istio_response_bytes" && toBurst(p.attributes));
    expect(responseBytes.reduce((n, p) => n + p.value, 0)).toBe(20);
    expect(responseBytes.reduce((n, p) => n + (p.sum ?? 0), 0)).toBeGreaterThan(bodies + 20 * 50);
  });

  it("labels the destination version with the subset, the cluster with the locality's region and, where a Telemetry asks, the request principal; counts rate-limit decisions", async () => {
    for (let i = 0; i < 3; i++) expect((await shop(`/api/m${i}`)).status).toBe(200);
    const point = await rx.waitFor(() => pointsOf(rx.exports).find((p) => p.name === "istio_requests_total" && p.attributes.destination_service === "app.shop.internal" && p.attributes.response_code === "200"));
    expect(point.attributes).toMatchObject({ destination_version: "v1", destination_app: "shop", destination_cluster: "aws", destination_service_namespace: "shop" });
    // The shop namespace's Telemetry labels requests with the verified JWT principal.
    expect(point.attributes.request_principal).toBe(`${idp.issuer}/alice`);
    await rx.waitFor(() => pointsOf(rx.exports).some((p) => p.name === "isthmus_rate_limit_decisions_total" && p.attributes.rule === "shop/ceiling/all" && p.attributes.outcome === "allowed"));
    await rx.waitFor(() => pointsOf(rx.exports).some((p) => p.name === "isthmus_jwks_fetches_total" && p.attributes.outcome === "success"));
    await rx.waitFor(() => pointsOf(rx.exports).some((p) => p.name === "isthmus_config_version_info"));
  });
});

describe("access logs", () => {
  it("writes Istio's JSON fields for the requests the filter selects, to the console and as OTLP logs", async () => {
    const denied = await shop("/forbidden");
    expect(denied.status).toBe(403);
    const fine = await shop("/api/logged-not");
    expect(fine.status).toBe(200);
    const lines = async () =>
      gw
        .output()
        .split("\n")
        .filter((l) => l.startsWith("{") && l.includes('"start_time"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    await rx.waitFor(() => logsOf(rx.exports).some((r) => JSON.stringify(r).includes("/forbidden")));
    const logged = (await lines()).find((l) => l.path === "/forbidden");
    expect(logged).toMatchObject({
      method: "GET",
      protocol: "HTTP/1.1",
      response_code: 403,
      response_flags: "-",
      response_code_details: "rbac_access_denied_matched_policy[none]",
      authority: "shop.test",
      route_name: "api",
      upstream_cluster: "outbound|80|v1|app.shop.internal",
      upstream_host: null,
      bytes_sent: Buffer.byteLength(denied.body),
    });
    expect(Object.keys(logged ?? {})).toEqual([
      "start_time",
      "route_name",
      "method",
      "path",
      "protocol",
      "response_code",
      "response_flags",
      "response_code_details",
      "connection_termination_details",
      "upstream_transport_failure_reason",
      "bytes_received",
      "bytes_sent",
      "duration",
      "upstream_service_time",
      "x_forwarded_for",
      "user_agent",
      "request_id",
      "authority",
      "upstream_host",
      "upstream_cluster",
      "upstream_local_address",
      "downstream_local_address",
      "downstream_remote_address",
      "requested_server_name",
    ]);
    // 2xx requests are filtered out.
    expect((await lines()).some((l) => l.path === "/api/logged-not")).toBe(false);
  });
});

describe("a broken collector", () => {
  /** The gateway's "export failed; dropped" log lines with this error. */
  const failures = (error: string) => gw.output().split("\n").filter((l) => l.includes("telemetry export failed") && l.includes(error)).length;
  /** Times requests: at least `n`, and on until `done()` holds. */
  const timed = async (n: number, done: () => boolean = () => true): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; out.length < n || !done(); i++) {
      if (i > 20_000) throw new Error("the gateway's export never gave up while requests ran");
      const t = performance.now();
      const r = await send(gw.url, `/t/${i}`, { host: "burst.test" });
      out.push(performance.now() - t);
      expect(r.status).toBe(200);
      expect(r.body).toContain('"origin":"burst"');
    }
    return out.sort((a, b) => a - b);
  };
  const median = (xs: number[]) => xs[Math.floor(xs.length / 2)] as number;

  it("never changes a response or its latency, whether the collector fails or hangs; what was lost is counted", async () => {
    const baseline = median(await timed(30));

    // Requests keep coming until an export has failed for good under them: three 503s
    // (exportRetries 2), then three 2 s timeouts against a collector that never answers.
    rx.setMode({ type: "fail", status: 503 });
    const failing = await timed(30, () => failures("HTTP 503") > 0);
    rx.setMode({ type: "hang" });
    const hanging = await timed(30, () => failures("aborted due to timeout") > 0);
    // Latency is the origin's and the gateway's, not the collector's: the median stays put
    // (generous bound for a shared machine; a blocked export would add seconds).
    expect(median(failing)).toBeLessThan(baseline + 50);
    expect(median(hanging)).toBeLessThan(baseline + 50);
    expect(hanging.at(-1)).toBeLessThan(1_500);

    // Once the collector is back, what was lost is reported with the next metrics.
    rx.setMode({ type: "ok" });
    await send(gw.url, "/t/after", { host: "burst.test" });
    const dropped = await rx.waitFor(() => pointsOf(rx.exports).find((p) => p.name === "isthmus_telemetry_dropped_total" && p.value > 0), 40_000);
    expect(dropped.attributes).toMatchObject({ provider: "otel" });
  }, 120_000);
});
