/**
 * The routing stages of the pipeline: virtual host, route, edge-answered
 * actions, upstream selection and forwarding.
 */
import { localReply, type PipelineDeps, type PipelineResult, type RequestContext } from "../gateway/context.ts";
import { badRequest, isNullBodyStatus, REPLIES } from "../gateway/local-reply.ts";
import type { ClusterDef, DestinationDef, EndpointDef } from "../config/snapshot.ts";
import type { Rule } from "./hydrate.ts";
import { DEFAULT_SETTINGS } from "../config/defaults.ts";
import { sendWithRetries } from "../upstream/attempts.ts";
import { pickEndpoint } from "../upstream/picker.ts";
import { requestHash } from "../upstream/hash-key.ts";
import { NO_UPSTREAM_BODY, replayableBody, sendsNoBody, type UnreadableBody, type UpstreamBody } from "../upstream/request-body.ts";
import { ISTIO_DEFAULT_RETRY } from "../upstream/retry-on.ts";
import { upstreamsOf } from "../upstream/state.ts";
import { applyHeaderOps, orderedOps } from "./header-ops.ts";
import { countedDownstreamResponse, downstreamResponse, endpointUrl, forward, UPSTREAM_SERVICE_TIME, type Fetch } from "./forward.ts";
import { redirectLocation, replacePrefix } from "./redirect.ts";
import { findVirtualHost, pickDestination, selectRoute } from "./select.ts";
import { decideFault } from "./fault.ts";
import { decideCors } from "./cors.ts";
import { cohortDraw } from "./cohort.ts";
import { planMirrors, selectMirrors } from "./mirror.ts";
import { mirrorAdmission } from "../authz/stages.ts";
import { passthroughVia, VIA_HEADER } from "./passthrough-mark.ts";
import { attemptObserver, mirrorDecorator } from "../telemetry/tracing.ts";
import { authorityPort, pathWithQuery } from "../gateway/facts.ts";

/** Mirrors without a route timeout give up after this long (ctx.waitUntil has ~30 s after the response). */
const MIRROR_TIMEOUT_MS = 25_000;

/**
 * Stage 3: host → virtual host. An unknown host passes through under
 * ALLOW_ANY; otherwise it is answered by answerUnrouted, after the
 * security stages, as Envoy's router answers it after its filters.
 */
export function selectVirtualHost(ctx: RequestContext): PipelineResult | undefined {
  const vhost = findVirtualHost(ctx.snapshot, ctx.facts.host);
  if (vhost) ctx.vhost = vhost;
  // Forwarded by forwardUpstream, once the security stages have seen the request.
  else if (ctx.settings.outboundTrafficPolicy === "ALLOW_ANY") ctx.passthrough = true;
  return undefined;
}

/** Envoy's `require_tls` (Gateway `tls.httpsRedirect`): plain HTTP takes no route, its router redirects. */
function redirectsToHttps(ctx: RequestContext): boolean {
  return ctx.vhost !== undefined && ctx.vhost.httpsRedirect && ctx.facts.scheme === "http";
}

/**
 * After authorization and rate limiting: a request no route took gets
 * 404 NR, or the 301 of a Gateway server's `httpsRedirect`. Envoy's
 * router answers both, after jwt_authn, RBAC, ext_authz and the rate
 * limit filters have seen the request, so a DENY policy's 403 comes first.
 */
export function answerUnrouted(ctx: RequestContext): PipelineResult | undefined {
  if (ctx.route !== undefined || ctx.passthrough) return undefined;
  if (!redirectsToHttps(ctx)) return localReply(REPLIES.noRoute, ctx.record);
  const location = redirectLocation({ status: 301, scheme: "https" }, ctx.facts, undefined);
  return localReply({ status: 301, body: "", headers: { location } }, ctx.record);
}

