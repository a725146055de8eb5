/**
 * The security part of the Snapshot: RequestAuthentication JWT rules,
 * AuthorizationPolicies, the PeerAuthentication mode and ext-authz
 * providers, already resolved against the routes and clusters of the same
 * snapshot. Plain JSON; the Worker hydrates it once per isolate
 * (src/authz/hydrate.ts).
 *
 * Which resources apply to a request is decided here, at compile time,
 * with the edge mapping of docs/CONFIG.md: a resource with no selector in
 * the root namespace applies to all traffic; one in another namespace to
 * traffic routed to services of that namespace; one with a selector to
 * traffic routed to destinations whose endpoint labels match it (a
 * selector that matches the gateway's own labels means all traffic).
 */

export type JwtLocationDef = { header: string; prefix: string } | { param: string } | { cookie: string };

export type JwksSourceDef =
  /** A JWKS URL fetched by the Worker. */
  | { uri: string }
  /** Inline keys (the `jwks` field). */
  | { keys: Record<string, unknown>[] }
  /** OIDC discovery: `<issuer>/.well-known/openid-configuration` names the JWKS URL. */
  | { discovery: string };

export interface JwtRuleDef {
  /** `RequestAuthentication/<ns>/<name>` and the jwtRules index, for logs. */
  source: string;
  index: number;
  /** Absent when the rule accepts tokens from any issuer (Istio 1.27+, jwksUri required). */
  issuer?: string;
  /** Empty: no audience check (Envoy's behaviour). */
  audiences: string[];
  jwks: JwksSourceDef;
  /** Where tokens are looked for, in order. */
  locations: JwtLocationDef[];
  forwardOriginalToken: boolean;
  outputPayloadToHeader?: string;
  outputClaimToHeaders: { header: string; claim: string }[];
  /** JWKS fetch timeout. */
  timeoutMs: number;
  /** Claims split on spaces for matching (always `scope` and `permission`). */
  spaceDelimitedClaims: string[];
}

/** The attributes a policy condition can read, with Istio's names. */
export type PolicyAttribute =
  | "source.principal"
  | "source.namespace"
  | "source.serviceAccount"
  | "source.ip"
  | "remote.ip"
  | "request.auth.principal"
  | "request.auth.audiences"
  | "request.auth.presenter"
  | "request.auth.claims"
  | "request.headers"
  | "request.host"
  | "request.method"
  | "request.path"
  | "destination.port"
  | "connection.sni"
  /** The route name (RateLimitPolicy `match.routes`; not an AuthorizationPolicy attribute). */
  | "route.name"
  /**
   * RateLimitPolicy `match.hosts`: as `request.host`, except that a value
   * without a port also matches the host with any port (not an
   * AuthorizationPolicy attribute).
   */
  | "request.hostname";

/**
 * One field of a rule: the attribute must match one of `values` (when
 * given) and none of `notValues` (when given). An absent attribute matches
 * no value, so a `notValues`-only check holds for it (Istio's semantics).
 */
export interface PolicyCheckDef {
  attribute: PolicyAttribute;
  /** Header name (lower case) for `request.headers`; claim path for `request.auth.claims`. */
  key?: string | string[];
  values?: string[];
  notValues?: string[];
  /** For `source.serviceAccount`: the policy's namespace, used when a value has none. */
  namespace?: string;
}

/** A rule matches when any `from` entry, any `to` entry and every `when` check hold. Empty lists are wildcards. */
export interface PolicyRuleDef {
  from: PolicyCheckDef[][];
  to: PolicyCheckDef[][];
  when: PolicyCheckDef[];
}

export interface PolicyDef {
  /** `AuthorizationPolicy/<ns>/<name>`. */
  source: string;
  action: "ALLOW" | "DENY" | "AUDIT" | "CUSTOM";
  /** The ext-authz provider of a CUSTOM policy. */
  provider?: string;
  /** `istio.io/dry-run: "true"`: evaluated and logged, never enforced. */
  dryRun: boolean;
  /** No rules: the policy matches nothing (`spec: {}` denies all when it is an ALLOW policy). */
  rules: PolicyRuleDef[];
}

export type PeerMode = "STRICT" | "PERMISSIVE" | "DISABLE";

/**
 * What applies to one class of traffic. Scope 0 is the gateway scope: it
 * applies before route selection and to requests that have no destination
 * cluster (redirects, direct responses, passthrough).
 */
export interface SecurityScopeDef {
  /** Indexes into `jwtRules`, sorted by issuer (Istio's order). */
  jwtRules: number[];
  peerMode: PeerMode;
  /**
   * Policy layers (indexes into `policies`): the gateway's policies, then
   * the destination workload's. Every layer must allow the request.
   */
  layers: number[][];
}

export interface ExtAuthzDef {
  name: string;
  /** The cluster (in `Snapshot.clusters`) the authorizer is reached through. */
  cluster: string;
  /** The service host, as written in GatewayConfig. */
  service: string;
  timeoutMs: number;
  pathPrefix: string;
  failOpen: boolean;
  statusOnError: number;
  /** Client header name patterns sent in the check (exact, `prefix*`, `*suffix`; lower case). */
  includeRequestHeaders: string[];
  additionalHeaders: [name: string, value: string][];
  headersToUpstreamOnAllow: string[];
  headersToDownstreamOnAllow: string[];
  /** Absent: every header of the denial is sent to the client. */
  headersToDownstreamOnDeny?: string[];
  includeRequestBody?: { maxBytes: number; allowPartial: boolean; packAsBytes: boolean };
}

export interface SecurityDef {
  jwtRules: JwtRuleDef[];
  policies: PolicyDef[];
  /** Scope 0 is the gateway scope. */
  scopes: SecurityScopeDef[];
  /** Cluster name → scope index, for clusters whose scope is not scope 0. */
  clusterScopes: Record<string, number>;
  extAuthz: Record<string, ExtAuthzDef>;
  /** Lower-case names of headers Isthmus sets from verified identities; stripped from every client request. */
  injectedHeaders: string[];
  peerCertificate: { principal: "SUBJECT_DN" | "SHA256_FINGERPRINT"; forwardClientCert: "NONE" | "RFC9440" };
  jwks: { refreshMs: number; maxAgeMs: number; unknownKidCooldownMs: number };
}
