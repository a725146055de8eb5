/**
 * Ingress hygiene: size limits, request smuggling shapes, and the headers a
 * client must never be able to send upstream.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_SETTINGS } from "../../../src/config/defaults.ts";
import type { RequestLimits } from "../../../src/config/snapshot.ts";
import { limitBody, sanitizeRequest } from "../../../src/gateway/hygiene.ts";

const limits = (overrides: Partial<RequestLimits> = {}): RequestLimits => ({ ...DEFAULT_SETTINGS.limits, ...overrides });
const check = (request: Request, overrides: Partial<RequestLimits> = {}, injected?: ReadonlySet<string>) =>
  sanitizeRequest(request, injected ? { limits: limits(overrides), injected } : { limits: limits(overrides) });
const rejected = (result: ReturnType<typeof sanitizeRequest>) => (result.ok ? "accepted" : `${result.reply.status} ${result.reply.body} ${result.reply.flag}`);

describe("limits", () => {
  it("answers 414 for a URL over maxUrlBytes (counted in bytes)", () => {
    const url = `http://app.example.com/${"a".repeat(100)}`;
    expect(rejected(check(new Request(url), { maxUrlBytes: url.length }))).toBe("accepted");
    expect(rejected(check(new Request(`${url}a`), { maxUrlBytes: url.length }))).toBe("414 URI too long DPE");
    // Non-ASCII is percent-encoded by the URL parser, and the limit counts that.
    expect(rejected(check(new Request("http://app.example.com/é"), { maxUrlBytes: 27 }))).toBe("414 URI too long DPE");
  });

  it("answers 431 for too many headers or too many header bytes", () => {
    const headers = new Headers();
    for (let i = 0; i < 10; i++) headers.set(`x-h${i}`, "v");
    expect(rejected(check(new Request("http://a.example.com/", { headers }), { maxHeadersCount: 10 }))).toBe("accepted");
    headers.set("x-h10", "v");
    expect(rejected(check(new Request("http://a.example.com/", { headers }), { maxHeadersCount: 10 }))).toBe("431 too many request headers DPE");
    const big = new Request("http://a.example.com/", { headers: { "x-big": "v".repeat(2000) } });
    expect(rejected(check(big, { maxRequestHeadersBytes: 1024 }))).toBe("431 request headers too large DPE");
    expect(rejected(check(big, { maxRequestHeadersBytes: 4096 }))).toBe("accepted");
  });

  it("counts the lines of a repeated header against maxRequestHeadersKb, which the runtime joins into one entry with \", \"", () => {
    const repeated = (lines: number, value = "b") => {
      const headers = new Headers();
      for (let i = 0; i < lines; i++) headers.append("x-a", value);
      return new Request("http://a.example.com/", { headers });
    };
    // 12,000 lines of `X-A: b` are 96,000 bytes on the wire, one 36,000-byte entry here: Envoy's 60 KiB stops them.
    expect(rejected(check(repeated(12_000)))).toBe("431 request headers too large DPE");
    expect(rejected(check(repeated(1_500, "v".repeat(40))))).toBe("431 request headers too large DPE");
    // Each line counted as sent: 1,000 lines of `x-a: b` are 8,000 bytes.
    expect(rejected(check(repeated(1_000), { maxRequestHeadersBytes: 8_100 }))).toBe("accepted");
    expect(rejected(check(repeated(1_000), { maxRequestHeadersBytes: 7_900 }))).toBe("431 request headers too large DPE");
    // Still one header for maxHeadersCount: a comma list on one line (Accept) cannot be told from joined lines.
    expect(rejected(check(repeated(500), { maxHeadersCount: 1 }))).toBe("accepted");
  });

  it("keeps ordinary comma-rich headers well inside the limits, and reports the bytes of the entries as received", () => {
    const accept = "text/html, application/xhtml+xml, application/xml;q=0.9, image/avif, image/webp, */*;q=0.8";
    const result = check(new Request("http://a.example.com/", { headers: { accept, "accept-language": "en-GB, en;q=0.9, fr;q=0.8", cookie: "a=1; ".repeat(800) } }));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.bytes).toBe(`accept: ${accept}\r\naccept-language: en-GB, en;q=0.9, fr;q=0.8\r\ncookie: ${"a=1; ".repeat(800).trim()}\r\n`.length);
  });

  it("answers 413 for a declared body over the limit and 400 for a malformed Content-Length", () => {
    const post = (contentLength: string) => new Request("http://a.example.com/", { method: "POST", body: "hello", headers: { "content-length": contentLength } });
    expect(rejected(check(post("5"), { maxRequestBodyBytes: 5 }))).toBe("accepted");
    expect(rejected(check(post("6"), { maxRequestBodyBytes: 5 }))).toBe("413 payload too large DPE");
    expect(rejected(check(post("abc")))).toBe("400 invalid content-length DPE");
    expect(rejected(check(post("-1")))).toBe("400 invalid content-length DPE");
    expect(rejected(check(post("5, 5")))).toBe("400 invalid content-length DPE");
  });

  it("cuts a streamed body off once it passes the limit, telling the caller first", async () => {
    let exceeded = false;
    const body = new Response("x".repeat(10)).body!;
    const limited = limitBody(body, { max: 6, onExceeded: () => (exceeded = true) });
    await expect(new Response(limited).text()).rejects.toThrow(/exceeds the configured limit/);
    expect(exceeded).toBe(true);
    let ended: number | undefined;
    const fits = limitBody(new Response("x".repeat(6)).body!, {
      max: 6,
      onExceeded: () => {
        throw new Error("must not be called");
      },
      onEnd: (size) => (ended = size),
    });
    expect(await new Response(fits).text()).toBe("xxxxxx");
    expect(ended).toBe(6);
  });

  it("tells the caller when the client's side of the body fails (a client gone mid-upload)", async () => {
    let failed = false;
    let ended = false;
    const client = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array([1, 2, 3]));
        controller.error(new Error("client went away"));
      },
    });
    const watched = limitBody(client, { max: 100, onExceeded: () => {}, onEnd: () => (ended = true), onFailed: () => (failed = true) });
    await expect(new Response(watched).arrayBuffer()).rejects.toThrow(/client went away/);
    expect([failed, ended]).toEqual([true, false]);
  });
});

