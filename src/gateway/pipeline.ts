/**
 * The request pipeline (DESIGN.md), stage by stage:
 *
 *   1 hygiene → 2 normalize → 3 host → virtual host → 6 route selection →
 *   9 route action (redirect / direct response) → 10 upstream selection →
 *   11 forward → 12 response header operations
 *
 * Stages 4–5 (peer and request authentication), 7 (authorization) and
 * 8 (rate limiting) are added by their own modules; none is faked here.
 * Every stage either hands a richer context to the next or ends the
 * request with a local reply that carries Envoy's response flag.
 */
import type { RuntimeSnapshot } from "../routing/hydrate.ts";
import { findVirtualHost, pickDestination, selectRoute } from "../routing/select.ts";
import { applyHeaderOps, orderedOps } from "../routing/header-ops.ts";
import { redirectLocation, replacePrefix } from "../routing/redirect.ts";
import { downstreamResponse, endpointUrl, forward, type Fetch } from "../routing/forward.ts";
import type { Balancer } from "../routing/balancer.ts";
import type { RequestFacts } from "./facts.ts";
import { sanitizeRequest } from "./hygiene.ts";
import { badRequest, REPLIES, toResponse, type LocalReply, type ResponseFlag } from "./local-reply.ts";
import { normalizeHost, normalizePath } from "./normalize.ts";

/** Everything the pipeline needs from the outside world, injected so tests are exact. */
export interface PipelineDeps {
  fetch: Fetch;
  balancer: Balancer;
  random: () => number;
  requestId: () => string;
  now: () => number;
}

/** What happened to a request, for logs and telemetry. */
export interface RequestRecord {
  flags: ResponseFlag[];
  routeName?: string;
  cluster?: string;
  upstreamHost?: string;
}

export interface PipelineResult {
  response: Response;
  record: RequestRecord;
}

function reply(r: LocalReply, record: RequestRecord): PipelineResult {
  if (r.flag) record.flags.push(r.flag);
  return { response: toResponse(r), record };
}

/**
 * Runs one request through the pipeline against a hydrated snapshot.
 *
 * @example
 * const { response } = await runPipeline(request, snapshot, deps);
 */
