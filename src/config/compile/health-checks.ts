/**
 * GatewayConfig's upstream parts that need the service registry:
 * `credentials` (checked here, resolved by the registry) and
 * `healthChecks`, compiled into probe targets (each endpoint over the
 * transport of the clusters that reach it) and linked to the clusters
 * whose endpoints they cover.
 */
import { durationMs } from "../duration.ts";
import type { ClusterDef, EndpointDef, GatewaySettings, HealthCheckDef, HealthTargetDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { isHttpToken } from "../../gateway/request-header.ts";
import type { ServiceRegistry } from "./services.ts";
import { transportKey } from "../../upstream/state.ts";

const DEFAULTS = { path: "/", intervalMs: 10_000, timeoutMs: 5_000, expectedCodes: ["200"], healthyThreshold: 2, unhealthyThreshold: 2 };


export function compileGatewayUpstreams(config: Resource<"GatewayConfig">, settings: GatewaySettings, services: ServiceRegistry, diag: Diagnostics): void {
  const spec = config.spec;
  const fail = (path: FieldPath, message: string) => diag.error(config, path, message);
  spec.credentials?.forEach((c, i) => {
    if (spec.credentials?.findIndex((o) => o.credentialName === c.credentialName) !== i) {
      fail(["spec", "credentials", i, "credentialName"], `duplicate credentialName "${c.credentialName}"`);
    }
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(c.binding)) fail(["spec", "credentials", i, "binding"], `expected a Worker binding name (letters, digits and _), got "${c.binding}"`);
  });

  const checks: HealthCheckDef[] = [];
  spec.healthChecks?.forEach((hc, i) => {
    const at: FieldPath = ["spec", "healthChecks", i];
    const service = services.resolve(hc.host, config.namespace);
    if (!service) return fail([...at, "host"], `expected a host declared by a ServiceEntry, got "${hc.host}"`);
    const port = services.selectPort(service, hc.port);
    if (typeof port === "string") return fail([...at, hc.port === undefined ? "host" : "port"], port);
    const transport = services.transport(service, port);
    if (!transport) return fail([...at, "host"], `${service.host} is a wildcard host; health checks need ServiceEntry endpoints to probe`);
    if (checks.some((c) => c.service === service.host && c.port === port.number)) {
      return fail([...at, "host"], `${service.host} port ${port.number} already has a health check`);
    }
    const path = hc.path ?? DEFAULTS.path;
    if (!path.startsWith("/")) fail([...at, "path"], `expected a path starting with /, got "${path}"`);
    const intervalMs = hc.interval ? durationMs(hc.interval) : DEFAULTS.intervalMs;
    if (intervalMs < 1000) fail([...at, "interval"], "expected at least 1s");
    const timeoutMs = hc.timeout ? durationMs(hc.timeout) : Math.min(DEFAULTS.timeoutMs, intervalMs);
    if (timeoutMs < 1 || timeoutMs > intervalMs) fail([...at, "timeout"], `expected a timeout between 1ms and the interval (${intervalMs}ms)`);
    const expectedCodes: [number, number][] = [];
    (hc.expectedCodes ?? DEFAULTS.expectedCodes).forEach((code, j) => {
      const range = statusRange(code);
      if (range) expectedCodes.push(range);
      else fail([...at, "expectedCodes", j], `expected a status (200), a class (2xx) or a range (200-299), got "${code}"`);
    });
    const healthyThreshold = hc.healthyThreshold ?? DEFAULTS.healthyThreshold;
    const unhealthyThreshold = hc.unhealthyThreshold ?? DEFAULTS.unhealthyThreshold;
    if (healthyThreshold < 1) fail([...at, "healthyThreshold"], "expected at least 1");
    if (unhealthyThreshold < 1) fail([...at, "unhealthyThreshold"], "expected at least 1");
    const headers: [string, string][] = [];
    for (const [name, value] of Object.entries(hc.headers ?? {})) {
      if (!isHttpToken(name) || name.toLowerCase() === "host") fail([...at, "headers", name], "expected a header name other than host (a Worker sends the endpoint address as Host)");
      else if (/[\r\n\0]/.test(value)) fail([...at, "headers", name], "expected a value without CR, LF or NUL");
      else headers.push([name.toLowerCase(), value]);
    }
    const clusters = Object.values(services.clusters).filter((c) => c.service === service.host && c.port === port.number);
    const targets = probeTargets(transport.endpoints, clusters, transport);
    const def: HealthCheckDef = {
      source: config.id,
      service: service.host,
      port: port.number,
      path,
      intervalMs,
      timeoutMs,
      expectedCodes,
      healthyThreshold,
      unhealthyThreshold,
      targets,
    };
    if (headers.length) def.headers = headers;
    checks.push(def);
  });
  if (checks.length === 0) return;
  settings.healthChecks = checks;
  for (const cluster of Object.values(services.clusters)) {
    const index = checks.findIndex((c) => c.service === cluster.service && c.port === cluster.port);
    if (index >= 0) cluster.healthCheck = index;
  }
}

