/**
 * The benchmark's OTLP/HTTP collector: accepts POST /v1/traces, /v1/metrics
 * and /v1/logs, reads and discards each body, and answers 200 with an empty
 * protobuf message (a full success, as a collector answers). It counts what
 * it received; GET /stats returns the counts as JSON. Run as its own
 * process (pinned with the load generator) so decoding never competes
 * with the system under test. Prints `listening <port>` once ready.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

const stats: Record<string, { exports: number; bytes: number }> = {
  traces: { exports: 0, bytes: 0 },
  metrics: { exports: 0, bytes: 0 },
  logs: { exports: 0, bytes: 0 },
};

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(stats));
    return;
  }
  const signal = /^\/v1\/(traces|metrics|logs)$/.exec(req.url ?? "")?.[1];
  let bytes = 0;
  req.on("data", (chunk: Buffer) => (bytes += chunk.length));
  req.on("end", () => {
    const counter = signal ? stats[signal] : undefined;
    if (!counter || req.method !== "POST") {
      res.writeHead(404).end();
      return;
    }
    counter.exports++;
    counter.bytes += bytes;
    res.writeHead(200, { "content-type": String(req.headers["content-type"] ?? "application/x-protobuf").startsWith("application/json") ? "application/json" : "application/x-protobuf" });
    res.end(String(req.headers["content-type"] ?? "").startsWith("application/json") ? "{}" : undefined);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
