/**
 * RequestAuthentication `jwtRules` → JwtRuleDef, with Istio's defaults:
 * tokens from `Authorization: Bearer` then `?access_token=` when no
 * location is given, 5 s JWKS timeout, OIDC discovery from the issuer when
 * neither jwksUri nor jwks is set, `scope` and `permission` always split on
 * spaces for matching.
 */
import { durationMs } from "../duration.ts";
import type { JwtLocationDef, JwtRuleDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import { strippedAtIngress } from "../../gateway/hygiene.ts";
import { isHttpToken } from "../../gateway/request-header.ts";
import type { Diagnostics } from "./diagnostics.ts";

const DEFAULT_TIMEOUT_MS = 5_000;
const ALWAYS_SPACE_DELIMITED = ["scope", "permission"];
/** JWK members that only a private key has; a JWKS for verification never needs them. */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

export function compileJwtRules(ra: Resource<"RequestAuthentication">, diag: Diagnostics): JwtRuleDef[] {
  const out: JwtRuleDef[] = [];
  (ra.spec.jwtRules ?? []).forEach((rule, i) => {
    const at = (...field: (string | number)[]) => ["spec", "jwtRules", i, ...field];
    let jwks: JwtRuleDef["jwks"] | undefined;
    if (rule.jwksUri !== undefined) {
      if (!isHttpUrl(rule.jwksUri)) diag.error(ra, at("jwksUri"), `expected an http(s) URL, got "${rule.jwksUri}"`);
      else jwks = { uri: rule.jwksUri };
    } else if (rule.jwks !== undefined) {
      const keys = inlineKeys(rule.jwks, (message) => diag.error(ra, at("jwks"), message), (message) => diag.warn(ra, at("jwks"), message));
      if (keys) jwks = { keys };
    } else if (rule.issuer !== undefined) {
      if (!isHttpUrl(rule.issuer)) {
        diag.error(ra, at("issuer"), "expected jwksUri or jwks: without them the keys are found by OIDC discovery, which needs an http(s) issuer URL");
      } else {
        jwks = { discovery: rule.issuer };
      }
    }

    const locations: JwtLocationDef[] = [];
    rule.fromHeaders?.forEach((h, j) => {
      if (!isHttpToken(h.name)) diag.error(ra, at("fromHeaders", j, "name"), `expected an HTTP header name, got "${h.name}"`);
      else if (strippedAtIngress(h.name.toLowerCase())) {
        diag.warn(ra, at("fromHeaders", j, "name"), `${h.name} is removed from every client request by the gateway's header hygiene, so no token is ever found there`);
      }
      locations.push({ header: h.name.toLowerCase(), prefix: h.prefix ?? "" });
    });
    for (const p of rule.fromParams ?? []) locations.push({ param: p });
    for (const c of rule.fromCookies ?? []) locations.push({ cookie: c });
    if (locations.length === 0) locations.push({ header: "authorization", prefix: "Bearer " }, { param: "access_token" });

    const outputs: JwtRuleDef["outputClaimToHeaders"] = [];
    rule.outputClaimToHeaders?.forEach((o, j) => {
      if (!isHttpToken(o.header) || o.header.startsWith(":")) diag.error(ra, at("outputClaimToHeaders", j, "header"), `expected an HTTP header name, got "${o.header}"`);
      outputs.push({ header: o.header.toLowerCase(), claim: o.claim });
    });
    if (rule.outputPayloadToHeader !== undefined && !isHttpToken(rule.outputPayloadToHeader)) {
      diag.error(ra, at("outputPayloadToHeader"), `expected an HTTP header name, got "${rule.outputPayloadToHeader}"`);
    }
    if (!jwks) return;

    const def: JwtRuleDef = {
      source: ra.id,
      index: i,
      audiences: rule.audiences ?? [],
      jwks,
      locations,
      forwardOriginalToken: rule.forwardOriginalToken ?? false,
      outputClaimToHeaders: outputs,
      timeoutMs: rule.timeout ? durationMs(rule.timeout) : DEFAULT_TIMEOUT_MS,
      spaceDelimitedClaims: [...new Set([...ALWAYS_SPACE_DELIMITED, ...(rule.spaceDelimitedClaims ?? [])])],
    };
    if (rule.issuer !== undefined) def.issuer = rule.issuer;
    if (rule.outputPayloadToHeader !== undefined) def.outputPayloadToHeader = rule.outputPayloadToHeader.toLowerCase();
    out.push(def);
  });
  return out;
}

/** Parses an inline JWKS, keeping public members only. */
function inlineKeys(text: string, error: (m: string) => void, warn: (m: string) => void): Record<string, unknown>[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    error(`expected a JSON Web Key Set: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
  const keys = typeof parsed === "object" && parsed !== null ? (parsed as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(keys)) {
    error('expected a JSON Web Key Set: an object with a "keys" array');
    return undefined;
  }
  const out: Record<string, unknown>[] = [];
  keys.forEach((key, i) => {
    if (typeof key !== "object" || key === null || typeof (key as { kty?: unknown }).kty !== "string") {
      error(`expected keys[${i}] to be a JSON Web Key with a "kty"`);
      return;
    }
    const k = { ...(key as Record<string, unknown>) };
    if (k.kty === "oct") {
      if (typeof k.k !== "string" || k.k.length === 0) {
        error(`keys[${i}] is an HMAC key with an empty secret; it would let anyone sign tokens`);
        return;
      }
      out.push(k);
      return;
    }
    const leaked = PRIVATE_MEMBERS.filter((m) => m in k);
    if (leaked.length > 0) {
      warn(`keys[${i}] contains private key material (${leaked.join(", ")}); only the public part is kept — remove it from the configuration`);
      for (const m of leaked) delete k[m];
    }
    out.push(k);
  });
  if (out.length === 0) error("expected at least one usable key");
  return out;
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === "https:" || u.protocol === "http:";
  } catch {
    return false;
  }
}
