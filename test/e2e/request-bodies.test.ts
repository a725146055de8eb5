/**
 * Streamed request bodies end to end (`isthmus serve` in front of a real
 * Node origin): a body the gateway streams (larger than maxRetryBodyBytes,
 * or on a route without retries, or passed through under ALLOW_ANY) keeps
 * the client's Content-Length, and an upload the client abandons halfway
 * never reaches the origin as a complete request, as with Envoy, which
 * resets the upstream stream.
 */
import { createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { serviceEntry, virtualService } from "../helpers/istio-yaml.ts";

interface Upload {
  url: string;
  headers: IncomingHttpHeaders;
  bytes: number;
  /** "complete" once the origin read the body to its end; "aborted" when the connection broke first. */
  outcome?: "complete" | "aborted";
}

let gw: Gateway;
let origin: Server;
let port = 0;
const uploads: Upload[] = [];

beforeAll(async () => {
  origin = createServer((req, res) => {
    const upload: Upload = { url: req.url ?? "", headers: req.headers, bytes: 0 };
    uploads.push(upload);
    req.on("data", (c: Buffer) => (upload.bytes += c.length));
    req.on("end", () => {
      upload.outcome ??= "complete";
      // What S3 answers to a PUT without a length.
      const status = req.method === "PUT" && req.headers["content-length"] === undefined ? 411 : 200;
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(`${upload.bytes}`);
    });
    req.on("aborted", () => (upload.outcome ??= "aborted"));
    req.on("error", () => (upload.outcome ??= "aborted"));
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  port = (origin.address() as AddressInfo).port;
  const config = [
    `apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}`,
    serviceEntry({ name: "store", namespace: "edge", endpoints: [port] }),
    virtualService({ name: "store", namespace: "edge", hosts: "store.example.com", destination: "store.edge.internal" }),
    virtualService({ name: "once", namespace: "edge", hosts: "once.example.com", destination: "store.edge.internal", routeFields: { retries: "{attempts: 0}" } }),
    `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]`,
  ].join("\n---\n");
  gw = await startGateway(config, { command: "serve" });
}, 150_000);

afterAll(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => origin?.close(() => resolve()));
});

/** Sends `body` in one go with its Content-Length (or chunked); resolves with the status and the origin's reply. */
function put(host: string, path: string, body: Buffer, chunked = false): Promise<{ status: number; body: string }> {
  const url = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host, "content-type": "application/octet-stream" };
    if (chunked) headers["transfer-encoding"] = "chunked";
    else headers["content-length"] = String(body.length);
    const req = request({ host: url.hostname, port: url.port, method: "PUT", path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Starts an upload that declares `declared` bytes (or none: chunked), sends `sent` of them, then drops the connection. */
async function abandon(host: string, path: string, sent: number, declared?: number): Promise<void> {
  const url = new URL(gw.url);
  const headers: Record<string, string> = { host, "content-type": "application/octet-stream" };
  if (declared === undefined) headers["transfer-encoding"] = "chunked";
  else headers["content-length"] = String(declared);
  const req = request({ host: url.hostname, port: url.port, method: "PUT", path, headers });
  req.on("error", () => {});
  req.write(Buffer.alloc(sent, 7));
  // Long enough for the gateway to have started the upstream request and passed the bytes on.
  await until(() => uploads.some((u) => u.url === path && u.bytes > 0));
  req.destroy();
}

async function until(condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

const upload = (path: string) => uploads.find((u) => u.url === path);

describe("a streamed request body", () => {
  it("keeps the client's Content-Length: larger than maxRetryBodyBytes, on a route without retries, and passed through", async () => {
    const big = Buffer.alloc(70_000, 1);
    expect(await put("store.example.com", "/big", big)).toEqual({ status: 200, body: "70000" });
    expect(await put("once.example.com", "/once", Buffer.alloc(2_000, 1))).toEqual({ status: 200, body: "2000" });
    expect(await put(`127.0.0.1:${port}`, "/passthrough", big)).toEqual({ status: 200, body: "70000" });
    for (const path of ["/big", "/once", "/passthrough"]) {
      expect([path, upload(path)?.headers["content-length"], upload(path)?.headers["transfer-encoding"]]).toEqual([path, path === "/once" ? "2000" : "70000", undefined]);
    }
    // A body sent chunked goes on chunked: there is no length to keep.
    expect(await put("store.example.com", "/chunked", big, true)).toEqual({ status: 411, body: "70000" });
    expect(upload("/chunked")?.headers["transfer-encoding"]).toBe("chunked");
  });

  it("that the client abandons never reaches the origin as a complete request, with or without a Content-Length", async () => {
    await abandon("store.example.com", "/abandoned-declared", 200_000, 1_000_000);
    await abandon("store.example.com", "/abandoned-chunked", 200_000);
    await abandon("once.example.com", "/abandoned-once", 20_000, 1_000_000);
    await abandon(`127.0.0.1:${port}`, "/abandoned-passthrough", 200_000);
    const paths = ["/abandoned-declared", "/abandoned-chunked", "/abandoned-once", "/abandoned-passthrough"];
    await until(() => paths.every((p) => upload(p)?.outcome !== undefined));
    expect(paths.map((p) => [p, upload(p)?.outcome])).toEqual(paths.map((p) => [p, "aborted"]));
  });
});

/** Writes `bytes` on a fresh connection (then half-closes it when asked) and returns the status line and body read until close. */
function raw(bytes: string, halfClose = false): Promise<{ statusLine: string; body: string }> {
  const url = new URL(gw.url);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(bytes);
      if (halfClose) socket.end();
    });
    let out = "";
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (out += d));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ statusLine: out.split("\r\n")[0] ?? "", body: out.split("\r\n\r\n")[1] ?? "" });
    });
  });
}

