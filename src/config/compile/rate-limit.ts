/**
 * RateLimitPolicy → the Snapshot's `rateLimits` part. Each rule becomes a
 * RateLimitRuleDef: its `match` and `when` compiled with the
 * AuthorizationPolicy vocabulary (policy-checks.ts), its key parts, limits
 * and overrides checked, defaults filled in. Rules are then mapped onto
 * traffic with the edge mapping the security kinds use (root namespace →
 * all traffic, another namespace → its services, a selector → matching
 * destinations or the gateway itself), giving each cluster its scope.
 */
import { isRequestHeaderName } from "../../gateway/request-header.ts";
import { formatPath } from "../problems.ts";
import { durationMs } from "../duration.ts";
import type { ClusterDef, KeyPartDef, LimitDef, OverrideDef, PolicyCheckDef, RateLimitDef, RateLimitRuleDef } from "../snapshot.ts";
import type { RateLimitRule } from "../schema/isthmus.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { bracketed, check, conditionCheck, isUnusable, operationChecks } from "./policy-checks.ts";
import { attachment, distinctScopes, gatewayLabels, type Attachment } from "./security-targets.ts";
import { translateEnvoyFilters } from "./envoy-filter.ts";
import { RATE_LIMIT_DEFAULTS, UNIT_MS } from "./rate-limit-defaults.ts";
import type { ServiceRegistry } from "./services.ts";

/** Upper bound of `decisionTimeout`: a request should not wait longer on a limiter. */
const MAX_DECISION_TIMEOUT_MS = 30_000;
const MIN_LEASE_TTL_MS = 10;
const MAX_LEASE_TTL_MS = 60_000;

export interface RateLimitInputs {
  policies: Resource<"RateLimitPolicy">[];
  gatewayConfig: Resource<"GatewayConfig"> | undefined;
  gateways: Resource<"Gateway">[];
  rootNamespace: string;
  services: ServiceRegistry;
  /** Names of the routes in the snapshot, to catch misspelt `match.routes`. */
  routeNames: ReadonlySet<string>;
  /** EnvoyFilters: their local_ratelimit patches become LOCAL rules. */
  envoyFilters: Resource<"EnvoyFilter">[];
}

export function compileRateLimits(inputs: RateLimitInputs, diag: Diagnostics): RateLimitDef | undefined {
  const clusters = Object.values(inputs.services.clusters);
  const labels = gatewayLabels(inputs.gatewayConfig, inputs.gateways);
  const rules: RateLimitRuleDef[] = [];
  const attachments: Attachment[] = [];
  const ids = new Map<string, RuleOrigin>();
  const add = (rule: RateLimitRuleDef, at: Attachment, origin: RuleOrigin) => {
    if (!uniqueId(rule, origin, ids, diag)) return;
    rules.push(rule);
    attachments.push(at);
  };
  for (const policy of inputs.policies) {
    const at = attachment(policy, inputs.rootNamespace, labels, clusters, diag);
    for (const rule of compileRateLimitPolicy(policy, inputs.routeNames, diag)) {
      const index = policy.spec.rules?.findIndex((r) => r.name === rule.name) ?? -1;
      add(rule, at, { resource: policy, path: ["spec", "rules", index, "name"], where: `${policy.id} spec.rules[${index}]` });
    }
  }
  for (const t of translateEnvoyFilters(inputs.envoyFilters, inputs.rootNamespace, labels, clusters, diag)) {
    add(t.rule, t.attachment, { resource: t.resource, path: t.path, where: `${t.resource.id} ${formatPath(t.path)}` });
  }
  if (rules.length === 0) return undefined;

  const gateway = rules.map((_, i) => i).filter((i) => attachments[i]?.all === true || attachments[i]?.gateway === true);
  return { rules, ...distinctScopes(gateway, clusters, (cluster) => clusterRules(cluster, gateway, attachments)) };
}

/** Where a rule was written: the resource and field its problems are reported on, and how a message names it. */
interface RuleOrigin {
  resource: Resource<"RateLimitPolicy"> | Resource<"EnvoyFilter">;
  path: FieldPath;
  where: string;
}

/**
 * True when no rule compiled before has `rule`'s id, and the id holds no
 * control character (the isolate's name cache groups keys by id and id +
 * NUL, key.ts); otherwise reports the rule, which is left out. Ids name
 * buckets: two rules with one id would count in each other's buckets.
 * RateLimitPolicy ids are `<ns>/<policy>/<rule>` and EnvoyFilter ones
 * `EnvoyFilter/<ns>/<name>/configPatches[<i>]`, so only names with
 * slashes can meet.
 */
