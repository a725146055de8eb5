/**
 * GatewayConfig `extensionProviders[].opentelemetry` + `telemetry`, and the
 * Istio Telemetry kind → the Snapshot's `telemetry` part.
 *
 * Telemetry resources are mapped onto traffic with the security kinds'
 * attachment (security-targets.ts) and merged as Istio merges the
 * Telemetries of one proxy (pilot/pkg/model/telemetry.go), in this order,
 * later levels overriding earlier ones:
 *
 *   1. root namespace, no selector        (every request)
 *   2. selecting the gateway's own labels  (every request)
 *   3. the destination's namespace, no selector
 *   4. a selector / targetRef matching the destination
 *
 * One resource per level, the oldest (creationTimestamp, then file order),
 * as in Istio. A gateway reports as a client (Istio's CLIENT workload
 * mode), so entries matching only SERVER do not apply.
 *
 * Istio's `defaultProviders` become the providers' `signals`: a provider
 * receives the signals it lists unless a Telemetry names other providers.
 */
import { byCreationTime } from "./creation-order.ts";
import { durationMs } from "../duration.ts";
import type {
  AccessLogPlanDef,
  ClusterDef,
  CustomTagDef,
  IstioMetric,
  MetricsPlanDef,
  OtlpProviderDef,
  Propagator,
  Signal,
  TagOverrideDef,
  TelemetryDef,
  TelemetryPlanDef,
  TracingPlanDef,
} from "../snapshot.ts";
import type { TelemetrySpec } from "../schema/telemetry.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { attachment, gatewayLabels, type Attachment } from "./security-targets.ts";
import type { ServiceRegistry } from "./services.ts";
import { isHttpToken } from "../../gateway/request-header.ts";
import { parseExpression } from "../../telemetry/expression.ts";
import { ISTHMUS_METRICS } from "../../telemetry/metric-names.ts";

type T = Resource<"Telemetry">;

export interface TelemetryInputs {
  telemetries: T[];
  gatewayConfig: Resource<"GatewayConfig"> | undefined;
  gateways: Resource<"Gateway">[];
  rootNamespace: string;
  services: ServiceRegistry;
}

/** Defaults, documented in docs/CONFIG.md (GatewayConfig `telemetry`). */
export const TELEMETRY_DEFAULTS = {
  flushIntervalMs: 5_000,
  flushRequests: 500,
  maxSeries: 2_000,
  exportRetries: 2,
  timeoutMs: 10_000,
  /** Istio's default sampling (PILOT_TRACE_SAMPLING=1.0 percent). */
  samplingPercent: 1,
  signals: ["traces", "metrics"] as Signal[],
  propagators: ["tracecontext"] as Propagator[],
} as const;

/** waitUntil gives ~30 s after the response; a flush (and its retries) must fit in it. */
const MAX_FLUSH_INTERVAL_MS = 25_000;
const MAX_EXPORT_TIMEOUT_MS = 25_000;

const ALL_ISTIO: IstioMetric[] = ["REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE"];
const IGNORED_METRICS = new Set(["TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"]);

/** Istio's built-in providers: `envoy` writes access logs to stdout; `prometheus` is the default metrics provider. */
const ENVOY = "envoy";
const PROMETHEUS = "prometheus";

export function compileTelemetry(inputs: TelemetryInputs, diag: Diagnostics): TelemetryDef | undefined {
  const config = inputs.gatewayConfig;
  const providers = compileProviders(config, diag);
  const settings = compileTelemetrySettings(config, inputs.rootNamespace, diag);
  const clusters = Object.values(inputs.services.clusters);
  const levels = new Levels(inputs, clusters, diag);
  const names = new Map(providers.map((p, i) => [p.name.toLowerCase(), i]));
  const otherProviders = new Set((config?.spec.extensionProviders ?? []).filter((p) => !p.opentelemetry).map((p) => p.name.toLowerCase()));
  const merger = new PlanMerger(providers, names, otherProviders, diag);
  if (providers.length === 0) {
    for (const t of inputs.telemetries) {
      if ((t.spec.tracing?.length ?? 0) > 0) {
        diag.warn(t, ["spec", "tracing"], "has no effect: GatewayConfig defines no opentelemetry provider (extensionProviders[].opentelemetry) to send spans to");
      }
      if ((t.spec.metrics?.length ?? 0) > 0) {
        diag.warn(
          t,
          ["spec", "metrics"],
          "applies only to the Prometheus endpoint of `isthmus serve --metrics-port`: GatewayConfig defines no opentelemetry provider (extensionProviders[].opentelemetry) to send metrics to, which a gateway on Cloudflare needs",
        );
      }
    }
  }

  const plans: TelemetryPlanDef[] = [];
  const keys = new Map<string, number>();
  const planOf = (chain: T[]): number => {
    const plan = merger.merge(chain);
    const key = JSON.stringify(plan);
    let index = keys.get(key);
    if (index === undefined) {
      index = plans.push(plan) - 1;
      keys.set(key, index);
    }
    return index;
  };
  planOf(levels.gatewayChain());
  const clusterPlans: Record<string, number> = {};
  for (const cluster of clusters) {
    const index = planOf(levels.chainFor(cluster));
    if (index !== 0) clusterPlans[cluster.name] = index;
  }

  const active = plans.some((p) => p.tracing || p.metrics.providers.length > 0 || p.metrics.prometheus || p.accessLog.console || p.accessLog.providers.length > 0);
  if (!active) return undefined;
  return { providers, settings, plans, clusterPlans };
}