/** The gateway's access log lines (Istio's JSON) for `path`. */
const logged = (path: string) =>
  gw
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes('"start_time"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.path === path);

describe("a request body that cannot be read", () => {
  it("is answered 400 with flag DPE, never 500, and logged: malformed chunked framing, a short Content-Length body, a truncated chunked body", async () => {
    const head = (path: string, framing: string) => `POST ${path} HTTP/1.1\r\nHost: store.example.com\r\n${framing}\r\n`;
    const chunked = "Transfer-Encoding: chunked\r\n";
    const cases: [string, string, boolean][] = [
      ["/bad-lf", `${head("/bad-lf", `${chunked}Connection: close\r\n`)}5\nhello\n0\n\n`, false],
      ["/bad-overflow", `${head("/bad-overflow", `${chunked}Connection: close\r\n`)}FFFFFFFFFFFFFFFFF5\r\nhello\r\n0\r\n\r\n`, false],
      ["/bad-hex", `${head("/bad-hex", `${chunked}Connection: close\r\n`)}zz\r\nhello\r\n0\r\n\r\n`, false],
      ["/short-length", `${head("/short-length", "Content-Length: 100\r\n")}0123456789`, true],
      ["/short-chunked", `${head("/short-chunked", chunked)}5\r\nhel`, true],
    ];
    const replies = await Promise.all(cases.map(([, bytes, halfClose]) => raw(bytes, halfClose)));
    // The body is sent chunked (a size line, "bad request", the last chunk).
    expect(replies.map((r, i) => [cases[i]?.[0], r.statusLine, r.body.includes("bad request")])).toEqual(cases.map(([path]) => [path, "HTTP/1.1 400 Bad Request", true]));
    // Through the pipeline's result, not the catch-all: the access log has each, with Envoy's codec-error flag.
    await until(() => cases.every(([path]) => logged(path).length > 0));
    for (const [path] of cases) expect([path, logged(path)[0]?.response_code, logged(path)[0]?.response_flags]).toEqual([path, 400, "DPE"]);
    expect(gw.output()).not.toContain("internal error");
    // None reached the origin as a request.
    expect(cases.filter(([path]) => upload(path)?.outcome === "complete")).toEqual([]);
  });

  it("is answered Envoy's 501 (http1.invalid_transfer_encoding) when a coding other than chunked frames it (gzip, chunked), which would reach the origin decoded of its chunking only", async () => {
    const coded = (path: string, te: string) => `POST ${path} HTTP/1.1\r\nHost: store.example.com\r\nTransfer-Encoding: ${te}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`;
    const refused = ["/te-gzip", "/te-gzip-tight", "/te-twice"];
    const replies = await Promise.all([raw(coded("/te-gzip", "gzip, chunked")), raw(coded("/te-gzip-tight", "GZIP,chunked")), raw(coded("/te-twice", "chunked\r\nTransfer-Encoding: chunked"))]);
    expect(replies.map((r) => r.statusLine)).toEqual(refused.map(() => "HTTP/1.1 501 Not Implemented"));
    await until(() => refused.every((path) => logged(path).length > 0));
    for (const path of refused) {
      expect([path, logged(path)[0]?.response_code, logged(path)[0]?.response_flags, logged(path)[0]?.response_code_details]).toEqual([path, 501, "DPE", "http1.invalid_transfer_encoding"]);
    }
    expect(refused.filter((path) => upload(path) !== undefined)).toEqual([]);
    // Control: chunked alone (in any case) is the one transfer coding that passes.
    expect((await raw(coded("/te-chunked", "Chunked"))).statusLine).toBe("HTTP/1.1 200 OK");
    expect(upload("/te-chunked")?.bytes).toBe(5);
  });

  it("is answered 400 where the body is streamed too (a route without retries), not taken for the endpoint's connection failure", async () => {
    const reply = await raw("POST /bad-streamed HTTP/1.1\r\nHost: once.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n");
    // A 503 UF would count against the endpoint's health (outlier detection): a client could get endpoints ejected.
    expect(reply.statusLine).toMatch(/ 400 /);
    expect(upload("/bad-streamed")?.outcome).not.toBe("complete");
  });
});
