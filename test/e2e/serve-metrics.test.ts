/**
 * `isthmus serve --metrics-port`: Prometheus scrapes of a gateway on bare
 * workerd, as Istio's gateways answer them on port 15090. Real requests to
 * a real Node origin, counted in Istio's metrics with Istio's labels,
 * cumulative across scrapes; Telemetry resources choose what reaches the
 * built-in `prometheus` provider (a disabled metric, a namespace whose
 * metrics go only to an OTLP collector); the example Grafana dashboard's
 * series and labels are all there; every scrape is read with a strict
 * parser of Prometheus's text format, and a real Prometheus (Debian's
 * package) scrapes it and answers queries over what it stored.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request, type IncomingHttpHeaders } from "node:http";
import { gunzipSync } from "node:zlib";
import { freePort, startGateway, type Gateway } from "../helpers/gateway.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { send } from "../helpers/http.ts";
import { routedService } from "../helpers/istio-yaml.ts";
import { pointsOf, startOtlpReceiver, type OtlpReceiver } from "../helpers/otlp-receiver.ts";
import { parseScrape, samplesOf, total, type Scrape } from "../helpers/prometheus.ts";
import { dashboardQueries, labelsOf, metricsIn } from "../helpers/dashboard.ts";
import { startPrometheus, type PrometheusServer } from "../helpers/prometheus-server.ts";
import { debianBinary } from "../../bench/debian.ts";
import { spawnSync } from "node:child_process";

let origin: Origin;
let rx: OtlpReceiver;
let gw: Gateway;
let metricsPort: number;

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  configRefreshInterval: 1s
  telemetry: {flushInterval: 1s}
  extensionProviders:
  - name: collector
    opentelemetry: {endpoint: "${rx.url}", protocol: http/json, signals: [metrics]}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - overrides: [{match: {metric: REQUEST_SIZE}, disabled: true}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: collector-only, namespace: quiet}
spec:
  metrics: [{providers: [{name: collector}]}]
---
${routedService({ hosts: "app.example.com", name: "app", namespace: "shop", endpoints: [origin.port] })}
---
${routedService({ hosts: "quiet.example.com", name: "hushed", namespace: "quiet", endpoints: [origin.port] })}
`;

const metricsUrl = () => `http://127.0.0.1:${metricsPort}`;

async function scrape(): Promise<Scrape> {
  const res = await fetch(`${metricsUrl()}/stats/prometheus`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parseScrape(await res.text());
}

const APP = { destination_service: "app.shop.internal", response_code: "200" };
/** The origin's answer: 1,000 bytes of JSON. */
const BODY = JSON.stringify({ pad: "x".repeat(990) });

beforeAll(async () => {
  [origin, rx] = await Promise.all([startOrigin("app"), startOtlpReceiver()]);
  origin.respond((_req, res) => res.writeHead(200, { "content-type": "application/json", "content-length": BODY.length }).end(BODY));
  metricsPort = await freePort();
  gw = await startGateway(config(), { command: "serve", args: ["--metrics-port", String(metricsPort)] });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([origin?.close(), rx?.close()]);
});

