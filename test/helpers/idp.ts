/**
 * A real identity provider for tests: a Node HTTP server that serves a
 * JWKS (and an OIDC discovery document) for keys generated with jose, and
 * signs tokens with them. It records every request, so tests can assert
 * how often the gateway fetched keys, and it can be slowed down or taken
 * down to exercise the gateway's JWKS cache.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";

export interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface Idp {
  url: string;
  port: number;
  /** `issuer` claim of the tokens it signs (its base URL). */
  issuer: string;
  jwksUri: string;
  /** Paths requested so far, in order. */
  requests: string[];
  jwksFetches: () => number;
  /** Keys currently published (first is used for signing by default). */
  keys: SigningKey[];
  addKey(alg?: string, kid?: string): Promise<SigningKey>;
  /** Removes a key from the published JWKS. */
  unpublish(kid: string): void;
  /** Makes the server answer 503 (down) or normally. */
  setDown(down: boolean): void;
  /** Delays every answer by this many ms. */
  setDelay(ms: number): void;
  sign(claims?: JWTPayload, options?: SignOptions): Promise<string>;
  close(): Promise<void>;
}

export interface SignOptions {
  key?: SigningKey;
  /** Extra protected header parameters. */
  header?: Record<string, unknown>;
  issuer?: string | null;
  subject?: string | null;
  audience?: string | string[];
  /** Seconds from now; null for no `exp`. */
  expiresIn?: number | null;
}

export async function startIdp(): Promise<Idp> {
  const requests: string[] = [];
  const keys: SigningKey[] = [];
  let down = false;
  let delay = 0;
  let base = "";
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    requests.push(path);
    const answer = () => {
      if (down) {
        res.writeHead(503, { "content-type": "text/plain" });
        res.end("down");
        return;
      }
      if (path === "/.well-known/openid-configuration") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/discovered/jwks.json` }));
      } else if (path === "/jwks.json" || path === "/discovered/jwks.json") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
      } else {
        res.writeHead(404);
        res.end();
      }
    };
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;

  const idp: Idp = {
    url: base,
    port,
    issuer: base,
    jwksUri: `${base}/jwks.json`,
    requests,
    jwksFetches: () => requests.filter((r) => r.endsWith("jwks.json")).length,
    keys,
    async addKey(alg = "RS256", kid = `key-${keys.length + 1}`) {
      const key = await signingKey(alg, kid);
      keys.push(key);
      return key;
    },
    unpublish(kid) {
      const i = keys.findIndex((k) => k.kid === kid);
      if (i >= 0) keys.splice(i, 1);
    },
    setDown(d) {
      down = d;
    },
    setDelay(ms) {
      delay = ms;
    },
    async sign(claims = {}, options = {}) {
      const key = options.key ?? keys[0];
      if (!key) throw new Error("the IdP has no key");
      return signToken(key, claims, { issuer: base, ...options });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  await idp.addKey();
  return idp;
}

export async function signingKey(alg: string, kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === "EdDSA" ? { crv: "Ed25519" } : {});
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

export async function signToken(key: SigningKey, claims: JWTPayload, options: SignOptions & { issuer?: string | null }): Promise<string> {
  const jwt = new SignJWT({ ...claims }).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...options.header }).setIssuedAt();
  if (options.issuer) jwt.setIssuer(options.issuer);
  const subject = options.subject === undefined ? "alice" : options.subject;
  if (subject) jwt.setSubject(subject);
  if (options.audience) jwt.setAudience(options.audience);
  const expiresIn = options.expiresIn === undefined ? 3600 : options.expiresIn;
  if (expiresIn !== null) jwt.setExpirationTime(Math.floor(Date.now() / 1000) + expiresIn);
  return jwt.sign(key.privateKey);
}

/** base64url of a string or bytes. */
export function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString("base64url");
}

/** A compact token from raw parts, for malformed and hostile tokens. */
export function rawToken(header: Record<string, unknown> | string, payload: Record<string, unknown> | string, signature = ""): string {
  const enc = (part: Record<string, unknown> | string) => (typeof part === "string" ? b64url(part) : b64url(JSON.stringify(part)));
  return `${enc(header)}.${enc(payload)}.${signature}`;
}
