/**
 * EnvoyFilter → LOCAL rate-limit rules, for the one patch that means
 * something at the edge: Envoy's local rate limit filter
 * (`envoy.filters.http.local_ratelimit`), as Istio's documentation and
 * most meshes configure it:
 *
 * - an HTTP_FILTER patch inserting the filter with a `token_bucket` → one
 *   bucket for all the traffic the EnvoyFilter applies to;
 * - an HTTP_ROUTE (or VIRTUAL_HOST) patch merging `typed_per_filter_config`
 *   → one bucket per route (per host), optionally narrowed to a route name
 *   or a gateway virtual host name.
 *
 * token_bucket (max_tokens → burst, tokens_per_fill per fill_interval →
 * the rate), filter_enabled and filter_enforced (Envoy's 0% defaults: not
 * enabled → no rule; enabled, not enforced → SHADOW), response_headers_to_add
 * (on 429s) and enable_x_ratelimit_headers map directly. As in Envoy, the
 * most specific configuration is the one that applies: a route's replaces
 * its host's and the filter's, a host's replaces the filter's (`unless` on
 * the less specific rules), and one with filter_enabled 0% exempts its
 * routes (hosts) from them. What cannot be
 * honoured is reported: as an error when it changes which requests are
 * limited (descriptors, local_cluster_rate_limit, route actions), so a
 * limit is never silently dropped; as a warning when it only changes the
 * reply. Every other patch is ignored with a warning, as before.
 */
import { DURATION_PATTERN, durationMs } from "../duration.ts";
import type { ClusterDef, KeyPartDef, PolicyCheckDef, RateLimitRuleDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { RATE_LIMIT_DEFAULTS } from "./rate-limit-defaults.ts";
import { attachmentOf, type Attachment, type GatewayLabels, type TargetRef } from "./security-targets.ts";

const FILTER = "envoy.filters.http.local_ratelimit";
const LOCAL_RATE_LIMIT = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const TYPED_STRUCTS = ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];
const IGNORED = "EnvoyFilter patches Envoy's own configuration, which Isthmus does not run (only envoy.filters.http.local_ratelimit is translated, into LOCAL rate limits; see docs/CONFIG.md)";
/** Envoy's lower bound for fill_interval. */
const MIN_FILL_INTERVAL_MS = 50;

/** Fields of LocalRateLimit that need no translation at the edge. */
const NO_EFFECT = new Set(["stat_prefix", "stage", "always_consume_default_token_bucket", "max_dynamic_descriptors"]);

export interface Translated {
  rule: RateLimitRuleDef;
  attachment: Attachment;
  /** The EnvoyFilter and the patch the rule was translated from (for problems found later). */
  resource: Resource<"EnvoyFilter">;
  path: FieldPath;
}

export function translateEnvoyFilters(
  filters: readonly Resource<"EnvoyFilter">[],
  rootNamespace: string,
  labels: GatewayLabels,
  clusters: readonly ClusterDef[],
  diag: Diagnostics,
): Translated[] {
  const patched: Patched[] = [];
  for (const filter of filters) {
    const patches = filter.spec.configPatches ?? [];
    const found = patches.map((p, i) => localRateLimitPatch(p, ["spec", "configPatches", i]));
    if (!found.some((f) => f !== undefined)) {
      diag.warn(filter, ["kind"], `ignored: ${IGNORED}`);
      continue;
    }
    found.forEach((f, i) => {
      const path: FieldPath = ["spec", "configPatches", i];
      if (!f) {
        diag.warn(filter, path, `ignored: ${IGNORED}`);
        return;
      }
      const attachment = attach(filter, patches[i]?.match, path, rootNamespace, labels, clusters, diag);
      if (!attachment) return;
      const translated = translate(filter, f, i, diag);
      if (translated) patched.push({ ...translated, level: f.level, filter: filter.id, attachment, resource: filter, path });
    });
  }
  const out: Translated[] = [];
  for (const p of patched) {
    if (!p.rule) continue;
    const unless = patched.filter((q) => LEVELS[q.level] > LEVELS[p.level] && replaces(q, p)).map((q) => q.match);
    out.push({ rule: unless.length > 0 ? { ...p.rule, unless } : p.rule, attachment: p.attachment, resource: p.resource, path: p.path });
  }
  return out;
}

/** A patch that translated: its rule (none when filter_enabled is 0%), and the requests its configuration covers. */
interface Patched {
  rule: RateLimitRuleDef | undefined;
  match: PolicyCheckDef[];
  level: Found["level"];
  filter: string;
  attachment: Attachment;
  resource: Resource<"EnvoyFilter">;
  path: FieldPath;
}

