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
  /** When the request arrived (Date.now()). */
  at: number;
}

export interface Origin {
  name: string;
  port: number;
  received: Received[];
  /** Replace how the origin answers (default: 200 JSON echo). */
  respond: (handler: OriginHandler) => void;
  /** Stops listening (new connections are refused) and drops open ones; the port stays reserved for `accept`. */
  refuse(): Promise<void>;
  /** Listens again on the same port after `refuse`. */
  accept(): Promise<void>;
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
      const r: Received = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: Date.now() };
      received.push(r);
      handler(r, res);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const bound = (server.address() as AddressInfo).port;
  const stop = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return {
    name,
    port: bound,
    received,
    respond: (h) => (handler = h),
    refuse: stop,
    accept: () => new Promise<void>((resolve) => server.listen(bound, "127.0.0.1", resolve)),
    close: stop,
  };
}

/** Answers every request with `status` (and `x-origin`), like an origin whose application is failing. */
export const failWith =
  (name: string, status: number): OriginHandler =>
  (_req, res) => {
    res.writeHead(status, { "content-type": "text/plain", "x-origin": name });
    res.end(`${name} failed with ${status}`);
  };

/** Destroys the connection after reading the request: a reset before any response. */
export const resetConnection: OriginHandler = (_req, res) => {
  res.socket?.destroy();
};

/** Never answers (until the connection is closed). */
export const hang: OriginHandler = () => {};

/** Fails with `failing` for the first `n` requests, then answers with `recovered`. */
export function recoverAfter(n: number, failing: OriginHandler, recovered: OriginHandler): OriginHandler {
  let seen = 0;
  return (req, res) => (seen++ < n ? failing(req, res) : recovered(req, res));
}

/** The echo handler an origin starts with. */
export const echoAs = (name: string): OriginHandler => echo(name);
