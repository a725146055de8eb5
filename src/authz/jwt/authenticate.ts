/**
 * Request authentication over a set of JWT rules: the outcome Istio's
 * generated jwt_authn requirement gives (every provider "or missing"):
 *
 * - no token in any location of the rules → continue with no identity;
 * - every token found must verify against a rule that declared its
 *   location and names its issuer; otherwise 401 with Envoy's status
 *   ("Jwt issuer is not configured" when no such rule exists), or 403
 *   "Audiences in Jwt are not allowed" for an audience mismatch;
 * - the identity is taken from the first verified token in rule order
 *   (rules sorted by issuer, then their locations). Istio calls the
 *   principal of a multi-token request undefined; Isthmus makes it this.
 */
import type { JwtRuleDef } from "../../config/snapshot.ts";
import type { RequestFacts } from "../../gateway/facts.ts";
import type { RequestIdentity } from "../identity.ts";
import { extractTokens, type ExtractionPlan, type FoundToken } from "./extract.ts";
import type { JwksCache, JwksPolicy } from "./jwks-cache.ts";
import type { KeySet } from "./keys.ts";
import { own, parseJwt, type ParsedJwt } from "./parse.ts";
import { JWT_STATUS, type JwtStatus } from "./status.ts";
import type { VerifiedTokens } from "./token-cache.ts";
import { audienceAllowed, CLOCK_SKEW_SECONDS, signatureStatus, timeStatus } from "./verify.ts";

/** A JWT rule ready for requests: its definition, where its keys come from, its token cache. */
export interface JwtRule {
  def: JwtRuleDef;
  /** Inline keys; absent for remote JWKS. */
  inlineKeys?: KeySet;
  tokens: VerifiedTokens;
  spaceDelimited: ReadonlySet<string>;
}

export interface AuthnEnv {
  jwks: JwksCache;
  policy: JwksPolicy;
  now: () => number;
  waitUntil: (p: Promise<unknown>) => void;
  maxJwtBytes: number;
}

export interface VerifiedToken {
  jwt: ParsedJwt;
  rule: JwtRule;
  /** The header that carried it, if one did. */
  header?: string;
  /** The query parameter that carried it, if one did. */
  param?: string;
}

export type AuthnOutcome = { ok: true; verified: VerifiedToken[] } | { ok: false; status: JwtStatus; httpStatus: 401 | 403 };

/**
 * Authenticates the request against the plan's rules. Synchronous when
 * every token found is a verified-token cache hit (or none is found), as
 * most requests of a client with a session are: a caller awaits only a
 * promise, and a hit costs no promise at all.
 * @example
 * const result = authenticate(plan, ctx.facts, env);
 * const outcome = result instanceof Promise ? await result : result;
 * if (!outcome.ok) return jwtFailure(outcome, ctx.facts);
 */
export function authenticate(plan: ExtractionPlan<JwtRule>, facts: RequestFacts, env: AuthnEnv): AuthnOutcome | Promise<AuthnOutcome> {
  const found = extractTokens(plan, facts, env.maxJwtBytes, isVerifiedBy);
  if (!found.ok) return { ok: false, status: JWT_STATUS.tooLarge, httpStatus: 401 };
  const verified: VerifiedToken[] = [];
  const now = env.now();
  for (let i = 0; i < found.tokens.length; i++) {
    const t = found.tokens[i] as FoundToken<JwtRule>;
    const hit = cachedToken(t.token, t.rules, env, now);
    if (!hit) return verifyRest(found.tokens, i, verified, env);
    verified.push(verifiedToken(t, hit));
  }
  return { ok: true, verified };
}

/** Whether one of `rules` already verified `candidate` (extractTokens' shortcut). */
function isVerifiedBy(candidate: string, rules: readonly JwtRule[]): boolean {
  for (const rule of rules) if (rule.tokens.has(candidate)) return true;
  return false;
}

type TokenResult = { ok: true; jwt: ParsedJwt; rule: JwtRule } | { ok: false; status: JwtStatus };

function verifiedToken(t: FoundToken<JwtRule>, result: { jwt: ParsedJwt; rule: JwtRule }): VerifiedToken {
  if (t.header !== undefined) return { jwt: result.jwt, rule: result.rule, header: t.header };
  return t.param === undefined ? { jwt: result.jwt, rule: result.rule } : { jwt: result.jwt, rule: result.rule, param: t.param };
}