/** How specific each level's configuration is: Envoy uses the most specific one it finds. */
const LEVELS: Record<Found["level"], number> = { filter: 0, host: 1, route: 2 };

/**
 * Whether `specific`'s configuration replaces `general`'s where it applies:
 * it must be configured on the same proxy, which holds for patches of one
 * EnvoyFilter (one selector), for a patch that applies to the gateway
 * itself, and for a root-namespace SIDECAR_INBOUND patch against any patch
 * applied at sidecars (destinations), since it is on every sidecar.
 */
function replaces(specific: Patched, general: Patched): boolean {
  if (specific.filter === general.filter || specific.attachment.all || specific.attachment.gateway) return true;
  return everyDestination(specific.attachment) && !general.attachment.all && !general.attachment.gateway;
}

/** Root namespace, no selector, destinations only: a SIDECAR_INBOUND patch on every sidecar (see inboundOnly). */
function everyDestination(at: Attachment): boolean {
  return !at.all && !at.gateway && !at.namespaceWide && !at.workload;
}

interface Found {
  /** The LocalRateLimit message (unwrapped from a TypedStruct). */
  config: Record<string, unknown>;
  configPath: FieldPath;
  /** HTTP_FILTER: the filter's own bucket; HTTP_ROUTE / VIRTUAL_HOST: per-route / per-host configuration. */
  level: "filter" | "route" | "host";
  match: Record<string, unknown>;
  matchPath: FieldPath;
}

function localRateLimitPatch(patch: { applyTo?: string | undefined; match?: unknown; patch?: unknown }, path: FieldPath): Found | undefined {
  const body = record(patch.patch);
  const value = record(body?.value);
  const match = record(patch.match) ?? {};
  if (!value || body?.operation === "REMOVE") return undefined;
  const matchPath = [...path, "match"];
  if (patch.applyTo === "HTTP_FILTER") {
    const typed = unwrap(value.typed_config, [...path, "patch", "value", "typed_config"]);
    return typed ? { ...typed, level: "filter", match, matchPath } : undefined;
  }
  if (patch.applyTo === "HTTP_ROUTE" || patch.applyTo === "VIRTUAL_HOST") {
    const perFilter = record(value.typed_per_filter_config);
    const typed = unwrap(perFilter?.[FILTER], [...path, "patch", "value", "typed_per_filter_config", FILTER]);
    if (!typed) return undefined;
    return { ...typed, level: patch.applyTo === "HTTP_ROUTE" ? "route" : "host", match, matchPath };
  }
  return undefined;
}

/** The LocalRateLimit fields, directly under `@type` or inside a TypedStruct's `value`. */
function unwrap(typedConfig: unknown, path: FieldPath): { config: Record<string, unknown>; configPath: FieldPath } | undefined {
  const typed = record(typedConfig);
  if (!typed) return undefined;
  const type = String(typed["@type"] ?? "");
  if (type.endsWith(LOCAL_RATE_LIMIT)) {
    const { "@type": _, ...config } = typed;
    return { config, configPath: path };
  }
  if (TYPED_STRUCTS.some((t) => type.endsWith(t)) && String(typed.type_url ?? "").endsWith(LOCAL_RATE_LIMIT)) {
    return { config: record(typed.value) ?? {}, configPath: [...path, "value"] };
  }
  return undefined;
}

/** What traffic a patch applies to, from the filter's selector and the patch's context. */
function attach(
  filter: Resource<"EnvoyFilter">,
  rawMatch: unknown,
  path: FieldPath,
  rootNamespace: string,
  labels: GatewayLabels,
  clusters: readonly ClusterDef[],
  diag: Diagnostics,
): Attachment | undefined {
  const context = String(record(rawMatch)?.context ?? "ANY");
  const selectorLabels = filter.spec.workloadSelector?.labels;
  const selector = selectorLabels && Object.keys(selectorLabels).length > 0 ? selectorLabels : undefined;
  const refs = (filter.spec.targetRefs ?? []).map((ref, i) => ({ ref: ref as TargetRef, path: ["spec", "targetRefs", i] }));
  if (context === "SIDECAR_OUTBOUND") {
    diag.warn(filter, [...path, "match", "context"], "SIDECAR_OUTBOUND limits traffic leaving mesh workloads, which never passes the edge; ignored");
    return undefined;
  }
  const at = attachmentOf(filter, selector, refs, ["spec", "workloadSelector"], rootNamespace, labels, clusters, diag);
  if (context === "GATEWAY") {
    const all = at.gateway || at.all;
    if (!all) {
      diag.warn(filter, [...path, "match", "context"], "a GATEWAY patch applies at the edge when the EnvoyFilter is in the root namespace without a selector, or selects the gateway's labels; this one does neither and has no effect");
      return undefined;
    }
    return { all: true, gateway: true, cluster: () => true, namespaceWide: false, workload: false };
  }
  if (context === "SIDECAR_INBOUND") return inboundOnly(at);
  if (context !== "ANY") {
    diag.warn(filter, [...path, "match", "context"], `unknown patch context "${context}"; ignored`);
    return undefined;
  }
  return at;
}

