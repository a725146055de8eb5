/**
 * Compiles VirtualService `http[]` entries into rules (the action) and
 * routes (one per match block, pointing at the rule), with Istio's
 * validation of conflicting actions.
 */
import type { z } from "zod";
import { durationMs } from "../duration.ts";
import type { Headers as HeadersSchema, HTTPRoute } from "../schema/networking.ts";
import type { ActionDef, DestinationDef, HeaderOpsDef, HeadersDef, MatchDef, RedirectDef, RuleDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import { regexError, substitutionError } from "../../routing/regex.ts";
import { isHttpToken } from "../../gateway/request-header.ts";
import type { DiagnosticsSink, FieldPath } from "./diagnostics.ts";
import { formatPath } from "../problems.ts";
import type { Delegates, RuleInput } from "./delegates.ts";
import { compileMatch } from "./matchers.ts";
import type { GatewayLabels } from "./security-targets.ts";
import { takesEverything } from "./catch-all.ts";
import { compileCohort, compileCors, compileFault, compileMirrors } from "./route-extras.ts";
import { compileRetry } from "./retries.ts";
import type { ServiceRegistry } from "./services.ts";
import { resolveGatewayName } from "./gateway-names.ts";
import { LISTENER_PORTS_NOTE } from "./policy-checks.ts";

export interface CompiledRoute {
  name: string;
  match: MatchDef;
  /** `match.gateways` as `namespace/name` (or `mesh`): the match only applies through those gateways. */
  gateways?: string[];
}

export interface CompiledRule {
  rule: RuleDef;
  /** One entry per match block (a single catch-all entry when `match` is absent). */
  routes: CompiledRoute[];
}

const REDIRECT_CODES = new Set([301, 302, 303, 307, 308]);

/**
 * Compiles every HTTP rule of a VirtualService. Rules after a catch-all
 * for every port and gateway are unreachable; Istio drops them and so does
 * Isthmus, with a warning. Catch-alls for one port or gateway are resolved
 * per gateway binding (reachableRules, catch-all.ts).
 */
export function compileHttpRules(vs: Resource<"VirtualService">, services: ServiceRegistry, diag: DiagnosticsSink, edge: EdgeWorkload, delegates: Delegates): CompiledRule[] {
  const out: CompiledRule[] = [];
  // Delegating rules are replaced by the delegate's rules merged with them; Istio looks for the
  // catch-all in that merged list.
  const inputs = delegates.rulesOf(vs, diag);
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i] as RuleInput;
    const compiled = compileRule(input.vs, input.route, input.index, services, input.diag, edge, input.lent);
    if (!compiled) continue;
    out.push(compiled);
    const next = inputs[i + 1];
    if (next && compiled.routes.some(takesEverything)) {
      const before = input.vs === next.vs ? `rule ${input.index}` : `${input.vs.id} ${formatPath(["spec", "http", input.index])}`;
      next.diag.warn(next.vs, ["spec", "http", next.index], `unreachable: ${before} before it matches every request (Istio drops the rules after a catch-all)`);
      break;
    }
  }
  return out;
}

