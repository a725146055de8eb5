/**
 * Request authentication over JWT rules: a request whose tokens are all
 * verified-token cache hits is decided synchronously (no promise), and it
 * is decided exactly as the full path decides it.
 */
import { describe, expect, it } from "vitest";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { authenticate, identityOf, type AuthnEnv, type JwtRule } from "../../../src/authz/jwt/authenticate.ts";
import { extractionPlan } from "../../../src/authz/jwt/extract.ts";
import { JwksCache } from "../../../src/authz/jwt/jwks-cache.ts";
import { keySetOf } from "../../../src/authz/jwt/keys.ts";
import { JWT_STATUS } from "../../../src/authz/jwt/status.ts";
import { VerifiedTokens } from "../../../src/authz/jwt/token-cache.ts";
import type { JwtRuleDef } from "../../../src/config/snapshot.ts";
import type { RequestFacts } from "../../../src/gateway/facts.ts";

const ISSUER = "https://idp.test";
const { publicKey, privateKey } = await generateKeyPair("RS256");
const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "RS256" };

function rule(spaceDelimitedClaims: string[] = []): JwtRule {
  const def: JwtRuleDef = {
    source: "RequestAuthentication/ns/jwt",
    index: 0,
    issuer: ISSUER,
    audiences: ["api"],
    jwks: { keys: [jwk] },
    locations: [{ header: "authorization", prefix: "Bearer " }, { param: "access_token" }],
    forwardOriginalToken: false,
    outputClaimToHeaders: [],
    timeoutMs: 5000,
    spaceDelimitedClaims,
  };
  return { def, inlineKeys: keySetOf([jwk], "test"), tokens: new VerifiedTokens(), spaceDelimited: new Set(spaceDelimitedClaims) };
}

const sign = (sub: string, exp: number, aud = "api") => new SignJWT({}).setProtectedHeader({ alg: "RS256", kid: "k1" }).setIssuer(ISSUER).setSubject(sub).setAudience(aud).setExpirationTime(exp).sign(privateKey);

function facts(authorization?: string, query = ""): RequestFacts {
  return { method: "GET", scheme: "https", host: "h", port: 443, authority: "h", path: "/", query, headers: new Headers(authorization ? { authorization } : {}), remoteIp: "" };
}

function env(nowMs: () => number): AuthnEnv {
  return {
    jwks: new JwksCache(() => Promise.reject(new Error("no remote JWKS here")), nowMs),
    policy: { refreshMs: 1_200_000, maxAgeMs: 86_400_000, unknownKidCooldownMs: 30_000 },
    now: nowMs,
    waitUntil: () => {},
    maxJwtBytes: 8192,
  };
}

describe("authenticate", () => {
  const inAnHour = Math.floor(Date.now() / 1000) + 3600;

  it("verifies a new token through a promise, then answers the same token synchronously with the same identity", async () => {
    const r = rule();
    const plan = extractionPlan([[r, r.def.locations]]);
    const e = env(Date.now);
    const token = await sign("alice", inAnHour);
    const first = authenticate(plan, facts(`Bearer ${token}`), e);
    expect(first).toBeInstanceOf(Promise);
    const verified = await first;
    const again = authenticate(plan, facts(`Bearer ${token}`), e);
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toEqual(verified);
    expect(verified.ok && verified.verified.map((v) => [v.jwt.sub, v.header])).toEqual([["alice", "authorization"]]);
  });

  it("answers a request without a token synchronously", () => {
    const r = rule();
    expect(authenticate(extractionPlan([[r, r.def.locations]]), facts(), env(Date.now))).toEqual({ ok: true, verified: [] });
  });

  it("takes the full path for a cached token that has since expired, and fails it as Envoy does", async () => {
    const r = rule();
    const plan = extractionPlan([[r, r.def.locations]]);
    let now = Date.now();
    const e = env(() => now);
    const exp = Math.floor(now / 1000) + 10;
    const token = await sign("bob", exp);
    expect(await authenticate(plan, facts(`Bearer ${token}`), e)).toMatchObject({ ok: true });
    now = (exp + 61) * 1000; // past exp and the 60 s skew
    const later = authenticate(plan, facts(`Bearer ${token}`), e);
    expect(later).toBeInstanceOf(Promise);
    expect(await later).toEqual({ ok: false, status: JWT_STATUS.expired, httpStatus: 401 });
  });

  it("verifies the tokens after a cache hit in order, every one of them", async () => {
    const r = rule();
    const plan = extractionPlan([[r, r.def.locations]]);
    const e = env(Date.now);
    const cached = await sign("carol", inAnHour);
    await authenticate(plan, facts(`Bearer ${cached}`), e);
    const fresh = await sign("dave", inAnHour);
    const both = authenticate(plan, facts(`Bearer ${cached}`, `access_token=${fresh}`), e);
    expect(both).toBeInstanceOf(Promise);
    const outcome = await both;
    expect(outcome.ok && outcome.verified.map((v) => v.jwt.sub)).toEqual(["carol", "dave"]);
    // A second token that fails fails the request, even after a hit.
    const wrongAudience = await sign("erin", inAnHour, "other");
    expect(await authenticate(plan, facts(`Bearer ${cached}`, `access_token=${wrongAudience}`), e)).toEqual({ ok: false, status: JWT_STATUS.audienceNotAllowed, httpStatus: 403 });
  });

  it("finds a cached token followed by other text as the scan does", async () => {
    const r = rule();
    const plan = extractionPlan([[r, r.def.locations]]);
    const e = env(Date.now);
    const token = await sign("frank", inAnHour);
    await authenticate(plan, facts(`Bearer ${token}`), e);
    const trailing = authenticate(plan, facts(`Bearer ${token} trailing`), e);
    expect(trailing).not.toBeInstanceOf(Promise);
    expect(trailing).toMatchObject({ ok: true, verified: [{ jwt: { sub: "frank" } }] });
  });

  it("builds a token's identity once, shares it read-only, and builds it anew for another rule", async () => {
    const r = rule(["scope"]);
    const plan = extractionPlan([[r, r.def.locations]]);
    const e = env(Date.now);
    const token = await new SignJWT({ scope: "read write" }).setProtectedHeader({ alg: "RS256", kid: "k1" }).setIssuer(ISSUER).setSubject("gina").setAudience("api").setExpirationTime(inAnHour).sign(privateKey);
    const first = await authenticate(plan, facts(`Bearer ${token}`), e);
    const again = authenticate(plan, facts(`Bearer ${token}`), e);
    if (!first.ok || again instanceof Promise || !again.ok) throw new Error("setup");
    const identity = identityOf(first.verified);
    expect(identity).toMatchObject({ principal: `${ISSUER}/gina`, iss: ISSUER, sub: "gina", claims: { scope: ["read", "write"] } });
    expect(identityOf(again.verified)).toBe(identity);
    expect(Object.isFrozen(identity) && Object.isFrozen(identity?.claims)).toBe(true);
    // The same parsed token under a rule that does not split `scope`.
    const other = rule();
    const parsed = again.verified[0]?.jwt;
    if (!parsed) throw new Error("setup");
    const otherIdentity = identityOf([{ jwt: parsed, rule: other }]);
    expect(otherIdentity?.claims.scope).toBe("read write");
    expect(identityOf(again.verified)?.claims.scope).toEqual(["read", "write"]);
  });
});
