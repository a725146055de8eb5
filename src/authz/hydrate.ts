/**
 * SecurityDef (plain JSON) → runtime objects, once per snapshot per
 * isolate: compiled policy predicates, token extraction plans, inline key
 * sets and one verified-token cache per JWT rule. Nothing here runs per
 * request.
 */
import type { ExtAuthzDef, PeerMode, SecurityDef } from "../config/snapshot.ts";
import type { JwtRule } from "./jwt/authenticate.ts";
import { extractionPlan, type ExtractionPlan } from "./jwt/extract.ts";
import { keySetOf } from "./jwt/keys.ts";
import { VerifiedTokens } from "./jwt/token-cache.ts";
import { compilePolicy, type Policy } from "./policy/engine.ts";

export interface PolicyLayer {
  /** Enforced policies by action. */
  custom: Policy[];
  deny: Policy[];
  allow: Policy[];
  audit: Policy[];
  /** `istio.io/dry-run` policies, evaluated in the shadow engine only. */
  dryRunDeny: Policy[];
  dryRunAllow: Policy[];
}

export interface SecurityScope {
  index: number;
  /** The JWT rules that apply, and where their tokens are looked for. */
  jwtRules: JwtRule[];
  plan: ExtractionPlan<JwtRule>;
  peerMode: PeerMode;
  layers: PolicyLayer[];
  /** Across layers, each policy once: CUSTOM policies, AUDIT policies, dry-run DENY policies. */
  custom: Policy[];
  audit: Policy[];
  dryRunDeny: Policy[];
  /** The layers that have dry-run ALLOW policies. */
  dryRunAllowLayers: PolicyLayer[];
  /** True when this scope has JWT rules beyond the gateway-wide ones (verified after route selection). */
  destinationJwt: boolean;
}

export interface RuntimeSecurity {
  def: SecurityDef;
  /** Scope 0: before route selection, and for requests without a destination cluster. */
  gateway: SecurityScope;
  scopes: SecurityScope[];
  clusterScopes: Map<string, SecurityScope>;
  injectedHeaders: ReadonlySet<string>;
  extAuthz: Map<string, ExtAuthzDef>;
  /** True when some scope verifies JWTs after route selection (the client's token headers are then kept aside). */
  destinationJwt: boolean;
}

export function hydrateSecurity(def: SecurityDef): RuntimeSecurity {
  const rules: JwtRule[] = def.jwtRules.map((r) => {
    const rule: JwtRule = { def: r, tokens: new VerifiedTokens(), spaceDelimited: new Set(r.spaceDelimitedClaims) };
    if ("keys" in r.jwks) {
      const keys = keySetOf(r.jwks.keys, JSON.stringify(r.jwks.keys));
      if (keys) rule.inlineKeys = keys;
    }
    return rule;
  });
  const policies = def.policies.map(compilePolicy);
  const gatewayRules = new Set(def.scopes[0]?.jwtRules ?? []);
  const scopes = def.scopes.map((s, index): SecurityScope => {
    const jwtRules = s.jwtRules.map((i) => rules[i] as JwtRule);
    const layers = s.layers.map((layer) => toLayer(layer.map((i) => policies[i] as Policy)));
    const once = (pick: (l: PolicyLayer) => Policy[]) => [...new Set(layers.flatMap(pick))];
    return {
      index,
      jwtRules,
      plan: extractionPlan(jwtRules.map((r) => [r, r.def.locations] as const)),
      peerMode: s.peerMode,
      layers,
      custom: once((l) => l.custom),
      audit: once((l) => l.audit),
      dryRunDeny: once((l) => l.dryRunDeny),
      dryRunAllowLayers: layers.filter((l) => l.dryRunAllow.length > 0),
      destinationJwt: index !== 0 && s.jwtRules.some((i) => !gatewayRules.has(i)),
    };
  });
  const gateway = scopes[0] as SecurityScope;
  const runtime: RuntimeSecurity = {
    def,
    gateway,
    scopes,
    clusterScopes: new Map(Object.entries(def.clusterScopes).map(([name, i]) => [name, scopes[i] as SecurityScope])),
    injectedHeaders: new Set(def.injectedHeaders),
    extAuthz: new Map(Object.entries(def.extAuthz)),
    destinationJwt: scopes.some((s) => s.destinationJwt),
  };
  return runtime;
}

function toLayer(policies: Policy[]): PolicyLayer {
  const layer: PolicyLayer = { custom: [], deny: [], allow: [], audit: [], dryRunDeny: [], dryRunAllow: [] };
  for (const p of policies) {
    const { action, dryRun } = p.def;
    if (dryRun) {
      if (action === "DENY") layer.dryRunDeny.push(p);
      else if (action === "ALLOW") layer.dryRunAllow.push(p);
      continue;
    }
    if (action === "CUSTOM") layer.custom.push(p);
    else if (action === "DENY") layer.deny.push(p);
    else if (action === "ALLOW") layer.allow.push(p);
    else layer.audit.push(p);
  }
  return layer;
}
