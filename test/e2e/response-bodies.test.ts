/**
 * Response bodies end to end (`isthmus serve`, access logging on, a real
 * Node origin): whatever watches a body on its way out — the route timeout,
 * a circuit breaker's request slot, telemetry's meter — the client gets
 * every byte: plain, chunked, and encoded (gzip with a Content-Length that
 * counts the compressed bytes, while fetch() hands the gateway decoded
 * ones). Only the route timeout cuts a body off; a per-try timeout is over
 * once the response has started, as in Envoy.
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { serviceEntry, virtualService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let origin: Server;

const SMALL = "hello, world";
// Over telemetry's 64 KiB small-body threshold even compressed (random-ish text compresses poorly).
const LARGE = Array.from({ length: 30_000 }, (_, i) => ((i * 2654435761) >>> 0).toString(36)).join(" ");
const SMALL_GZ = gzipSync(SMALL);
const LARGE_GZ = gzipSync(LARGE);

beforeAll(async () => {
  origin = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://origin");
    const kind = url.pathname.slice(1);
    if (kind === "length") {
      res.writeHead(200, { "content-type": "text/plain", "content-length": String(SMALL.length) });
      res.end(SMALL);
    } else if (kind === "chunked") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write(SMALL.slice(0, 5));
      res.end(SMALL.slice(5));
    } else if (kind === "gzip" || kind === "gzip-large") {
      const body = kind === "gzip" ? SMALL_GZ : LARGE_GZ;
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip", "content-length": String(body.length) });
      res.end(body);
    } else {
      // /trickle?gap=N: four 100-byte parts N ms apart.
      const gap = Number(url.searchParams.get("gap"));
      res.writeHead(200, { "content-type": "text/plain" });
      let sent = 0;
      const next = () => {
        res.write("x".repeat(100));
        if (++sent === 4) res.end();
        else timer = setTimeout(next, gap);
      };
      let timer = setTimeout(next, 0);
      res.on("close", () => clearTimeout(timer));
    }
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const port = (origin.address() as AddressInfo).port;
  const route = (name: string, routeFields?: Record<string, string>) =>
    virtualService({ name, namespace: "edge", hosts: `${name}.example.com`, destination: `${name === "held" ? "held" : "origin"}.edge.internal`, routeFields });
  const config = [
    serviceEntry({ name: "origin", namespace: "edge", endpoints: [port] }),
    serviceEntry({ name: "held", namespace: "edge", endpoints: [port] }),
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: held, namespace: edge}
spec:
  host: held.edge.internal
  trafficPolicy: {connectionPool: {http: {http2MaxRequests: 10}}}`,
    route("plain"),
    route("timed", { timeout: "5s" }),
    route("held"),
    route("pertry", { retries: "{attempts: 2, perTryTimeout: 300ms, retryOn: 5xx}" }),
    route("cut", { timeout: "500ms", retries: "{attempts: 0}" }),
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

/** GETs `path` on `host` with gzip accepted and returns the body as received (decoded when gzip), and whether it ended whole. */
function get(host: string, path: string): Promise<{ status: number; body: string; complete: boolean }> {
  const url = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers: { host, "accept-encoding": "gzip" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", () => {});
      res.on("close", () => {
        let bytes = Buffer.concat(chunks);
        if (res.complete && res.headers["content-encoding"] === "gzip") bytes = gunzipSync(bytes);
        resolve({ status: res.statusCode ?? 0, body: bytes.toString("utf8"), complete: res.complete });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** The gateway's access log lines (Istio's JSON) for `authority`. */
const logged = (authority: string) =>
  gw
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes('"start_time"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.authority === authority);

describe("every byte reaches the client, whatever watches the body", () => {
  for (const host of ["plain", "timed", "held", "pertry"]) {
    it(`${host}: a body with a Content-Length, a chunked one, and gzip ones (small and over 64 KiB)`, async () => {
      const expected: Record<string, string> = { length: SMALL, chunked: SMALL, gzip: SMALL, "gzip-large": LARGE };
      for (const [kind, body] of Object.entries(expected)) {
        const res = await get(`${host}.example.com`, `/${kind}`);
        expect({ host, kind, status: res.status, complete: res.complete, length: res.body.length }).toEqual({ host, kind, status: 200, complete: true, length: body.length });
        expect(res.body === body, `${host} /${kind}`).toBe(true);
      }
    }, 30_000);
  }
});

describe("timeouts over the response body", () => {
  it("lets a body outlast perTryTimeout (300 ms): the per-try timeout is over once the response has started", async () => {
    const res = await get("pertry.example.com", "/trickle?gap=250");
    expect([res.status, res.complete, res.body.length]).toEqual([200, true, 400]);
  }, 30_000);

  it("cuts a body off at the route timeout and logs the status sent with flag UT, not a client disconnect", async () => {
    const res = await get("cut.example.com", "/trickle?gap=400");
    expect([res.status, res.complete]).toEqual([200, false]);
    expect(res.body.length).toBeLessThan(400);
    await expect.poll(() => logged("cut.example.com").length, { timeout: 5_000 }).toBe(1);
    expect(logged("cut.example.com")[0]).toMatchObject({ response_code: 200, response_flags: "UT" });
  }, 30_000);
});
