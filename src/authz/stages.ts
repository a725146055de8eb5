/**
 * The security stages of the pipeline:
 *
 *   4  authenticatePeer     the client certificate from request.cf.tlsClientAuth
 *   5  authenticateRequest  JWTs of the gateway-wide RequestAuthentications,
 *                           before route selection so `@request.auth.claims`
 *                           routes see the claims
 *   7  authorize            after route selection, for the destination:
 *                           PeerAuthentication mode, destination-scoped JWT
 *                           rules, then CUSTOM, DENY, ALLOW (AUDIT marks)
 *
 * Istio runs CUSTOM ext_authz before jwt_authn; Isthmus runs it after
 * request authentication (see docs/ARCHITECTURE.md, Security).
 *
 * Stage 7 also decides whether the route's mirrored copies may reach their
 * destinations (mirrorAdmission): a copy is a request to another cluster,
 * whose own security would refuse it as the sidecar there would.
 */
import { localReply, type PipelineResult, type RequestContext } from "../gateway/context.ts";
import type { RequestFacts } from "../gateway/facts.ts";
import { badRequest } from "../gateway/local-reply.ts";
import { bufferBody, checkRequest } from "./ext-authz/client.ts";
import { vouchUpstream } from "./ext-authz/upstream.ts";
import type { RuntimeSecurity, SecurityScope } from "./hydrate.ts";
import type { PeerIdentity } from "./identity.ts";
import { authenticate, identityOf, type AuthnEnv, type AuthnOutcome, type VerifiedToken } from "./jwt/authenticate.ts";
import { JwksCache } from "./jwt/jwks-cache.ts";
import { applyTokenOutputs } from "./jwt/outputs.ts";
import { sendsNoBody } from "../upstream/request-body.ts";
import { forwardClientCert } from "./peer/client-cert.ts";
import { readPeer } from "./peer/identity.ts";
import { NO_ALLOW_MATCHED, policyInput, rbacPolicyName, verdict, type Policy, type PolicyInput } from "./policy/engine.ts";
import { extAuthzError, jwtFailure, PEER_CERTIFICATE_REQUIRED, RBAC_DENIED } from "./replies.ts";
import { endStage, startStage } from "../telemetry/record.ts";
import type { JwtStatus } from "./jwt/status.ts";

/** Stage 4: who the client certificate says the peer is (no decision yet: the mode depends on the destination). */
export function authenticatePeer(ctx: RequestContext): undefined {
  const sec = ctx.snapshot.security;
  if (!sec) return undefined;
  const peer = readPeer(ctx.request.cf, sec.def.peerCertificate.principal);
  ctx.facts.peer = peer;
  return undefined;
}

/** Stage 5: the gateway-wide JWT rules. */
export function authenticateRequest(ctx: RequestContext): PipelineResult | undefined | Promise<PipelineResult | undefined> {
  const sec = ctx.snapshot.security;
  if (!sec) return undefined;
  // Kept for what reads the client's headers as sent: destination-scoped JWT rules, and external
  // authorizers (Envoy runs ext_authz before jwt_authn, so an authorizer sees the bearer token a
  // verified rule removes).
  if (sec.destinationJwt || sec.extAuthz.size > 0) ctx.preAuthHeaders = new Headers(ctx.facts.headers);
  if (sec.gateway.jwtRules.length === 0 || isCorsPreflight(ctx.facts)) return undefined;
  return verifyGatewayJwt(ctx, sec.gateway);
}

/** Synchronous when every token is a verified-token cache hit (authenticate). */
function verifyGatewayJwt(ctx: RequestContext, scope: SecurityScope): PipelineResult | undefined | Promise<PipelineResult | undefined> {
  const start = startStage(ctx);
  const outcome = authenticate(scope.plan, ctx.facts, authnEnv(ctx));
  return outcome instanceof Promise ? outcome.then((o) => gatewayAuthenticated(ctx, start, o)) : gatewayAuthenticated(ctx, start, outcome);
}