function uniqueId(rule: RateLimitRuleDef, origin: RuleOrigin, ids: Map<string, RuleOrigin>, diag: Diagnostics): boolean {
  if (CONTROL.test(rule.id)) {
    // A rule name with one is reported where it is written (compileRateLimitPolicy); this is the namespace or name.
    diag.error(origin.resource, ["metadata"], `expected a namespace and name without control characters, got ${printable(rule.id)}: they are part of the id of every rule's buckets`);
    return false;
  }
  const seen = ids.get(rule.id);
  if (seen) {
    diag.error(origin.resource, origin.path, `this rule's id ${JSON.stringify(rule.id)} is also the id of ${seen.where}; rules with one id would share their buckets: rename one of them`);
    return false;
  }
  ids.set(rule.id, origin);
  return true;
}

/** Control characters (Unicode Cc: C0, DEL, C1). */
const CONTROL = /\p{Cc}/u;

/** `text` quoted, with control characters escaped (JSON leaves DEL and C1 raw). */
function printable(text: string): string {
  return JSON.stringify(text).replace(/\p{Cc}/gu, (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, "0")}`);
}

function clusterRules(cluster: ClusterDef, gateway: number[], attachments: Attachment[]): number[] {
  const out = new Set(gateway);
  attachments.forEach((at, i) => {
    if (at.all || at.cluster(cluster)) out.add(i);
  });
  return [...out].sort((a, b) => a - b);
}

/** The rules of one policy; rules with errors are reported and left out. */
export function compileRateLimitPolicy(policy: Resource<"RateLimitPolicy">, routeNames: ReadonlySet<string>, diag: Diagnostics): RateLimitRuleDef[] {
  const out: RateLimitRuleDef[] = [];
  const names = new Map<string, number>();
  const headers = {
    format: policy.spec.responseHeaders?.format ?? "IETF",
    onAllowed: policy.spec.responseHeaders?.onAllowed ?? false,
  } as const;
  policy.spec.rules?.forEach((rule, i) => {
    const at: FieldPath = ["spec", "rules", i];
    const seen = names.get(rule.name);
    if (seen !== undefined) {
      diag.error(policy, [...at, "name"], `duplicate rule name "${rule.name}" (also spec.rules[${seen}].name); rule names identify buckets and quota policies`);
      return;
    }
    names.set(rule.name, i);
    if (CONTROL.test(rule.name)) {
      diag.error(policy, [...at, "name"], `expected a rule name without control characters, got ${printable(rule.name)}: the name is part of the bucket's identity and of response fields`);
      return;
    }
    const errorsBefore = countErrors(diag);
    const def = compileRule(policy, rule, at, routeNames, diag);
    if (countErrors(diag) > errorsBefore) return;
    out.push({ ...def, headers: { ...headers } });
  });
  if (!policy.spec.rules?.length) diag.warn(policy, ["spec"], "has no rules; it limits nothing");
  return out;
}

function countErrors(diag: Diagnostics): number {
  return diag.problems.filter((p) => p.severity === "error").length;
}

