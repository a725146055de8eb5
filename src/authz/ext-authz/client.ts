/**
 * The HTTP external authorizer of CUSTOM policies (Istio's
 * envoyExtAuthzHttp, Envoy's ext_authz HTTP service). The check request
 * has the client request's method, `pathPrefix` + path + query, the
 * client's `Authorization` (always, as Envoy's), the client headers named in
 * `includeRequestHeadersInCheck` (exact, `prefix*` or `*suffix`), the
 * `includeAdditionalHeadersInCheck` headers with their command operators
 * expanded (an empty result is not sent, as in Envoy), `x-forwarded-host`
 * with the original authority (a Worker cannot send another Host than the
 * URL's), and the buffered body when `includeRequestBodyInCheck` asks for it.
 *
 * As Envoy reads the answer:
 * - 200 allows; `headersToUpstreamOnAllow` are copied onto the upstream
 *   request (see upstream.ts) and `headersToDownstreamOnAllow` onto the
 *   response;
 * - a 5xx answer, a timeout or a connection failure is an error: allowed
 *   when `failOpen`, else `statusOnError` (403) with flag UAEX;
 * - any other answer (a 204 or another 2xx too) denies: its status and body
 *   go to the client with the headers `headersToDownstreamOnDeny` selects
 *   (all when unset; repeated ones, such as several `Set-Cookie`, all
 *   kept), flag UAEX.
 */
import type { ClusterDef, ExtAuthzDef } from "../../config/snapshot.ts";
import type { PipelineDeps } from "../../gateway/context.ts";
import type { RequestFacts } from "../../gateway/facts.ts";
import { concatBytes, readAtMost, replay } from "../../gateway/bytes.ts";
import { HOP_BY_HOP } from "../../gateway/hygiene.ts";
import { endpointUrl } from "../../routing/forward.ts";
import { sendsNoBody } from "../../upstream/request-body.ts";
import { anyValue, type ValueMatcher } from "../policy/value-match.ts";
import { parseHeaderValue, type HeaderValue } from "./command-operators.ts";

export type CheckResult =
  | { kind: "allow"; upstream: [string, string][]; downstream: [string, string][] }
  | { kind: "deny"; status: number; body: string; headers: [string, string][] }
  | { kind: "error"; reason: string };

export interface CheckRequest {
  facts: RequestFacts;
  /** The buffered request body, when the provider includes it. */
  body?: Uint8Array;
}

const MAX_DENIAL_BODY = 64 * 1024;
/** Headers always sent to the client with a denial when the provider lists some (Envoy adds these). */
const DENY_DEFAULTS = ["www-authenticate", "location"];

/** Header-name patterns (exact, `prefix*`, `*suffix`), case-insensitive. */
export function headerPatterns(patterns: readonly string[]): ValueMatcher {
  return anyValue(patterns, true);
}

/** A provider's header selections and additional headers, built once per provider definition (it lives as long as its snapshot). */
export interface ProviderPlan {
  /** includeRequestHeadersInCheck */
  include: ValueMatcher;
  /** headersToUpstreamOnAllow */
  toUpstream: ValueMatcher;
  /** headersToDownstreamOnAllow */
  toDownstream: ValueMatcher;
  /** headersToDownstreamOnDeny with Envoy's defaults; every header when unset */
  onDeny: ValueMatcher;
  /** includeAdditionalHeadersInCheck, as formatters (compile refused values that do not parse) */
  additional: [string, HeaderValue][];
}

const plans = new WeakMap<ExtAuthzDef, ProviderPlan>();

/**
 * The provider's plan, from the cache once built.
 * @example
 * planOf(provider).include("x-user") // true when includeRequestHeadersInCheck names it
 */
export function planOf(provider: ExtAuthzDef): ProviderPlan {
  let plan = plans.get(provider);
  if (!plan) {
    plan = {
      include: headerPatterns(provider.includeRequestHeaders),
      toUpstream: headerPatterns(provider.headersToUpstreamOnAllow),
      toDownstream: headerPatterns(provider.headersToDownstreamOnAllow),
      onDeny: provider.headersToDownstreamOnDeny ? headerPatterns([...provider.headersToDownstreamOnDeny, ...DENY_DEFAULTS]) : () => true,
      additional: provider.additionalHeaders.map(([name, text]) => {
        const parsed = parseHeaderValue(text);
        return [name, parsed.ok ? parsed.value : () => text];
      }),
    };
    plans.set(provider, plan);
  }
  return plan;
}

