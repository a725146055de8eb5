/**
 * A local S3-compatible bucket server for the cluster tests: the part of the
 * S3 API that workerd's cluster mode uses, with S3's semantics, in memory.
 * Neither npm nor Debian offers an S3 server here that honours conditional
 * writes (s3rver predates them; radosgw needs a Ceph cluster), and workerd
 * refuses a bucket that ignores them, so this one implements them as S3 does:
 *
 * - path-style requests, `/<bucket>/<key>`;
 * - PUT, with `If-None-Match: *` (412 when the key exists) and
 *   `If-Match: <etag>` (412 when the stored ETag differs, 404 when absent);
 * - GET and HEAD (404 NoSuchKey), DELETE (204 whether or not it existed);
 * - ListObjectsV2 (`?list-type=2`) with `prefix`, `delimiter`
 *   (CommonPrefixes), `max-keys` and `continuation-token`;
 * - requests must be signed (AWS4-HMAC-SHA256) with the access key id given;
 *   the signature itself is not recomputed.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface S3Bucket {
  /** `http://127.0.0.1:PORT`, for AWS_ENDPOINT_URL. */
  endpoint: string;
  /** The keys held in `bucket`, sorted. */
  keys(bucket: string): string[];
  /** An object's body as text, or undefined. */
  read(bucket: string, key: string): string | undefined;
  /** Every request, as `METHOD /path?query`. */
  requests: string[];
  close(): Promise<void>;
}

const etagOf = (body: Buffer) => `"${createHash("md5").update(body).digest("hex")}"`;
const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export async function startS3Bucket(accessKeyId: string): Promise<S3Bucket> {
  const objects = new Map<string, Buffer>();
  const requests: string[] = [];
  const xml = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { "content-type": "application/xml" });
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`);
  };
  const error = (res: ServerResponse, status: number, code: string) => xml(res, status, `<Error><Code>${code}</Code></Error>`);

  const list = (res: ServerResponse, bucket: string, query: URLSearchParams) => {
    const prefix = query.get("prefix") ?? "";
    const delimiter = query.get("delimiter") ?? "";
    const maxKeys = Math.min(Number(query.get("max-keys") ?? 1000), 1000);
    const after = query.get("continuation-token") ?? query.get("start-after") ?? "";
    const contents: string[] = [];
    const prefixes = new Set<string>();
    let truncated = false;
    let last = "";
    for (const key of [...objects.keys()].filter((k) => k.startsWith(`${bucket}/`)).map((k) => k.slice(bucket.length + 1)).sort()) {
      if (!key.startsWith(prefix) || key <= after) continue;
      if (contents.length + prefixes.size >= maxKeys) {
        truncated = true;
        break;
      }
      const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) prefixes.add(key.slice(0, cut + delimiter.length));
      else {
        const body = objects.get(`${bucket}/${key}`) as Buffer;
        contents.push(`<Contents><Key>${escapeXml(key)}</Key><ETag>${escapeXml(etagOf(body))}</ETag><Size>${body.length}</Size></Contents>`);
      }
      last = key;
    }
    xml(
      res,
      200,
      `<ListBucketResult><Name>${escapeXml(bucket)}</Name><Prefix>${escapeXml(prefix)}</Prefix><KeyCount>${contents.length + prefixes.size}</KeyCount>` +
        `<MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${truncated ? `<NextContinuationToken>${escapeXml(last)}</NextContinuationToken>` : ""}` +
        `${contents.join("")}${[...prefixes].map((p) => `<CommonPrefixes><Prefix>${escapeXml(p)}</Prefix></CommonPrefixes>`).join("")}</ListBucketResult>`,
    );
  };

  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const url = new URL(req.url ?? "/", "http://bucket");
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    const auth = req.headers.authorization ?? "";
    if (!auth.startsWith(`AWS4-HMAC-SHA256 Credential=${accessKeyId}/`)) return error(res, 403, "AccessDenied");
    const path = decodeURIComponent(url.pathname.slice(1));
    const slash = path.indexOf("/");
    const bucket = slash < 0 ? path : path.slice(0, slash);
    const key = slash < 0 ? "" : path.slice(slash + 1);
    if (!key) {
      if (req.method === "GET" && url.searchParams.get("list-type") === "2") return list(res, bucket, url.searchParams);
      return error(res, 501, "NotImplemented");
    }
    const id = `${bucket}/${key}`;
    const current = objects.get(id);
    switch (req.method) {
      case "PUT": {
        if (req.headers["if-none-match"] === "*" && current) return error(res, 412, "PreconditionFailed");
        const ifMatch = req.headers["if-match"];
        if (ifMatch !== undefined) {
          if (!current) return error(res, 404, "NoSuchKey");
          if (ifMatch !== etagOf(current)) return error(res, 412, "PreconditionFailed");
        }
        objects.set(id, body);
        res.writeHead(200, { etag: etagOf(body) });
        return res.end();
      }
      case "GET":
      case "HEAD":
        if (!current) return error(res, 404, "NoSuchKey");
        res.writeHead(200, { etag: etagOf(current), "content-length": current.length, "content-type": "application/octet-stream" });
        return res.end(req.method === "GET" ? current : undefined);
      case "DELETE":
        objects.delete(id);
        res.writeHead(204);
        return res.end();
      default:
        return error(res, 501, "NotImplemented");
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handle(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    keys: (bucket) => [...objects.keys()].filter((k) => k.startsWith(`${bucket}/`)).map((k) => k.slice(bucket.length + 1)).sort(),
    read: (bucket, key) => objects.get(`${bucket}/${key}`)?.toString("utf8"),
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
