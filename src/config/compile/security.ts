/**
 * Compiles RequestAuthentication, AuthorizationPolicy, PeerAuthentication
 * and the security fields of GatewayConfig into the Snapshot's security
 * part. Runs after routes are built, so the clusters that traffic can
 * reach are known and each one gets its scope: the JWT rules, the mTLS
 * mode and the policy layers that apply to requests routed there.
 */
import { durationMs } from "../duration.ts";
import type { ClusterDef, JwtRuleDef, PolicyDef, SecurityDef, SecurityScopeDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics } from "./diagnostics.ts";
import { compileAuthorizationPolicy } from "./authz-policy.ts";
import { compileExtAuthz } from "./ext-authz.ts";
import { PeerModes } from "./peer-authn.ts";
import { compileJwtRules } from "./request-authn.ts";
import { attachment, distinctScopes, gatewayLabels, type Attachment } from "./security-targets.ts";
import type { ServiceRegistry } from "./services.ts";

export interface SecurityInputs {
  requestAuthentications: Resource<"RequestAuthentication">[];
  authorizationPolicies: Resource<"AuthorizationPolicy">[];
  peerAuthentications: Resource<"PeerAuthentication">[];
  gatewayConfig: Resource<"GatewayConfig"> | undefined;
  gateways: Resource<"Gateway">[];
  rootNamespace: string;
  services: ServiceRegistry;
}

/** JWKS cache defaults: Istio's 20 min refresh; keys outlive a failing IdP for a day; jose's 30 s unknown-kid cooldown. */
export const JWKS_DEFAULTS = { refreshMs: 20 * 60_000, maxAgeMs: 24 * 3_600_000, unknownKidCooldownMs: 30_000 };

export function compileSecurity(inputs: SecurityInputs, diag: Diagnostics): SecurityDef | undefined {
  const { gatewayConfig: config, rootNamespace, services } = inputs;
  const peerCertificate = {
    principal: config?.spec.peerCertificate?.principal ?? "SUBJECT_DN",
    forwardClientCert: config?.spec.peerCertificate?.forwardClientCert ?? "NONE",
  } as const;
  const jwks = jwksSettings(config, diag);
  const extAuthz = compileExtAuthz(config, rootNamespace, services, diag);

  const anyResource = inputs.requestAuthentications.length + inputs.authorizationPolicies.length + inputs.peerAuthentications.length > 0;
  if (!anyResource && peerCertificate.forwardClientCert === "NONE") return undefined;

  const clusters = Object.values(services.clusters);
  const labels = gatewayLabels(config, inputs.gateways);
  const attach = (r: Resource<"RequestAuthentication" | "AuthorizationPolicy" | "PeerAuthentication">) => attachment(r, rootNamespace, labels, clusters, diag);

  const jwtRules: JwtRuleDef[] = [];
  const ruleAttachments: Attachment[] = [];
  for (const ra of inputs.requestAuthentications) {
    const at = attach(ra);
    for (const rule of compileJwtRules(ra, diag)) {
      jwtRules.push(rule);
      ruleAttachments.push(at);
    }
  }

  const policies: PolicyDef[] = [];
  const policyAttachments: Attachment[] = [];
  const providerNames = new Set(Object.keys(extAuthz));
  for (const ap of inputs.authorizationPolicies) {
    const at = attach(ap);
    const def = compileAuthorizationPolicy(ap, providerNames, diag);
    if (!def) continue;
    policies.push(def);
    policyAttachments.push(at);
  }

  const gatewayMatches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels.get(k)?.has(v) === true);
  const peer = new PeerModes(inputs.peerAuthentications, rootNamespace, gatewayMatches, diag);
  // Only for its diagnostics (a namespace selector that matches nothing); PeerModes does the mapping.
  for (const pa of inputs.peerAuthentications) if (pa.namespace !== rootNamespace) attach(pa);

  const byIssuer = (a: number, b: number) => {
    const ia = jwtRules[a]?.issuer ?? "";
    const ib = jwtRules[b]?.issuer ?? "";
    return ia < ib ? -1 : ia > ib ? 1 : a - b;
  };
  const indexes = <T>(list: T[], keep: (i: number) => boolean) => list.map((_, i) => i).filter(keep);
  const gatewayRules = indexes(jwtRules, (i) => ruleAttachments[i]?.all === true || ruleAttachments[i]?.gateway === true).sort(byIssuer);
  const gatewayLayer = indexes(policies, (i) => policyAttachments[i]?.all === true || policyAttachments[i]?.gateway === true);

  const gatewayScope: SecurityScopeDef = { jwtRules: gatewayRules, peerMode: peer.gatewayMode(), layers: gatewayLayer.length ? [gatewayLayer] : [] };
  const { scopes, clusterScopes } = distinctScopes(gatewayScope, clusters, (cluster) => clusterScope(cluster, gatewayRules, gatewayLayer, ruleAttachments, policyAttachments, peer, byIssuer));

  // Stripped from every client request at ingress. Not the ext-authz headersToUpstreamOnAllow names:
  // those are removed only on requests a provider lets through (authz/ext-authz/upstream.ts), as a
  // name such as `authorization` is also a client credential that JWT rules and the check must see.
  const injected = new Set<string>();
  for (const rule of jwtRules) {
    if (rule.outputPayloadToHeader) injected.add(rule.outputPayloadToHeader);
    for (const o of rule.outputClaimToHeaders) injected.add(o.header);
  }

  return {
    jwtRules,
    policies,
    scopes,
    clusterScopes,
    extAuthz,
    injectedHeaders: [...injected].sort(),
    peerCertificate,
    jwks,
  };
}

function clusterScope(
  cluster: ClusterDef,
  gatewayRules: number[],
  gatewayLayer: number[],
  ruleAttachments: Attachment[],
  policyAttachments: Attachment[],
  peer: PeerModes,
  byIssuer: (a: number, b: number) => number,
): SecurityScopeDef {
  const rules = new Set(gatewayRules);
  ruleAttachments.forEach((at, i) => {
    if (at.all || at.cluster(cluster)) rules.add(i);
  });
  const destination = policyAttachments.map((_, i) => i).filter((i) => policyAttachments[i]?.all || policyAttachments[i]?.cluster(cluster));
  const layers: number[][] = [];
  if (gatewayLayer.length) layers.push(gatewayLayer);
  if (destination.length && !sameSet(destination, gatewayLayer)) layers.push(destination);
  return { jwtRules: [...rules].sort(byIssuer), peerMode: peer.clusterMode(cluster), layers };
}

function sameSet(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function jwksSettings(config: Resource<"GatewayConfig"> | undefined, diag: Diagnostics): SecurityDef["jwks"] {
  const spec = config?.spec.jwks;
  const out = { ...JWKS_DEFAULTS };
  if (!config || !spec) return out;
  if (spec.refreshInterval) out.refreshMs = durationMs(spec.refreshInterval);
  if (spec.maxAge) out.maxAgeMs = durationMs(spec.maxAge);
  if (spec.unknownKidCooldown) out.unknownKidCooldownMs = durationMs(spec.unknownKidCooldown);
  if (out.refreshMs < 1_000) diag.error(config, ["spec", "jwks", "refreshInterval"], "expected at least 1s");
  if (out.maxAgeMs < out.refreshMs) diag.error(config, ["spec", "jwks", "maxAge"], `expected at least the refresh interval (${out.refreshMs / 1000}s)`);
  if (out.unknownKidCooldownMs < 1_000) diag.error(config, ["spec", "jwks", "unknownKidCooldown"], "expected at least 1s (each unknown kid may trigger a JWKS fetch)");
  return out;
}