/**
 * A SIDECAR_INBOUND patch runs at sidecars only, so at the edge it applies
 * to traffic routed to destinations and never in the gateway layer: a
 * root-namespace EnvoyFilter without a selector covers every cluster, not
 * every request (an unrouted 404 or an httpsRedirect 301 reaches no sidecar).
 */
function inboundOnly(at: Attachment): Attachment {
  if (at.all) return { all: false, gateway: false, cluster: () => true, namespaceWide: false, workload: false };
  return { ...at, gateway: false };
}

function translate(filter: Resource<"EnvoyFilter">, found: Found, index: number, diag: Diagnostics): { rule: RateLimitRuleDef | undefined; match: PolicyCheckDef[] } | undefined {
  const { config, configPath } = found;
  const at = (...field: (string | number)[]) => [...configPath, ...field];
  const errorsBefore = diag.problems.filter((p) => p.severity === "error").length;

  const bucket = record(config.token_bucket);
  if (!bucket) {
    // Istio's "disabled here, enabled per route" pattern: the filter-level config has no bucket.
    if (found.level !== "filter") diag.error(filter, at(), "expected a token_bucket: per-route local rate limit configuration without one limits nothing");
    return undefined;
  }
  const maxTokens = bucket.max_tokens;
  const tokensPerFill = bucket.tokens_per_fill ?? 1;
  const fillMs = protoDurationMs(bucket.fill_interval);
  if (!isCount(maxTokens) || maxTokens < 1) diag.error(filter, at("token_bucket", "max_tokens"), "expected a whole number of at least 1");
  if (!isCount(tokensPerFill) || tokensPerFill < 1) diag.error(filter, at("token_bucket", "tokens_per_fill"), "expected a whole number of at least 1");
  if (fillMs === undefined || fillMs < MIN_FILL_INTERVAL_MS) diag.error(filter, at("token_bucket", "fill_interval"), "expected a duration of at least 50ms (Envoy's minimum), such as 1s or 60s");

  const enabled = percent(config.filter_enabled);
  const enforced = percent(config.filter_enforced);
  for (const [field, value] of [["filter_enabled", enabled], ["filter_enforced", enforced]] as const) {
    if (value > 0 && value < 100) diag.warn(filter, at(field), `partial ${field} (${value}%) has no edge equivalent; treated as 100%`);
  }

  const descriptors = config.descriptors;
  if (Array.isArray(descriptors) && descriptors.length > 0) {
    diag.error(filter, at("descriptors"), "descriptors need the route's rate_limits actions, which do not exist at the edge; write a RateLimitPolicy rule with match/when and key parts instead (docs/CONFIG.md)");
  }
  if (config.local_cluster_rate_limit !== undefined) {
    diag.error(filter, at("local_cluster_rate_limit"), "shares one bucket across the gateway's replicas; an edge gateway has an unknown number of isolates: write a GLOBAL RateLimitPolicy rule for a shared limit");
  }
  if (config.local_rate_limit_per_downstream_connection === true) {
    diag.warn(filter, at("local_rate_limit_per_downstream_connection"), "a Worker does not see client connections; the bucket is kept per isolate instead");
  }
  const status = record(config.status)?.code;
  if (status !== undefined && status !== 429 && status !== "TooManyRequests") diag.warn(filter, at("status"), "Isthmus always answers 429; the status is ignored");
  for (const field of ["request_headers_to_add_when_not_enforced", "rate_limited_as_resource_exhausted", "vh_rate_limits"]) {
    if (config[field] !== undefined) diag.warn(filter, at(field), "is not translated; ignored");
  }
  for (const field of Object.keys(config)) {
    if (KNOWN.has(field) || NO_EFFECT.has(field)) continue;
    diag.warn(filter, at(field), "is not a LocalRateLimit field Isthmus translates; ignored");
  }

  const { match, key } = scopeOf(filter, found, diag);
  if (diag.problems.filter((p) => p.severity === "error").length > errorsBefore) return undefined;
  if (enabled === 0) {
    if (found.level === "filter") diag.warn(filter, at("filter_enabled"), "is 0% (Envoy's default when unset), so this local rate limit does nothing; set it to 100%");
    else diag.warn(filter, at("filter_enabled"), `is 0% (Envoy's default when unset): these ${found.level === "route" ? "routes" : "hosts"} are not limited, not even by a less specific configuration of this local rate limit; set it to 100% to limit them`);
    return { rule: undefined, match };
  }

  const onLimited: [string, string][] = [];
  const toAdd = Array.isArray(config.response_headers_to_add) ? config.response_headers_to_add : [];
  toAdd.forEach((h, i) => {
    const header = record(record(h)?.header);
    const name = header?.key;
    const value = header?.value;
    if (typeof name !== "string" || typeof value !== "string") return;
    if (value.includes("%")) diag.warn(filter, at("response_headers_to_add", i, "header", "value"), "Envoy %COMMAND% operators are not supported; the value is sent as written");
    onLimited.push([name.toLowerCase(), value]);
  });
  const draft = config.enable_x_ratelimit_headers === "DRAFT_VERSION_03";
  const name = typeof config.stat_prefix === "string" && config.stat_prefix ? config.stat_prefix : "local_rate_limit";
  const rule: RateLimitRuleDef = {
    source: filter.id,
    name,
    // Prefixed with the kind: a RateLimitPolicy of the same namespace and name may have a rule named `configPatches[0]`.
    id: `${filter.id}/configPatches[${index}]`,
    match,
    when: [],
    key,
    missingKey: "SHARED",
    limits: [{ requests: tokensPerFill as number, windowMs: fillMs as number, burst: maxTokens as number }],
    overrides: [],
    scope: "LOCAL",
    mode: enforced === 0 ? "SHADOW" : "ENFORCE",
    failureMode: "OPEN",
    timeoutMs: RATE_LIMIT_DEFAULTS.decisionTimeoutMs,
    algorithm: "TOKEN_BUCKET",
    headers: { format: draft ? "DRAFT_VERSION_03" : "NONE", onAllowed: draft },
  };
  if (onLimited.length) rule.headers.onLimited = onLimited;
  return { rule, match };
}

