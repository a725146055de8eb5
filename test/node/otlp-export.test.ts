/**
 * The OTLP exporter against a real OTLP/HTTP receiver that decodes with the
 * official schema: what it sends (protobuf and JSON), its headers from
 * secrets, and its bounded behaviour when the collector fails or hangs.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Exporter, type ExporterDeps } from "../../src/telemetry/exporter.ts";
import type { OtlpProviderDef, TelemetryDef } from "../../src/config/snapshot.ts";
import { attr, type Resource } from "../../src/telemetry/otlp/model.ts";
import { logsOf, pointsOf, resourceOf, spansOf, startOtlpReceiver, type OtlpReceiver } from "../helpers/otlp-receiver.ts";

let rx: OtlpReceiver;
beforeAll(async () => {
  rx = await startOtlpReceiver();
});
afterAll(() => rx.close());
beforeEach(() => {
  rx.exports.length = 0;
  rx.attempts.length = 0;
  rx.setMode({ type: "ok" });
});

const logs: { message: string; fields: Record<string, unknown> }[] = [];
const deps = (): ExporterDeps => ({
  fetch: (url, init) => fetch(url, init),
  now: Date.now,
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  random: Math.random,
  secret: (name) => ({ OTLP_TOKEN: "Bearer s3cret" })[name],
  log: (message, fields) => logs.push({ message, fields }),
});

function telemetryDef(provider: Partial<OtlpProviderDef> = {}, settings: Partial<TelemetryDef["settings"]> = {}): { def: TelemetryDef; provider: OtlpProviderDef } {
  const p: OtlpProviderDef = { name: "otel", endpoint: rx.url, protocol: "http/protobuf", headers: [["authorization", "OTLP_TOKEN"]], timeoutMs: 2_000, signals: ["traces", "metrics"], ...provider };
  return {
    provider: p,
    def: {
      providers: [p],
      settings: { resourceAttributes: { "service.name": "isthmus" }, flushIntervalMs: 5_000, flushRequests: 500, maxSeries: 100, exportRetries: 2, propagators: ["tracecontext"], sourceWorkload: "isthmus", sourceNamespace: "istio-system", ...settings },
      plans: [],
      clusterPlans: {},
    },
  };
}

const resource: Resource = { attributes: [attr("service.name", "isthmus"), attr("service.instance.id", "abc")] };
const span = {
  traceId: "0af7651916cd43dd8448eb211c80319c",
  spanId: "b7ad6b7169203331",
  parentSpanId: "00f067aa0ba902b7",
  name: "app.shop.internal:80/*",
  kind: 2,
  startTimeUnixNano: 1_760_000_000_000,
  endTimeUnixNano: 1_760_000_000_042,
  attributes: [attr("http.response.status_code", 200), attr("http.request.method", "GET")],
  status: { code: 0 },
};

describe.each(["http/protobuf", "http/json"] as const)("OTLP export over %s", (protocol) => {
  it("sends spans, metrics and logs the official schema decodes, with the header from the secret", async () => {
    const { def, provider } = telemetryDef({ protocol });
    const exporter = new Exporter(deps());
    exporter.addSpans(provider, 100, [span]);
    const store = exporter.metrics(provider, 100);
    store.add("istio_requests_total", "200", () => [attr("response_code", "200")], 3);
    store.record("istio_request_duration_milliseconds", "200", () => [attr("response_code", "200")], 42);
    exporter.addLog(provider, 100, { timeUnixNano: 1_760_000_000_000, observedTimeUnixNano: 1_760_000_000_001, severityNumber: 9, severityText: "INFO", body: { stringValue: "{}" }, attributes: [attr("response_code", 200)], traceId: span.traceId, spanId: span.spanId });
    await exporter.flush(def, resource);

    expect(rx.exports.map((e) => [e.signal, e.contentType, e.headers.authorization])).toEqual([
      ["traces", protocol === "http/json" ? "application/json" : "application/x-protobuf", "Bearer s3cret"],
      ["metrics", protocol === "http/json" ? "application/json" : "application/x-protobuf", "Bearer s3cret"],
      ["logs", protocol === "http/json" ? "application/json" : "application/x-protobuf", "Bearer s3cret"],
    ]);
    expect(resourceOf(rx.exports[0] as never)).toEqual({ "service.name": "isthmus", "service.instance.id": "abc" });
    const [got] = spansOf(rx.exports);
    expect(got).toMatchObject({
      traceId: span.traceId,
      spanId: span.spanId,
      parentSpanId: span.parentSpanId,
      name: span.name,
      kind: 2,
      startTimeUnixNano: "1760000000000000000",
      endTimeUnixNano: "1760000000042000000",
    });
    const points = pointsOf(rx.exports);
    expect(points.find((p) => p.name === "istio_requests_total")).toMatchObject({ value: 3, temporality: 1, attributes: { response_code: "200" } });
    const hist = points.find((p) => p.name === "istio_request_duration_milliseconds");
    expect(hist).toMatchObject({ value: 1, sum: 42, temporality: 1 });
    expect(hist?.bucketCounts?.length).toBe((hist?.explicitBounds?.length ?? 0) + 1);
    expect(hist?.bucketCounts?.[5]).toBe(1);
    expect(logsOf(rx.exports)[0]).toMatchObject({ severityNumber: 9, body: { stringValue: "{}" }, traceId: span.traceId, spanId: span.spanId });
  });
});

describe("OTLP protobuf encoding of repeated attributes", () => {
  it("decodes every series' labels exactly, across exports, when the same label pairs repeat (they are encoded once and reused)", async () => {
    const { def, provider } = telemetryDef();
    const exporter = new Exporter(deps());
    const labels = (i: number) => [attr("reporter", "source"), attr("destination_service", `s${i % 7}.internal`), attr("response_code", String(200 + (i % 3))), attr("n", i), attr("ok", i % 2 === 0)];
    for (let round = 0; round < 2; round++) {
      const store = exporter.metrics(provider, 1000);
      for (let i = 0; i < 40; i++) store.add("istio_requests_total", String(i), () => labels(i), i + 1);
      await exporter.flush(def, resource);
    }
    const points = pointsOf(rx.exports).filter((p) => p.name === "istio_requests_total");
    expect(points).toHaveLength(80);
    for (const p of points) {
      const i = (p.value as number) - 1;
      expect(p.attributes).toEqual({ reporter: "source", destination_service: `s${i % 7}.internal`, response_code: String(200 + (i % 3)), n: i, ok: i % 2 === 0 });
    }
  });
});

describe("OTLP export failures", () => {
  it("retries 503 a bounded number of times, then counts the items as dropped and reports them with the next metrics", async () => {
    const { def, provider } = telemetryDef({}, { exportRetries: 2 });
    const exporter = new Exporter(deps());
    rx.setMode({ type: "fail", status: 503 });
    exporter.addSpans(provider, 100, [span, { ...span, spanId: "1111111111111111" }]);
    await exporter.flush(def, resource);
    expect(rx.attempts.filter((a) => a.signal === "traces").length).toBe(3);
    expect(exporter.stats).toMatchObject({ failed: 1, dropped: 2 });

    rx.setMode({ type: "ok" });
    exporter.metrics(provider, 100).add("istio_requests_total", "x", () => [], 1);
    await exporter.flush(def, resource);
    expect(pointsOf(rx.exports).find((p) => p.name === "isthmus_telemetry_dropped_total")).toMatchObject({ value: 2, attributes: { signal: "traces", provider: "otel" } });
  });

  it("does not retry a status the OTLP specification calls permanent", async () => {
    const { def, provider } = telemetryDef();
    const exporter = new Exporter(deps());
    rx.setMode({ type: "fail", status: 400 });
    exporter.addSpans(provider, 100, [span]);
    await exporter.flush(def, resource);
    expect(rx.attempts.length).toBe(1);
    expect(exporter.stats.dropped).toBe(1);
  });

  it("gives up on a hanging collector after timeout × (1 + retries), within the flush budget", async () => {
    const { def, provider } = telemetryDef({ timeoutMs: 300 }, { exportRetries: 1 });
    const exporter = new Exporter(deps());
    rx.setMode({ type: "hang" });
    exporter.addSpans(provider, 100, [span]);
    const started = Date.now();
    await exporter.flush(def, resource);
    const took = Date.now() - started;
    expect(rx.attempts.length).toBe(2);
    expect(took).toBeGreaterThanOrEqual(600);
    expect(took).toBeLessThan(5_000);
    expect(exporter.stats.dropped).toBe(1);
    expect(logs.some((l) => l.message.includes("telemetry export failed"))).toBe(true);
  });

  it("sends what was buffered during a hanging export, and that export's dropped count, as soon as it ends, with no further request", async () => {
    const { def, provider } = telemetryDef({ timeoutMs: 300 }, { exportRetries: 0 });
    const exporter = new Exporter(deps());
    rx.setMode({ type: "hang" });
    exporter.addSpans(provider, 100, [span]);
    const first = exporter.flush(def, resource);
    await new Promise((r) => setTimeout(r, 50));
    rx.setMode({ type: "ok" });
    // The last request of a burst finishes while the hanging export runs: its flush joins that one.
    exporter.metrics(provider, 100).add("istio_requests_total", "x", () => [], 1);
    const joined = exporter.flush(def, resource);
    await Promise.all([first, joined]);
    expect(pointsOf(rx.exports).find((p) => p.name === "istio_requests_total")?.value).toBe(1);
    expect(pointsOf(rx.exports).find((p) => p.name === "isthmus_telemetry_dropped_total")).toMatchObject({ value: 1, attributes: { signal: "traces" } });
  });

  it("bounds what it buffers while exports cannot keep up", async () => {
    const { def, provider } = telemetryDef();
    const exporter = new Exporter(deps());
    const many = Array.from({ length: 5_000 }, (_, i) => ({ ...span, spanId: (i + 1).toString(16).padStart(16, "0") }));
    exporter.addSpans(provider, 100, many);
    await exporter.flush(def, resource);
    expect(spansOf(rx.exports).length).toBe(4_096);
    exporter.metrics(provider, 100).add("istio_requests_total", "x", () => [], 1);
    await exporter.flush(def, resource);
    expect(pointsOf(rx.exports).find((p) => p.name === "isthmus_telemetry_dropped_total")?.value).toBe(904);
  });
});

describe("OTLP export timing", () => {
  it("sends spans after flushRequests requests, and metrics only every flushInterval", async () => {
    let now = 1_000_000;
    const { def, provider } = telemetryDef({}, { flushRequests: 3, flushIntervalMs: 5_000 });
    const exporter = new Exporter({ ...deps(), now: () => now, sleep: () => new Promise(() => {}) });
    const request = () => {
      exporter.metrics(provider, 100).add("istio_requests_total", "200", () => [attr("response_code", "200")]);
      return exporter.finishedRequest(def, resource);
    };
    exporter.addSpans(provider, 100, [span]);
    await Promise.race([Promise.all([request(), request(), request()]), new Promise((r) => setTimeout(r, 1_000))]);
    expect(rx.exports.map((e) => e.signal)).toEqual(["traces"]);
    // Without buffered spans or logs, the request count alone sends nothing.
    await Promise.race([Promise.all([request(), request(), request()]), new Promise((r) => setTimeout(r, 300))]);
    expect(rx.exports.map((e) => e.signal)).toEqual(["traces"]);
    // Once the interval has passed, the next request sends the metrics of all seven.
    now += 5_000;
    await request();
    expect(rx.exports.map((e) => e.signal)).toEqual(["traces", "metrics"]);
    expect(pointsOf(rx.exports).find((p) => p.name === "istio_requests_total")?.value).toBe(7);
  });

  it("sends the metrics once per interval when a request flushes before the scheduled flush wakes, and still sends what came after when traffic stops", async () => {
    let now = 1_000_000;
    const { def, provider } = telemetryDef({}, { flushRequests: 1_000, flushIntervalMs: 5_000 });
    // A sleep that wakes when the test says (it advances the clock first).
    const sleeping: { until: number; wake: () => void }[] = [];
    const sleep = (ms: number) => new Promise<void>((wake) => sleeping.push({ until: now + ms, wake }));
    const wakeDue = () => {
      for (const s of sleeping.splice(0)) {
        if (s.until <= now) s.wake();
        else sleeping.push(s);
      }
    };
    const exporter = new Exporter({ ...deps(), now: () => now, sleep });
    const pending: Promise<void>[] = [];
    const request = (count = 1) => {
      exporter.metrics(provider, 100).add("istio_requests_total", "200", () => [attr("response_code", "200")], count);
      const flushing = exporter.finishedRequest(def, resource);
      if (flushing) pending.push(flushing);
      return flushing;
    };
    request(); // schedules a flush for the end of the interval
    expect(sleeping).toHaveLength(1);
    // The interval ends; a request finishing at that moment flushes first (what the gateway does under traffic).
    now += 5_000;
    await request();
    expect(rx.exports.map((e) => e.signal)).toEqual(["metrics"]);
    request(10); // measured after that export
    // The scheduled flush wakes just after: the metrics went 0 ms ago, nothing is due, nothing is sent.
    wakeDue();
    await new Promise((r) => setTimeout(r, 200));
    expect(rx.exports.map((e) => e.signal)).toEqual(["metrics"]);
    // Traffic has stopped. The 10 requests measured after the export still go, at the end of their interval.
    now += 5_000;
    wakeDue();
    await Promise.all(pending);
    expect(rx.exports.map((e) => e.signal)).toEqual(["metrics", "metrics"]);
    expect(pointsOf([rx.exports[1] as never]).find((p) => p.name === "istio_requests_total")?.value).toBe(10);
  });
});

describe("the series cap", () => {
  it("follows a configuration that changes maxSeries: the provider's store opens series up to the new cap", () => {
    const { provider } = telemetryDef();
    const exporter = new Exporter(deps());
    const open = (cap: number, from: number, to: number) => {
      for (let i = from; i < to; i++) exporter.metrics(provider, cap).add("istio_requests_total", `p${i}`, () => [attr("path", `/p${i}`)]);
    };
    const store = exporter.metrics(provider, 10);
    const folded = () => store.collect(Date.now()).find((m) => m.name === "isthmus_telemetry_series_folded_total")?.sum?.dataPoints[0]?.asInt ?? 0;
    open(10, 0, 12);
    expect(folded()).toBe(2);
    // The next snapshot raises telemetry.maxSeries to 30: the 10 series held and 15 new ones fit.
    open(30, 0, 25);
    expect(store.size).toBe(25 + 1); // and the overflow series, kept (zeroed) for one more interval
    expect(folded()).toBe(0);
  });
});