function compileProviders(config: Resource<"GatewayConfig"> | undefined, diag: Diagnostics): OtlpProviderDef[] {
  const out: OtlpProviderDef[] = [];
  const seen = new Set<string>();
  config?.spec.extensionProviders?.forEach((p, i) => {
    const at: FieldPath = ["spec", "extensionProviders", i];
    const lower = p.name.toLowerCase();
    if (seen.has(lower)) diag.error(config, [...at, "name"], `duplicate provider name "${p.name}" (names are compared case-insensitively, as Istio does)`);
    seen.add(lower);
    const otel = p.opentelemetry;
    if (!otel) return;
    if (lower === ENVOY || lower === PROMETHEUS) diag.error(config, [...at, "name"], `"${p.name}" is the name of an Istio built-in provider; choose another name`);
    if (!/^https?:\/\//i.test(otel.endpoint)) diag.error(config, [...at, "opentelemetry", "endpoint"], "expected an http:// or https:// URL (OTLP/HTTP)");
    const headers: [string, string][] = [];
    otel.headers?.forEach((h, j) => {
      if (!isHttpToken(h.name)) diag.error(config, [...at, "opentelemetry", "headers", j, "name"], `expected an HTTP header name, got "${h.name}"`);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(h.secret)) {
        diag.error(config, [...at, "opentelemetry", "headers", j, "secret"], `expected the name of a Worker secret (letters, digits, _), got "${h.secret}"; the value itself never goes in the YAML`);
      }
      headers.push([h.name.toLowerCase(), h.secret]);
    });
    let timeoutMs: number = TELEMETRY_DEFAULTS.timeoutMs;
    if (otel.timeout !== undefined) {
      timeoutMs = durationMs(otel.timeout);
      if (timeoutMs < 1 || timeoutMs > MAX_EXPORT_TIMEOUT_MS) diag.error(config, [...at, "opentelemetry", "timeout"], "expected a duration between 1ms and 25s (exports run in waitUntil, which ends ~30 s after the response)");
    }
    out.push({
      name: p.name,
      endpoint: otel.endpoint.replace(/\/+$/, ""),
      protocol: otel.protocol ?? "http/protobuf",
      headers,
      timeoutMs,
      signals: otel.signals ? [...new Set(otel.signals)] : [...TELEMETRY_DEFAULTS.signals],
    });
  });
  return out;
}

