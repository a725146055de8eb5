/**
 * sanitizeRequest after its single-pass rewrite: the headers that pass are
 * exactly the client's minus hop-by-hop, Connection-named, spoofable and
 * injected ones; the URL limit counts UTF-8 bytes; the values are searched
 * for repeated lines only when those could pass the byte limit.
 */
import { describe, expect, it } from "vitest";
import { sanitizeRequest } from "../../src/gateway/hygiene.ts";
import { DEFAULT_SETTINGS } from "../../src/config/defaults.ts";

const limits = DEFAULT_SETTINGS.limits;

describe("sanitizeRequest", () => {
  it("keeps ordinary headers and strips hop-by-hop, Connection-named, spoofable and injected ones", () => {
    const request = new Request("http://app.example.com/", {
      headers: {
        accept: "application/json",
        "x-keep": "yes",
        connection: "keep-alive, X-Hop-Secret",
        "keep-alive": "timeout=5",
        "x-hop-secret": "1",
        "x-envoy-retry-on": "5xx",
        "x-forwarded-for": "203.0.113.9",
        "x-request-id": "spoofed",
        "x-jwt-claim-sub": "admin",
      },
    });
    const result = sanitizeRequest(request, { limits, injected: new Set(["x-jwt-claim-sub"]) });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect([...result.headers.keys()].sort()).toEqual(["accept", "x-keep"]);
    expect(result.headers.get("x-keep")).toBe("yes");
  });

  it("answers 414 once the URL's UTF-8 length passes the limit, and not before", () => {
    const small = { ...limits, maxUrlBytes: 40 };
    const base = "http://a.example.com/"; // 21 bytes
    expect(sanitizeRequest(new Request(base + "x".repeat(19)), { limits: small }).ok).toBe(true);
    const over = sanitizeRequest(new Request(base + "x".repeat(20)), { limits: small });
    expect(over.ok ? 0 : over.reply.status).toBe(414);
  });

  it("notes whether the client sent any header that could join or force a trace", () => {
    const sent = (headers: Record<string, string>) => {
      const result = sanitizeRequest(new Request("http://app.example.com/", { headers }), { limits });
      if (!result.ok) throw new Error("rejected");
      return result.traceContext;
    };
    expect(sent({ accept: "*/*", "x-b3": "not a b3 header", "x-trace": "1" })).toBe(false);
    for (const name of ["traceparent", "TraceState", "b3", "X-B3-TraceId", "x-b3-sampled", "x-b3-flags", "x-client-trace-id"]) {
      expect(sent({ accept: "*/*", [name]: "1" }), name).toBe(true);
    }
  });

  it("counts every header against maxHeadersCount in its one pass", () => {
    const many = new Headers();
    for (let i = 0; i < limits.maxHeadersCount + 1; i++) many.set(`h${i}`, "v");
    const tooMany = sanitizeRequest(new Request("http://app.example.com/", { headers: many }), { limits });
    expect(tooMany.ok ? 0 : tooMany.reply.status).toBe(431);
    many.delete("h0");
    expect(sanitizeRequest(new Request("http://app.example.com/", { headers: many }), { limits }).ok).toBe(true);
  });

  it("searches the values for repeated lines in a second pass only when they could take the block past maxRequestHeadersKb", () => {
    const passes = (headers: Headers) => {
      const request = new Request("http://app.example.com/", { headers });
      const seen = request.headers;
      let calls = 0;
      const forEach = seen.forEach;
      seen.forEach = function (this: Headers, ...args: Parameters<Headers["forEach"]>) {
        calls++;
        return forEach.apply(this, args);
      };
      const result = sanitizeRequest(request, { limits });
      return [calls, result.ok ? 200 : result.reply.status];
    };
    const browser = new Headers({ accept: "text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8", "accept-language": "en-GB, en;q=0.9", cookie: "session=abc; theme=dark".repeat(40) });
    expect(passes(browser)).toEqual([1, 200]);
    const repeated = new Headers();
    for (let i = 0; i < 12_000; i++) repeated.append("x-a", "b");
    expect(passes(repeated)).toEqual([2, 431]);
  });
});