const KNOWN = new Set([
  "token_bucket",
  "filter_enabled",
  "filter_enforced",
  "descriptors",
  "local_cluster_rate_limit",
  "local_rate_limit_per_downstream_connection",
  "status",
  "request_headers_to_add_when_not_enforced",
  "rate_limited_as_resource_exhausted",
  "vh_rate_limits",
  "enable_x_ratelimit_headers",
  "response_headers_to_add",
]);

/** Per-route and per-host patches: one bucket per route (host), narrowed by the patch's route and virtual host names. */
function scopeOf(filter: Resource<"EnvoyFilter">, found: Found, diag: Diagnostics): { match: PolicyCheckDef[]; key: KeyPartDef[] } {
  if (found.level === "filter") return { match: [], key: [] };
  const match: PolicyCheckDef[] = [];
  const vhost = record(record(found.match.routeConfiguration)?.vhost);
  const vhostPath = [...found.matchPath, "routeConfiguration", "vhost"];
  const vhostName = vhost?.name;
  // Gateway virtual hosts are named `<host>:<port>`; sidecar ones `inbound|http|<port>`, which the selector already covers.
  if (typeof vhostName === "string" && !vhostName.startsWith("inbound|") && !vhostName.startsWith("outbound|")) {
    const host = vhostName.replace(/:\d+$/, "");
    match.push({ attribute: "request.host", values: host === "*" ? ["*"] : [host, `${host}:*`] });
  }
  const route = record(vhost?.route);
  if (route) {
    if (typeof route.name === "string" && route.name) match.push({ attribute: "route.name", values: [route.name] });
    if (route.action !== undefined && route.action !== "ANY") {
      diag.error(filter, [...vhostPath, "route", "action"], `route.action ${String(route.action)} has no edge equivalent; use ANY with a route name, or a RateLimitPolicy with match.routes`);
    }
  }
  return { match, key: found.level === "route" ? [{ attribute: "route" }] : [{ attribute: "request.host" }] };
}

/** Envoy's FractionalPercent / RuntimeFractionalPercent default_value, in percent (unset: 0, Envoy's default). */
function percent(value: unknown): number {
  const fraction = record(record(value)?.default_value);
  if (!fraction) return 0;
  const numerator = Number(fraction.numerator ?? 0);
  const denominator = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 }[String(fraction.denominator ?? "HUNDRED")] ?? 100;
  return Math.min(100, (numerator / denominator) * 100);
}

/** A proto JSON duration (`"60s"`, `"0.5s"`), a Go-style one (`"1m"`), or `{seconds, nanos}`. */
function protoDurationMs(value: unknown): number | undefined {
  if (typeof value === "string" && DURATION_PATTERN.test(value)) return durationMs(value);
  const r = record(value);
  if (r && (r.seconds !== undefined || r.nanos !== undefined)) return Number(r.seconds ?? 0) * 1000 + Number(r.nanos ?? 0) / 1e6;
  return undefined;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

function record(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