/** The tokens from `from` on (the first a cache miss), verified one after the other: a hit still takes only the cheap checks. */
async function verifyRest(tokens: readonly FoundToken<JwtRule>[], from: number, verified: VerifiedToken[], env: AuthnEnv): Promise<AuthnOutcome> {
  for (let i = from; i < tokens.length; i++) {
    const t = tokens[i] as FoundToken<JwtRule>;
    const hit = cachedToken(t.token, t.rules, env, env.now());
    const result = hit ? { ok: true as const, ...hit } : await verifyUncached(t.token, t.rules, env);
    if (!result.ok) return { ok: false, status: result.status, httpStatus: result.status === JWT_STATUS.audienceNotAllowed ? 403 : 401 };
    verified.push(verifiedToken(t, result));
  }
  return { ok: true, verified };
}

/**
 * A cache hit that still passes the cheap checks (time, audience), by the
 * first candidate rule that has one. A hit that fails them goes the full path.
 */
function cachedToken(token: string, candidates: readonly JwtRule[], env: AuthnEnv, now: number): { jwt: ParsedJwt; rule: JwtRule } | undefined {
  for (const rule of candidates) {
    const keys = rule.inlineKeys ?? env.jwks.current(remoteSource(rule.def), rule.def.timeoutMs, env.policy, env.waitUntil);
    const hit = rule.tokens.get(token, keys, now);
    if (hit && !timeStatus(hit.jwt, now) && audienceAllowed(hit.jwt, rule.def.audiences)) return { jwt: hit.jwt, rule };
  }
  return undefined;
}

/** The full path: parse, then each candidate rule naming the token's issuer (keys, time, audience, signature). */
async function verifyUncached(token: string, candidates: readonly JwtRule[], env: AuthnEnv): Promise<TokenResult> {
  const parsed = parseJwt(token);
  if (!parsed.ok) return parsed;
  const jwt = parsed.jwt;
  const matching = candidates.filter((r) => r.def.issuer === undefined || r.def.issuer === jwt.iss);
  if (matching.length === 0) return { ok: false, status: JWT_STATUS.unknownIssuer };

  let first: JwtStatus | undefined;
  for (const rule of matching) {
    const status = await verifyWithRule(jwt, rule, token, env);
    if (!status) return { ok: true, jwt, rule };
    first ??= status;
  }
  return { ok: false, status: first as JwtStatus };
}

async function verifyWithRule(jwt: ParsedJwt, rule: JwtRule, token: string, env: AuthnEnv): Promise<JwtStatus | undefined> {
  const time = timeStatus(jwt, env.now());
  if (time) return time;
  if (!audienceAllowed(jwt, rule.def.audiences)) return JWT_STATUS.audienceNotAllowed;
  let keys = rule.inlineKeys;
  if (!keys) {
    const result = await env.jwks.keys(remoteSource(rule.def), jwt.kid, rule.def.timeoutMs, env.policy, env.waitUntil);
    if (!result.ok) return JWT_STATUS.fetchFailed;
    keys = result.keys;
  }
  const status = await signatureStatus(jwt, keys);
  if (!status) rule.tokens.set(token, jwt, keys, env.now(), CLOCK_SKEW_SECONDS * 1000);
  return status;
}

function remoteSource(def: JwtRuleDef): { uri: string } | { discovery: string } {
  const j = def.jwks;
  return "uri" in j ? { uri: j.uri } : "discovery" in j ? { discovery: j.discovery } : { uri: "" };
}

/**
 * Identities already built, by parsed token: a verified-token cache hit
 * hands back the same ParsedJwt, so a client's later requests reuse the
 * identity its first built (its claims copied and split once, not per
 * request). Frozen, since every request with that token shares it.
 */
const identities = new WeakMap<ParsedJwt, { rule: JwtRule; identity: RequestIdentity }>();

/** The request identity from the first verified token (shared by requests with the same token: read-only). */
export function identityOf(verified: readonly VerifiedToken[]): RequestIdentity | undefined {
  const first = verified[0];
  if (!first) return undefined;
  const { jwt, rule } = first;
  const known = identities.get(jwt);
  if (known?.rule === rule) return known.identity;
  const identity = buildIdentity(jwt, rule);
  identities.set(jwt, { rule, identity });
  return identity;
}

function buildIdentity(jwt: ParsedJwt, rule: JwtRule): RequestIdentity {
  const claims: Record<string, unknown> = { ...jwt.payload };
  for (const name of rule.spaceDelimited) {
    const v = own(jwt.payload, name);
    if (typeof v === "string") claims[name] = v.split(" ").filter(Boolean);
  }
  const identity: RequestIdentity = { principal: `${jwt.iss ?? ""}/${jwt.sub ?? ""}`, audiences: jwt.audiences, claims };
  if (jwt.iss !== undefined) identity.iss = jwt.iss;
  if (jwt.sub !== undefined) identity.sub = jwt.sub;
  const azp = own(jwt.payload, "azp");
  if (typeof azp === "string") identity.presenter = azp;
  Object.freeze(claims);
  return Object.freeze(identity);
}