/** Stage 6: the first route whose match holds (pure). */
export function selectRouteStage(ctx: RequestContext): PipelineResult | undefined {
  if (ctx.passthrough || !ctx.vhost || redirectsToHttps(ctx)) return undefined;
  const route = selectRoute(ctx.vhost, ctx.facts);
  if (!route) return undefined;
  ctx.route = route;
  ctx.record.routeName = route.name;
  // Envoy picks the weighted cluster when it resolves the route, so the
  // cluster is known to authorization, rate limits and the access log
  // (UPSTREAM_CLUSTER) even when a later stage answers the request.
  if (route.rule.def.action.type === "route") {
    const destination = chooseDestination(route.rule, ctx);
    if (destination) {
      ctx.destination = destination;
      ctx.record.cluster = destination.cluster;
    }
  }
  return undefined;
}

/** Fault injection: delay (flag DI) and/or abort (flag FI, body `fault filter abort`). */
export function injectFault(ctx: RequestContext): PipelineResult | undefined | Promise<PipelineResult | undefined> {
  const fault = ctx.route?.rule.def.fault;
  if (!fault) return undefined;
  const decision = decideFault(fault, ctx.deps.random, ctx.facts.headers);
  const abort = decision.abort;
  const answer = () => (abort ? localReply(abort, ctx.record) : undefined);
  if (decision.delayMs === undefined) return answer();
  ctx.record.flags.push("DI");
  return ctx.deps.sleep(decision.delayMs).then(answer);
}

/**
 * CORS: preflights from allowed origins are answered here (200); actual
 * requests get the CORS headers on whatever response later stages produce.
 */
export function applyCors(ctx: RequestContext): PipelineResult | undefined {
  const rule = ctx.route?.rule;
  const cors = rule?.cors;
  // Envoy's CORS filter does nothing without a route entry, which a redirect or a direct response lacks:
  // the router answers even a preflight with the redirect or the direct response, without CORS headers.
  if (!cors || rule.def.action.type !== "route") return undefined;
  const decision = decideCors(cors, ctx.facts.method, ctx.facts.headers);
  if (decision.type === "preflight") {
    // Envoy's CORS filter answers a preflight without the route's header operations.
    ctx.routeHeadersApplied = true;
    return { response: new Response(null, { status: 200, headers: decision.headers }), record: ctx.record };
  }
  if (decision.type === "actual") {
    const headers = decision.headers;
    ctx.responseHooks.push((response) => {
      for (const [k, v] of Object.entries(headers)) response.headers.set(k, v);
    });
  }
  return undefined;
}

/** Stage 9: redirects and direct responses are answered by the gateway itself. */
export function answerAtEdge(ctx: RequestContext): PipelineResult | undefined {
  const route = ctx.route;
  if (!route) return undefined;
  const action = route.rule.def.action;
  let result: PipelineResult | undefined;
  if (action.type === "redirect") {
    const location = redirectLocation(action.redirect, ctx.facts, route.uri);
    result = localReply({ status: action.redirect.status, body: "", headers: { location } }, ctx.record);
  } else if (action.type === "direct") {
    const raw = action.bodyBase64 !== undefined ? base64Bytes(action.bodyBase64) : action.body;
    // Istio accepts a body on a 204, 205 or 304, which cannot carry one (a Response with one throws): it is
    // dropped. An empty body is no body: `new Response("")` would add a Content-Type Envoy does not send.
    const body = raw !== undefined && raw.length > 0 && !isNullBodyStatus(action.status) ? raw : null;
    const response = new Response(body, { status: action.status });
    if (body !== null) response.headers.set("content-type", "text/plain");
    // Envoy's router gives a direct 201 or 3xx the request's own URL as its Location.
    if (action.status === 201 || (action.status >= 300 && action.status < 400)) {
      const f = ctx.facts;
      response.headers.set("location", `${f.scheme}://${f.authority}${pathWithQuery(f)}`);
    }
    result = { response, record: ctx.record };
  }
  if (result) {
    applyHeaderOps(result.response.headers, route.rule.def.headers?.response);
    ctx.routeHeadersApplied = true;
  }
  return result;
}

/**
 * The route's (and its weighted destination's) response header operations
 * on a reply the gateway made itself once the route was chosen: a 403, a
 * 429, a fault abort, a 503 or 504. Envoy finalizes every local reply's
 * headers with the route, so a security header set on the route is on its
 * error responses too.
 */
export function applyRouteResponseHeaders(ctx: RequestContext, headers: Headers): void {
  const rule = ctx.route?.rule;
  if (!rule) return;
  for (const ops of orderedOps("response", rule.def.headers, ctx.destination?.headers, rule.destinations.length > 1)) applyHeaderOps(headers, ops);
}