function gatewayAuthenticated(ctx: RequestContext, start: number | undefined, outcome: AuthnOutcome): PipelineResult | undefined {
  if (!outcome.ok) {
    endStage(ctx, "authentication", start, () => ({ "isthmus.authn.result": "denied", "isthmus.authn.status": outcome.status }));
    return jwtDenied(ctx, outcome.status, outcome.httpStatus);
  }
  applyTokenOutputs(ctx.facts, outcome.verified);
  setIdentity(ctx, outcome.verified);
  endStage(ctx, "authentication", start, () => authnAttributes(ctx));
  return undefined;
}

function jwtDenied(ctx: RequestContext, status: JwtStatus, httpStatus: 401 | 403): PipelineResult {
  ctx.record.details = `jwt_authn_access_denied{${status.replace(/ /g, "_")}}`;
  return localReply(jwtFailure(status, httpStatus, ctx.facts), ctx.record);
}

function authnAttributes(ctx: RequestContext): Record<string, string> {
  const principal = ctx.record.requestPrincipal;
  return principal ? { "isthmus.authn.result": "verified", "isthmus.authn.principal": principal } : { "isthmus.authn.result": "no token" };
}

/** Stage 7, timed: the authorization span covers destination-scoped JWT rules, CUSTOM, DENY and ALLOW. */
export function authorize(ctx: RequestContext): PipelineResult | undefined | Promise<PipelineResult | undefined> {
  if (!ctx.snapshot.security) return undefined;
  const start = startStage(ctx);
  const result = authorizeRequest(ctx);
  return result instanceof Promise ? result.then((r) => authorized(ctx, start, r)) : authorized(ctx, start, result);
}

function authorized(ctx: RequestContext, start: number | undefined, result: PipelineResult | undefined): PipelineResult | undefined {
  if (!result) judgeMirrors(ctx);
  endStage(ctx, "authorization", start, () => {
    const deniedBy = ctx.record.authz?.deniedBy;
    return {
      "isthmus.authz.result": result ? "denied" : "allowed",
      ...(deniedBy ? { "isthmus.authz.denied_by": deniedBy } : {}),
      ...(result ? { "http.response.status_code": result.response.status } : {}),
    };
  });
  return result;
}

/**
 * Stage 7: everything that depends on the destination, then the policies.
 * Synchronous unless a destination's JWT rules or an ext-authz provider must be awaited.
 */
function authorizeRequest(ctx: RequestContext): PipelineResult | undefined | Promise<PipelineResult | undefined> {
  const sec = ctx.snapshot.security;
  if (!sec) return undefined;
  const { facts, record } = ctx;
  const scope = destinationScope(ctx, sec);

  const peer = effectivePeer(scope, facts.peer);
  if (scope.peerMode === "STRICT" && !peer) {
    record.details = "peer_authentication_required";
    return localReply(PEER_CERTIFICATE_REQUIRED, record);
  }
  if (peer?.principal) record.peerPrincipal = peer.principal;

  if (scope.destinationJwt && !isCorsPreflight(facts)) {
    return authenticateForDestination(ctx, sec, scope).then((denied) => denied ?? applyPolicies(ctx, sec, scope, peer));
  }
  return applyPolicies(ctx, sec, scope, peer);
}

/** The destination's own JWT rules (those the gateway-wide stage did not already verify). */
async function authenticateForDestination(ctx: RequestContext, sec: RuntimeSecurity, scope: SecurityScope): Promise<PipelineResult | undefined> {
  const { facts } = ctx;
  const source: RequestFacts = { ...facts, headers: ctx.preAuthHeaders ?? facts.headers };
  const outcome = await authenticate(scope.plan, source, authnEnv(ctx));
  if (!outcome.ok) return jwtDenied(ctx, outcome.status, outcome.httpStatus);
  const gatewayRules = new Set(sec.gateway.jwtRules);
  applyTokenOutputs(facts, outcome.verified.filter((v) => !gatewayRules.has(v.rule)));
  setIdentity(ctx, outcome.verified);
  return undefined;
}