type Transport = Pick<HealthTargetDef, "scheme" | "mtlsBinding">;

/**
 * What a check probes: each endpoint over the transport of every cluster
 * that routes to it (a subset's `trafficPolicy.tls` included), once per
 * distinct transport, since each cluster reads the result of its own
 * (as Envoy health-checks a host per cluster, over the cluster's transport
 * socket). An endpoint no cluster routes to is probed over the service's
 * transport without a subset, the cluster a route without `subset` gets.
 *
 * @example
 * // endpoint a in subset "tls" (tls SIMPLE) and in the subset-less cluster (plain):
 * probeTargets([a], [tlsCluster, plainCluster], { scheme: "http" })
 * // [{ address: "a", port: 80, scheme: "https" }, { address: "a", port: 80, scheme: "http" }]
 */
export function probeTargets(endpoints: readonly EndpointDef[], clusters: readonly ClusterDef[], fallback: Transport): HealthTargetDef[] {
  const byEndpoint = new Map<string, Transport[]>();
  for (const cluster of [...clusters].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (cluster.dynamicAddress) continue;
    for (const e of cluster.endpoints) {
      const key = `${e.address}:${e.port}`;
      const list = byEndpoint.get(key) ?? [];
      list.push(cluster.mtlsBinding ? { scheme: cluster.scheme, mtlsBinding: cluster.mtlsBinding } : { scheme: cluster.scheme });
      byEndpoint.set(key, list);
    }
  }
  const targets = new Map<string, HealthTargetDef>();
  for (const e of endpoints) {
    const endpoint = `${e.address}:${e.port}`;
    for (const t of byEndpoint.get(endpoint) ?? [fallback]) {
      const target: HealthTargetDef = { address: e.address, port: e.port, scheme: t.scheme };
      if (t.mtlsBinding) target.mtlsBinding = t.mtlsBinding;
      targets.set(`${transportKey(t.scheme, t.mtlsBinding)}|${endpoint}`, target);
    }
  }
  return [...targets.values()];
}

/** `200`, `2xx` or `200-299` → an inclusive range. */
function statusRange(code: string): [number, number] | undefined {
  const c = code.trim().toLowerCase();
  let m = /^([1-5])xx$/.exec(c);
  if (m) return [Number(m[1]) * 100, Number(m[1]) * 100 + 99];
  m = /^(\d{3})-(\d{3})$/.exec(c);
  if (m) {
    const [lo, hi] = [Number(m[1]), Number(m[2])];
    return lo >= 100 && hi <= 599 && lo <= hi ? [lo, hi] : undefined;
  }
  if (/^\d{3}$/.test(c) && Number(c) >= 100 && Number(c) <= 599) return [Number(c), Number(c)];
  return undefined;
}
