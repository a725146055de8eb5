/**
 * The benchmark's identity provider: one RS256 key (2048-bit, jose), the
 * tokens the load generator sends (one per bench user, signed once by the
 * harness), and a small local HTTP server publishing the JWKS the gateway
 * fetches (once per isolate; the keys are then cached, as in production).
 *
 * @example
 * const keys = await benchKeys("http://127.0.0.1:1234");
 * keys.tokens.length; // BENCH_USERS
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";

/** Distinct users (hence distinct tokens) in the request rotation: the gateway's verified-token cache holds them all. */
export const BENCH_USERS = 8;
export const KID = "bench-rs256";

export interface BenchKeys {
  issuer: string;
  jwksUri: string;
  jwks: { keys: JWK[] };
  /** One token per user (`sub` user-0 … user-N), valid for two hours. */
  tokens: string[];
}

export interface BenchIdp extends BenchKeys {
  /** How many times the JWKS was fetched (once per gateway isolate is expected). */
  jwksFetches(): number;
  close(): Promise<void>;
}

/** Generates the key and signs one token per user for `issuer` (its JWKS at `<issuer>/jwks.json`). */
export async function benchKeys(issuer: string, users = BENCH_USERS): Promise<BenchKeys> {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { modulusLength: 2048 });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: KID, alg: "RS256", use: "sig" };
  const tokens: string[] = [];
  for (let i = 0; i < users; i++) {
    tokens.push(
      await new SignJWT({ scope: "read write", groups: ["staff", `team-${i % 3}`] })
        .setProtectedHeader({ alg: "RS256", kid: KID, typ: "JWT" })
        .setIssuer(issuer)
        .setSubject(`user-${i}`)
        .setAudience("bench-api")
        .setIssuedAt()
        .setExpirationTime("2h")
        .sign(privateKey),
    );
  }
  return { issuer, jwksUri: `${issuer}/jwks.json`, jwks: { keys: [jwk] }, tokens };
}

/** Starts the JWKS server on a free loopback port (in the harness process: it answers once per isolate). */
export async function startBenchIdp(): Promise<BenchIdp> {
  let keys: BenchKeys | undefined;
  let fetches = 0;
  const server = createServer((req, res) => {
    if (req.url === "/jwks.json" && keys) {
      fetches++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(keys.jwks));
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  keys = await benchKeys(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return {
    ...keys,
    jwksFetches: () => fetches,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
