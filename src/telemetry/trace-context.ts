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

/**
 * What the client sent: a parent to join (`IncomingParent`), or only a
 * sampling decision (`IncomingDecision`).
 */
export type IncomingContext = IncomingParent | IncomingDecision;

/** A parent to join, and its sampling decision when it made one. */
export interface IncomingParent {
  traceId: string;
  parentSpanId: string;
  /** Undefined when the parent deferred the decision (B3 without a sampled flag). */
  sampled?: boolean;
  traceState?: string;
}

/**
 * A B3 sampling state sent without ids (`b3: 0`, `b3: 1`, `b3: d`, a lone
 * `x-b3-sampled` or `x-b3-flags: 1`): no parent to join, but a decision the
 * new trace follows, as Envoy's Zipkin extractor does.
 */
export interface IncomingDecision {
  traceId?: undefined;
  parentSpanId?: undefined;
  sampled: boolean;
  traceState?: undefined;
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
/** W3C: vendors must propagate at least 512 characters of tracestate; a longer one is truncated (see `truncateTraceState`). */
const MAX_TRACESTATE = 512;
/** W3C: when truncating tracestate, list members longer than this are removed first. */
const MAX_TRUNCATED_MEMBER = 128;
/** The two decisions a B3 header can carry without ids, shared (read only), so reading one allocates nothing. */
const B3_SAMPLED: IncomingDecision = Object.freeze({ sampled: true });
const B3_UNSAMPLED: IncomingDecision = Object.freeze({ sampled: false });

/**
 * W3C traceparent (https://www.w3.org/TR/trace-context/): `00-<32 hex>-<16 hex>-<2 hex>`,
 * lower case, ids not all zero, version not `ff`; a higher version is read by its first four fields.
 */
export function parseTraceparent(value: string | null, traceState?: string | null): IncomingParent | undefined {
  if (!value) return undefined;
  const v = value.trim();
  const parts = v.split("-");
  if (parts.length < 4) return undefined;
  const [version, traceId, spanId, flags] = parts as [string, string, string, string];
  if (!/^[0-9a-f]{2}$/.test(version) || version === "ff") return undefined;
  if (version === "00" && (parts.length !== 4 || v.length !== 55)) return undefined;
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16 || !/^[0-9a-f]{2}$/.test(flags)) return undefined;
  const out: IncomingParent = { traceId, parentSpanId: spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
  const state = traceState?.trim();
  if (state) {
    const kept = state.length <= MAX_TRACESTATE ? state : truncateTraceState(state);
    if (kept) out.traceState = kept;
  }
  return out;
}

/**
 * A tracestate over 512 characters cut down to fit, by whole list members
 * as W3C Trace Context says: members longer than 128 characters are
 * removed first, then members from the end. Empty members are dropped;
 * the rest are joined with `,`. Undefined when nothing fits.
 *
 * @example
 * truncateTraceState(`a=1,long=${"x".repeat(600)}`) // "a=1"
 */
export function truncateTraceState(state: string): string | undefined {
  const members = state
    .split(",")
    .map((m) => m.trim())
    .filter((m) => m !== "" && m.length <= MAX_TRUNCATED_MEMBER);
  // Joined length: the members and a comma between each two.
  let length = members.reduce((n, m) => n + m.length, 0) + Math.max(0, members.length - 1);
  while (length > MAX_TRACESTATE) length -= (members.pop() as string).length + (members.length > 0 ? 1 : 0);
  return members.length > 0 ? members.join(",") : undefined;
}

/**
 * B3 single header: `<trace>-<span>[-<sampled>[-<parent>]]` (the parent 16
 * lower-hex digits, not all zero; no more fields), or only the sampling
 * state (`0`, `1`, `d`): a decision without a parent to join.
 */
export function parseB3Single(value: string | null): IncomingContext | undefined {
  if (!value) return undefined;
  const v = value.trim().toLowerCase();
  if (v.length === 1) return b3Decision(v);
  const parts = v.split("-");
  if (parts.length < 2 || parts.length > 4) return undefined;
  const [traceId, spanId, sampled, parent] = parts as [string, string, string | undefined, string | undefined];
  if (parent !== undefined && (!HEX16.test(parent) || parent === ZERO16)) return undefined;
  const out = b3Context(traceId, spanId);
  if (!out) return undefined;
  if (sampled !== undefined) {
    const decision = b3Decision(sampled);
    if (!decision) return undefined;
    out.sampled = decision.sampled;
  }
  return out;
}

/** A B3 sampling state: `1` accept, `d` debug (accept), `0` deny; undefined for anything else. */
function b3Decision(state: string): IncomingDecision | undefined {
  return state === "1" || state === "d" ? B3_SAMPLED : state === "0" ? B3_UNSAMPLED : undefined;
}

/**
 * B3 multi headers: x-b3-traceid, x-b3-spanid, x-b3-sampled (`1`/`0`, or
 * `true`/`false`), x-b3-flags (`1` = debug, sampled). Without the ids, the
 * sampling headers alone are a decision without a parent.
 */
export function parseB3Multi(headers: Headers): IncomingContext | undefined {
  const traceId = headers.get("x-b3-traceid");
  const spanId = headers.get("x-b3-spanid");
  if (!traceId || !spanId) {
    const decision = b3MultiSampled(headers);
    return decision === undefined ? undefined : decision ? B3_SAMPLED : B3_UNSAMPLED;
  }
  const out = b3Context(traceId.trim().toLowerCase(), spanId.trim().toLowerCase());
  if (!out) return undefined;
  const sampled = b3MultiSampled(headers);
  if (sampled !== undefined) out.sampled = sampled;
  return out;
}

/** The decision of x-b3-flags (`1`: debug, so sampled) and x-b3-sampled; undefined when they make none. */
function b3MultiSampled(headers: Headers): boolean | undefined {
  if (headers.get("x-b3-flags")?.trim() === "1") return true;
  const sampled = headers.get("x-b3-sampled")?.trim().toLowerCase();
  if (sampled === "1" || sampled === "true") return true;
  if (sampled === "0" || sampled === "false") return false;
  return undefined;
}

function b3Context(traceId: string, spanId: string): IncomingParent | undefined {
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
 * its sampling decision (parent-based); otherwise a new root, which follows
 * a decision the client sent without ids (B3), else is sampled at
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
  // A decision sent without ids (B3 sampling state) starts a new trace: no parent.
  if (incoming?.parentSpanId !== undefined) trace.parentSpanId = incoming.parentSpanId;
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