function compileRule(
  vs: Resource<"VirtualService">,
  route: HTTPRoute,
  index: number,
  services: ServiceRegistry,
  diag: DiagnosticsSink,
  edge: EdgeWorkload,
  lent: ReadonlySet<keyof HTTPRoute> = new Set(),
): CompiledRule | undefined {
  const path: FieldPath = ["spec", "http", index];
  let ok = true;
  const fail = (p: FieldPath, message: string) => {
    ok = false;
    diag.error(vs, p, message);
  };

  const actions = (["route", "redirect", "directResponse", "delegate"] as const).filter((k) => route[k] !== undefined);
  if (actions.length === 0) {
    fail(path, "expected one of route, redirect, directResponse or delegate");
    return undefined;
  }
  if (actions.length > 1) fail([...path, actions[1] as string], `expected only one of route, redirect, directResponse or delegate, got ${actions.join(" and ")}`);
  if (route.redirect || route.directResponse) {
    const kind = route.redirect ? "redirect" : "directResponse";
    for (const other of ["rewrite", "fault"] as const) {
      // A root rule's fault applies to the redirects and direct responses it delegates, as in Istio.
      if (route[other] !== undefined && !lent.has(other)) fail([...path, other], `${other} cannot be combined with ${kind}`);
    }
  }
  if (route.mirror && route.mirrors) fail([...path, "mirrors"], "expected only one of mirror and mirrors");

  const matches: CompiledRoute[] = [];
  (route.match ?? []).forEach((m, j) => {
    const compiled = compileMatch(m, [...path, "match", j], fail);
    if (!compiled) return;
    if (m.port !== undefined && m.port !== 80 && m.port !== 443) {
      diag.warn(vs, [...path, "match", j, "port"], `never matches: ${LISTENER_PORTS_NOTE}`);
    }
    const elsewhere = m.gateways?.length ? undefined : notFromEdge(m, edge);
    if (elsewhere) {
      diag.warn(vs, [...path, "match", j], `never matches at the edge: ${elsewhere}, so this block is skipped, as an Istio gateway skips it`);
      return;
    }
    const entry: CompiledRoute = { name: routeName(route.name, m.name), match: compiled };
    if (m.gateways?.length) entry.gateways = m.gateways.map((g) => resolveGatewayName(g, vs.namespace));
    matches.push(entry);
  });
  if (matches.length === 0 && !(route.match && route.match.length > 0)) matches.push({ name: route.name ?? "", match: {} });

  const action = compileAction(vs, route, path, services, fail);
  const rule: RuleDef = { source: vs.id, index, action: action ?? { type: "direct", status: 500 } };
  if (route.name) rule.name = route.name;

  if (route.rewrite) {
    const rw = route.rewrite;
    rule.rewrite = {};
    // Istio reads an empty uri or authority as unset (its translation tests `!= ""`), and its
    // validateHTTPRewrite refuses a rewrite that sets nothing.
    if (!rw.uri && !rw.uriRegexRewrite && !rw.authority) fail([...path, "rewrite"], "expected a non-empty uri, uriRegexRewrite or authority (an empty string sets nothing, as in Istio)");
    if (rw.uri) rule.rewrite.uri = rw.uri;
    if (rw.uriRegexRewrite) {
      const at: FieldPath = [...path, "rewrite", "uriRegexRewrite"];
      const { match, rewrite } = rw.uriRegexRewrite;
      const problem = regexError(match);
      if (problem) fail([...at, "match"], `expected an RE2 regular expression: ${problem}`);
      else if (match === "") fail([...at, "match"], "expected a non-empty RE2 regular expression (Istio requires both match and rewrite)");
      if (rewrite === "") fail([...at, "rewrite"], "expected a non-empty substitution (Istio requires both match and rewrite)");
      const groups = problem ? undefined : substitutionError(match, rewrite);
      if (groups) fail([...at, "rewrite"], `expected capture groups the match pattern has: ${groups} (Envoy would leave every path unchanged)`);
      rule.rewrite.uriRegex = { match, rewrite };
    }
    if (rw.authority) rule.rewrite.authority = rw.authority;
  }
  // Istio's validateHTTPRedirect wants prefix matches for a redirect's prefixRewrite. A rewrite.uri has no such
  // rule: with a regex match Envoy's prefix_rewrite replaces the whole path (the regex matched all of it).
  if (route.redirect?.prefixRewrite) {
    (route.match ?? []).forEach((m, j) => {
      if (m.uri?.regex !== undefined) {
        fail([...path, "match", j, "uri"], "a redirect's prefixRewrite needs exact or prefix uri matches (Istio refuses it with a regex match)");
      }
    });
  }

  const headers = compileHeaders(route.headers, [...path, "headers"], fail);
  if (headers) {
    const authority = takeAuthority(headers);
    if (authority !== undefined) {
      if (rule.rewrite?.authority !== undefined) fail([...path, "headers"], "authority is set both by rewrite.authority and by a host header operation");
      rule.rewrite = { ...rule.rewrite, authority };
    }
    if (headers.request || headers.response) rule.headers = headers;
  }

  if (route.timeout !== undefined) {
    const ms = durationMs(route.timeout);
    if (ms > 0) rule.timeoutMs = ms;
  }
  if (route.retries) rule.retry = compileRetry(route.retries, [...path, "retries"], fail, (p, message) => diag.warn(vs, p, message));
  const nonIdempotent = retryNonIdempotent(vs, fail);
  if (nonIdempotent) rule.retryNonIdempotent = true;
  if (route.fault) {
    const fault = compileFault(route.fault, [...path, "fault"], fail);
    if (fault) rule.fault = fault;
  }
  if (route.corsPolicy) {
    const cors = compileCors(route.corsPolicy, [...path, "corsPolicy"], fail);
    // Envoy's cors filter skips a route with no route entry: a redirect or a direct response answers a
    // preflight itself and gets no CORS headers, so the policy is not kept.
    if (cors && (route.redirect || route.directResponse)) {
      diag.warn(vs, [...path, "corsPolicy"], `has no effect on a ${route.redirect ? "redirect" : "directResponse"} rule (Envoy's CORS filter only runs for routes to a destination)`);
    } else if (cors) rule.cors = cors;
  }
  const mirrors = compileMirrors(vs, route, path, services, fail);
  if (mirrors) rule.mirrors = mirrors;
  if (action?.type === "route" && action.destinations.length > 1) {
    const cohort = compileCohort(vs, fail);
    if (cohort) rule.cohort = cohort;
  }

  if (!ok || !action) return undefined;
  return { rule, routes: matches };
}

