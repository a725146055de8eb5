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

const sign = (sub: string, exp: number, aud = "api", claims: Record<string, unknown> = {}) => new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: "k1" }).setIssuer(ISSUER).setSubject(sub).setAudience(aud).setExpirationTime(exp).sign(privateKey);

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

/** One rule's authentication as the stage runs it, at the clock `now` gives. */
function authenticator(now: () => number = Date.now, spaceDelimitedClaims: string[] = []) {
  const r = rule(spaceDelimitedClaims);
  const plan = extractionPlan([[r, r.def.locations]]);
  const e = env(now);
  return (f: RequestFacts) => authenticate(plan, f, e);
}

describe("authenticate", () => {
  const inAnHour = Math.floor(Date.now() / 1000) + 3600;

  it("verifies a new token through a promise, then answers the same token synchronously with the same identity", async () => {
    const check = authenticator();
    const token = await sign("alice", inAnHour);
    const first = check(facts(`Bearer ${token}`));
    expect(first).toBeInstanceOf(Promise);
    const verified = await first;
    const again = check(facts(`Bearer ${token}`));
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toEqual(verified);
    expect(verified.ok && verified.verified.map((v) => [v.jwt.sub, v.header])).toEqual([["alice", "authorization"]]);
  });

  it("answers a request without a token synchronously", () => {
    expect(authenticator()(facts())).toEqual({ ok: true, verified: [] });
  });

  it("takes the full path for a cached token that has since expired, and fails it as Envoy does", async () => {
    let now = Date.now();
    const check = authenticator(() => now);
    const exp = Math.floor(now / 1000) + 10;
    const token = await sign("bob", exp);
    expect(await check(facts(`Bearer ${token}`))).toMatchObject({ ok: true });
    now = (exp + 61) * 1000; // past exp and the 60 s skew
    const later = check(facts(`Bearer ${token}`));
    expect(later).toBeInstanceOf(Promise);
    expect(await later).toEqual({ ok: false, status: JWT_STATUS.expired, httpStatus: 401 });
  });

  it("accepts a token until exp + 60 s and refuses it a second later, as jwt_verify_lib does (now > exp + 60)", async () => {
    const exp = Math.floor(Date.now() / 1000) - 3600;
    const token = await sign("bea", exp);
    // A fresh authenticator each time: no verified-token cache, the full path with the signature.
    expect(await authenticator(() => (exp + 60) * 1000 + 999)(facts(`Bearer ${token}`))).toMatchObject({ ok: true, verified: [{ jwt: { sub: "bea" } }] });
    expect(await authenticator(() => (exp + 61) * 1000)(facts(`Bearer ${token}`))).toEqual({ ok: false, status: JWT_STATUS.expired, httpStatus: 401 });
  });

  it("reads exp 0 as no expiry, and tries every key for an empty kid (jwt_verify_lib)", async () => {
    const never = await new SignJWT({ exp: 0 }).setProtectedHeader({ alg: "RS256", kid: "k1" }).setIssuer(ISSUER).setSubject("cleo").setAudience("api").sign(privateKey);
    expect(await authenticator()(facts(`Bearer ${never}`))).toMatchObject({ ok: true, verified: [{ jwt: { sub: "cleo", exp: 0 } }] });
    const emptyKid = await new SignJWT({}).setProtectedHeader({ alg: "RS256", kid: "" }).setIssuer(ISSUER).setSubject("dora").setAudience("api").setExpirationTime(inAnHour).sign(privateKey);
    expect(await authenticator()(facts(`Bearer ${emptyKid}`))).toMatchObject({ ok: true, verified: [{ jwt: { sub: "dora" } }] });
  });

  it("fails an empty access_token parameter as a malformed token (401), not as a request without one", async () => {
    expect(await authenticator()(facts(undefined, "access_token="))).toEqual({ ok: false, status: JWT_STATUS.badFormat, httpStatus: 401 });
  });

  it("verifies the tokens after a cache hit in order, every one of them", async () => {
    const check = authenticator();
    const cached = await sign("carol", inAnHour);
    await check(facts(`Bearer ${cached}`));
    const fresh = await sign("dave", inAnHour);
    const both = check(facts(`Bearer ${cached}`, `access_token=${fresh}`));
    expect(both).toBeInstanceOf(Promise);
    const outcome = await both;
    expect(outcome.ok && outcome.verified.map((v) => v.jwt.sub)).toEqual(["carol", "dave"]);
    // A second token that fails fails the request, even after a hit.
    const wrongAudience = await sign("erin", inAnHour, "other");
    expect(await check(facts(`Bearer ${cached}`, `access_token=${wrongAudience}`))).toEqual({ ok: false, status: JWT_STATUS.audienceNotAllowed, httpStatus: 403 });
  });

  it("finds a cached token followed by other text as the scan does", async () => {
    const check = authenticator();
    const token = await sign("frank", inAnHour);
    await check(facts(`Bearer ${token}`));
    const trailing = check(facts(`Bearer ${token} trailing`));
    expect(trailing).not.toBeInstanceOf(Promise);
    expect(trailing).toMatchObject({ ok: true, verified: [{ jwt: { sub: "frank" } }] });
  });

  it("builds a token's identity once, shares it read-only, and builds it anew for another rule", async () => {
    const check = authenticator(Date.now, ["scope"]);
    const token = await sign("gina", inAnHour, "api", { scope: "read write" });
    const first = await check(facts(`Bearer ${token}`));
    const again = check(facts(`Bearer ${token}`));
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
