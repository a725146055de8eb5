/**
 * Prometheus's text exposition format (version 0.0.4), the format of
 * Envoy's `/stats/prometheus`: a `# TYPE` line per metric, then one line
 * per series; a histogram as cumulative `_bucket` lines (`le`, ending with
 * `+Inf`), `_sum` and `_count`.
 *
 * @example
 * exposition([{ name: "istio_requests_total", kind: "counter", bounds: [],
 *   series: new Map([['{response_code="200"}', { labels: '{response_code="200"}', value: 3, buckets: [], count: 0, sum: 0 }]]) }]);
 * // '# TYPE istio_requests_total counter\nistio_requests_total{response_code="200"} 3\n'
 */
import type { AnyValue, KeyValue } from "./otlp/model.ts";

/** The content type of this format. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * The headers of a scrape's answer. Prometheus asks for gzip, and a scrape
 * of Istio's metrics (25 labels on every line, 22 lines per histogram
 * series) shrinks several-fold; `content-encoding: gzip` has the runtime
 * compress the body as it sends it (a Response's `encodeBody: "automatic"`).
 *
 * @example
 * scrapeHeaders("gzip"); // { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-encoding": "gzip", vary: "accept-encoding" }
 */
export function scrapeHeaders(acceptEncoding: string | null): Record<string, string> {
  const headers: Record<string, string> = { "content-type": EXPOSITION_CONTENT_TYPE, vary: "accept-encoding" };
  if (acceptsGzip(acceptEncoding)) headers["content-encoding"] = "gzip";
  return headers;
}

/** Whether an Accept-Encoding value accepts gzip (RFC 9110 §12.5.3: by name or `*`, with a q-value above 0). */
export function acceptsGzip(acceptEncoding: string | null): boolean {
  if (!acceptEncoding) return false;
  let wildcard: boolean | undefined;
  for (const item of acceptEncoding.split(",")) {
    const [coding = "", ...params] = item.split(";").map((part) => part.trim().toLowerCase());
    const q = params.find((param) => param.startsWith("q="));
    const accepted = q === undefined || Number(q.slice(2)) > 0;
    if (coding === "gzip" || coding === "x-gzip") return accepted;
    if (coding === "*") wildcard = accepted;
  }
  return wildcard === true;
}

/** One series: `value` for a counter or gauge; `buckets` (per bucket, not cumulative), `count` and `sum` for a histogram. */
export interface Series {
  /** The rendered label set, `{a="1",b="2"}`, or "" without labels. */
  labels: string;
  value: number;
  buckets: number[];
  count: number;
  sum: number;
}

export interface Family {
  name: string;
  /** The `# HELP` text, when the metric has one. */
  help?: string;
  kind: "counter" | "gauge" | "histogram";
  /** Histogram bucket upper bounds (the last bucket, `+Inf`, has none). */
  bounds: readonly number[];
  /** By rendered label set. */
  series: Map<string, Series>;
}

/** Renders the families; a family without series is left out. */
export function exposition(families: Iterable<Family>): string {
  let out = "";
  for (const chunk of expositionChunks(families, Infinity)) out += chunk;
  return out;
}

/**
 * The same text in pieces of about `chunkChars` characters, each ending
 * with a whole series, so a caller can send a large scrape piece by piece
 * (a scrape of Istio's metrics runs to megabytes). Series are read as each
 * piece is made.
 */
export function* expositionChunks(families: Iterable<Family>, chunkChars = 65_536): Generator<string> {
  let out = "";
  for (const f of families) {
    if (f.series.size === 0) continue;
    const name = metricName(f.name);
    if (f.help !== undefined) out += `# HELP ${name} ${escapeHelp(f.help)}\n`;
    out += `# TYPE ${name} ${f.kind}\n`;
    for (const s of f.series.values()) {
      out += f.kind === "histogram" ? histogramLines(name, f.bounds, s) : `${name}${s.labels} ${number(s.value)}\n`;
      if (out.length >= chunkChars) {
        yield out;
        out = "";
      }
    }
  }
  if (out !== "") yield out;
}

/** A histogram series: cumulative `_bucket` lines ending with `+Inf`, then `_sum` and `_count`. */
function histogramLines(name: string, bounds: readonly number[], s: Series): string {
  // Every bucket line repeats the label set with `le` added at its end.
  const open = s.labels === "" ? `${name}_bucket{le="` : `${name}_bucket${s.labels.slice(0, -1)},le="`;
  let out = "";
  let cumulative = 0;
  for (let i = 0; i < s.buckets.length; i++) {
    cumulative += s.buckets[i] as number;
    out += `${open}${i < bounds.length ? number(bounds[i] as number) : "+Inf"}"} ${cumulative}\n`;
  }
  return `${out}${name}_sum${s.labels} ${number(s.sum)}\n${name}_count${s.labels} ${s.count}\n`;
}

/** Attributes as a Prometheus label set: names made valid (`otel.metric.overflow` → `otel_metric_overflow`), values escaped. */
export function labelSet(attributes: readonly KeyValue[]): string {
  if (attributes.length === 0) return "";
  return `{${attributes.map((a) => `${labelName(a.key)}="${escapeValue(valueText(a.value))}"`).join(",")}}`;
}

/** Metric names may hold `[a-zA-Z0-9_:]`, not starting with a digit. */
function metricName(name: string): string {
  const valid = name.replace(/[^a-zA-Z0-9_:]/g, "_");
  return /^[0-9]/.test(valid) ? `_${valid}` : valid;
}

/** Label names may hold `[a-zA-Z0-9_]`, not starting with a digit. */
function labelName(name: string): string {
  const valid = name.replace(/[^a-zA-Z0-9_]/g, "_");
  return /^[0-9]/.test(valid) ? `_${valid}` : valid;
}

/** The format's escapes in a HELP text: backslash, line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** The format's escapes in a label value: backslash, double quote, line feed. */
function escapeValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function valueText(value: AnyValue): string {
  if ("stringValue" in value) return value.stringValue;
  if ("boolValue" in value) return String(value.boolValue);
  if ("intValue" in value) return String(value.intValue);
  if ("doubleValue" in value) return String(value.doubleValue);
  return JSON.stringify(value);
}

/**
 * A sample value or bound: Go's spelling of the non-finite ones. Bounds print
 * in fixed point as Envoy prints them (`le="3600000"`, its `{:.32g}`), so
 * `sum by (le)` adds these series to those of Istio's Envoy gateways.
 */
function number(n: number): string {
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  if (Number.isNaN(n)) return "NaN";
  return String(n);
}
