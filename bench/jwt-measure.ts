/**
 * Micro-benchmark of request authentication: the cost of one request's
 * JWT check through the same code the gateway runs (extraction, parse,
 * verification with jose and an imported CryptoKey): cold (the isolate's
 * first token for a JWKS: the JWKS text parsed, the key imported, the
 * signature verified; the JWKS fetch itself is I/O and not counted), with
 * the key cached (every token new, the key already imported) and with the
 * token cached (the same token again). bench/micro.ts runs the RS256
 * case for the report; `npm run bench:jwt` (bench/jwt.bench.ts) prints
 * RS256, ES256 and EdDSA.
 *
 * Node's WebCrypto dispatches each verify to a thread pool (~30 µs,
 * performance-security-anchors §2.1) where workerd runs it inline, so the
 * cold numbers here are an upper bound for the gateway (bench/workerd-ops
 * times the bare RS256 verify inside workerd); the cache hit uses no
 * WebCrypto at all.
 */
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { authenticate, type AuthnEnv, type JwtRule } from "../src/authz/jwt/authenticate.ts";
import { extractionPlan } from "../src/authz/jwt/extract.ts";
import { JwksCache } from "../src/authz/jwt/jwks-cache.ts";
import { keySetOf, parseJwks } from "../src/authz/jwt/keys.ts";
import { VerifiedTokens } from "../src/authz/jwt/token-cache.ts";
import type { JwtRuleDef } from "../src/config/snapshot.ts";
import type { RequestFacts } from "../src/gateway/facts.ts";

const ISSUER = "https://idp.bench";

async function setup(alg: string, count: number) {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === "EdDSA" ? { crv: "Ed25519" } : {});
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg };
  const def: JwtRuleDef = {
    source: "RequestAuthentication/bench/jwt",
    index: 0,
    issuer: ISSUER,
    audiences: [],
    jwks: { keys: [jwk] },
    locations: [{ header: "authorization", prefix: "Bearer " }],
    forwardOriginalToken: false,
    outputClaimToHeaders: [],
    timeoutMs: 5000,
    spaceDelimitedClaims: ["scope", "permission"],
  };
  const rule: JwtRule = { def, inlineKeys: keySetOf([jwk], "bench"), tokens: new VerifiedTokens(), spaceDelimited: new Set(def.spaceDelimitedClaims) };
  const jwksText = JSON.stringify({ keys: [jwk] });
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    tokens.push(
      await new SignJWT({ n: i, scope: "read write", groups: ["a", "b"] })
        .setProtectedHeader({ alg, kid: "k1" })
        .setIssuer(ISSUER)
        .setSubject(`user-${i}`)
        .setAudience("api")
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(privateKey),
    );
  }
  return { rule, tokens, jwksText };
}

function facts(token: string): RequestFacts {
  return { method: "GET", scheme: "https", host: "h", port: 443, authority: "h", path: "/", query: "", headers: new Headers({ authorization: `Bearer ${token}` }), remoteIp: "" };
}

const env: AuthnEnv = {
  jwks: new JwksCache(() => Promise.reject(new Error("no remote JWKS in the benchmark")), Date.now),
  policy: { refreshMs: 1_200_000, maxAgeMs: 86_400_000, unknownKidCooldownMs: 30_000 },
  now: Date.now,
  waitUntil: () => {},
  maxJwtBytes: 8192,
};

export interface JwtCosts {
  alg: string;
  /** µs for an isolate's first token of a JWKS: the JWKS text parsed, the key imported, the signature verified. */
  coldUs: number;
  /** µs per request with a new token each time (signature verified; key already imported). */
  keyCachedUs: number;
  /** µs per request for a token already verified (verified-token cache hit). */
  tokenCachedUs: number;
  tokens: number;
  hits: number;
}

/** Times `tokens` distinct tokens (cold token cache), then `hits` repeats of one token, best of `rounds`. */
export async function measureJwt(alg: string, tokensCount = 300, hits = 20_000, rounds = 1): Promise<JwtCosts> {
  const { rule, tokens, jwksText } = await setup(alg, tokensCount);
  const plan = extractionPlan([[rule, rule.def.locations]]);
  const requests = tokens.map(facts);
  // Warm up the key import and the JIT, then clear the token cache.
  for (const f of requests.slice(0, 20)) await authenticate(plan, f, env);
  rule.tokens = new VerifiedTokens();

  // Cold: each token meets a rule whose key set is parsed from the JWKS text as the request needs it.
  const coldCount = Math.min(100, requests.length);
  let first = Infinity;
  for (let round = 0; round < rounds; round++) {
    const fresh = requests.slice(0, coldCount).map(() => {
      const r: JwtRule = { def: rule.def, tokens: new VerifiedTokens(), spaceDelimited: rule.spaceDelimited };
      return { rule: r, plan: extractionPlan([[r, r.def.locations]]) };
    });
    const start = performance.now();
    for (let i = 0; i < coldCount; i++) {
      const { rule: r, plan: p } = fresh[i] as (typeof fresh)[number];
      const keys = parseJwks(jwksText);
      if (keys) r.inlineKeys = keys;
      const result = await authenticate(p, requests[i] as RequestFacts, env);
      if (!result.ok || result.verified.length !== 1) throw new Error("verification failed");
    }
    first = Math.min(first, ((performance.now() - start) * 1000) / coldCount);
  }

  let cold = Infinity;
  let warm = Infinity;
  for (let round = 0; round < rounds; round++) {
    rule.tokens = new VerifiedTokens();
    let start = performance.now();
    for (const f of requests) {
      const r = await authenticate(plan, f, env);
      if (!r.ok || r.verified.length !== 1) throw new Error("verification failed");
    }
    cold = Math.min(cold, ((performance.now() - start) * 1000) / requests.length);

    // As the gateway's stage calls it: a cache hit answers synchronously, and only a promise is awaited.
    const hit = requests[0] as RequestFacts;
    start = performance.now();
    for (let i = 0; i < hits; i++) {
      const result = authenticate(plan, hit, env);
      const r = result instanceof Promise ? await result : result;
      if (!r.ok) throw new Error("verification failed");
    }
    warm = Math.min(warm, ((performance.now() - start) * 1000) / hits);
  }
  return { alg, coldUs: first, keyCachedUs: cold, tokenCachedUs: warm, tokens: tokensCount, hits };
}
