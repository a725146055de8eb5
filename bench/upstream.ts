/**
 * The benchmark's upstream: a Node HTTP server answering every request with
 * the same 1 KiB JSON body, keep-alive on. Run as its own process so the
 * harness can pin it to a core. Prints `listening <port>` once ready.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/** Exactly 1,024 bytes of JSON. */
export function kibJson(): Buffer {
  const base = { service: "bench-upstream", ok: true, items: [] as number[], pad: "" };
  const empty = Buffer.byteLength(JSON.stringify(base));
  base.pad = "x".repeat(1024 - empty);
  const body = Buffer.from(JSON.stringify(base));
  if (body.length !== 1024) throw new Error(`body is ${body.length} bytes`);
  return body;
}

const body = kibJson();
const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