/**
 * The weighted destination for this request: a hash of the sticky-cohort
 * key when the rule has one and the request carries it, else a random draw.
 */
function chooseDestination(rule: Rule, ctx: RequestContext): DestinationDef | undefined {
  const sticky = rule.def.cohort ? cohortDraw(rule.def.cohort, ctx.facts.headers) : undefined;
  return pickDestination(rule, sticky ?? ctx.deps.random());
}

/** Stage 10: weighted destination → cluster → endpoint. */
export function selectUpstream(ctx: RequestContext): PipelineResult | undefined {
  const rule = ctx.route?.rule;
  if (!rule) return undefined;
  // Route selection made the weighted pick.
  const destination = ctx.destination;
  if (!destination) return localReply(REPLIES.noHealthyUpstream, ctx.record);
  const cluster = ctx.snapshot.clusters.get(destination.cluster);
  if (!cluster) return localReply(REPLIES.clusterNotFound, ctx.record);
  ctx.cluster = cluster;
  return undefined;
}

/**
 * Stages 11 and 12: rewrite, header operations, mirrors, then the attempts
 * (endpoint choice, retries, timeouts, circuit breaking, outlier
 * detection: src/upstream/), then the response headers.
 */
export async function forwardUpstream(ctx: RequestContext): Promise<PipelineResult> {
  if (ctx.passthrough) return passthrough(ctx);
  const { facts, record, deps } = ctx;
  const route = ctx.route;
  const cluster = ctx.cluster;
  const destination = ctx.destination;
  if (!route || !cluster || !destination) return localReply(REPLIES.noRoute, record);
  const upstreams = upstreamsOf(deps);
  upstreams.maybeSync(ctx.snapshot.snapshot, ctx.waitUntil);

  const rule = route.rule;
  let path = facts.path;
  if (rule.def.rewrite?.uri !== undefined) path = replacePrefix(facts.path, route.uri, rule.def.rewrite.uri);
  else if (rule.uriRegex && rule.def.rewrite?.uriRegex) path = rule.uriRegex.replaceAll(facts.path, rule.def.rewrite.uriRegex.rewrite);
  const weighted = rule.destinations.length > 1;
  const headers = facts.headers;
  // Envoy's router records the path of a route that rewrites it (with the query), as an Istio gateway sends it (envoy headers are on).
  if (rule.def.rewrite?.uri !== undefined || rule.def.rewrite?.uriRegex) headers.set("x-envoy-original-path", pathWithQuery(facts));
  headers.set("x-forwarded-host", rule.def.rewrite?.authority ?? destination.authority ?? facts.authority);
  for (const ops of orderedOps("request", rule.def.headers, destination.headers, weighted)) applyHeaderOps(headers, ops);

  const fetchFn = clusterFetch(cluster, deps);
  if (!fetchFn) return localReply(REPLIES.connectFailure, record);
  // Decides the trace (and marks x-request-id) before any copy of the headers is made.
  const observer = attemptObserver(ctx);

  let body = ctx.request.body;
  const contentLength = facts.bodyLength;
  // A WebSocket handshake is not mirrored: a copy would open a second socket to the shadow.
  const mirrors = rule.def.mirrors && !facts.websocket ? selectMirrors(rule.def.mirrors, deps.random) : [];
  const client = ctx.snapshot.locality.resolveFor(ctx.request);
  if (mirrors.length > 0) {
    const decorate = mirrorDecorator(ctx);
    // Copies the mirror cluster's own security refuses are skipped (decided at authorization).
    const admit = mirrorAdmission(ctx);
    const plan = planMirrors({
      mirrors,
      clusters: ctx.snapshot.clusters,
      balancer: deps.balancer,
      pick: (c) =>
        pickEndpoint({
          cluster: c,
          client,
          gatewayLabels: ctx.settings.gatewayLabels,
          healthy: (i) => upstreams.healthy(c, c.endpoints[i] as EndpointDef),
          balancer: deps.balancer,
          random: deps.random,
        })?.endpoint,
      fetch: deps.fetch,
      fetchFor: (c) => clusterFetch(c, deps),
      method: facts.method,
      host: facts.host,
      path,
      query: facts.query,
      headers,
      body,
      contentLength,
      maxBodyBytes: ctx.settings.limits.maxMirrorBodyBytes,
      timeoutMs: rule.def.timeoutMs ?? MIRROR_TIMEOUT_MS,
      ...(decorate ? { decorate } : {}),
      ...(admit ? { admit } : {}),
    });
    body = plan.primaryBody;
    if (observer) record.mirrorsStarted = deps.now();
    record.mirrorsDone = plan.run().then((outcomes) => {
      record.mirrors = outcomes;
      if (observer) record.mirrorsEnded = deps.now();
    });
    ctx.waitUntil(record.mirrorsDone);
  }

  const policy = rule.def.retry ?? ctx.settings.defaultRetry ?? ISTIO_DEFAULT_RETRY;
  const limits = ctx.settings.limits;
  // A request without a body (every GET) is not awaited: no turn of the microtask queue for nothing.
  const upstreamBody: UpstreamBody | UnreadableBody =
    body === null
      ? NO_UPSTREAM_BODY
      : policy.attempts > 0
        ? await replayableBody(body, facts.method, contentLength, limits.maxRetryBodyBytes ?? DEFAULT_SETTINGS.limits.maxRetryBodyBytes ?? 0)
        : sendsNoBody(facts.method)
          ? NO_UPSTREAM_BODY
          : { type: "stream", stream: body, length: contentLength };
  // Malformed chunked framing, or a client gone (or half-closed) mid-body: Envoy's codec answers the first 400 (DPE)
  // and logs the second DC; workerd fails the read alike for both, so both get the 400 (never the catch-all's 500).
  if (upstreamBody.type === "unreadable") return localReply(badRequest(400, "bad request"), record);
  if (upstreamBody.type === "bytes" && upstreamBody.bytes.byteLength > limits.maxRequestBodyBytes) return localReply(badRequest(413, "payload too large"), record);
  // A body sent without Content-Length is measured as it is read, for telemetry's request size.
  if (upstreamBody.type === "bytes") facts.bodyLength ??= upstreamBody.bytes.byteLength;
  const bodyRead = upstreamBody.type === "stream" && facts.bodyLength === undefined ? (size: number) => (facts.bodyLength = size) : undefined;
  const hashKey = cluster.consistentHash ? requestHash(cluster.consistentHash.key, facts, deps.random) : {};

  const telemetryActive = ctx.snapshot.telemetry?.planFor(cluster.name).active === true;
  const started = deps.now();
  const result = await sendWithRetries({
    cluster,
    policy,
    retryAnyMethod: rule.def.retryNonIdempotent ?? false,
    method: facts.method,
    headers,
    body: upstreamBody,
    url: (endpoint) => endpointUrl(cluster, endpoint, facts.host, path, facts.query),
    timeoutMs: rule.def.timeoutMs,
    maxBodyBytes: limits.maxRequestBodyBytes,
    bodyRead,
    client,
    gatewayLabels: ctx.settings.gatewayLabels,
    hash: hashKey.hash,
    fetch: fetchFn,
    state: upstreams,
    balancer: deps.balancer,
    random: deps.random,
    sleep: deps.sleep,
    waitUntil: ctx.waitUntil,
    version: ctx.snapshot.version,
    // Every field written, present or not (a conditional spread would give each combination its own shape).
    observer,
    // Only a route with a timeout can run out of time over the response body (a rare event: one closure per such request).
    bodyExpired: rule.def.timeoutMs !== undefined ? () => record.flags.push("UT") : undefined,
    countBody: telemetryActive,
  });
  record.attempts = result.attempts;
  if (result.endpoint) {
    record.upstreamHost = `${cluster.dynamicAddress ? facts.host : result.endpoint.address}:${result.endpoint.port}`;
    record.upstreamEndpoint = result.endpoint;
  }
  if (!result.ok) {
    // Envoy's RESPONSE_CODE_DETAILS tell a per-try timeout from the route's (the flag is UT for both).
    if (result.reply === REPLIES.perTryTimeout) record.details = "upstream_per_try_timeout";
    const reply = localReply(result.reply, record);
    record.flags.push(...result.flags);
    return reply;
  }
  record.flags.push(...result.flags);
  record.bodyDone = result.bodyDone;

  ctx.routeHeadersApplied = true;
  record.upstreamServiceTimeMs = Math.max(0, Math.round(deps.now() - started));
  const serviceTime = String(record.upstreamServiceTimeMs);
  const ops = orderedOps("response", rule.def.headers, destination.headers, weighted);
  // Telemetry counts the response's head in the pass that drops its hop-by-hop headers, when nothing
  // below changes them but the service time, whose bytes are added here; else it reads them at the end.
  if (telemetryActive && ops.every((o) => o === undefined) && !hashKey.setCookie) {
    const { response, head } = countedDownstreamResponse(result.response, facts.websocket, result.body);
    response.headers.set(UPSTREAM_SERVICE_TIME, serviceTime);
    head.bytes += UPSTREAM_SERVICE_TIME.length + serviceTime.length + 4;
    ctx.responseHead = head;
    return { response, record };
  }
  const response = downstreamResponse(result.response, facts.websocket, result.body);
  // `response.headers` is a native getter: read it once.
  const responseHeaders = response.headers;
  responseHeaders.set(UPSTREAM_SERVICE_TIME, serviceTime);
  for (const o of ops) applyHeaderOps(responseHeaders, o);
  if (hashKey.setCookie) responseHeaders.append("set-cookie", hashKey.setCookie);
  return { response, record };
}

