/**
 * istio_request_bytes counts the request as it came in on the wire: request
 * line, the client's header block (counted once, by hygiene, before any
 * header is stripped or added) and the body.
 */
import { describe, expect, it } from "vitest";
import { sanitizeRequest } from "../../../src/gateway/hygiene.ts";
import { completeRequest, headerBytes, responseHead } from "../../../src/telemetry/completed.ts";
import type { RequestContext } from "../../../src/gateway/context.ts";
import type { RequestFacts } from "../../../src/gateway/facts.ts";

const limits = { maxUrlBytes: 16_384, maxHeadersCount: 100, maxRequestHeadersBytes: 61_440, maxRequestBodyBytes: 1_000_000 };

describe("request size on the wire", () => {
  it("is counted by hygiene from the headers as received, spoofable ones included", () => {
    const request = new Request("http://app.example.com/a", { headers: { "x-tenant": "t1", "x-forwarded-for": "6.6.6.6", authorization: "Bearer abc" } });
    const clean = sanitizeRequest(request, { limits: limits as never });
    if (!clean.ok) throw new Error("rejected");
    // host is not among a constructed Request's headers: 3 headers, `name: value\r\n` each.
    expect(clean.bytes).toBe("x-tenant: t1\r\n".length + "x-forwarded-for: 6.6.6.6\r\n".length + "authorization: Bearer abc\r\n".length);
    expect(clean.bytes).toBe(headerBytes(request.headers));
    expect(clean.headers.has("x-forwarded-for")).toBe(false);
  });

  it("uses hygiene's count, not the headers the gateway ended up with", () => {
    const request = new Request("http://app.example.com/items?x=1", { method: "POST", headers: { "content-length": "5", a: "b" }, body: "hello" });
    const facts = { path: "/items", query: "x=1", headers: new Headers({ a: "b", "x-request-id": "added-by-the-gateway" }), receivedHeaderBytes: 1_000, bodyLength: 5 } as Partial<RequestFacts>;
    const context = { facts } as unknown as RequestContext;
    const c = completeRequest({ request, context, record: { flags: [] }, response: new Response("ok"), end: 1, responseBodyBytes: 2, disconnected: false });
    // "POST /items?x=1 HTTP/1.1\r\n" + headers + "\r\n" + body
    expect(c.requestBytes).toBe("POST".length + "/items".length + "?x=1".length + 11 + 1_000 + 2 + 5);
    const without = completeRequest({ request, record: { flags: [] }, response: new Response("ok"), end: 1, responseBodyBytes: 2, disconnected: false });
    expect(without.requestBytes).toBe("POST".length + "/items".length + "?x=1".length + 11 + headerBytes(request.headers) + 2 + 5);
  });

  it("counts the response's header block in one pass, with the content type, length and grpc-status it reads", () => {
    const headers = new Headers({ "content-type": "application/grpc", "grpc-status": "14", "x-a": "1", "content-length": "1" });
    headers.append("x-a", "2");
    const facts = responseHead(new Response(null, { status: 200, headers }));
    // Repeated names are joined, as `get` and iteration give them: "x-a: 1, 2\r\n".
    expect(facts).toEqual({
      status: 200,
      bytes: "content-type: application/grpc\r\n".length + "grpc-status: 14\r\n".length + "x-a: 1, 2\r\n".length + "content-length: 1\r\n".length,
      contentType: "application/grpc",
      grpcStatus: "14",
      contentLength: "1",
      contentEncoding: "",
    });
    let iterated = 0;
    for (const [name, value] of headers) iterated += name.length + value.length + 4;
    expect(headerBytes(headers)).toBe(iterated);
    expect(responseHead(new Response(null, { status: 204 }))).toEqual({ status: 204, bytes: 0, contentType: "", grpcStatus: "", contentLength: null, contentEncoding: "" });

    const request = new Request("http://app.example.com/svc.Echo/Say", { method: "POST" });
    const grpc = completeRequest({ request, record: { flags: [] }, response: new Response("x", { headers }), end: 1, responseBodyBytes: 1, disconnected: false });
    expect([grpc.grpc, grpc.grpcStatus]).toEqual([true, "14"]);
    expect(grpc.responseBytes).toBe(15 + 2 + facts.bytes + 2 + 1);
    // Telemetry reads the head once, when the response leaves the pipeline; the report is the same.
    const response = new Response("x", { status: 503, headers });
    const head = responseHead(response);
    expect(head.status).toBe(503);
    const input = { request, record: { flags: [] }, response, end: 1, responseBodyBytes: 1, disconnected: false };
    const fromHead = completeRequest({ ...input, head });
    expect(fromHead).toEqual(completeRequest(input));
    expect(fromHead.responseBytes).toBe(15 + 19 + facts.bytes + 2 + 1);
    const plain = completeRequest({ request, record: { flags: [] }, response: new Response("x", { headers: { "content-type": "text/plain", "grpc-status": "3" } }), end: 1, responseBodyBytes: 1, disconnected: false });
    expect([plain.grpc, plain.grpcStatus]).toEqual([false, ""]);
  });

  it("logs a body a timeout cut off as Envoy does: flag UT and the status sent, not a client disconnect (DC, status 0)", () => {
    const request = new Request("http://app.example.com/download");
    const cut = completeRequest({ request, record: { flags: ["UT"] }, response: new Response("partial"), end: 1, responseBodyBytes: 0, disconnected: true });
    expect([cut.status, cut.flags, cut.details]).toEqual([200, "UT", "upstream_response_timeout"]);
    const gone = completeRequest({ request, record: { flags: [] }, response: new Response("partial"), end: 1, responseBodyBytes: 0, disconnected: true });
    expect([gone.status, gone.flags]).toEqual([0, "DC"]);
  });
});
