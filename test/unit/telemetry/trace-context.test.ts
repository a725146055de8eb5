/**
 * Trace context at the edge: what is accepted as a parent (W3C, B3), the
 * sampling decision, what goes upstream, and Envoy's mark in x-request-id.
 */
import { describe, expect, it } from "vitest";
import { clientForcedTrace, markRequestId, parseB3Multi, parseB3Single, parseTraceparent, propagate, randomHex, readIncoming, startTrace } from "../../../src/telemetry/trace-context.ts";

const TRACE = "0af7651916cd43dd8448eb211c80319c";
const SPAN = "b7ad6b7169203331";

/** A deterministic random source cycling through the given values. */
const seq = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length] as number;
};

describe("traceparent", () => {
  it("reads version 00 with the sampled flag", () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, parentSpanId: SPAN, sampled: true });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)).toEqual({ traceId: TRACE, parentSpanId: SPAN, sampled: false });
    // Other flag bits do not change the sampled bit.
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-03`)?.sampled).toBe(true);
  });

  it("rejects what the W3C specification says a receiver must ignore", () => {
    for (const bad of [
      `00-${TRACE.toUpperCase()}-${SPAN}-01`,
      `00-${"0".repeat(32)}-${SPAN}-01`,
      `00-${TRACE}-${"0".repeat(16)}-01`,
      `ff-${TRACE}-${SPAN}-01`,
      `00-${TRACE}-${SPAN}-01-extra`,
      `00-${TRACE.slice(2)}-${SPAN}-01`,
      `0-${TRACE}-${SPAN}-01`,
      `00-${TRACE}-${SPAN}-1`,
      "garbage",
    ]) {
      expect(parseTraceparent(bad), bad).toBeUndefined();
    }
  });

  it("reads a future version by its first four fields", () => {
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-future-stuff`)).toEqual({ traceId: TRACE, parentSpanId: SPAN, sampled: true });
  });

  it("keeps tracestate with a valid traceparent, up to 512 characters", () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`, "vendor=abc")?.traceState).toBe("vendor=abc");
  });

  it("truncates a tracestate over 512 characters by whole list members: those over 128 characters first, then from the end (W3C)", () => {
    const parent = `00-${TRACE}-${SPAN}-01`;
    const member = (key: string, length: number) => `${key}=${"x".repeat(length - key.length - 1)}`;
    // One member alone over 512 and nothing else: nothing is left to keep.
    expect(parseTraceparent(parent, member("v", 600))?.traceState).toBeUndefined();
    // A long member (> 128) goes first, even from the front; the others fit and stay in order.
    const short = [member("a", 100), member("b", 100), member("c", 100)];
    expect(parseTraceparent(parent, [member("long", 300), ...short, member("big", 129)].join(","))?.traceState).toBe(short.join(","));
    // All members short but too many characters: members are removed from the end until the rest fits.
    const many = Array.from({ length: 8 }, (_, i) => member(`k${i}`, 100));
    const kept = parseTraceparent(parent, many.join(", "))?.traceState;
    expect(kept).toBe(many.slice(0, 5).join(","));
    expect((kept ?? "").length).toBeLessThanOrEqual(512);
    // Up to 512 characters, kept exactly as sent.
    const exact = [member("a", 128), member("b", 128), member("c", 128), member("d", 125)].join(",");
    expect(exact.length).toBe(512);
    expect(parseTraceparent(parent, exact)?.traceState).toBe(exact);
  });
});

describe("B3", () => {
  it("reads the single header with and without the sampling state", () => {
    expect(parseB3Single(`${TRACE}-${SPAN}-1`)).toEqual({ traceId: TRACE, parentSpanId: SPAN, sampled: true });
    expect(parseB3Single(`${TRACE}-${SPAN}-d`)?.sampled).toBe(true);
    expect(parseB3Single(`${TRACE}-${SPAN}-0-aaaaaaaaaaaaaaaa`)?.sampled).toBe(false);
    expect(parseB3Single(`${TRACE}-${SPAN}`)).toEqual({ traceId: TRACE, parentSpanId: SPAN });
  });

  it("reads a sampling state sent alone (b3: 0, 1, d) as a decision without a parent, as Envoy's Zipkin extractor does", () => {
    expect(parseB3Single("0")).toEqual({ sampled: false });
    expect(parseB3Single("1")).toEqual({ sampled: true });
    expect(parseB3Single(" D ")).toEqual({ sampled: true });
    for (const bad of ["2", "x", "", "true"]) expect(parseB3Single(bad), bad).toBeUndefined();
  });

  it("validates the parent span id of the single header and refuses more than four fields", () => {
    expect(parseB3Single(`${TRACE}-${SPAN}-1-aaaaaaaaaaaaaaaa`)).toEqual({ traceId: TRACE, parentSpanId: SPAN, sampled: true });
    for (const bad of [`${TRACE}-${SPAN}-1-zz`, `${TRACE}-${SPAN}-1-${"0".repeat(16)}`, `${TRACE}-${SPAN}-1-${SPAN}-extra`, `${TRACE}-${SPAN}-1-`, `${TRACE}-${SPAN}-1-${SPAN}0`]) {
      expect(parseB3Single(bad), bad).toBeUndefined();
    }
  });

  it("reads a lone x-b3-sampled or x-b3-flags: 1 as a decision without a parent", () => {
    expect(parseB3Multi(new Headers({ "x-b3-sampled": "0" }))).toEqual({ sampled: false });
    expect(parseB3Multi(new Headers({ "x-b3-sampled": "1" }))).toEqual({ sampled: true });
    expect(parseB3Multi(new Headers({ "x-b3-sampled": "true" }))).toEqual({ sampled: true });
    expect(parseB3Multi(new Headers({ "x-b3-flags": "1" }))).toEqual({ sampled: true });
    expect(parseB3Multi(new Headers({ "x-b3-sampled": "maybe" }))).toBeUndefined();
    expect(parseB3Multi(new Headers({ "x-b3-flags": "0" }))).toBeUndefined();
  });

  it("widens 64-bit trace ids to 128 bits", () => {
    expect(parseB3Single(`463ac35c9f6413ad-${SPAN}-1`)?.traceId).toBe("0000000000000000463ac35c9f6413ad");
  });

  it("reads the multi headers; x-b3-flags: 1 means sampled", () => {
    expect(parseB3Multi(new Headers({ "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "0" }))?.sampled).toBe(false);
    expect(parseB3Multi(new Headers({ "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-flags": "1" }))?.sampled).toBe(true);
    expect(parseB3Multi(new Headers({ "x-b3-traceid": TRACE }))).toBeUndefined();
  });

  it("prefers traceparent over b3 over x-b3-*", () => {
    const other = "1".repeat(32);
    const headers = new Headers({ traceparent: `00-${TRACE}-${SPAN}-01`, b3: `${other}-${SPAN}-1`, "x-b3-traceid": other, "x-b3-spanid": SPAN });
    expect(readIncoming(headers)?.traceId).toBe(TRACE);
    headers.delete("traceparent");
    expect(readIncoming(headers)?.traceId).toBe(other);
  });
});

describe("sampling", () => {
  it("follows a parent's decision whatever the rate (parent-based)", () => {
    expect(startTrace({ traceId: TRACE, parentSpanId: SPAN, sampled: true }, 0, seq(0.5)).sampled).toBe(true);
    expect(startTrace({ traceId: TRACE, parentSpanId: SPAN, sampled: false }, 100, seq(0.5)).sampled).toBe(false);
  });

  it("joins the parent's trace with a new span of its own", () => {
    const trace = startTrace({ traceId: TRACE, parentSpanId: SPAN, sampled: true, traceState: "a=b" }, 1, seq(0.1, 0.2, 0.3));
    expect(trace.traceId).toBe(TRACE);
    expect(trace.parentSpanId).toBe(SPAN);
    expect(trace.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(trace.spanId).not.toBe(SPAN);
    expect(trace.traceState).toBe("a=b");
  });

  it("samples a new root at the configured rate", () => {
    // random() * 100 < percent: 0.009 → 0.9 < 1 sampled; 0.011 → 1.1, not.
    expect(startTrace(undefined, 1, seq(0.009, 0.5)).sampled).toBe(true);
    expect(startTrace(undefined, 1, seq(0.011, 0.5)).sampled).toBe(false);
    expect(startTrace(undefined, 0, seq(0)).sampled).toBe(false);
    // Even a random source stuck at 0 gives valid (non-zero) ids.
    expect(startTrace(undefined, 0, seq(0)).traceId).toBe(`${"0".repeat(30)}01`);
    const root = startTrace(undefined, 100, Math.random);
    expect(root.sampled).toBe(true);
    expect(root.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(root.parentSpanId).toBeUndefined();
  });

  it("starts a new trace that follows a B3 decision sent without ids, whatever the rate", () => {
    for (const headers of [{ b3: "0" }, { "x-b3-sampled": "0" }] as Record<string, string>[]) {
      const trace = startTrace(readIncoming(new Headers(headers)), 100, seq(0.5));
      expect(trace.sampled, JSON.stringify(headers)).toBe(false);
      expect(trace.parentSpanId).toBeUndefined();
      expect(trace.traceId).toMatch(/^[0-9a-f]{32}$/);
    }
    for (const headers of [{ b3: "1" }, { b3: "d" }, { "x-b3-sampled": "1" }, { "x-b3-flags": "1" }] as Record<string, string>[]) {
      const trace = startTrace(readIncoming(new Headers(headers)), 0, seq(0.5), true);
      expect(trace.sampled, JSON.stringify(headers)).toBe(true);
      // The client's decision, not a trace forced by x-client-trace-id.
      expect(trace.forced).toBeUndefined();
      expect(trace.parentSpanId).toBeUndefined();
    }
    // A decision in b3 wins over x-b3-* ids, as Envoy reads the b3 header alone when it is present.
    expect(readIncoming(new Headers({ b3: "0", "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1" }))).toEqual({ sampled: false });
  });

  it("defers to the rate when a B3 parent made no decision", () => {
    const parent = parseB3Single(`${TRACE}-${SPAN}`);
    expect(startTrace(parent, 100, seq(0.5)).sampled).toBe(true);
    expect(startTrace(parent, 0, seq(0.5)).sampled).toBe(false);
  });
});

describe("propagation", () => {
  const trace = { traceId: TRACE, spanId: "1111111111111111", parentSpanId: SPAN, sampled: true, traceState: "v=1" };

  it("writes traceparent with the attempt's span as parent, and tracestate", () => {
    const h = new Headers({ tracestate: "old" });
    propagate(h, trace, "2222222222222222", ["tracecontext"]);
    expect(h.get("traceparent")).toBe(`00-${TRACE}-2222222222222222-01`);
    expect(h.get("tracestate")).toBe("v=1");
    expect(h.get("b3")).toBeNull();
  });

  it("writes B3 single and multi headers when configured", () => {
    const h = new Headers({ "x-b3-flags": "1" });
    propagate(h, { ...trace, sampled: false }, "2222222222222222", ["b3", "b3multi"]);
    expect(h.get("traceparent")).toBeNull();
    expect(h.get("b3")).toBe(`${TRACE}-2222222222222222-0-1111111111111111`);
    expect(h.get("x-b3-traceid")).toBe(TRACE);
    expect(h.get("x-b3-spanid")).toBe("2222222222222222");
    expect(h.get("x-b3-parentspanid")).toBe("1111111111111111");
    expect(h.get("x-b3-sampled")).toBe("0");
    expect(h.get("x-b3-flags")).toBeNull();
  });
});

describe("x-request-id", () => {
  it("carries the sampling decision in the 14th hex digit, as Envoy's UUID request ids do", () => {
    const id = "73a3eef2-3012-4367-8f91-6331b6b1162d";
    expect(markRequestId(id, true)).toBe("73a3eef2-3012-9367-8f91-6331b6b1162d");
    expect(markRequestId(markRequestId(id, true), false)).toBe(id);
    expect(markRequestId("not-a-uuid", true)).toBe("not-a-uuid");
    // A trace the client forced with x-client-trace-id: `b`.
    expect(markRequestId(id, true, true)).toBe("73a3eef2-3012-b367-8f91-6331b6b1162d");
  });

  it("traces a request whose client sent x-client-trace-id, whatever the rate, unless a parent decided", () => {
    const forced = startTrace(undefined, 0, seq(0.9), true);
    expect(forced).toMatchObject({ sampled: true, forced: true });
    expect(startTrace({ traceId: TRACE, parentSpanId: SPAN, sampled: false }, 0, seq(0.5), true)).toMatchObject({ sampled: false });
    expect(startTrace({ traceId: TRACE, parentSpanId: SPAN, sampled: false }, 0, seq(0.5), true).forced).toBeUndefined();
    expect(clientForcedTrace(new Headers({ "x-client-trace-id": "abc" }))).toBe(true);
    expect(clientForcedTrace(new Headers({ "x-envoy-force-trace": "true" }))).toBe(false);
  });
});

describe("randomHex", () => {
  it("takes four bytes from each draw, big-endian, and always has the length asked for", () => {
    expect(randomHex(8, seq(0.5, 0.25))).toBe("8000000040000000");
    expect(randomHex(4, seq(0xdeadbeef / 0x1_0000_0000))).toBe("deadbeef");
    expect(randomHex(3, seq(0xdeadbeef / 0x1_0000_0000))).toBe("deadbe");
    for (let i = 0; i < 200; i++) expect(randomHex(16, Math.random)).toMatch(/^[0-9a-f]{32}$/);
  });

  it("never returns an all-zero id, also when only the dropped part of a draw was non-zero", () => {
    expect(randomHex(8, seq(0))).toBe("0000000000000001");
    expect(randomHex(1, seq(0x00ffffff / 0x1_0000_0000))).toBe("01");
    expect(randomHex(16, seq(0, 0, 0, 1 / 0x1_0000_0000))).toBe(`${"0".repeat(31)}1`);
  });
});