/** CUSTOM (asked only when one of its policies matches), then AUDIT, dry runs, DENY and ALLOW. */
function applyPolicies(ctx: RequestContext, sec: RuntimeSecurity, scope: SecurityScope, peer: PolicyInput["peer"]): PipelineResult | undefined | Promise<PipelineResult | undefined> {
  const { facts } = ctx;
  if (peer && sec.def.peerCertificate.forwardClientCert === "RFC9440") forwardClientCert(facts.headers, peer);
  if (scope.layers.length === 0) return undefined;

  const input = policyInput(facts, peer, facts.auth, undefined);

  const custom = matching(scope.custom, input);
  if (custom.length > 0) return runCustom(ctx, sec, custom).then((denied) => denied ?? judge(ctx, scope, input));
  return judge(ctx, scope, input);
}

/** AUDIT and dry-run policies are logged; then DENY, then ALLOW, layer by layer. */
function judge(ctx: RequestContext, scope: SecurityScope, input: PolicyInput): PipelineResult | undefined {
  const { facts, record } = ctx;
  const audit = matching(scope.audit, input);
  const shadow = dryRun(scope, input);
  if (audit.length || shadow) {
    record.authz = { ...record.authz };
    if (audit.length) record.authz.audit = audit.map((p) => p.def.source);
    if (shadow) record.authz.dryRun = shadow;
    console.log(JSON.stringify({ message: "isthmus: authorization audit", path: facts.path, host: facts.authority, audit: record.authz.audit, dryRun: shadow }));
  }

  const outcome = verdict(scope.layers, input);
  if (outcome === undefined) return undefined;
  return deny(ctx, outcome === NO_ALLOW_MATCHED ? undefined : outcome, input);
}

/** The policies that match, in order; a scope without any (the common case) allocates nothing. */
function matching(policies: readonly Policy[], input: PolicyInput): readonly Policy[] {
  return policies.length === 0 ? policies : policies.filter((p) => p.matches(input));
}

/** A 403 naming the DENY policy that matched (none: no ALLOW policy did), in the access log as Istio's RBAC names it. */
function deny(ctx: RequestContext, policy: Policy | undefined, input: PolicyInput): PipelineResult {
  ctx.record.authz = { ...ctx.record.authz, deniedBy: policy?.def.source ?? "no ALLOW policy matched" };
  ctx.record.details = `rbac_access_denied_matched_policy[${policy ? rbacPolicyName(policy.def.source, policy.matchedRule(input)) : "none"}]`;
  return localReply(RBAC_DENIED, ctx.record);
}

/**
 * CUSTOM policies: each provider whose policy matches is asked once; any denial ends the request.
 * A request let through gets the authorizer's upstream headers (ext-authz/upstream.ts).
 */
async function runCustom(ctx: RequestContext, sec: RuntimeSecurity, matched: readonly Policy[]): Promise<PipelineResult | undefined> {
  const providers = [...new Set(matched.map((p) => p.def.provider as string))];
  const vouched = new Set<string>();
  const keep = (header: string) => sec.injectedHeaders.has(header) || vouched.has(header);
  for (const name of providers) {
    const provider = sec.extAuthz.get(name);
    const cluster = provider ? ctx.snapshot.clusters.get(provider.cluster) : undefined;
    if (!provider || !cluster) return localReply(extAuthzError(403), ctx.record);
    let body: Uint8Array | undefined;
    // A GET or HEAD can arrive with a body, but no fetch() can send one (to the authorizer or the
    // upstream, which never gets it either): its check goes without, as if it had none.
    if (provider.includeRequestBody && !sendsNoBody(ctx.facts.method)) {
      const buffered = await bufferBody(ctx.request.body, provider.includeRequestBody.maxBytes, provider.includeRequestBody.allowPartial);
      if (!buffered.ok) return localReply("unreadable" in buffered ? badRequest(400, "bad request") : badRequest(413, "payload too large"), ctx.record);
      body = buffered.check;
      ctx.request = new Request(ctx.request.url, { method: ctx.request.method, headers: ctx.request.headers, body: buffered.replay });
    }
    const facts = ctx.preAuthHeaders ? { ...ctx.facts, headers: ctx.preAuthHeaders } : ctx.facts;
    const result = await checkRequest(provider, cluster, body ? { facts, body } : { facts }, ctx.deps);
    if (result.kind === "deny") {
      ctx.record.authz = { ...ctx.record.authz, deniedBy: `ext-authz ${name}` };
      ctx.record.details = "ext_authz_denied";
      return localReply({ status: result.status, body: result.body, flag: "UAEX", headers: result.headers }, ctx.record);
    }
    if (result.kind === "error") {
      console.error(JSON.stringify({ message: "isthmus: ext-authz check failed", provider: name, error: result.reason, failOpen: provider.failOpen }));
      if (!provider.failOpen) {
        ctx.record.details = "ext_authz_error";
        return localReply(extAuthzError(provider.statusOnError), ctx.record);
      }
      vouchUpstream(ctx.facts.headers, provider, [], keep);
      continue;
    }
    vouchUpstream(ctx.facts.headers, provider, result.upstream, keep);
    for (const [n] of result.upstream) vouched.add(n);
    if (result.downstream.length) {
      ctx.responseHooks.push((response) => {
        for (const [n, v] of result.downstream) response.headers.append(n, v);
      });
    }
  }
  return undefined;
}