function compileTelemetrySettings(config: Resource<"GatewayConfig"> | undefined, rootNamespace: string, diag: Diagnostics): TelemetryDef["settings"] {
  const spec = config?.spec.telemetry ?? {};
  const at: FieldPath = ["spec", "telemetry"];
  const fail = (field: string, message: string) => config && diag.error(config, [...at, field], message);
  const resourceAttributes = { "service.name": "isthmus", ...spec.resourceAttributes };
  let flushIntervalMs: number = TELEMETRY_DEFAULTS.flushIntervalMs;
  if (spec.flushInterval !== undefined) {
    flushIntervalMs = durationMs(spec.flushInterval);
    if (flushIntervalMs < 1000 || flushIntervalMs > MAX_FLUSH_INTERVAL_MS) fail("flushInterval", "expected a duration between 1s and 25s (a flush runs in the waitUntil of a request, which ends ~30 s after its response)");
  }
  const flushRequests = spec.flushRequests ?? TELEMETRY_DEFAULTS.flushRequests;
  if (flushRequests < 1) fail("flushRequests", "expected at least 1");
  const maxSeries = spec.maxSeries ?? TELEMETRY_DEFAULTS.maxSeries;
  if (maxSeries < 10 || maxSeries > 100_000) fail("maxSeries", "expected between 10 and 100000 (series are held in the isolate's memory)");
  const exportRetries = spec.exportRetries ?? TELEMETRY_DEFAULTS.exportRetries;
  if (exportRetries > 5) fail("exportRetries", "expected at most 5 (retries must fit in the ~30 s waitUntil gives after a response)");
  return {
    resourceAttributes,
    flushIntervalMs,
    flushRequests,
    maxSeries,
    exportRetries,
    propagators: spec.propagators && spec.propagators.length > 0 ? [...new Set(spec.propagators)] : [...TELEMETRY_DEFAULTS.propagators],
    sourceWorkload: resourceAttributes["service.name"],
    sourceNamespace: config?.namespace ?? rootNamespace,
  };
}

/** The Telemetry resources of each precedence level, oldest first, one per level. */
class Levels {
  private root?: T;
  private gateway?: T;
  private readonly namespaces = new Map<string, T>();
  private readonly workloads: { t: T; at: Attachment }[] = [];

  constructor(inputs: TelemetryInputs, clusters: readonly ClusterDef[], diag: Diagnostics) {
    const labels = gatewayLabels(inputs.gatewayConfig, inputs.gateways);
    // Istio's order: oldest first, then name, then namespace (not the order of the files).
    const ordered = inputs.telemetries.slice().sort(byCreationTime);
    const older = (t: T, kept: T, level: string) => diag.warn(t, ["metadata", "name"], `ignored: ${kept.id} is the older ${level} Telemetry (Istio applies only the oldest one per level)`);
    for (const t of ordered) {
      const at = attachment(t, inputs.rootNamespace, labels, clusters, diag);
      if (at.all) {
        if (this.root) older(t, this.root, "mesh-wide (root namespace)");
        else this.root = t;
      } else if (at.gateway) {
        if (this.gateway) older(t, this.gateway, "gateway-selecting");
        else this.gateway = t;
      } else if (at.namespaceWide) {
        const kept = this.namespaces.get(t.namespace);
        if (kept) older(t, kept, `namespace ${t.namespace}`);
        else this.namespaces.set(t.namespace, t);
      } else {
        this.workloads.push({ t, at });
      }
    }
  }

  gatewayChain(): T[] {
    return [this.root, this.gateway].filter((t): t is T => t !== undefined);
  }

  chainFor(cluster: ClusterDef): T[] {
    const workload = this.workloads.find((w) => w.at.cluster(cluster))?.t;
    return [this.root, this.gateway, this.namespaces.get(cluster.namespace), workload].filter((t): t is T => t !== undefined);
  }
}

/** Prometheus label names; Istio's tag names (`request_host`, `source_principal`, …) are all of them. */
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Why a tag override's name cannot be a metric label, or undefined when it
 * can. A label Prometheus refuses fails the whole scrape of `isthmus serve
 * --metrics-port` (every metric lost), and a name such as `source.principal`
 * would be sanitised into a duplicate of Istio's `source_principal`.
 */
