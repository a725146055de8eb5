/**
 * Trace context at the edge (semantics reference §5.4): reading W3C
 * `traceparent`/`tracestate` and B3 (single `b3` and multi `x-b3-*`
 * headers), the sampling decision (parent-based, else the configured
 * rate), the headers written upstream, and the sampling mark Envoy puts in
 * `x-request-id`.
 *
 * Pure: randomness is injected.
 */
import type { Propagator } from "../config/snapshot-telemetry.ts";

/** What the client sent: a parent to join, and its sampling decision when it made one. */
export interface IncomingContext {
  traceId: string;
  parentSpanId: string;
  /** Undefined when the parent deferred the decision (B3 without a sampled flag). */
  sampled?: boolean;
  traceState?: string;
}

export interface TraceContext {
  traceId: string;
  /** The gateway's SERVER span. */
  spanId: string;
  parentSpanId?: string;
  sampled: boolean;
  /** Sampled because the client sent `x-client-trace-id` (Envoy's client-forced trace). */
  forced?: boolean;
  traceState?: string;
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZERO32 = "0".repeat(32);
const ZERO16 = "0".repeat(16);
/** W3C: vendors must propagate at least 512 characters of tracestate; longer values are dropped. */
const MAX_TRACESTATE = 512;

/**
 * W3C traceparent (https://www.w3.org/TR/trace-context/): `00-<32 hex>-<16 hex>-<2 hex>`,
 * lower case, ids not all zero, version not `ff`; a higher version is read by its first four fields.
 */
export function parseTraceparent(value: string | null, traceState?: string | null): IncomingContext | undefined {
  if (!value) return undefined;
  const v = value.trim();
  const parts = v.split("-");
  if (parts.length < 4) return undefined;
  const [version, traceId, spanId, flags] = parts as [string, string, string, string];
  if (!/^[0-9a-f]{2}$/.test(version) || version === "ff") return undefined;
  if (version === "00" && (parts.length !== 4 || v.length !== 55)) return undefined;
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16 || !/^[0-9a-f]{2}$/.test(flags)) return undefined;
  const out: IncomingContext = { traceId, parentSpanId: spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
  const state = traceState?.trim();
  if (state && state.length <= MAX_TRACESTATE) out.traceState = state;
  return out;
}

/** B3 single header: `<trace>-<span>[-<sampled>[-<parent>]]`, or only the sampling state (`0`, `1`, `d`) — which has no parent to join. */
export function parseB3Single(value: string | null): IncomingContext | undefined {
  if (!value) return undefined;
  const parts = value.trim().toLowerCase().split("-");
  if (parts.length < 2) return undefined;
  const [traceId, spanId, sampled] = parts as [string, string, string | undefined];
  const out = b3Context(traceId, spanId);
  if (!out) return undefined;
  if (sampled !== undefined) {
    if (sampled === "1" || sampled === "d") out.sampled = true;
    else if (sampled === "0") out.sampled = false;
    else return undefined;
  }
  return out;
}

/** B3 multi headers: x-b3-traceid, x-b3-spanid, x-b3-sampled (`1`/`0`, or `true`/`false`), x-b3-flags (`1` = debug, sampled). */
export function parseB3Multi(headers: Headers): IncomingContext | undefined {
  const traceId = headers.get("x-b3-traceid");
  const spanId = headers.get("x-b3-spanid");
  if (!traceId || !spanId) return undefined;
  const out = b3Context(traceId.trim().toLowerCase(), spanId.trim().toLowerCase());
  if (!out) return undefined;
  const sampled = headers.get("x-b3-sampled")?.trim().toLowerCase();
  if (headers.get("x-b3-flags")?.trim() === "1" || sampled === "1" || sampled === "true") out.sampled = true;
  else if (sampled === "0" || sampled === "false") out.sampled = false;
  return out;
}

function b3Context(traceId: string, spanId: string): IncomingContext | undefined {
  // 64-bit B3 trace ids are widened to 128 bits with leading zeros.
  const trace = /^[0-9a-f]{16}$/.test(traceId) ? `${ZERO16}${traceId}` : traceId;
  if (!HEX32.test(trace) || trace === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16) return undefined;
  return { traceId: trace, parentSpanId: spanId };
}

/**
 * Whether a (lower-case) header name is one `decideTrace` reads: the trace
 * context (`traceparent`, `tracestate`, `b3`, `x-b3-*`) or `x-client-trace-id`.
 * Ingress hygiene notes on its one pass whether any came, so that a request
 * without one is not looked up six times.
 */
export function isTraceContextHeader(name: string): boolean {
  return name === "traceparent" || name === "tracestate" || name === "b3" || name === "x-client-trace-id" || name.startsWith("x-b3-");
}

/** The client's trace context: traceparent first, then `b3`, then the `x-b3-*` headers. */
export function readIncoming(headers: Headers): IncomingContext | undefined {
  return parseTraceparent(headers.get("traceparent"), headers.get("tracestate")) ?? parseB3Single(headers.get("b3")) ?? parseB3Multi(headers);
}

/**
 * `n` random bytes as lower-case hex, never all zero (an invalid id): an
 * all-zero draw ends in 01. Each `random()` call gives four bytes (its top
 * 32 bits, big-endian), so a trace id and a span id take six calls.
 *
 * @example
 * randomHex(8, Math.random) // "5f1c9a0b7e2d4c13"
 */
export function randomHex(bytes: number, random: () => number): string {
  let out = "";
  let any = 0;
  for (let i = 0; i < bytes; i += 4) {
    const word = (random() * 0x1_0000_0000) >>> 0;
    const used = Math.min(4, bytes - i);
    const hex = hexWord(word);
    out += used === 4 ? hex : hex.slice(0, 2 * used);
    // Only the bytes kept count toward "all zero".
    any |= used === 4 ? word : word >>> (8 * (4 - used));
  }
  return any === 0 && bytes > 0 ? `${out.slice(0, -2)}01` : out;
}

/**
 * A 32-bit word as 8 lower-case hex digits, made in one piece: joining
 * two-digit strings took ~30 string concatenations for a trace id and a
 * span id (V8's StringAdd, then a copy to flatten them when sent).
 */
function hexWord(w: number): string {
  return String.fromCharCode(hexDigit(w >>> 28), hexDigit((w >>> 24) & 15), hexDigit((w >>> 20) & 15), hexDigit((w >>> 16) & 15), hexDigit((w >>> 12) & 15), hexDigit((w >>> 8) & 15), hexDigit((w >>> 4) & 15), hexDigit(w & 15));
}

/** The character code of a hex digit 0–15, lower case. */
function hexDigit(n: number): number {
  return n < 10 ? 48 + n : 87 + n;
}

/**
 * The request's trace: joins the client's trace when it sent one and follows
 * its sampling decision (parent-based); otherwise a new root sampled at
 * `samplingPercent`.
 */
export function startTrace(incoming: IncomingContext | undefined, samplingPercent: number, random: () => number, clientForced = false): TraceContext {
  const sampledByRate = () => samplingPercent >= 100 || (samplingPercent > 0 && random() * 100 < samplingPercent);
  // A parent's decision wins (Envoy's OpenTelemetry tracer follows the parent's flag); without one, a
  // client trace id forces the trace (Envoy's client_sampling, 100% by default), else the rate decides.
  const forced = incoming?.sampled === undefined && clientForced;
  const sampled = incoming?.sampled ?? (forced || sampledByRate());
  const trace: TraceContext = { traceId: incoming?.traceId ?? randomHex(16, random), spanId: randomHex(8, random), sampled };
  if (forced) trace.forced = true;
  if (incoming) trace.parentSpanId = incoming.parentSpanId;
  if (incoming?.traceState) trace.traceState = incoming.traceState;
  return trace;
}

/**
 * The trace of a request with these headers: its parent's, or a new one
 * (client-forced or sampled at the rate). `clientContext` false: the client
 * sent none of the headers that could join or force a trace (ingress
 * hygiene noted it), so none is read.
 */
export function decideTrace(headers: Headers, samplingPercent: number, random: () => number, clientContext = true): TraceContext {
  if (!clientContext) return startTrace(undefined, samplingPercent, random);
  return startTrace(readIncoming(headers), samplingPercent, random, clientForcedTrace(headers));
}

/**
 * Whether the client asked for a trace with `x-client-trace-id` (Envoy
 * honours it from external clients; `x-envoy-force-trace` only from
 * internal ones, so the edge ignores it).
 */
export function clientForcedTrace(headers: Headers): boolean {
  return (headers.get("x-client-trace-id") ?? "") !== "";
}

/**
 * The headers carrying the trace to an upstream, whose parent is `spanId`
 * (the attempt's or the mirror's span). `clientContext` false: the client
 * sent no trace header (hygiene noted it), so there is no stale
 * `tracestate` to remove.
 */
export function propagate(headers: Headers, trace: TraceContext, spanId: string, propagators: readonly Propagator[], clientContext = true): void {
  const flag = trace.sampled ? "1" : "0";
  if (propagators.includes("tracecontext")) {
    headers.set("traceparent", `00-${trace.traceId}-${spanId}-0${flag}`);
    if (trace.traceState) headers.set("tracestate", trace.traceState);
    else if (clientContext) headers.delete("tracestate");
  }
  if (propagators.includes("b3")) headers.set("b3", `${trace.traceId}-${spanId}-${flag}-${trace.spanId}`);
  if (propagators.includes("b3multi")) {
    headers.set("x-b3-traceid", trace.traceId);
    headers.set("x-b3-spanid", spanId);
    headers.set("x-b3-parentspanid", trace.spanId);
    headers.set("x-b3-sampled", flag);
    headers.delete("x-b3-flags");
  }
}

/**
 * Envoy's UUID request id carries the trace decision in its 14th hex digit
 * (the UUID version position): `9` sampled, `b` forced by the client
 * (`x-client-trace-id`), `4` not (envoy.extensions.request_id.uuid).
 */
export function markRequestId(requestId: string, sampled: boolean, forced = false): string {
  if (requestId.length !== 36 || requestId[8] !== "-") return requestId;
  const mark = forced && sampled ? "b" : sampled ? "9" : "4";
  // Most ids already carry the mark (a generated v4 UUID reads "not sampled"): no new string then.
  return requestId[14] === mark ? requestId : `${requestId.slice(0, 14)}${mark}${requestId.slice(15)}`;
}