/** The gateway workload, as the `sourceLabels` and `sourceNamespace` of a match block see it. */
export interface EdgeWorkload {
  /** GatewayConfig `gatewayLabels`, else Istio's ingress gateway labels and the Gateways' selectors (security-targets.ts). */
  labels: GatewayLabels;
  /** The GatewayConfig's namespace, else the root namespace. */
  namespace: string;
}

/**
 * Why a match block's source conditions exclude the gateway (undefined when
 * they hold). Istio's sourceMatchHTTP builds a gateway's routes with only the
 * blocks whose `sourceLabels` are among the gateway's own labels and whose
 * `sourceNamespace` is its namespace: the source of edge traffic is the
 * gateway. Dropping the conditions instead would open a route meant for one
 * in-mesh caller to the internet.
 */
function notFromEdge(m: { sourceLabels?: Record<string, string> | undefined; sourceNamespace?: string | undefined }, edge: EdgeWorkload): string | undefined {
  const missing = Object.entries(m.sourceLabels ?? {}).filter(([k, v]) => !edge.labels.get(k)?.has(v));
  if (missing.length > 0) return `sourceLabels ${missing.map(([k, v]) => `${k}=${v}`).join(", ")} are not the gateway's labels (GatewayConfig gatewayLabels)`;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== edge.namespace) return `sourceNamespace ${m.sourceNamespace} is not the gateway's namespace (${edge.namespace})`;
  return undefined;
}

/** Opts a VirtualService's routes into retrying non-idempotent requests after any retriable failure. */
export const RETRY_NON_IDEMPOTENT_ANNOTATION = "isthmus.dev/retry-non-idempotent";

function retryNonIdempotent(vs: Resource<"VirtualService">, fail: (p: FieldPath, message: string) => void): boolean {
  const raw = vs.metadata.annotations?.[RETRY_NON_IDEMPOTENT_ANNOTATION];
  if (raw === undefined) return false;
  if (raw !== "true" && raw !== "false") fail(["metadata", "annotations", RETRY_NON_IDEMPOTENT_ANNOTATION], `expected "true" or "false", got "${raw}"`);
  return raw === "true";
}

function routeName(rule: string | undefined, match: string | undefined): string {
  if (rule && match) return `${rule}.${match}`;
  return rule ?? match ?? "";
}