/** The fetch for a cluster: global fetch, or the mTLS binding that presents its client certificate. */
function clusterFetch(cluster: ClusterDef, deps: PipelineDeps): Fetch | undefined {
  if (!cluster.mtlsBinding) return deps.fetch;
  const fetchVia = deps.binding?.(cluster.mtlsBinding);
  if (!fetchVia) {
    console.error(
      JSON.stringify({
        message: "isthmus: the mTLS binding of a cluster is missing; add it to wrangler.toml (mtls_certificates)",
        cluster: cluster.name,
        binding: cluster.mtlsBinding,
      }),
    );
  }
  return fetchVia;
}

/**
 * ALLOW_ANY: an unknown host is forwarded to itself, as Istio's
 * PassthroughCluster does. The client picks the address, so a Host naming
 * this gateway (its own address and port, or a name that resolves to it)
 * would make it call itself until it runs out of connections: every
 * passthrough carries this gateway's mark in `x-isthmus-via`, and one that
 * arrives already marked by it (or by more gateways than any real chain
 * has) is refused with 508.
 */
async function passthrough(ctx: RequestContext): Promise<PipelineResult> {
  const { facts, record } = ctx;
  record.cluster = "PassthroughCluster";
  // Clients cannot send x-isthmus-* headers upstream (hygiene strips them), so the mark is read from the request as received.
  const via = passthroughVia(ctx.request.headers.get(VIA_HEADER));
  if (via === undefined) return localReply(REPLIES.loopDetected, record);
  facts.headers.set(VIA_HEADER, via);
  const url = `${facts.scheme}://${facts.authority}${pathWithQuery(facts)}`;
  // Sent to the Host header's port (facts.port is the listener's).
  const port = authorityPort(facts) ?? facts.port;
  const observer = attemptObserver(ctx);
  observer?.sending(1, { address: facts.host, port, labels: {}, weight: 1 }, url, facts.headers);
  const result = await forward(ctx.deps.fetch, url, {
    method: facts.method,
    headers: facts.headers,
    body: ctx.request.body,
    length: facts.bodyLength,
    maxBodyBytes: ctx.settings.limits.maxRequestBodyBytes,
    bodyRead: (size) => (facts.bodyLength ??= size),
  });
  observer?.ended(1, result.ok ? { status: result.response.status } : { failure: result.reply.flag === "UT" ? "route-timeout" : "connect-failure" }, undefined);
  record.upstreamHost = `${facts.host}:${port}`;
  if (!result.ok) return localReply(result.reply, record);
  return { response: downstreamResponse(result.response, facts.websocket), record };
}

function base64Bytes(b64: string): Uint8Array {
  const binary = atob(b64);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