describe("WebSocket handshakes", () => {
  const handshake = (method: string, headers: Record<string, string>) => sanitizeRequest(new Request("http://a.example.com/chat", { method, headers }), { limits: limits() });
  it("keep Upgrade: websocket and Connection: Upgrade for the upstream; other upgrades and methods lose them", () => {
    const ws = handshake("GET", { upgrade: "WebSocket", connection: "keep-alive, Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" });
    if (!ws.ok) throw new Error("refused");
    expect([ws.websocket, ws.headers.get("upgrade"), ws.headers.get("connection"), ws.headers.get("keep-alive"), ws.headers.get("sec-websocket-key")]).toEqual([true, "websocket", "Upgrade", null, "dGhlIHNhbXBsZSBub25jZQ=="]);
    for (const [method, headers] of [
      ["GET", { upgrade: "h2c", connection: "Upgrade" }],
      ["GET", { upgrade: "websocket" }],
      ["POST", { upgrade: "websocket", connection: "Upgrade" }],
    ] as const) {
      const other = handshake(method, headers);
      if (!other.ok) throw new Error("refused");
      expect([method, other.websocket, other.headers.get("upgrade"), other.headers.get("connection")]).toEqual([method, false, null, null]);
    }
  });
});

describe("request smuggling shapes", () => {
  it("answers 400 when both Content-Length and Transfer-Encoding are present", () => {
    const request = new Request("http://a.example.com/", { method: "POST", body: "hello", headers: { "content-length": "5", "transfer-encoding": "chunked" } });
    expect(rejected(check(request))).toBe("400 both content-length and transfer-encoding are set DPE");
  });

  it("answers Envoy's 501 (http1.invalid_transfer_encoding) for a transfer coding under chunked, which the runtime decoded and the origin would never hear of", () => {
    const post = (te: string) => new Request("http://a.example.com/", { method: "POST", body: "hello", headers: { "transfer-encoding": te } });
    for (const te of ["gzip, chunked", "gzip,chunked", "deflate, chunked", "chunked, chunked"]) {
      const result = check(post(te));
      expect([te, rejected(result), result.ok ? undefined : result.reply.details]).toEqual([te, "501 unsupported transfer encoding DPE", "http1.invalid_transfer_encoding"]);
    }
    for (const te of ["chunked", "Chunked", " chunked "]) expect([te, rejected(check(post(te)))]).toEqual([te, "accepted"]);
  });

  it("relies on the runtime to refuse CR, LF and NUL inside header values (checked again here as defence in depth)", () => {
    for (const value of ["a\r\nx-injected: 1", "a\rb", "a\nb", "a\0b"]) {
      expect(() => new Headers({ "x-v": value })).toThrow(TypeError);
    }
    // Leading and trailing whitespace is trimmed, not an error.
    expect(new Headers({ "x-v": "\r\n v \t" }).get("x-v")).toBe("v");
  });
});