function compileRule(policy: Resource<"RateLimitPolicy">, rule: RateLimitRule, at: FieldPath, routeNames: ReadonlySet<string>, diag: Diagnostics): Omit<RateLimitRuleDef, "headers"> {
  // `hosts: [api.example.com]` also holds for `Host: api.example.com:80`: AuthorizationPolicy's rule (a Host
  // with a port only matches a value with that port) would let any client step around a limit by naming a port.
  const match: PolicyCheckDef[] = (rule.match ? operationChecks(policy, rule.match, [...at, "match"], diag) : []).map((c) =>
    c.attribute === "request.host" ? { ...c, attribute: "request.hostname" } : c,
  );
  const routes = check("route.name", rule.match?.routes, rule.match?.notRoutes);
  if (routes) {
    match.push(routes);
    for (const [field, values] of [["routes", rule.match?.routes], ["notRoutes", rule.match?.notRoutes]] as const) {
      for (const v of values ?? []) {
        if (!v.includes("*") && !routeNames.has(v)) {
          diag.warn(policy, [...at, "match", field], `no route is named "${v}" (route names are VirtualService http[].name, plus "." and the match name when both are set)`);
        }
      }
    }
  }

  const when: PolicyCheckDef[] = [];
  rule.when?.forEach((c, i) => {
    const path = [...at, "when", i];
    const compiled = conditionCheck(policy, c.key, c.values, c.notValues, path, diag);
    if (isUnusable(compiled)) diag.error(policy, [...path, "key"], `${compiled.unusable}; a rate limit cannot depend on it`);
    else if (compiled) when.push(compiled);
  });

  const key: KeyPartDef[] = [];
  rule.key?.forEach((text, i) => {
    const part = keyPart(text);
    if (part) key.push(part);
    else diag.error(policy, [...at, "key", i], `unknown key part "${text}"; expected one of ${KEY_PARTS}`);
  });

  const limits = compileLimits(policy, rule.limits, [...at, "limits"], diag);
  const overrides: OverrideDef[] = [];
  rule.overrides?.forEach((o, i) => {
    const path = [...at, "overrides", i];
    if (key.length === 0) {
      diag.error(policy, path, "overrides need a key: they give other limits to some values of a key part");
      return;
    }
    let part = 0;
    if (o.part !== undefined) {
      part = (rule.key ?? []).indexOf(o.part);
      if (part < 0) {
        diag.error(policy, [...path, "part"], `expected one of this rule's key parts (${(rule.key ?? []).join(", ")}), got "${o.part}"`);
        return;
      }
    }
    overrides.push({ part, values: o.values, limits: compileLimits(policy, o.limits, [...path, "limits"], diag) });
  });

  const scope = rule.scope ?? "GLOBAL";
  let timeoutMs: number = RATE_LIMIT_DEFAULTS.decisionTimeoutMs;
  if (rule.decisionTimeout !== undefined) {
    timeoutMs = durationMs(rule.decisionTimeout);
    if (timeoutMs < 1 || timeoutMs > MAX_DECISION_TIMEOUT_MS) diag.error(policy, [...at, "decisionTimeout"], "expected a duration between 1ms and 30s");
  }
  if (scope === "LOCAL") {
    for (const field of ["failureMode", "decisionTimeout"] as const) {
      if (rule[field] !== undefined) diag.warn(policy, [...at, field], `has no effect on a LOCAL rule: it is decided in the isolate, which cannot fail or time out`);
    }
  }

  const def: Omit<RateLimitRuleDef, "headers"> = {
    source: policy.id,
    name: rule.name,
    id: `${policy.namespace}/${policy.name}/${rule.name}`,
    match,
    when,
    key,
    missingKey: rule.missingKey ?? "SKIP",
    limits,
    overrides,
    scope,
    mode: rule.mode ?? "ENFORCE",
    failureMode: rule.failureMode ?? "OPEN",
    timeoutMs,
    algorithm: rule.algorithm ?? "TOKEN_BUCKET",
  };

  const lease = rule.lease;
  if (lease && lease.enabled !== false) {
    if (scope === "LOCAL") {
      diag.error(policy, [...at, "lease"], "leases batch a GLOBAL rule's Durable Object calls; a LOCAL rule is already decided in the isolate");
    } else {
      const size = lease.size ?? RATE_LIMIT_DEFAULTS.leaseSize;
      const ttlMs = lease.ttl !== undefined ? durationMs(lease.ttl) : RATE_LIMIT_DEFAULTS.leaseTtlMs;
      if (size < 1) diag.error(policy, [...at, "lease", "size"], "expected at least 1 token per lease");
      if (ttlMs < MIN_LEASE_TTL_MS || ttlMs > MAX_LEASE_TTL_MS) diag.error(policy, [...at, "lease", "ttl"], "expected a duration between 10ms and 60s");
      const smallest = Math.min(...[...limits, ...overrides.flatMap((o) => o.limits)].filter((l) => l.requests > 0).map((l) => l.burst));
      if (Number.isFinite(smallest) && size > smallest) {
        diag.error(policy, [...at, "lease", "size"], `expected at most the smallest burst (${smallest}): a lease cannot hold more tokens than the bucket`);
      } else if (Number.isFinite(smallest) && size * 4 > smallest) {
        diag.warn(policy, [...at, "lease", "size"], `each isolate may hold up to ${size} tokens, more than a quarter of the smallest burst (${smallest}); other isolates may be refused while those tokens sit unused (see lease mode in docs/CONFIG.md)`);
      }
      def.lease = { size, ttlMs };
    }
  }
  return def;
}

function compileLimits(policy: Resource<"RateLimitPolicy">, limits: RateLimitRule["limits"], path: FieldPath, diag: Diagnostics): LimitDef[] {
  return limits.map((l, i) => {
    if (l.requests === 0 && l.burst !== undefined) diag.error(policy, [...path, i, "burst"], "requests: 0 blocks every request; a burst has no meaning with it");
    return { requests: l.requests, windowMs: UNIT_MS[l.unit], burst: l.requests === 0 ? 0 : (l.burst ?? l.requests) };
  });
}

const KEY_PARTS = "remote.ip, request.headers[<name>] (a header name, or :authority, :path, :method or :scheme), request.auth.principal, request.auth.claims[<claim>] (nested: [<a>][<b>]), request.host, request.method, request.path, route";

/** A key part as written (`request.headers[x-api-key]`) → its definition; undefined when unknown. */
export function keyPart(text: string): KeyPartDef | undefined {
  switch (text) {
    case "remote.ip":
    case "source.ip":
      return { attribute: "remote.ip" };
    case "request.auth.principal":
    case "request.host":
    case "request.method":
    case "request.path":
    case "route":
      return { attribute: text };
    default:
      break;
  }
  if (text.startsWith("request.headers")) {
    const names = bracketed(text.slice("request.headers".length));
    const name = names?.length === 1 ? (names[0] as string).toLowerCase() : undefined;
    return name !== undefined && isRequestHeaderName(name) ? { attribute: "request.headers", key: name } : undefined;
  }
  if (text.startsWith("request.auth.claims")) {
    const names = bracketed(text.slice("request.auth.claims".length));
    return names ? { attribute: "request.auth.claims", key: names } : undefined;
  }
  return undefined;
}
