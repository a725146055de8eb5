/**
 * A raw HTTP client for tests: unlike fetch(), it can set any Host header
 * and send exactly the bytes a test needs.
 */
import { request } from "node:http";
import { connect } from "node:net";

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface Send {
  host?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** A body sent chunked, one part at a time with `gapMs` between them (a slow upload); instead of `body`. */
  slowBody?: { parts: string[]; gapMs: number };
}

/** Sends one request to `base` (e.g. http://127.0.0.1:8787) with the given Host. */
export function send(base: string, path: string, options: Send = {}): Promise<Reply> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: options.method ?? "GET",
        path,
        headers: { ...(options.host ? { host: options.host } : {}), ...options.headers },
        timeout: 30_000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : (v ?? "");
          resolve({ status: res.statusCode ?? 0, headers, body });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout: ${path}`)));
    req.on("error", reject);
    if (options.slowBody) {
      const { parts, gapMs } = options.slowBody;
      void (async () => {
        for (const part of parts) {
          req.write(part);
          await new Promise((r) => setTimeout(r, gapMs));
        }
        req.end();
      })();
      return;
    }
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

/** Writes raw bytes on a fresh connection and returns everything read until close (or 3 s). */
export function sendRaw(base: string, bytes: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(bytes));
    let out = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(out);
    }, 3_000);
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (out += d));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on("error", (e) => {
      clearTimeout(timer);
      if (out) resolve(out);
      else reject(e);
    });
  });
}