/**
 * Shadow verdicts of dry-run policies, as Istio's shadow RBAC engines
 * report them: the DENY engine denies when a dry-run DENY policy matches;
 * the ALLOW engine denies when a layer has dry-run ALLOW policies and none
 * of them matches.
 */
function dryRun(scope: SecurityScope, input: PolicyInput): { allow?: string; deny?: string } | undefined {
  const denies = scope.dryRunDeny;
  const allowLayers = scope.dryRunAllowLayers;
  if (denies.length === 0 && allowLayers.length === 0) return undefined;
  const out: { allow?: string; deny?: string } = {};
  if (denies.length) {
    const hit = denies.find((p) => p.matches(input));
    out.deny = hit ? `denied by ${hit.def.source}` : "allowed";
  }
  if (allowLayers.length) {
    const hits = allowLayers.map((l) => l.dryRunAllow.find((p) => p.matches(input)));
    out.allow = hits.every((h) => h !== undefined) ? `allowed by ${hits.map((h) => h?.def.source).join(", ")}` : "denied";
  }
  return out;
}

/**
 * The scope for the request's destination (route selection made the
 * weighted pick): namespace- and selector-scoped resources depend on it.
 */
function destinationScope(ctx: RequestContext, sec: RuntimeSecurity): SecurityScope {
  const route = ctx.route;
  if (!route || route.rule.def.action.type !== "route") return sec.gateway;
  const name = ctx.destination?.cluster;
  return (name !== undefined ? sec.clusterScopes.get(name) : undefined) ?? sec.gateway;
}

/** Per request, the verdict on each mirror destination whose security differs from the destination's. */
const mirrorVerdicts = new WeakMap<RequestContext, Map<string, boolean | Promise<boolean>>>();

/**
 * Decides, once the request is authorized, whether copies may go to the
 * route's mirror clusters. A cluster whose scope is the destination's own
 * needs nothing (the request just passed it); nor does a route without
 * mirrors, or a snapshot whose clusters all share one scope, so this costs
 * nothing unless a mirror leads somewhere with other policies. The request
 * is judged as authorization saw it (before the route's header operations
 * and rewrite), as it would be if it were routed to the mirror cluster.
 */
function judgeMirrors(ctx: RequestContext): void {
  const mirrors = ctx.route?.rule.def.mirrors;
  const sec = ctx.snapshot.security;
  if (!mirrors || !sec || sec.scopes.length === 1) return;
  const primary = destinationScope(ctx, sec);
  let verdicts: Map<string, boolean | Promise<boolean>> | undefined;
  for (const m of mirrors) {
    const scope = sec.clusterScopes.get(m.cluster) ?? sec.gateway;
    if (scope === primary || verdicts?.has(m.cluster)) continue;
    (verdicts ??= new Map()).set(m.cluster, admitsCopy(ctx, primary, scope));
  }
  if (verdicts) mirrorVerdicts.set(ctx, verdicts);
}

