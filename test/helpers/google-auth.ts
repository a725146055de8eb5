/**
 * Google's two sources of access tokens, as local servers, for the tests
 * of `--cluster-bucket gs://` with real credentials:
 *
 * - the metadata server of a Compute Engine VM or GKE pod (what GKE
 *   Workload Identity answers through), reached through GCE_METADATA_HOST:
 *   `GET /computeMetadata/v1/instance/service-accounts/default/token` with
 *   `Metadata-Flavor: Google`;
 * - the OAuth token endpoint of a service account key (the key file's
 *   `token_uri`): `POST` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
 *   and an RS256 `assertion` signed by the key, checked here against its
 *   public key (issuer, audience, storage scope, expiry).
 *
 * Tokens live `lifetimeSeconds`; `accepts` tells a bucket server whether a
 * request's `Authorization` carries one that is live.
 */
import { createVerify, generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface IssuedToken {
  token: string;
  /** Which source handed it out. */
  via: "metadata" | "service-account-key";
  expiresAt: number;
}

export interface GoogleAuth {
  /** `127.0.0.1:PORT`, for GCE_METADATA_HOST. */
  metadataHost: string;
  /** The token endpoint a service account key names as its `token_uri`. */
  tokenUri: string;
  /** The client_email of the service account whose key `serviceAccountKey` holds. */
  clientEmail: string;
  /** A service account key file (JSON) whose `token_uri` is this server. */
  serviceAccountKey: string;
  /** Every token handed out, in order. */
  issued: IssuedToken[];
  /** Requests refused (a bad assertion, a missing Metadata-Flavor header), as `METHOD path: reason`. */
  refused: string[];
  /** Whether an `Authorization` header carries a live token this server issued. */
  accepts(authorization: string | undefined): boolean;
  close(): Promise<void>;
}

const b64urlJson = (part: string): unknown => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

/** Checks a service account's RS256 JWT bearer assertion; the reason it is refused, or undefined. */
function assertionProblem(assertion: string, publicKey: KeyObject, clientEmail: string, tokenUri: string): string | undefined {
  const parts = assertion.split(".");
  if (parts.length !== 3) return "not a JWS";
  const [header, payload, signature] = parts as [string, string, string];
  if ((b64urlJson(header) as { alg?: string }).alg !== "RS256") return "alg is not RS256";
  const verifier = createVerify("RSA-SHA256");
  verifier.update(`${header}.${payload}`);
  if (!verifier.verify(publicKey, Buffer.from(signature, "base64url"))) return "bad signature";
  const claims = b64urlJson(payload) as { iss?: string; aud?: string; scope?: string; exp?: number; iat?: number };
  if (claims.iss !== clientEmail) return `iss ${claims.iss}`;
  if (claims.aud !== tokenUri) return `aud ${claims.aud}`;
  if (!claims.scope?.split(" ").some((s) => s.startsWith("https://www.googleapis.com/auth/devstorage") || s === "https://www.googleapis.com/auth/cloud-platform")) return `scope ${claims.scope}`;
  const now = Date.now() / 1000;
  if (typeof claims.exp !== "number" || claims.exp < now || claims.exp - (claims.iat ?? now) > 3600) return "exp";
  return undefined;
}

export async function startGoogleAuth(options: { lifetimeSeconds?: number } = {}): Promise<GoogleAuth> {
  const lifetime = options.lifetimeSeconds ?? 3600;
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const clientEmail = "isthmus-gateway@isthmus-test.iam.gserviceaccount.com";
  const issued: IssuedToken[] = [];
  const refused: string[] = [];
  let tokenUri = "";

  const issue = (res: ServerResponse, via: IssuedToken["via"]) => {
    const token = `ya29.isthmus-test-${issued.length + 1}`;
    issued.push({ token, via, expiresAt: Date.now() + lifetime * 1000 });
    res.writeHead(200, { "content-type": "application/json", "metadata-flavor": "Google" });
    res.end(JSON.stringify({ access_token: token, expires_in: lifetime, token_type: "Bearer" }));
  };
  const refuse = (req: IncomingMessage, res: ServerResponse, status: number, reason: string) => {
    refused.push(`${req.method} ${req.url}: ${reason}`);
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: "invalid_grant", error_description: reason }));
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method === "GET" && path === "/computeMetadata/v1/instance/service-accounts/default/token") {
        if (req.headers["metadata-flavor"] !== "Google") return refuse(req, res, 403, "no Metadata-Flavor: Google");
        return issue(res, "metadata");
      }
      if (req.method === "POST" && path === "/token") {
        const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
        if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return refuse(req, res, 400, `grant_type ${form.get("grant_type")}`);
        const problem = assertionProblem(form.get("assertion") ?? "", publicKey, clientEmail, tokenUri);
        if (problem) return refuse(req, res, 400, problem);
        return issue(res, "service-account-key");
      }
      refuse(req, res, 404, "unknown path");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  tokenUri = `http://127.0.0.1:${port}/token`;
  return {
    metadataHost: `127.0.0.1:${port}`,
    tokenUri,
    clientEmail,
    serviceAccountKey: JSON.stringify({
      type: "service_account",
      project_id: "isthmus-test",
      private_key_id: "isthmus-test-key",
      private_key: privateKey.export({ type: "pkcs8", format: "pem" }),
      client_email: clientEmail,
      client_id: "100000000000000000001",
      token_uri: tokenUri,
    }),
    issued,
    refused,
    accepts: (authorization) => {
      const token = /^Bearer (\S+)$/.exec(authorization ?? "")?.[1];
      const found = issued.find((t) => t.token === token);
      return found !== undefined && found.expiresAt > Date.now();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
