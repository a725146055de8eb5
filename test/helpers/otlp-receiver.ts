/**
 * A real OTLP/HTTP receiver for tests: a Node server on /v1/traces,
 * /v1/metrics and /v1/logs that decodes protobuf bodies with the official
 * OTLP schema (the protobufjs code @opentelemetry/otlp-transformer
 * generates from opentelemetry-proto) and accepts OTLP/JSON. Decoded
 * messages are kept in OTLP/JSON shape (ids as hex, 64-bit integers as
 * strings) so tests read them one way whatever the encoding.
 *
 * It can also fail (answer a status) or hang (never answer), to show that
 * a broken collector never reaches the gateway's clients.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
interface Decoder {
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: Record<string, unknown>): Record<string, unknown>;
}
const root = require("@opentelemetry/otlp-transformer/build/src/generated/root.js") as {
  opentelemetry: { proto: { collector: Record<"trace" | "metrics" | "logs", { v1: Record<string, Decoder> }> } };
};
const DECODERS: Record<string, Decoder> = {
  traces: root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest as Decoder,
  metrics: root.opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest as Decoder,
  logs: root.opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest as Decoder,
};

export interface OtlpExport {
  signal: "traces" | "metrics" | "logs";
  contentType: string;
  headers: IncomingHttpHeaders;
  /** The request in OTLP/JSON shape. */
  body: Record<string, unknown>;
  at: number;
}

export type ReceiverMode = { type: "ok" } | { type: "fail"; status: number } | { type: "hang" };

export interface OtlpReceiver {
  url: string;
  exports: OtlpExport[];
  /** Requests received in any mode (failed and hanging ones too). */
  attempts: { signal: string; at: number }[];
  setMode(mode: ReceiverMode): void;
  /** Waits until `predicate` holds over the exports received so far. */
  waitFor<T>(predicate: (exports: OtlpExport[]) => T | undefined | false, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

/** Base64 ids (protobufjs bytes) → hex, everywhere in a decoded message. */
function idsToHex(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(idsToHex);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = (k === "traceId" || k === "spanId" || k === "parentSpanId") && typeof v === "string" ? Buffer.from(v, "base64").toString("hex") : idsToHex(v);
    }
    return out;
  }
  return value;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const exports: OtlpExport[] = [];
  const attempts: { signal: string; at: number }[] = [];
  let mode: ReceiverMode = { type: "ok" };
  const hanging: ServerResponse[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const signal = /^\/v1\/(traces|metrics|logs)$/.exec(req.url ?? "")?.[1] as OtlpExport["signal"] | undefined;
      if (!signal || req.method !== "POST") {
        res.writeHead(404).end();
        return;
      }
      attempts.push({ signal, at: Date.now() });
      if (mode.type === "hang") {
        hanging.push(res);
        return;
      }
      if (mode.type === "fail") {
        res.writeHead(mode.status, { "content-type": "text/plain" }).end("collector failing on purpose");
        return;
      }
      const contentType = req.headers["content-type"] ?? "";
      const raw = Buffer.concat(chunks);
      let body: Record<string, unknown>;
      try {
        if (contentType.startsWith("application/json")) body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
        else if (contentType.startsWith("application/x-protobuf")) {
          const decoder = DECODERS[signal] as Decoder;
          body = idsToHex(decoder.toObject(decoder.decode(raw), { longs: String, bytes: String, enums: Number, defaults: false })) as Record<string, unknown>;
        } else {
          res.writeHead(415).end();
          return;
        }
      } catch (error) {
        res.writeHead(400, { "content-type": "text/plain" }).end(String(error));
        return;
      }
      exports.push({ signal, contentType, headers: req.headers, body, at: Date.now() });
      res.writeHead(200, { "content-type": contentType.startsWith("application/json") ? "application/json" : "application/x-protobuf" }).end(contentType.startsWith("application/json") ? "{}" : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    exports,
    attempts,
    setMode: (m) => {
      mode = m;
      if (m.type !== "hang") for (const res of hanging.splice(0)) res.destroy();
    },
    async waitFor(predicate, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = predicate(exports);
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out waiting for OTLP exports (received ${exports.map((e) => e.signal).join(", ") || "none"})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging.splice(0)) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Every span of the traces exports, flattened. */
export function spansOf(exports: OtlpExport[]): Record<string, unknown>[] {
  return exports
    .filter((e) => e.signal === "traces")
    .flatMap((e) => (e.body.resourceSpans as { scopeSpans: { spans: Record<string, unknown>[] }[] }[]).flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)));
}

export interface MetricPoint {
  name: string;
  attributes: Record<string, string | number | boolean>;
  /** Sums and gauges: the value; histograms: the count. */
  value: number;
  sum?: number;
  bucketCounts?: number[];
  explicitBounds?: number[];
  temporality?: number;
}

function attributeMap(list: { key: string; value: Record<string, unknown> }[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list ?? []) {
    const v = kv.value;
    out[kv.key] = (v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue) as string | number | boolean;
  }
  return out;
}

/** Every data point of the metrics exports, flattened, with attributes as a map. */
export function pointsOf(exports: OtlpExport[]): MetricPoint[] {
  const out: MetricPoint[] = [];
  for (const e of exports.filter((x) => x.signal === "metrics")) {
    for (const rm of e.body.resourceMetrics as { scopeMetrics: { metrics: Record<string, unknown>[] }[] }[]) {
      for (const sm of rm.scopeMetrics) {
        for (const m of sm.metrics) {
          const name = m.name as string;
          const sum = m.sum as { dataPoints: Record<string, unknown>[]; aggregationTemporality?: number } | undefined;
          const gauge = m.gauge as { dataPoints: Record<string, unknown>[] } | undefined;
          const hist = m.histogram as { dataPoints: Record<string, unknown>[]; aggregationTemporality?: number } | undefined;
          for (const p of sum?.dataPoints ?? gauge?.dataPoints ?? []) {
            out.push({ name, attributes: attributeMap(p.attributes as never), value: Number(p.asInt ?? p.asDouble), ...(sum?.aggregationTemporality !== undefined ? { temporality: sum.aggregationTemporality } : {}) });
          }
          for (const p of hist?.dataPoints ?? []) {
            out.push({
              name,
              attributes: attributeMap(p.attributes as never),
              value: Number(p.count),
              sum: Number(p.sum),
              bucketCounts: (p.bucketCounts as string[]).map(Number),
              explicitBounds: p.explicitBounds as number[],
              ...(hist?.aggregationTemporality !== undefined ? { temporality: hist.aggregationTemporality } : {}),
            });
          }
        }
      }
    }
  }
  return out;
}

/** Resource attributes of an export, as a map. */
export function resourceOf(e: OtlpExport): Record<string, string | number | boolean> {
  const key = e.signal === "traces" ? "resourceSpans" : e.signal === "metrics" ? "resourceMetrics" : "resourceLogs";
  const first = (e.body[key] as { resource: { attributes: { key: string; value: Record<string, unknown> }[] } }[])[0];
  return attributeMap(first?.resource.attributes);
}

/** Every log record of the logs exports. */
export function logsOf(exports: OtlpExport[]): Record<string, unknown>[] {
  return exports
    .filter((e) => e.signal === "logs")
    .flatMap((e) => (e.body.resourceLogs as { scopeLogs: { logRecords: Record<string, unknown>[] }[] }[]).flatMap((r) => r.scopeLogs.flatMap((s) => s.logRecords)));
}

export { attributeMap };