/**
 * Whether a mirrored copy may go to a cluster (true, or a promise of the
 * answer while the mirror cluster's own JWT rules are checked), decided by
 * stage 7; undefined when every copy may go. A copy goes through the same
 * per-cluster security as a request routed there: the PeerAuthentication
 * mode, the cluster's JWT rules (an invalid token skips it) and its DENY
 * and ALLOW policies. No external authorizer is asked on a copy's behalf:
 * a CUSTOM policy of the mirror cluster that the request was not already
 * checked against, and that matches, skips the copy. AUDIT and dry-run
 * policies are not logged for copies.
 *
 * @example
 * const admit = mirrorAdmission(ctx);
 * if (admit && !(await admit(mirror.cluster))) skip(mirror);
 */
export function mirrorAdmission(ctx: RequestContext): ((cluster: string) => boolean | Promise<boolean>) | undefined {
  const verdicts = mirrorVerdicts.get(ctx);
  return verdicts && ((cluster) => verdicts.get(cluster) ?? true);
}

/** The verdict on a copy to a cluster of scope `scope`, for a request its destination's scope `primary` allowed. */
function admitsCopy(ctx: RequestContext, primary: SecurityScope, scope: SecurityScope): boolean | Promise<boolean> {
  const peer = effectivePeer(scope, ctx.facts.peer);
  if (scope.peerMode === "STRICT" && !peer) return false;
  // The identity the mirror cluster would see: its own JWT rules' when they differ from what
  // established the request's identity (the gateway's rules, or the destination's).
  if (!(scope.destinationJwt || primary.destinationJwt) || isCorsPreflight(ctx.facts)) return admitsWith(ctx.facts, peer, ctx.facts.auth, primary, scope);
  // Kept now: the copy is judged later, after the route's header operations have changed the request's headers.
  const facts: RequestFacts = { ...ctx.facts, headers: new Headers(ctx.facts.headers) };
  const source: RequestFacts = { ...ctx.facts, headers: ctx.preAuthHeaders ?? ctx.facts.headers };
  return Promise.resolve(authenticate(scope.plan, source, authnEnv(ctx))).then(
    (outcome) => outcome.ok && admitsWith(facts, peer, identityOf(outcome.verified), primary, scope),
    () => false,
  );
}

function admitsWith(facts: RequestFacts, peer: PolicyInput["peer"], identity: PolicyInput["identity"], primary: SecurityScope, scope: SecurityScope): boolean {
  if (scope.layers.length === 0) return true;
  const input = policyInput(facts, peer, identity, undefined);
  if (scope.custom.some((p) => !primary.custom.includes(p) && p.matches(input))) return false;
  return verdict(scope.layers, input) === undefined;
}

/** The peer identity that counts for this destination: none under DISABLE, only verified certificates otherwise. */
function effectivePeer(scope: SecurityScope, peer: PeerIdentity | undefined): PeerIdentity | undefined {
  if (scope.peerMode === "DISABLE" || !peer?.verified) return undefined;
  return peer;
}

function setIdentity(ctx: RequestContext, verified: readonly VerifiedToken[]): void {
  const identity = identityOf(verified);
  if (!identity) return;
  ctx.facts.auth = identity;
  ctx.facts.claims = identity.claims;
  ctx.record.requestPrincipal = identity.principal;
}

/**
 * jwt_authn lets CORS preflights through unauthenticated (Istio sets bypass_cors_preflight).
 * Envoy's isCorsPreflightRequest, like the cors filter (routing/cors.ts), wants both headers
 * non-empty: an empty one makes an ordinary OPTIONS whose token is verified.
 */
function isCorsPreflight(facts: RequestFacts): boolean {
  return facts.method === "OPTIONS" && !!facts.headers.get("origin") && !!facts.headers.get("access-control-request-method");
}

const fallbackJwks = new WeakMap<object, JwksCache>();

function authnEnv(ctx: RequestContext): AuthnEnv {
  const deps = ctx.deps;
  let jwks = deps.jwks ?? fallbackJwks.get(deps);
  if (!jwks) {
    jwks = new JwksCache(deps.fetch, deps.now);
    fallbackJwks.set(deps, jwks);
  }
  const sec = ctx.snapshot.security as RuntimeSecurity;
  return { jwks, policy: sec.def.jwks, now: deps.now, waitUntil: ctx.waitUntil, maxJwtBytes: ctx.settings.limits.maxJwtBytes };
}
