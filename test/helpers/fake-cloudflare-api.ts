/**
 * A stand-in for the Cloudflare REST API's Workers KV endpoints, so that
 * `--remote` can be exercised here without internet: wrangler is pointed at
 * it with CLOUDFLARE_API_BASE_URL and performs its real requests against it.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeCloudflare {
  baseUrl: string;
  /** namespace id → key → value */
  namespaces: Map<string, Map<string, string>>;
  requests: string[];
  close(): Promise<void>;
}

const VALUES = /^\/client\/v4\/accounts\/([^/]+)\/storage\/kv\/namespaces\/([^/]+)\/values\/([^?]+)/;

export async function startFakeCloudflare(): Promise<FakeCloudflare> {
  const namespaces = new Map<string, Map<string, string>>();
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push(`${req.method} ${req.url}`);
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      const m = VALUES.exec(req.url ?? "");
      if (!m) return json(404, { success: false, errors: [{ code: 7003, message: "No route for that URI" }], messages: [], result: null });
      const ns = namespaces.get(m[2] as string) ?? new Map<string, string>();
      namespaces.set(m[2] as string, ns);
      const key = decodeURIComponent(m[3] as string);
      if (req.method === "GET") {
        const value = ns.get(key);
        if (value === undefined) return json(404, { success: false, errors: [{ code: 10009, message: "get: 'key not found'" }], messages: [], result: null });
        res.writeHead(200, { "content-type": "application/octet-stream" });
        return res.end(value);
      }
      if (req.method === "PUT") {
        ns.set(key, Buffer.concat(chunks).toString("utf8"));
        return json(200, { success: true, errors: [], messages: [], result: null });
      }
      if (req.method === "DELETE") {
        ns.delete(key);
        return json(200, { success: true, errors: [], messages: [], result: null });
      }
      return json(405, { success: false, errors: [{ code: 10000, message: "method not allowed" }], messages: [], result: null });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    baseUrl: `http://127.0.0.1:${port}/client/v4`,
    namespaces,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
