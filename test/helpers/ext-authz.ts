/**
 * A real HTTP external authorizer for CUSTOM policies: a Node server that
 * records each check request and answers with whatever decision the test
 * sets (status, body, headers, delay).
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Check {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Decision {
  status: number;
  body?: string;
  /** A list sends the name once per value (several `Set-Cookie`). */
  headers?: Record<string, string | string[]>;
  delayMs?: number;
}

export interface Authorizer {
  port: number;
  checks: Check[];
  /** Decides each check (default: 200 with no headers). */
  decide(fn: (check: Check) => Decision): void;
  close(): Promise<void>;
}

export async function startAuthorizer(): Promise<Authorizer> {
  const checks: Check[] = [];
  let decide: (check: Check) => Decision = () => ({ status: 200 });
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const check: Check = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      checks.push(check);
      const d = decide(check);
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(d.status, { "content-type": "text/plain", ...d.headers });
        res.end(d.body ?? "");
      };
      if (d.delayMs) setTimeout(send, d.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    checks,
    decide: (fn) => (decide = fn),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