function labelNameProblem(name: string): string | undefined {
  if (!LABEL_NAME.test(name)) return `expected a Prometheus label name (letters, digits and _, not starting with a digit), got ${JSON.stringify(name)}`;
  if (name === "le") return `"le" is the bucket label of Prometheus histograms; choose another name`;
  if (name.startsWith("__")) return `names starting with "__" are reserved by Prometheus; choose another name`;
  return undefined;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Merges a chain of Telemetry resources into a plan, following pilot/pkg/model/telemetry.go. */
class PlanMerger {
  private readonly reported = new Set<string>();
  private readonly providers: OtlpProviderDef[];
  private readonly names: Map<string, number>;
  private readonly otherProviders: Set<string>;
  private readonly diag: Diagnostics;

  constructor(providers: OtlpProviderDef[], names: Map<string, number>, otherProviders: Set<string>, diag: Diagnostics) {
    this.providers = providers;
    this.names = names;
    this.otherProviders = otherProviders;
    this.diag = diag;
  }

  merge(chain: T[]): TelemetryPlanDef {
    const plan: TelemetryPlanDef = { metrics: this.metrics(chain), accessLog: this.accessLog(chain) };
    const tracing = this.tracing(chain);
    if (tracing) plan.tracing = tracing;
    return plan;
  }

  private defaults(signal: Signal): number[] {
    return this.providers.flatMap((p, i) => (p.signals.includes(signal) ? [i] : []));
  }

  /** Once per (resource, field): problems are reported when a resource is first merged. */
  private once(t: T, path: FieldPath, report: () => void): void {
    const key = `${t.id}|${path.join(".")}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    report();
  }

  private serverOnly(t: T, mode: string | undefined, path: FieldPath): boolean {
    if (mode !== "SERVER") return false;
    this.once(t, path, () => this.diag.warn(t, path, "applies to SERVER only; a gateway reports as a client (Istio's CLIENT mode), so this entry has no effect at the edge"));
    return true;
  }

  /** Provider names → provider indexes for a signal (unknown names are reported and dropped). */
  private resolve(t: T, refs: { name: string }[] | undefined, signal: Signal, path: FieldPath): { named: boolean; indexes: number[]; envoy: boolean; prometheus: boolean } {
    if (!refs || refs.length === 0) return { named: false, indexes: [], envoy: false, prometheus: false };
    const indexes: number[] = [];
    let envoy = false;
    let prometheus = false;
    refs.forEach((ref, i) => {
      const lower = ref.name.toLowerCase();
      const index = this.names.get(lower);
      if (index !== undefined) indexes.push(index);
      else if (lower === ENVOY && signal === "logs") envoy = true;
      else if (lower === PROMETHEUS && signal === "metrics") {
        // The scrape endpoint where there is one (isthmus serve), and the providers that list metrics.
        prometheus = true;
        indexes.push(...this.defaults("metrics"));
      }
      else {
        const why = this.otherProviders.has(lower)
          ? `"${ref.name}" is not an opentelemetry provider`
          : `GatewayConfig defines no opentelemetry provider named "${ref.name}"${signal === "logs" ? ` (Istio's built-in "${ENVOY}" writes access logs to the console)` : signal === "metrics" ? ` ("${PROMETHEUS}" means the providers that list the metrics signal)` : ""}`;
        // Istio drops the name but the entry still replaces the default providers: with no other provider, the signal is off.
        const off = `this entry still replaces the default providers (as in Istio), so unless it names another provider that exists, ${signal === "traces" ? "tracing" : signal === "metrics" ? "metrics reporting" : "access logging"} is off for the traffic it covers`;
        this.once(t, [...path, i, "name"], () => this.diag.warn(t, [...path, i, "name"], `${why}; ${off}`));
      }
    });
    return { named: true, indexes: [...new Set(indexes)], envoy, prometheus };
  }

  private tracing(chain: T[]): TracingPlanDef | undefined {
    let provider: number | undefined = this.defaults("traces")[0];
    let disabled = false;
    let samplingPercent: number = TELEMETRY_DEFAULTS.samplingPercent;
    let customTags: CustomTagDef[] = [];
    for (const t of chain) {
      t.spec.tracing?.forEach((entry, i) => {
        const at: FieldPath = ["spec", "tracing", i];
        if (this.serverOnly(t, entry.match?.mode, [...at, "match", "mode"])) return;
        const resolved = this.resolve(t, entry.providers, "traces", [...at, "providers"]);
        // Istio uses the first named provider; one it cannot find leaves tracing without a provider.
        if (resolved.named) provider = resolved.indexes[0];
        if (resolved.indexes.length > 1 || (entry.providers?.length ?? 0) > 1) {
          this.once(t, [...at, "providers"], () => this.diag.warn(t, [...at, "providers"], "only the first provider receives spans (as in Istio)"));
        }
        if (entry.disableSpanReporting !== undefined) disabled = entry.disableSpanReporting;
        if (entry.randomSamplingPercentage !== undefined) samplingPercent = entry.randomSamplingPercentage;
        if (entry.customTags !== undefined) customTags = this.customTags(t, entry.customTags, [...at, "customTags"]);
      });
    }
    if (provider === undefined) return undefined;
    const plan: TracingPlanDef = { provider, samplingPercent, customTags };
    // Istio: disableSpanReporting "does NOT impact context propagation or trace sampling behavior".
    if (disabled) plan.reportSpans = false;
    return plan;
  }

  private customTags(t: T, tags: NonNullable<NonNullable<TelemetrySpec["tracing"]>[number]["customTags"]>, path: FieldPath): CustomTagDef[] {
    const out: CustomTagDef[] = [];
    for (const [tag, source] of Object.entries(tags)) {
      const kinds = [source.literal, source.header, source.environment].filter((v) => v !== undefined).length;
      if (kinds !== 1) {
        this.once(t, [...path, tag], () => this.diag.error(t, [...path, tag], "expected exactly one of literal, header or environment"));
        continue;
      }
      if (source.literal) out.push({ tag, literal: source.literal.value });
      else if (source.header) out.push({ tag, header: source.header.name.toLowerCase(), ...(source.header.defaultValue !== undefined ? { defaultValue: source.header.defaultValue } : {}) });
      else if (source.environment) out.push({ tag, environment: source.environment.name, ...(source.environment.defaultValue !== undefined ? { defaultValue: source.environment.defaultValue } : {}) });
    }
    return out;
  }

  private metrics(chain: T[]): MetricsPlanDef {
    // Providers: the last level that names some replaces the defaults (not a deep merge).
    let inScope = this.defaults("metrics");
    // Istio's default metrics provider is its built-in `prometheus`.
    let prometheus = true;
    for (const t of chain) {
      t.spec.metrics?.forEach((entry, i) => {
        const resolved = this.resolve(t, entry.providers, "metrics", ["spec", "metrics", i, "providers"]);
        if (resolved.named) {
          inScope = resolved.indexes;
          prometheus = resolved.prometheus;
        }
      });
    }
    let disabledAll = false;
    const disabled = new Map<IstioMetric, boolean>();
    const disabledCustom = new Map<string, boolean>();
    const tags = new Map<IstioMetric, Map<string, TagOverrideDef>>();
    for (const t of chain) {
      t.spec.metrics?.forEach((entry, i) => {
        const at: FieldPath = ["spec", "metrics", i];
        if (entry.reportingInterval !== undefined) {
          this.once(t, [...at, "reportingInterval"], () => this.diag.warn(t, [...at, "reportingInterval"], "each isolate reports every GatewayConfig telemetry.flushInterval; ignored"));
        }
        entry.overrides?.forEach((o, j) => {
          const op: FieldPath = [...at, "overrides", j];
          if (this.serverOnly(t, o.match?.mode, [...op, "match", "mode"])) return;
          const custom = o.match?.customMetric;
          if (custom !== undefined) {
            if (!ISTHMUS_METRICS.includes(custom)) {
              this.once(t, [...op, "match", "customMetric"], () => this.diag.warn(t, [...op, "match", "customMetric"], `no metric named "${custom}"; expected one of ${ISTHMUS_METRICS.join(", ")}; ignored`));
            } else {
              if (o.disabled !== undefined) disabledCustom.set(custom, o.disabled);
              if (o.tagOverrides) this.once(t, [...op, "tagOverrides"], () => this.diag.warn(t, [...op, "tagOverrides"], "tag overrides apply to Istio's standard metrics only; ignored"));
            }
            return;
          }
          const metric = o.match?.metric ?? "ALL_METRICS";
          if (metric === "ALL_METRICS" && o.disabled === true) {
            disabledAll = true;
            return;
          }
          disabledAll = false;
          if (IGNORED_METRICS.has(metric)) {
            this.once(t, [...op, "match", "metric"], () => this.diag.warn(t, [...op, "match", "metric"], `${metric} is a TCP or gRPC streaming metric, which the edge does not report; ignored`));
            return;
          }
          const metrics = metric === "ALL_METRICS" ? ALL_ISTIO : [metric as IstioMetric];
          for (const m of metrics) {
            if (o.disabled !== undefined) disabled.set(m, o.disabled);
            for (const [tag, override] of Object.entries(o.tagOverrides ?? {})) {
              const def = this.tagOverride(t, tag, override, [...op, "tagOverrides", tag]);
              if (!def) continue;
              let forMetric = tags.get(m);
              if (!forMetric) tags.set(m, (forMetric = new Map()));
              forMetric.set(tag, def);
            }
          }
        });
      });
    }
    const plan: MetricsPlanDef = {
      providers: disabledAll ? [] : [...new Set(inScope)],
      prometheus: prometheus && !disabledAll,
      disabled: ALL_ISTIO.filter((m) => disabled.get(m) === true),
      disabledCustom: [...disabledCustom].filter(([, v]) => v).map(([k]) => k).sort(),
      tags: {},
    };
    for (const m of ALL_ISTIO) {
      const forMetric = tags.get(m);
      if (forMetric && forMetric.size > 0) plan.tags[m] = [...forMetric.values()].sort((a, b) => cmp(a.tag, b.tag));
    }
    return plan;
  }

  private tagOverride(t: T, tag: string, o: { operation?: "UPSERT" | "REMOVE" | undefined; value?: string | undefined }, path: FieldPath): TagOverrideDef | undefined {
    const badName = labelNameProblem(tag);
    if (badName) {
      this.once(t, path, () => this.diag.error(t, path, badName));
      return undefined;
    }
    if (o.operation === "REMOVE") return { tag, remove: true };
    if (o.value === undefined) {
      this.once(t, path, () => this.diag.error(t, [...path, "value"], "expected a value (an expression such as request.host or 'literal') for an UPSERT"));
      return undefined;
    }
    const parsed = parseExpression(o.value);
    if (!parsed.ok) {
      this.once(t, path, () => this.diag.error(t, [...path, "value"], `expected an expression of the supported CEL subset (docs/CONFIG.md, Telemetry): ${parsed.error}`));
      return undefined;
    }
    return { tag, value: o.value };
  }

  private accessLog(chain: T[]): AccessLogPlanDef {
    const defaults = this.defaults("logs").map(String);
    const levels = chain.filter((t) => (t.spec.accessLogging?.length ?? 0) > 0);
    if (levels.length === 0) return { console: false, providers: defaults.map(Number) };
    // Names in scope: the last level naming providers replaces the defaults; filters are per provider, last wins.
    let inScope = new Set(defaults);
    const filters = new Map<string, string | undefined>();
    for (const t of levels) {
      const names = new Set<string>();
      t.spec.accessLogging?.forEach((entry, i) => {
        const resolved = this.resolve(t, entry.providers, "logs", ["spec", "accessLogging", i, "providers"]);
        const keys = [...resolved.indexes.map(String), ...(resolved.envoy ? [ENVOY] : [])];
        for (const k of keys) {
          names.add(k);
          filters.set(k, entry.filter?.expression);
        }
      });
      if (names.size > 0) inScope = names;
    }
    const chosen = new Map<string, string | undefined>();
    let parent = defaults;
    for (const t of levels) {
      t.spec.accessLogging?.forEach((entry, i) => {
        const at: FieldPath = ["spec", "accessLogging", i];
        if (this.serverOnly(t, entry.match?.mode, [...at, "match", "mode"])) return;
        const resolved = this.resolve(t, entry.providers, "logs", [...at, "providers"]);
        let keys = resolved.named ? [...resolved.indexes.map(String), ...(resolved.envoy ? [ENVOY] : [])] : parent;
        // Isthmus: an entry naming no provider, with no provider listing the logs signal, logs to the console.
        if (!resolved.named && keys.length === 0) {
          keys = [ENVOY];
          inScope.add(ENVOY);
          if (!filters.has(ENVOY)) filters.set(ENVOY, entry.filter?.expression);
        }
        parent = keys;
        if (entry.filter) this.checkFilter(t, entry.filter.expression, [...at, "filter", "expression"]);
        for (const k of keys) {
          if (!inScope.has(k)) continue;
          if (entry.disabled === true) chosen.delete(k);
          else chosen.set(k, filters.get(k) ?? entry.filter?.expression);
        }
      });
    }
    const plan: AccessLogPlanDef = { console: chosen.has(ENVOY), providers: [...chosen.keys()].filter((k) => k !== ENVOY).map(Number) };
    // One filter per plan: Isthmus applies the same filter to every access-log provider of the traffic.
    const exprs = [...new Set([...chosen.values()].filter((v): v is string => v !== undefined))];
    const first = exprs[0];
    if (first !== undefined && parseExpression(first).ok) plan.filter = first;
    if (exprs.length > 1) {
      const last = levels[levels.length - 1] as T;
      this.once(last, ["spec", "accessLogging"], () => this.diag.warn(last, ["spec", "accessLogging"], `access-log providers of the same traffic have different filters; Isthmus applies one filter to all of them (${first})`));
    }
    return plan;
  }

  private checkFilter(t: T, expression: string, path: FieldPath): void {
    const parsed = parseExpression(expression);
    if (!parsed.ok) this.once(t, path, () => this.diag.error(t, path, `expected an expression of the supported CEL subset (docs/CONFIG.md, Telemetry): ${parsed.error}`));
  }
}