describe("the forwarded header set", () => {
  const forwarded = (headers: Record<string, string>, injected?: ReadonlySet<string>) => {
    const result = check(new Request("http://a.example.com/", { headers }), {}, injected);
    if (!result.ok) throw new Error(rejected(result));
    return Object.fromEntries(result.headers);
  };

  it("keeps ordinary end-to-end headers", () => {
    expect(forwarded({ accept: "*/*", authorization: "Bearer t", cookie: "a=b", "x-custom": "1", "user-agent": "curl", "cf-connecting-ip": "203.0.113.1" })).toEqual({
      accept: "*/*",
      authorization: "Bearer t",
      cookie: "a=b",
      "x-custom": "1",
      "user-agent": "curl",
      "cf-connecting-ip": "203.0.113.1",
    });
  });

  it("strips forwarding and identity headers a client could spoof", () => {
    expect(
      forwarded({
        "x-forwarded-for": "10.0.0.1",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "admin.internal",
        "x-forwarded-client-cert": "By=spiffe://cluster.local/ns/x/sa/admin",
        forwarded: "for=10.0.0.1",
        "x-real-ip": "10.0.0.1",
        "x-request-id": "client-chosen",
        "x-envoy-original-path": "/admin",
        "x-envoy-internal": "true",
        "x-isthmus-claims": "{}",
        "client-cert": ":abc:",
        "client-cert-chain": ":abc:",
        "x-ok": "kept",
        "x-envoyish": "kept",
        "xx-forwarded-for": "kept",
      }),
    ).toEqual({ "x-ok": "kept", "x-envoyish": "kept", "xx-forwarded-for": "kept" });
  });

  it("strips hop-by-hop headers and every header the Connection header names", () => {
    expect(
      forwarded({
        connection: "keep-alive, X-Secret-Hop",
        "keep-alive": "timeout=5",
        "proxy-connection": "keep-alive",
        te: "trailers",
        trailer: "x-checksum",
        upgrade: "websocket",
        "x-secret-hop": "1",
        "x-end-to-end": "1",
      }),
    ).toEqual({ "x-end-to-end": "1" });
  });

  it("does not pass on Expect: 100-continue, which the runtime has answered (Envoy without proxy_100_continue)", () => {
    expect(forwarded({ expect: "100-Continue", "x-ok": "1" })).toEqual({ "x-ok": "1" });
    // Any other expectation is the origin's to meet or refuse with 417.
    expect(forwarded({ expect: "x-custom" })).toEqual({ expect: "x-custom" });
  });

  it("strips headers Isthmus injects itself", () => {
    expect(forwarded({ "x-jwt-sub": "admin", "x-ok": "1" }, new Set(["x-jwt-sub"]))).toEqual({ "x-ok": "1" });
  });

  it("always strips a spelling with _ of a header the gateway strips or sets, which CGI, WSGI, PHP and nginx read as that header", () => {
    const spoofed = {
      x_user_id: "admin",
      X_Forwarded_For: "10.0.0.1",
      "x-forwarded_host": "admin.internal",
      X_Request_Id: "client-chosen",
      "X-Envoy_Retry_On": "5xx",
      x_envoy_original_path: "/admin",
      X_Isthmus_Mirror: "1",
      x_forwarded_client_cert: "By=spiffe://x",
      client_cert: ":abc:",
      client_cert_chain: ":abc:",
      x_real_ip: "10.0.0.1",
      transfer_encoding: "gzip",
      keep_alive: "timeout=5",
      cf_connecting_ip: "10.0.0.1",
      true_client_ip: "10.0.0.1",
    };
    const kept = { x_custom: "kept", "x-ok": "kept", x_userid: "kept" };
    for (const action of [undefined, "ALLOW", "DROP_HEADER"] as const) {
      const result = sanitizeRequest(new Request("http://a.example.com/", { headers: { ...spoofed, ...kept } }), { limits: limits(), injected: new Set(["x-user-id"]), headersWithUnderscoresAction: action });
      if (!result.ok) throw new Error(rejected(result));
      expect([action, Object.fromEntries(result.headers)]).toEqual([action, action === "DROP_HEADER" ? { "x-ok": "kept" } : kept]);
    }
    // An injected name written with _ is matched either way too.
    expect(forwarded({ "x-tenant-id": "root", x_tenant_id: "root", "x-ok": "1" }, new Set(["x_tenant_id"]))).toEqual({ "x-ok": "1" });
  });

  it("applies headersWithUnderscoresAction to any other name with _: ALLOW keeps it, DROP_HEADER drops it, REJECT_REQUEST answers 400 as Envoy's codec (http1.unexpected_underscore)", () => {
    const request = () => new Request("http://a.example.com/", { headers: { "x-ok": "1", x_custom: "v" } });
    const headers = (action?: "ALLOW" | "DROP_HEADER") => {
      const result = sanitizeRequest(request(), { limits: limits(), headersWithUnderscoresAction: action });
      return result.ok ? Object.fromEntries(result.headers) : rejected(result);
    };
    expect(headers()).toEqual({ "x-ok": "1", x_custom: "v" });
    expect(headers("ALLOW")).toEqual({ "x-ok": "1", x_custom: "v" });
    expect(headers("DROP_HEADER")).toEqual({ "x-ok": "1" });
    const refused = sanitizeRequest(request(), { limits: limits(), headersWithUnderscoresAction: "REJECT_REQUEST" });
    expect([rejected(refused), refused.ok ? undefined : refused.reply.details]).toEqual(["400 header name contains underscores DPE", "http1.unexpected_underscore"]);
    // Names without _ are untouched by it.
    const plain = sanitizeRequest(new Request("http://a.example.com/", { headers: { "x-ok": "1" } }), { limits: limits(), headersWithUnderscoresAction: "REJECT_REQUEST" });
    expect(plain.ok && Object.fromEntries(plain.headers)).toEqual({ "x-ok": "1" });
  });

  it("keeps repeated headers as the comma-joined value", () => {
    const headers = new Headers();
    headers.append("x-list", "a");
    headers.append("x-list", "b");
    const result = check(new Request("http://a.example.com/", { headers }));
    expect(result.ok && result.headers.get("x-list")).toBe("a, b");
  });
});