describe("isthmus serve --metrics-port", () => {
  it("answers before any traffic with an empty scrape, and only GET or HEAD /stats/prometheus", async () => {
    expect(samplesOf(await scrape(), "istio_requests_total")).toEqual([]);
    const other = await send(metricsUrl(), "/metrics");
    expect([other.status, other.body]).toEqual([404, "not found: GET /stats/prometheus\n"]);
    const post = await fetch(`${metricsUrl()}/stats/prometheus`, { method: "POST" });
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
    const head = await fetch(`${metricsUrl()}/stats/prometheus`, { method: "HEAD" });
    expect(head.status).toBe(200);
    // The same path on the gateway's port is routed like any other (here: no such host).
    expect((await send(gw.url, "/stats/prometheus", { host: "nobody.example.com" })).status).toBe(404);
  });

  it("counts requests in Istio's metrics with Istio's labels, cumulative across scrapes", async () => {
    for (let i = 0; i < 3; i++) expect((await send(gw.url, "/items", { host: "app.example.com" })).status).toBe(200);
    const first = await scrape();
    expect(first.types.get("istio_requests_total")).toBe("counter");
    const [series] = samplesOf(first, "istio_requests_total", APP);
    expect(series?.value).toBe(3);
    expect(series?.labels).toMatchObject({
      reporter: "source",
      source_workload: "isthmus",
      destination_service_name: "app.shop.internal",
      destination_service_namespace: "shop",
      request_protocol: "http",
      response_flags: "-",
    });
    expect(first.types.get("istio_request_duration_milliseconds")).toBe("histogram");
    expect(total(first, "istio_request_duration_milliseconds_count", APP)).toBe(3);
    expect(total(first, "istio_request_duration_milliseconds_bucket", { ...APP, le: "+Inf" })).toBe(3);
    // Each response counted once, by its size (the 1,000-byte body, with headers if counted).
    expect(BODY.length).toBe(1_000);
    const bytes = total(first, "istio_response_bytes_sum", APP);
    expect(bytes).toBeGreaterThanOrEqual(3 * 1_000);
    expect(bytes).toBeLessThan(3 * 2_000);
    expect(total(first, "istio_response_bytes_count", APP)).toBe(3);
    expect(total(first, "istio_response_bytes_bucket", { ...APP, le: "1000" }) + total(first, "istio_response_bytes_bucket", { ...APP, le: "2500" })).toBeGreaterThanOrEqual(3);
    // REQUEST_SIZE is disabled mesh-wide.
    expect(first.types.has("istio_request_bytes")).toBe(false);
    // The version served, as an info gauge.
    expect(samplesOf(first, "isthmus_config_version_info")).toHaveLength(1);

    const NR = { response_code: "404", response_flags: "NR" };
    const unrouted = total(first, "istio_requests_total", NR);
    expect((await send(gw.url, "/missing", { host: "nobody.example.com" })).status).toBe(404);
    for (let i = 0; i < 2; i++) await send(gw.url, "/items", { host: "app.example.com" });
    const second = await scrape();
    expect(total(second, "istio_requests_total", APP)).toBe(5);
    expect(total(second, "istio_request_duration_milliseconds_count", APP)).toBe(5);
    expect(total(second, "istio_response_bytes_sum", APP)).toBeGreaterThanOrEqual(bytes + 2 * 1_000);
    // A request no route took: Istio's NR flag, no destination.
    expect(total(second, "istio_requests_total", NR)).toBe(unrouted + 1);

    // Nothing new: the same values again (a counter is never reset while the process lives).
    const third = await scrape();
    expect(total(third, "istio_requests_total", APP)).toBe(5);
    expect(total(third, "istio_requests_total", NR)).toBe(unrouted + 1);
  });

  it("serves every Istio series the example Grafana dashboard queries, with every label it may use", async () => {
    const now = await scrape();
    const queried = [...new Set(dashboardQueries().flatMap((q) => metricsIn(q.expr)))].filter((name) => name.startsWith("istio_"));
    // REQUEST_SIZE is disabled here; the dashboard's other Istio series must all be in the scrape.
    const expected = queried.filter((name) => !name.startsWith("istio_request_bytes"));
    expect(expected).toEqual(expect.arrayContaining(["istio_requests_total", "istio_request_duration_milliseconds_bucket"]));
    for (const name of expected) {
      const samples = samplesOf(now, name, APP);
      expect(samples.length, name).toBeGreaterThan(0);
      for (const sample of samples) expect(Object.keys(sample.labels).sort(), name).toEqual([...(labelsOf(name) ?? [])].sort());
    }
  });

  it("compresses a scrape with gzip when the scraper accepts it, as Prometheus does", async () => {
    const get = (headers: Record<string, string>) =>
      new Promise<{ headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        request(`${metricsUrl()}/stats/prometheus`, { headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
        })
          .on("error", reject)
          .end();
      });
    // No traffic between the two scrapes: the same series, once compressed.
    const plain = await get({});
    const zipped = await get({ "accept-encoding": "gzip" });
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect(zipped.headers["content-encoding"]).toBe("gzip");
    expect(zipped.headers.vary).toBe("accept-encoding");
    const text = plain.body.toString("utf8");
    expect(gunzipSync(zipped.body).toString("utf8")).toBe(text);
    expect(samplesOf(parseScrape(text), "istio_requests_total", APP).length).toBe(1);
    expect(zipped.body.length).toBeLessThan(plain.body.length / 4);
  });

  it("leaves out traffic whose Telemetry names only an OTLP provider; that provider still receives it", async () => {
    for (let i = 0; i < 2; i++) expect((await send(gw.url, "/items", { host: "quiet.example.com" })).status).toBe(200);
    const points = await rx.waitFor((exports) => {
      const found = pointsOf(exports).filter((p) => p.name === "istio_requests_total" && p.attributes.destination_service === "hushed.quiet.internal");
      return found.reduce((n, p) => n + p.value, 0) === 2 && found;
    });
    expect(points.length).toBeGreaterThan(0);
    const after = await scrape();
    expect(samplesOf(after, "istio_requests_total", { destination_service: "hushed.quiet.internal" })).toEqual([]);
    expect(total(after, "istio_requests_total", APP)).toBe(5);
  });
});

