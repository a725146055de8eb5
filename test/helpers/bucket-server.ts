/**
 * A local bucket server for the cluster tests: the part of the S3 API, or of
 * Cloud Storage's XML API, that workerd's cluster mode uses, with each
 * store's conditional-write semantics, in memory. Neither npm nor Debian
 * offers a server here that honours conditional writes (s3rver predates
 * them; radosgw needs a Ceph cluster; fake-gcs-server is not packaged), and
 * workerd refuses a bucket that ignores them, so this one implements them:
 *
 * - path-style requests, `/<bucket>/<key>`;
 * - S3: PUT with `If-None-Match: *` (412 when the key exists) and
 *   `If-Match: <etag>` (412 when the stored ETag differs, 404 when absent);
 *   requests must be signed (AWS Signature Version 4, AWS4-HMAC-SHA256) with
 *   the access key given: the signature is recomputed from the canonical
 *   request, and a signed payload hash must match the body;
 * - Cloud Storage: every write bumps the object's generation, answered in
 *   `x-goog-generation`; PUT and DELETE with `x-goog-if-generation-match: N`
 *   fail with 412 unless the object's generation is N (0: it must not
 *   exist); requests carry no token, as with `STORAGE_EMULATOR_HOST` alone,
 *   or, given `authorize`, a token it accepts (test/helpers/google-auth.ts);
 * - GET and HEAD (404 NoSuchKey), DELETE (204 whether or not it existed);
 * - ListObjectsV2 (`?list-type=2`, which Cloud Storage's XML API also
 *   answers) with `prefix`, `delimiter` (CommonPrefixes), `max-keys` and
 *   `continuation-token`.
 */
import { createHash, createHmac } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface BucketServer {
  /** `http://127.0.0.1:PORT`: AWS_ENDPOINT_URL for S3, STORAGE_EMULATOR_HOST for Cloud Storage. */
  endpoint: string;
  /** The keys held in `bucket`, sorted. */
  keys(bucket: string): string[];
  /** An object's body as text, or undefined. */
  read(bucket: string, key: string): string | undefined;
  /** Every request, as `METHOD /path?query`. */
  requests: string[];
  /** The credential each request carried, in the order of `requests`: S3's access key id, Cloud Storage's bearer token ("" when none). */
  signedBy: string[];
  /** The requests refused for their credentials (403 AccessDenied), as in `requests`. */
  denied: string[];
  /** S3: from now on, accept only requests signed with this key (a credential rotation). */
  acceptOnly(accessKeyId: string, secretAccessKey: string): void;
  /** From now on, handle each request `ms` after it arrived (a slow or distant bucket); 0 for at once. */
  delay(ms: number): void;
  close(): Promise<void>;
}

/** Which API the server speaks: S3's, signed with the key given, or Cloud Storage's XML API. */
export type BucketDialect = { api: "s3"; accessKeyId: string; secretAccessKey: string } | { api: "gcs"; authorize?: (authorization: string | undefined) => boolean };

interface StoredObject {
  body: Buffer;
  generation: number;
}

const etagOf = (body: Buffer) => `"${createHash("md5").update(body).digest("hex")}"`;
const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** An S3-compatible bucket server that requires requests signed with this key (until `acceptOnly` names another). */
export const startS3Bucket = (accessKeyId: string, secretAccessKey: string): Promise<BucketServer> => startBucketServer({ api: "s3", accessKeyId, secretAccessKey });

/**
 * A Cloud Storage (XML API) bucket server, as an emulator that STORAGE_EMULATOR_HOST names: requests
 * carry no token, or, given `authorize`, one it accepts.
 */
export const startGcsBucket = (authorize?: (authorization: string | undefined) => boolean): Promise<BucketServer> =>
  startBucketServer(authorize ? { api: "gcs", authorize } : { api: "gcs" });

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();
/** RFC 3986 percent-encoding, as SigV4's canonical query string wants it. */
const encodeRfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * Whether `req` carries a valid AWS Signature Version 4 by `secretAccessKey`: the signature is
 * recomputed from the canonical request (method, path as sent, sorted query, the signed headers,
 * the payload hash), and a payload hash other than UNSIGNED-PAYLOAD must be the body's.
 */