export async function runPipeline(request: Request, snapshot: RuntimeSnapshot, deps: PipelineDeps): Promise<PipelineResult> {
  const settings = snapshot.snapshot.settings;
  const record: RequestRecord = { flags: [] };
  const requestId = deps.requestId();

  // 1. Ingress hygiene.
  const clean = sanitizeRequest(request, { limits: settings.limits });
  if (!clean.ok) return reply(clean.reply, record);

  // 2. Normalize once: every later stage and the upstream see this form.
  const url = new URL(request.url);
  const scheme = url.protocol === "https:" ? "https" : "http";
  const host = normalizeHost(request.headers.get("host") ?? url.host, scheme);
  if (!host.ok) return reply(badRequest(400, host.reason), record);
  const rawPath = rawPathOf(request.url);
  const path = normalizePath(rawPath, settings.pathNormalization);
  if (!path.ok) return reply(badRequest(400, path.reason), record);
  const headers = clean.headers;
  const remoteIp = request.headers.get("cf-connecting-ip") ?? "";
  headers.set("x-request-id", requestId);
  if (remoteIp) headers.set("x-forwarded-for", remoteIp);
  headers.set("x-forwarded-proto", scheme);
  const facts: RequestFacts = {
    method: request.method,
    scheme,
    host: host.host,
    port: host.port,
    authority: host.authority,
    path: path.path,
    query: url.search.slice(1),
    headers,
    remoteIp,
  };

  // 3. Host → virtual host.
  const vhost = findVirtualHost(snapshot, facts.host);
  if (!vhost) {
    if (settings.outboundTrafficPolicy === "ALLOW_ANY") return passthrough(request, facts, settings.limits.maxRequestBodyBytes, deps, record);
    return reply(REPLIES.noRoute, record);
  }
  if (vhost.httpsRedirect && facts.scheme === "http") {
    const location = redirectLocation({ status: 301, scheme: "https" }, facts, undefined);
    return reply({ status: 301, body: "", headers: { location } }, record);
  }

  // 6. Route selection (pure).
  const route = selectRoute(vhost, facts);
  if (!route) return reply(REPLIES.noRoute, record);
  record.routeName = route.name;
  const rule = route.rule;
  const action = rule.def.action;

  // 9. Route actions answered at the edge.
  if (action.type === "redirect") {
    const location = redirectLocation(action.redirect, facts, route.uri);
    return withResponseOps(reply({ status: action.redirect.status, body: "", headers: { location } }, record), rule.def.headers?.response);
  }
  if (action.type === "direct") {
    const body = action.bodyBase64 !== undefined ? base64Bytes(action.bodyBase64) : action.body;
    const response = new Response(body ?? null, { status: action.status });
    if (body !== undefined && (typeof body !== "string" || body.length > 0)) response.headers.set("content-type", "text/plain");
    return withResponseOps({ response, record }, rule.def.headers?.response);
  }

  // 10. Upstream selection: destination → cluster → endpoint.
  const destination = pickDestination(rule, deps.random());
  if (!destination) return reply(REPLIES.noHealthyUpstream, record);
  record.cluster = destination.cluster;
  const cluster = snapshot.clusters.get(destination.cluster);
  if (!cluster) return reply(REPLIES.clusterNotFound, record);
  const endpoint = deps.balancer.pick(cluster, cluster.endpoints);
  if (!endpoint) return reply(REPLIES.noHealthyUpstream, record);

  // 11. Forward: rewrite, header operations, timeout.
  let upstreamPath = facts.path;
  if (rule.def.rewrite?.uri !== undefined) upstreamPath = replacePrefix(facts.path, route.uri, rule.def.rewrite.uri);
  else if (rule.uriRegex && rule.def.rewrite?.uriRegex) upstreamPath = rule.uriRegex.replaceAll(facts.path, rule.def.rewrite.uriRegex.rewrite);
  const weighted = rule.destinations.length > 1;
  headers.set("x-forwarded-host", rule.def.rewrite?.authority ?? facts.authority);
  for (const ops of orderedOps("request", rule.def.headers, destination.headers, weighted)) applyHeaderOps(headers, ops);

  const url2 = endpointUrl(cluster, endpoint, facts.host, upstreamPath, facts.query);
  record.upstreamHost = `${cluster.dynamicAddress ? facts.host : endpoint.address}:${endpoint.port}`;
  const done = deps.balancer.begin(cluster, endpoint);
  const started = deps.now();
  const upstreamRequest = {
    method: facts.method,
    path: upstreamPath,
    query: facts.query,
    headers,
    body: request.body,
    maxBodyBytes: settings.limits.maxRequestBodyBytes,
  };
  const result = await forward(deps.fetch, url2, rule.def.timeoutMs !== undefined ? { ...upstreamRequest, timeoutMs: rule.def.timeoutMs } : upstreamRequest);
  done();
  if (!result.ok) return reply(result.reply, record);

  // 12. Response.
  const response = downstreamResponse(result.response);
  response.headers.set("x-envoy-upstream-service-time", String(Math.max(0, Math.round(deps.now() - started))));
  for (const ops of orderedOps("response", rule.def.headers, destination.headers, weighted)) applyHeaderOps(response.headers, ops);
  return { response, record };
}

/** ALLOW_ANY: an unknown host is forwarded to itself, as Istio's PassthroughCluster does. */
async function passthrough(request: Request, facts: RequestFacts, maxBodyBytes: number, deps: PipelineDeps, record: RequestRecord): Promise<PipelineResult> {
  record.cluster = "PassthroughCluster";
  const url = `${facts.scheme}://${facts.authority}${facts.path}${facts.query ? `?${facts.query}` : ""}`;
  const result = await forward(deps.fetch, url, {
    method: facts.method,
    path: facts.path,
    query: facts.query,
    headers: facts.headers,
    body: request.body,
    maxBodyBytes,
  });
  if (!result.ok) return reply(result.reply, record);
  return { response: downstreamResponse(result.response), record };
}

function withResponseOps(result: PipelineResult, ops: Parameters<typeof applyHeaderOps>[1]): PipelineResult {
  applyHeaderOps(result.response.headers, ops);
  return result;
}

/** The request path exactly as the URL parser left it (before our normalization). */
function rawPathOf(url: string): string {
  const afterScheme = url.indexOf("//") + 2;
  const pathStart = url.indexOf("/", afterScheme);
  if (pathStart < 0) return "/";
  const queryStart = url.indexOf("?", pathStart);
  return queryStart < 0 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
}

function base64Bytes(b64: string): Uint8Array {
  const binary = atob(b64);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