describe("scraped by a real Prometheus", () => {
  let prom: PrometheusServer;
  const appTotal = `sum(istio_requests_total{reporter="source",destination_service="app.shop.internal",response_code="200"})`;

  beforeAll(async () => {
    prom = await startPrometheus([{ job: "isthmus", address: `127.0.0.1:${metricsPort}`, path: "/stats/prometheus" }]);
  }, 180_000);

  afterAll(async () => {
    await prom?.close();
  });

  it("passes promtool's checks, but for the unit in Istio's own metric name", async () => {
    const promtool = debianBinary("promtool");
    expect(promtool, "promtool comes with Debian's prometheus package").toBeDefined();
    const res = await fetch(`${metricsUrl()}/stats/prometheus`);
    const checked = spawnSync(promtool as string, ["check", "metrics"], { input: await res.text(), encoding: "utf8" });
    const problems = `${checked.stdout}${checked.stderr}`.trim().split("\n").filter(Boolean);
    // Istio names it so (Prometheus prefers seconds); every other lint (HELP, _total, names) passes.
    expect(problems).toEqual(['istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"']);
  });

  it("is a healthy target whose counters Prometheus stores and whose histograms it can take quantiles of", async () => {
    await prom.waitFor(`up{job="isthmus"}`, (r) => r[0]?.value === 1);
    const [target] = await prom.targets();
    expect({ health: target?.health, lastError: target?.lastError, job: target?.labels.job }).toEqual({ health: "up", lastError: "", job: "isthmus" });

    const before = total(await scrape(), "istio_requests_total", APP);
    await prom.waitFor(appTotal, (r) => r[0]?.value === before);
    for (let i = 0; i < 4; i++) expect((await send(gw.url, "/items", { host: "app.example.com" })).status).toBe(200);
    // The next scrapes carry the four requests; Prometheus sees the counter grow by exactly that.
    await prom.waitFor(appTotal, (r) => r[0]?.value === before + 4);
    const [counted] = await prom.query(`sum(istio_request_duration_milliseconds_count{reporter="source",destination_service="app.shop.internal"})`);
    expect(counted?.value).toBe(before + 4);

    // Envoy's buckets, read as a histogram: the median of local requests lies within the first buckets.
    const [p50] = await prom.query(`histogram_quantile(0.5, sum by (le) (istio_request_duration_milliseconds_bucket{reporter="source",destination_service="app.shop.internal"}))`);
    expect(p50?.value).toBeGreaterThanOrEqual(0);
    expect(p50?.value).toBeLessThanOrEqual(1000);
    // The response sizes: the 1,000-byte body and the headers, well inside the 1000–2500 bucket.
    const [bytes] = await prom.query(`histogram_quantile(0.5, sum by (le) (istio_response_bytes_bucket{reporter="source",destination_service="app.shop.internal"}))`);
    expect(bytes?.value).toBeGreaterThan(1000);
    expect(bytes?.value).toBeLessThanOrEqual(2500);
  });
});