function signedWith(req: IncomingMessage, body: Buffer, secretAccessKey: string): boolean {
  const auth = /^AWS4-HMAC-SHA256 Credential=[^/]+\/([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(req.headers.authorization ?? "");
  const amzDate = req.headers["x-amz-date"];
  if (!auth || typeof amzDate !== "string") return false;
  const [, scope, signedHeaders, signature] = auth as unknown as [string, string, string, string];
  const [date, region, service] = scope.split("/") as [string, string, string];
  const payloadHash = req.headers["x-amz-content-sha256"];
  if (typeof payloadHash === "string" && payloadHash !== "UNSIGNED-PAYLOAD" && payloadHash !== sha256(body)) return false;
  const raw = req.url ?? "/";
  const q = raw.indexOf("?");
  const query = q < 0 ? "" : raw.slice(q + 1);
  const canonicalQuery = query
    .split("&")
    .filter(Boolean)
    .map((pair) => pair.split("=").map((part) => encodeRfc3986(decodeURIComponent(part))) as [string, string?])
    .sort(([a, av = ""], [b, bv = ""]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v = ""]) => `${k}=${v}`)
    .join("&");
  const names = signedHeaders.split(";");
  const canonicalHeaders = names.map((name) => `${name}:${String(req.headers[name] ?? "").trim().replace(/\s+/g, " ")}\n`).join("");
  const canonicalRequest = [req.method, q < 0 ? raw : raw.slice(0, q), canonicalQuery, canonicalHeaders, signedHeaders, typeof payloadHash === "string" ? payloadHash : sha256(body)].join("\n");
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonicalRequest)].join("\n");
  const key = hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), service), "aws4_request");
  return createHmac("sha256", key).update(stringToSign).digest("hex") === signature;
}

export async function startBucketServer(dialect: BucketDialect): Promise<BucketServer> {
  const objects = new Map<string, StoredObject>();
  const requests: string[] = [];
  const signedBy: string[] = [];
  const denied: string[] = [];
  let generations = 0;
  const xml = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { "content-type": "application/xml" });
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`);
  };
  const error = (res: ServerResponse, status: number, code: string) => xml(res, status, `<Error><Code>${code}</Code></Error>`);
  const versionHeaders = (o: StoredObject): Record<string, string> => ({ etag: etagOf(o.body), ...(dialect.api === "gcs" ? { "x-goog-generation": String(o.generation) } : {}) });

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
        const { body } = objects.get(`${bucket}/${key}`) as StoredObject;
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

  /** The write preconditions of the dialect: an error to answer, or undefined when the write may go ahead. */
  const precondition = (req: IncomingMessage, current: StoredObject | undefined): [number, string] | undefined => {
    if (dialect.api === "gcs") {
      const match = req.headers["x-goog-if-generation-match"];
      if (match === undefined) return undefined;
      return Number(match) === (current?.generation ?? 0) ? undefined : [412, "PreconditionFailed"];
    }
    if (req.method !== "PUT") return undefined;
    if (req.headers["if-none-match"] === "*" && current) return [412, "PreconditionFailed"];
    const ifMatch = req.headers["if-match"];
    if (ifMatch === undefined) return undefined;
    if (!current) return [404, "NoSuchKey"];
    return ifMatch === etagOf(current.body) ? undefined : [412, "PreconditionFailed"];
  };

  let accepted = dialect.api === "s3" ? { accessKeyId: dialect.accessKeyId, secretAccessKey: dialect.secretAccessKey } : undefined;
  const credentialOf = (req: IncomingMessage) => /^(?:AWS4-HMAC-SHA256 Credential=([^/]+)\/|Bearer (\S+)$)/.exec(req.headers.authorization ?? "")?.slice(1).find(Boolean) ?? "";

  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const url = new URL(req.url ?? "/", "http://bucket");
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    const credential = credentialOf(req);
    signedBy.push(credential);
    const authorized =
      dialect.api === "gcs"
        ? (dialect.authorize?.(req.headers.authorization) ?? req.headers.authorization === undefined)
        : accepted !== undefined && credential === accepted.accessKeyId && signedWith(req, body, accepted.secretAccessKey);
    if (!authorized) {
      denied.push(`${req.method} ${url.pathname}${url.search}`);
      return error(res, 403, "AccessDenied");
    }
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
    const failed = req.method === "PUT" || req.method === "DELETE" ? precondition(req, current) : undefined;
    if (failed) return error(res, ...failed);
    switch (req.method) {
      case "PUT": {
        const stored = { body, generation: ++generations };
        objects.set(id, stored);
        res.writeHead(200, versionHeaders(stored));
        return res.end();
      }
      case "GET":
      case "HEAD":
        if (!current) return error(res, 404, "NoSuchKey");
        res.writeHead(200, { ...versionHeaders(current), "content-length": current.body.length, "content-type": "application/octet-stream" });
        return res.end(req.method === "GET" ? current.body : undefined);
      case "DELETE":
        objects.delete(id);
        res.writeHead(204);
        return res.end();
      default:
        return error(res, 501, "NotImplemented");
    }
  };

  let latency = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (latency > 0) setTimeout(() => handle(req, res, Buffer.concat(chunks)), latency);
      else handle(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    keys: (bucket) => [...objects.keys()].filter((k) => k.startsWith(`${bucket}/`)).map((k) => k.slice(bucket.length + 1)).sort(),
    read: (bucket, key) => objects.get(`${bucket}/${key}`)?.body.toString("utf8"),
    requests,
    signedBy,
    denied,
    acceptOnly: (accessKeyId, secretAccessKey) => void (accepted = { accessKeyId, secretAccessKey }),
    delay: (ms) => void (latency = ms),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
