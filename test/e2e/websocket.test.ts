/**
 * WebSockets end to end (`isthmus serve` in front of a real Node WebSocket
 * origin): Istio turns on Envoy's websocket upgrade for every route, so a
 * handshake goes through the gateway's pipeline (routing, authorization,
 * the request headers Envoy sets) to the origin, and the client talks to
 * the origin over the socket it accepted.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { send } from "../helpers/http.ts";
import { serviceEntry, virtualService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let origin: Server;
const handshakes: { url: string; headers: IncomingHttpHeaders }[] = [];
const plain: IncomingHttpHeaders[] = [];

beforeAll(async () => {
  const sockets = new WebSocketServer({ noServer: true });
  origin = createServer((req, res) => {
    plain.push(req.headers);
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("plain");
  });
  origin.on("upgrade", (req, socket, head) => {
    handshakes.push({ url: req.url ?? "", headers: req.headers });
    sockets.handleUpgrade(req, socket, head, (ws) => ws.on("message", (data) => ws.send(`echo:${String(data)}`)));
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const port = (origin.address() as AddressInfo).port;
  const config = [
    serviceEntry({ name: "chat", namespace: "edge", endpoints: [port] }),
    virtualService({ name: "chat", namespace: "edge", hosts: "chat.example.com", destination: "chat.edge.internal" }),
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin/*]}}]}]`,
  ].join("\n---\n");
  gw = await startGateway(config, { command: "serve" });
}, 150_000);

afterAll(async () => {
  await gw?.stop();
  origin?.closeAllConnections();
  await new Promise<void>((resolve) => origin?.close(() => resolve()));
});

/** Opens a WebSocket to `path` through the gateway: the 101's headers, or the status it was refused with. */
function connect(path: string): Promise<{ ws: WebSocket; headers: IncomingHttpHeaders } | { refused: number }> {
  const ws = new WebSocket(`${gw.url.replace("http:", "ws:")}${path}`, { headers: { host: "chat.example.com" } });
  return new Promise((resolve, reject) => {
    let headers: IncomingHttpHeaders = {};
    ws.on("upgrade", (res) => (headers = res.headers));
    ws.on("open", () => resolve({ ws, headers }));
    ws.on("unexpected-response", (_req, res) => {
      resolve({ refused: res.statusCode ?? 0 });
      res.resume();
    });
    ws.on("error", reject);
  });
}

function next(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once("message", (data) => resolve(String(data))));
}

describe("a WebSocket handshake", () => {
  it("reaches the origin through the pipeline, and the socket carries messages both ways", async () => {
    const opened = await connect("/chat?room=1");
    if (!("ws" in opened)) throw new Error(`refused with ${opened.refused}`);
    const { ws, headers } = opened;
    expect(headers["x-envoy-upstream-service-time"]).toMatch(/^\d+$/);
    const reply = next(ws);
    ws.send("hello");
    expect(await reply).toBe("echo:hello");
    const again = next(ws);
    ws.send("again");
    expect(await again).toBe("echo:again");
    ws.close();
    const seen = handshakes.at(-1);
    expect(seen?.url).toBe("/chat?room=1");
    expect(seen?.headers.upgrade).toBe("websocket");
    expect(seen?.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen?.headers["x-forwarded-proto"]).toBe("http");
  });

  it("is authorized like any request: a DENY policy refuses it before the origin sees it", async () => {
    const before = handshakes.length;
    expect(await connect("/admin/console")).toEqual({ refused: 403 });
    expect(handshakes.length).toBe(before);
  });

  it("is the only upgrade passed on: another (h2c) is hop-by-hop, and the origin gets a plain GET", async () => {
    const res = await send(gw.url, "/", { host: "chat.example.com", headers: { connection: "Upgrade, HTTP2-Settings", upgrade: "h2c", "http2-settings": "AAMAAABkAAQAAP__" } });
    expect([res.status, res.body]).toEqual([200, "plain"]);
    expect([plain.at(-1)?.upgrade, plain.at(-1)?.["http2-settings"]]).toEqual([undefined, undefined]);
  });
});