function compileAction(
  vs: Resource<"VirtualService">,
  route: HTTPRoute,
  path: FieldPath,
  services: ServiceRegistry,
  fail: (p: FieldPath, message: string) => void,
): ActionDef | undefined {
  if (route.redirect) {
    const r = route.redirect;
    // Istio reads an empty uri or authority as unset (Envoy ignores an empty path_redirect or host_redirect).
    if (!r.uri && !r.authority && r.scheme === undefined && r.port === undefined && !r.prefixRewrite && r.derivePort === undefined) {
      fail([...path, "redirect"], "expected at least one of uri, prefixRewrite, authority (non-empty), scheme, port or derivePort");
    }
    if (r.scheme !== undefined && r.scheme !== "http" && r.scheme !== "https") fail([...path, "redirect", "scheme"], `expected http or https, got "${r.scheme}"`);
    const status = r.redirectCode ?? 301;
    if (!REDIRECT_CODES.has(status)) fail([...path, "redirect", "redirectCode"], `expected one of 301, 302, 303, 307, 308, got ${status}`);
    const redirect: RedirectDef = { status };
    for (const key of ["uri", "prefixRewrite", "authority", "scheme", "port", "derivePort"] as const) {
      if (r[key] !== undefined && r[key] !== "") (redirect as unknown as Record<string, unknown>)[key] = r[key];
    }
    return { type: "redirect", redirect };
  }
  if (route.directResponse) {
    const d = route.directResponse;
    const action: ActionDef = { type: "direct", status: d.status };
    if (d.body?.string !== undefined) action.body = d.body.string;
    if (d.body?.bytes !== undefined) {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(d.body.bytes) || d.body.bytes.length % 4 !== 0) fail([...path, "directResponse", "body", "bytes"], "expected base64-encoded bytes");
      action.bodyBase64 = d.body.bytes;
    }
    const size = action.body !== undefined ? new TextEncoder().encode(action.body).length : Math.floor(((action.bodyBase64 ?? "").length * 3) / 4);
    if (size > 1024 * 1024) fail([...path, "directResponse", "body"], "expected a body of at most 1 MB");
    return action;
  }
  if (!route.route) return undefined;
  return compileDestinations(vs, route.route, [...path, "route"], services, fail);
}

function compileDestinations(
  vs: Resource<"VirtualService">,
  list: NonNullable<HTTPRoute["route"]>,
  path: FieldPath,
  services: ServiceRegistry,
  fail: (p: FieldPath, message: string) => void,
): ActionDef | undefined {
  if (list.length === 0) {
    fail(path, "expected at least one destination");
    return undefined;
  }
  // Istio >= 1.15: weights are relative; a lone destination takes everything;
  // with several, weight-0 entries are dropped and all-zero is invalid.
  if (list.length > 1 && list.every((d) => !d.weight)) {
    fail(path, "expected at least one destination with a weight > 0");
    return undefined;
  }
  const destinations: DestinationDef[] = [];
  list.forEach((d, i) => {
    const at: FieldPath = [...path, i, "destination"];
    const weight = list.length === 1 ? 100 : (d.weight ?? 0);
    const service = services.resolve(d.destination.host, vs.namespace);
    if (!service) {
      fail([...at, "host"], `expected a host declared by a ServiceEntry, got "${d.destination.host}" (the edge only reaches origins listed as ServiceEntry endpoints)`);
      return;
    }
    const port = services.selectPort(service, d.destination.port?.number);
    if (typeof port === "string") {
      fail([...at, d.destination.port ? "port" : "host"], port);
      return;
    }
    const subset = d.destination.subset;
    if (subset !== undefined && !services.subsets(service).includes(subset)) {
      const known = services.subsets(service);
      fail([...at, "subset"], `expected a subset defined by a DestinationRule for ${service.host}${known.length ? ` (${known.join(", ")})` : " (none is defined)"}, got "${subset}"`);
      return;
    }
    if (weight === 0) return;
    const cluster = services.cluster(service, port, subset, d.destination.host.toLowerCase());
    const def: DestinationDef = { host: service.wildcard ? d.destination.host.toLowerCase() : service.host, port: port.number, cluster: cluster.name, weight };
    if (subset !== undefined) def.subset = subset;
    const headers = compileHeaders(d.headers, [...path, i, "headers"], fail);
    if (headers) {
      // Istio sets host_rewrite_literal per destination (processDestination, processWeightedDestination);
      // the route's own authority rewrite wins over it in both.
      const authority = takeAuthority(headers);
      if (authority) def.authority = authority;
      if (headers.request || headers.response) def.headers = headers;
    }
    destinations.push(def);
  });
  return { type: "route", destinations };
}


