/**
 * A real local origin for end-to-end tests: a Node HTTP server that records
 * every request it receives and answers with a JSON echo (or a custom
 * handler), so tests can assert what the upstream saw.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Origin {
  name: string;
  port: number;
  received: Received[];
  /** Replace how the origin answers (default: 200 JSON echo). */
  respond: (handler: OriginHandler) => void;
  close(): Promise<void>;
}

export type OriginHandler = (req: Received, res: ServerResponse) => void;

const echo = (name: string): OriginHandler => (req, res) => {
  res.writeHead(200, { "content-type": "application/json", "x-origin": name });
  res.end(JSON.stringify({ origin: name, method: req.method, url: req.url, headers: req.headers, body: req.body }));
};

export async function startOrigin(name: string, port = 0): Promise<Origin> {
  const received: Received[] = [];
  let handler: OriginHandler = echo(name);
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r: Received = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      received.push(r);
      handler(r, res);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    received,
    respond: (h) => (handler = h),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