/**
 * Asks the authorizer about a request.
 * @example
 * const result = await checkRequest(provider, cluster, { facts }, deps);
 */
export async function checkRequest(provider: ExtAuthzDef, cluster: ClusterDef, req: CheckRequest, deps: PipelineDeps): Promise<CheckResult> {
  const endpoint = deps.balancer.pick(cluster, cluster.endpoints);
  if (!endpoint) return { kind: "error", reason: "no endpoint for the authorizer" };
  const { facts } = req;
  const url = endpointUrl(cluster, endpoint, facts.host, `${provider.pathPrefix}${facts.path}`, facts.query);

  const plan = planOf(provider);
  const headers = checkHeaders(plan, facts);
  const hasBody = req.body !== undefined && !sendsNoBody(facts.method);

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, provider.timeoutMs);
  let response: Response;
  try {
    response = await deps.fetch(url, { method: facts.method, headers, body: hasBody ? req.body : null, redirect: "manual", signal: controller.signal });
  } catch (error) {
    clearTimeout(timer);
    return { kind: "error", reason: timedOut ? "timeout" : error instanceof Error ? error.message : String(error) };
  }
  try {
    if (response.status === 200) {
      await response.body?.cancel();
      const { toUpstream, toDownstream } = plan;
      const upstream: [string, string][] = [];
      const downstream: [string, string][] = [];
      for (const [name, value] of response.headers) {
        if (HOP_BY_HOP.has(name)) continue;
        if (toUpstream(name)) upstream.push([name, value]);
        if (toDownstream(name)) downstream.push([name, value]);
      }
      return { kind: "allow", upstream, downstream };
    }
    if (response.status >= 500) {
      await response.body?.cancel();
      return { kind: "error", reason: `the authorizer answered ${response.status}` };
    }
    const body = await readCapped(response, MAX_DENIAL_BODY);
    const out: [string, string][] = [];
    for (const [name, value] of response.headers) {
      if (HOP_BY_HOP.has(name) || name === "content-length" || name === "content-encoding") continue;
      if (plan.onDeny(name)) out.push([name, value]);
    }
    return { kind: "deny", status: response.status, body, headers: out };
  } catch (error) {
    return { kind: "error", reason: timedOut ? "timeout" : error instanceof Error ? error.message : String(error) };
  } finally {
    clearTimeout(timer);
  }
}

/** The headers of the check request (see the file's comment). */
function checkHeaders(plan: ProviderPlan, facts: RequestFacts): Headers {
  const headers = new Headers();
  for (const [name, value] of facts.headers) {
    if ((name === "authorization" || plan.include(name)) && !HOP_BY_HOP.has(name) && name !== "content-length" && name !== "host") headers.set(name, value);
  }
  for (const [name, format] of plan.additional) {
    const value = format(facts);
    if (value) headers.set(name, value);
    else headers.delete(name);
  }
  headers.set("x-forwarded-host", facts.authority);
  return headers;
}

async function readCapped(response: Response, max: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  // Up to `max` bytes: stop at the first chunk that reaches it.
  const head = await readAtMost(reader, max - 1);
  if (!head.done) await reader.cancel();
  return new TextDecoder().decode(concatBytes(head.chunks, head.size).subarray(0, max));
}

/**
 * Reads up to `max` bytes of the request body for the check and returns
 * them with a stream that replays the whole body upstream.
 * `tooLarge` when the body is longer and partial messages are not allowed;
 * `unreadable` when it fails while it is read (answered 400, as the route's
 * own body read is).
 */
export async function bufferBody(
  body: ReadableStream<Uint8Array> | null,
  max: number,
  allowPartial: boolean,
): Promise<{ ok: true; check: Uint8Array; replay: ReadableStream<Uint8Array> | null } | { ok: false; tooLarge: true } | { ok: false; unreadable: true }> {
  if (!body) return { ok: true, check: new Uint8Array(0), replay: null };
  const reader = body.getReader();
  let head: Awaited<ReturnType<typeof readAtMost>>;
  try {
    head = await readAtMost(reader, max);
  } catch {
    // Malformed framing, or the client left mid-body (workerd fails the read alike for both).
    return { ok: false, unreadable: true };
  }
  if (head.size > max && !allowPartial) {
    await reader.cancel();
    return { ok: false, tooLarge: true };
  }
  return { ok: true, check: concatBytes(head.chunks, head.size).subarray(0, max), replay: replay(head.chunks, reader) };
}