/**
 * Compiles header operations. Istio drops `:`-prefixed keys; `host` in
 * request set or add becomes the authority rewrite (returned under the
 * `:authority` key and taken out by takeAuthority). Values may contain `%%` (a literal percent);
 * Envoy command operators are not supported yet.
 */
export function compileHeaders(headers: z.infer<typeof HeadersSchema> | undefined, path: FieldPath, fail: (p: FieldPath, message: string) => void): HeadersDef | undefined {
  if (!headers) return undefined;
  const out: HeadersDef = {};
  for (const side of ["request", "response"] as const) {
    const ops = headers[side];
    if (!ops) continue;
    const def: HeaderOpsDef = {};
    let addedAuthority: string | undefined;
    for (const op of ["set", "add"] as const) {
      const entries: [string, string][] = [];
      for (const [rawName, value] of Object.entries(ops[op] ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
        const name = rawName.toLowerCase();
        if (name.startsWith(":") && name !== ":authority") continue;
        if (!isHttpToken(name.replace(/^:/, ""))) {
          fail([...path, side, op, rawName], "expected a valid HTTP header name");
          continue;
        }
        const literal = headerValue(value);
        if (literal === undefined) {
          fail([...path, side, op, rawName], "expected a literal value (write %% for a percent sign; Envoy %COMMAND% operators are not supported yet)");
          continue;
        }
        if (/[\r\n\0]/.test(literal)) {
          fail([...path, side, op, rawName], "expected a value without CR, LF or NUL");
          continue;
        }
        if (name === "host" || name === ":authority") {
          // Istio: in request set or add it is the authority rewrite (set wins over add);
          // in response operations it is dropped, like every internal header.
          if (side === "request" && op === "set") entries.push([":authority", literal]);
          else if (side === "request") addedAuthority = literal;
          continue;
        }
        entries.push([name, literal]);
      }
      if (entries.length) def[op] = entries;
    }
    if (addedAuthority !== undefined && !def.set?.some(([n]) => n === ":authority")) def.set = [...(def.set ?? []), [":authority", addedAuthority]];
    if (ops.remove?.length) {
      ops.remove.forEach((n, i) => {
        if (!n.startsWith(":") && !isHttpToken(n)) fail([...path, side, "remove", i], `expected a valid HTTP header name, got "${n}"`);
      });
      const remove = ops.remove.map((n) => n.toLowerCase()).filter((n) => !n.startsWith(":") && n !== "host" && isHttpToken(n));
      if (remove.length) def.remove = remove;
    }
    if (def.set || def.add || def.remove) out[side] = def;
  }
  return out.request || out.response ? out : undefined;
}

/** Removes an authority rewrite hidden in request header ops and returns it. */
function takeAuthority(headers: HeadersDef): string | undefined {
  const set = headers.request?.set;
  const entry = set?.find(([n]) => n === ":authority");
  if (!entry || !headers.request || !set) return undefined;
  const rest = set.filter(([n]) => n !== ":authority");
  if (rest.length) headers.request.set = rest;
  else delete headers.request.set;
  if (!headers.request.set && !headers.request.add && !headers.request.remove) delete headers.request;
  return entry[1];
}

/** Turns `%%` into `%`; returns undefined when another `%` appears. */
function headerValue(value: string): string | undefined {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c !== "%") {
      out += c;
      continue;
    }
    if (value[i + 1] !== "%") return undefined;
    out += "%";
    i++;
  }
  return out;
}
