/**
 * The service registry: ServiceEntry hosts, their ports and endpoints, and
 * the DestinationRules that shape them, resolved into clusters named the
 * way Istio names them (`outbound|<port>|<subset>|<host>`).
 *
 * A service's DestinationRules are found as an Istio gateway finds them
 * (PushContext.destinationRule): in the gateway's namespace (unless that is
 * the root namespace), else the service's namespace, else the root
 * namespace; within the first namespace that has one, the most specific
 * host wins, and that host's rules merge oldest first. A rule in any other
 * namespace does not apply. `exportTo` is ignored, so every rule counts as
 * exported everywhere (Istio's default).
 */
import type { ClusterDef, EndpointDef } from "../snapshot.ts";
import type { TrafficPolicy } from "../schema/networking.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { canonicalHost, expandShortName, hostMatches, specificity } from "./hosts.ts";
import { localityProblem } from "../../upstream/locality.ts";
import { checkTrafficPolicy, credentialResolver, upstreamPolicy, type CredentialResolver, type PolicyParts } from "./upstream-policy.ts";
import { byCreationTime } from "./creation-order.ts";

export interface ServicePort {
  number: number;
  name?: string;
  protocol: string;
  targetPort?: number;
}

export interface Service {
  /** Canonical host pattern from the ServiceEntry. */
  host: string;
  namespace: string;
  resource: Resource<"ServiceEntry">;
  ports: ServicePort[];
  wildcard: boolean;
}

/** Where DestinationRules are looked up besides the service's own namespace. */
export interface RuleNamespaces {
  /** The gateway's namespace: the GatewayConfig's, else the root namespace. */
  gateway: string;
  /** GatewayConfig `rootNamespace`. */
  root: string;
}

interface MergedRule {
  resources: Resource<"DestinationRule">[];
  trafficPolicy?: TrafficPolicy;
  subsets: Map<string, { labels: Record<string, string>; trafficPolicy?: TrafficPolicy }>;
}

const TLS_PROTOCOLS = new Set(["HTTPS", "TLS"]);

export class ServiceRegistry {
  private readonly services = new Map<string, Service>();
  /** DestinationRules by namespace, oldest first, with their expanded hosts. */
  private readonly rulesByNamespace = new Map<string, { rule: Resource<"DestinationRule">; host: string }[]>();
  private readonly namespaces: RuleNamespaces;
  private readonly mergedRules = new Map<string, MergedRule | undefined>();
  readonly clusters: Record<string, ClusterDef> = {};

  private readonly diag: Diagnostics;
  private readonly credentials: CredentialResolver;

  /**
   * @param credentials GatewayConfig `credentials`: DestinationRule
   *   credentialName → the Worker binding presenting the client certificate.
   * @param namespaces the gateway's and the root namespace, where
   *   DestinationRules are looked up besides the service's namespace.
   */
  constructor(
    entries: Resource<"ServiceEntry">[],
    rules: Resource<"DestinationRule">[],
    diag: Diagnostics,
    credentials: { credentialName: string; binding: string }[] | undefined,
    namespaces: RuleNamespaces,
  ) {
    this.diag = diag;
    this.namespaces = namespaces;
    this.credentials = credentialResolver(credentials);
    for (const entry of entries) this.addEntry(entry);
    for (const rule of [...rules].sort(byCreationTime)) {
      const list = this.rulesByNamespace.get(rule.namespace) ?? [];
      list.push({ rule, host: expandShortName(rule.spec.host, rule.namespace) });
      this.rulesByNamespace.set(rule.namespace, list);
    }
    for (const rule of rules) this.checkRule(rule);
  }

  /** Every registered service, in declaration order. */
  all(): Service[] {
    return [...this.services.values()];
  }

  /**
   * Finds the service a destination host names, as seen from `namespace`:
   * exact host, then the short-name expansion, then the most specific wildcard.
   */
  resolve(host: string, namespace: string): Service | undefined {
    const exact = canonicalHost(host);
    const expanded = expandShortName(host, namespace);
    const direct = this.services.get(exact) ?? this.services.get(expanded);
    if (direct) return direct;
    let best: Service | undefined;
    for (const service of this.services.values()) {
      if (!service.wildcard || !hostMatches(service.host, expanded)) continue;
      if (!best || specificity(service.host) > specificity(best.host)) best = service;
    }
    return best;
  }

  /** The subsets defined for a service by its DestinationRules. */
  subsets(service: Service): string[] {
    return [...(this.ruleFor(service)?.subsets.keys() ?? [])];
  }

  /**
   * Picks the service port a destination targets: the given number, or the
   * only port. Returns a message when neither works.
   */
  selectPort(service: Service, number: number | undefined): ServicePort | string {
    if (number !== undefined) {
      const port = service.ports.find((p) => p.number === number);
      return port ?? `expected one of the ports of ${service.host} (${service.ports.map((p) => p.number).join(", ")}), got ${number}`;
    }
    if (service.ports.length === 1) return service.ports[0] as ServicePort;
    return `${service.host} has ${service.ports.length} ports (${service.ports.map((p) => p.number).join(", ")}); expected destination.port.number to pick one`;
  }

  /**
   * The cluster for (service, port, subset), built on first use. For a
   * wildcard service, `concreteHost` names the host to connect to; when it
   * is itself a pattern the address is taken from each request's host.
   */
  cluster(service: Service, port: ServicePort, subset: string | undefined, concreteHost: string): ClusterDef {
    const host = service.wildcard ? concreteHost : service.host;
    const name = `outbound|${port.number}|${subset ?? ""}|${host}`;
    const existing = this.clusters[name];
    if (existing) return existing;

    const rule = this.ruleFor(service);
    const subsetDef = subset === undefined ? undefined : rule?.subsets.get(subset);
    const policy = effectivePolicy(rule?.trafficPolicy, subsetDef?.trafficPolicy, port.number);
    // A wildcard host names no address: without endpoints (resolution NONE or
    // DYNAMIC_DNS) each request's host is the address; with endpoints, they are.
    const spec = service.resource.spec;
    const dynamic = service.wildcard && isWildcard(host) && !spec.endpoints?.length && spec.resolution !== "STATIC";
    const endpoints = this.endpoints(service, port, host).filter((e) =>
      Object.entries(subsetDef?.labels ?? {}).every(([k, v]) => e.labels[k] === v),
    );
    const cluster: ClusterDef = {
      name,
      service: service.host,
      source: service.resource.id,
      namespace: service.namespace,
      port: port.number,
      scheme: schemeOf(port, policy),
      endpoints: dynamic ? [{ address: "", port: port.targetPort ?? port.number, labels: {}, weight: 1 }] : endpoints,
      loadBalancer: loadBalancerOf(policy),
      ...upstreamPolicy(policy, this.credentials),
    };
    if (subset !== undefined) cluster.subset = subset;
    if (dynamic) cluster.dynamicAddress = true;
    this.clusters[name] = cluster;
    return cluster;
  }

  /**
   * How the gateway reaches a service port without a subset (scheme and
   * mTLS binding), and the port's endpoints; undefined for a wildcard
   * service. Health checks probe an endpoint over this transport only when
   * no cluster routes to it; otherwise over each such cluster's own (a
   * subset's tls included: see probeTargets).
   */
  transport(service: Service, port: ServicePort): { scheme: "http" | "https"; mtlsBinding?: string; endpoints: EndpointDef[] } | undefined {
    if (service.wildcard) return undefined;
    const policy = effectivePolicy(this.ruleFor(service)?.trafficPolicy, undefined, port.number);
    const out: { scheme: "http" | "https"; mtlsBinding?: string; endpoints: EndpointDef[] } = {
      scheme: schemeOf(port, policy),
      endpoints: this.endpoints(service, port, service.host),
    };
    const binding = upstreamPolicy(policy, this.credentials).mtlsBinding;
    if (binding) out.mtlsBinding = binding;
    return out;
  }

  private endpoints(service: Service, port: ServicePort, host: string): EndpointDef[] {
    const entry = service.resource.spec;
    const defaultPort = port.targetPort ?? port.number;
    if (!entry.endpoints || entry.endpoints.length === 0) {
      if (entry.resolution === "STATIC") return [];
      return [{ address: host, port: defaultPort, labels: {}, weight: 1 }];
    }
    return entry.endpoints.flatMap((e) => {
      if (!e.address) return [];
      const endpoint: EndpointDef = {
        address: e.address,
        port: (port.name ? e.ports?.[port.name] : undefined) ?? defaultPort,
        labels: e.labels ?? {},
        weight: e.weight && e.weight > 0 ? e.weight : 1,
      };
      if (e.locality) endpoint.locality = e.locality;
      return [endpoint];
    });
  }

  private addEntry(entry: Resource<"ServiceEntry">): void {
    const spec = entry.spec;
    checkServiceEntry(entry, this.diag);
    const ports: ServicePort[] = (spec.ports ?? []).map((p) => {
      const port: ServicePort = { number: p.number, protocol: (p.protocol ?? "HTTP").toUpperCase() };
      if (p.name) port.name = p.name;
      if (p.targetPort) port.targetPort = p.targetPort;
      return port;
    });
    if (ports.length === 0) {
      this.diag.error(entry, ["spec", "ports"], "expected at least one port (Isthmus needs to know which port to reach the origins on)");
      return;
    }
    spec.endpoints?.forEach((e, i) => {
      const at: FieldPath = ["spec", "endpoints", i, "address"];
      if (!e.address) this.diag.error(entry, at, "expected an address: the edge can only reach endpoints by host name or IP");
      else if (e.address.startsWith("unix://")) this.diag.error(entry, at, "expected a host name or IP address; Unix sockets cannot be reached from the edge");
      if (e.locality !== undefined) {
        const problem = localityProblem(e.locality);
        if (problem) this.diag.error(entry, ["spec", "endpoints", i, "locality"], problem);
      }
      for (const [name] of Object.entries(e.ports ?? {})) {
        if (!ports.some((p) => p.name === name)) {
          this.diag.error(entry, ["spec", "endpoints", i, "ports", name], `expected the name of a port in spec.ports (${ports.map((p) => p.name ?? p.number).join(", ")})`);
        }
      }
    });
    if (spec.resolution === "STATIC" && !spec.endpoints?.length) {
      this.diag.warn(entry, ["spec", "resolution"], "STATIC resolution with no endpoints: requests for these hosts get 503 no healthy upstream");
    }
    spec.hosts.forEach((raw, i) => {
      const host = expandShortName(raw, entry.namespace);
      if (host === "*") return; // an error (checkServiceEntry)
      const previous = this.services.get(host);
      if (previous) {
        this.diag.error(entry, ["spec", "hosts", i], `host ${host} is already defined by ${previous.resource.id} (${previous.resource.file}:${previous.resource.line})`);
        return;
      }
      this.services.set(host, {
        host,
        namespace: entry.namespace,
        resource: entry,
        ports,
        wildcard: isWildcard(host),
      });
    });
  }

  private checkRule(rule: Resource<"DestinationRule">): void {
    const host = expandShortName(rule.spec.host, rule.namespace);
    const matching = [...this.services.values()].filter((s) => hostMatches(host, s.host) || hostMatches(s.host, host));
    const { gateway, root } = this.namespaces;
    if (matching.length === 0) {
      this.diag.warn(rule, ["spec", "host"], `no ServiceEntry host matches ${host}; this DestinationRule has no effect`);
    } else if (rule.namespace !== gateway && rule.namespace !== root && !matching.some((s) => s.namespace === rule.namespace)) {
      const homes = `the service's namespace (${[...new Set(matching.map((s) => s.namespace))].join(", ")})`;
      const where = gateway === root ? `${homes} and the root namespace (${root}, its own)` : `its own namespace (${gateway}), ${homes} and the root namespace (${root})`;
      this.diag.warn(rule, ["metadata", "namespace"], `this DestinationRule has no effect: as in Istio, the gateway looks up DestinationRules in ${where}; move it to one of them`);
    }
    rule.spec.subsets?.forEach((s, i) => {
      if (rule.spec.subsets?.findIndex((o) => o.name === s.name) !== i) {
        this.diag.error(rule, ["spec", "subsets", i, "name"], `duplicate subset name "${s.name}"`);
      }
    });
    const error = (path: FieldPath, message: string) => this.diag.error(rule, path, message);
    const warn = (path: FieldPath, message: string) => this.diag.warn(rule, path, message);
    const check = (policy: TrafficPolicy | undefined, path: FieldPath) => {
      if (!policy) return;
      checkTrafficPolicy(policy, path, this.credentials, error, warn);
      policy.portLevelSettings?.forEach((p, i) => checkTrafficPolicy(p, [...path, "portLevelSettings", i], this.credentials, error, warn));
    };
    check(rule.spec.trafficPolicy, ["spec", "trafficPolicy"]);
    rule.spec.subsets?.forEach((s, i) => check(s.trafficPolicy, ["spec", "subsets", i, "trafficPolicy"]));
  }

  /** The DestinationRules for a service merged as Istio merges them. */
  private ruleFor(service: Service): MergedRule | undefined {
    if (this.mergedRules.has(service.host)) return this.mergedRules.get(service.host);
    const merged = this.merge(service, this.rulesFor(service));
    this.mergedRules.set(service.host, merged);
    return merged;
  }

  /**
   * Istio's PushContext.destinationRule: the gateway's namespace (skipped
   * when it is the root namespace, whose rules count as exported and come
   * last), then the service's, then the root namespace; in the first with a
   * match, the rules for the most specific matching host, oldest first.
   */
  private rulesFor(service: Service): Resource<"DestinationRule">[] {
    const { gateway, root } = this.namespaces;
    const order = gateway === root ? [service.namespace, root] : [gateway, service.namespace, root];
    for (const namespace of new Set(order)) {
      const candidates = (this.rulesByNamespace.get(namespace) ?? []).filter((c) => hostMatches(c.host, service.host));
      if (candidates.length === 0) continue;
      const best = candidates.reduce((a, b) => (specificity(b.host) > specificity(a.host) ? b : a));
      return candidates.filter((c) => c.host === best.host).map((c) => c.rule);
    }
    return [];
  }

  /** Istio's mergeDestinationRule: the first rule's top-level policy and the first definition of each subset win. */
  private merge(service: Service, chosen: Resource<"DestinationRule">[]): MergedRule | undefined {
    let merged: MergedRule | undefined;
    for (const rule of chosen) {
      if (!merged) {
        merged = { resources: [rule], subsets: new Map() };
        if (rule.spec.trafficPolicy) merged.trafficPolicy = rule.spec.trafficPolicy;
      } else {
        merged.resources.push(rule);
        if (rule.spec.trafficPolicy) {
          if (merged.trafficPolicy) {
            this.diag.warn(rule, ["spec", "trafficPolicy"], `ignored: ${merged.resources[0]?.id} already sets the traffic policy for ${service.host} (Istio keeps the first)`);
          } else {
            merged.trafficPolicy = rule.spec.trafficPolicy;
          }
        }
      }
      rule.spec.subsets?.forEach((s, i) => {
        if (merged?.subsets.has(s.name)) {
          if (merged.resources[0] !== rule) this.diag.warn(rule, ["spec", "subsets", i], `ignored: subset "${s.name}" of ${service.host} is already defined (Istio keeps the first)`);
          return;
        }
        const subset: { labels: Record<string, string>; trafficPolicy?: TrafficPolicy } = { labels: s.labels ?? {} };
        if (s.trafficPolicy) subset.trafficPolicy = s.trafficPolicy;
        merged?.subsets.set(s.name, subset);
      });
    }
    return merged;
  }
}

/**
 * Istio's MergeTrafficPolicy: subset fields override top-level ones, and a
 * matching portLevelSettings entry replaces all four parts (no inheritance).
 * `retryBudget` has no port-level form; the subset's overrides the top level's.
 */
export function effectivePolicy(top: TrafficPolicy | undefined, subset: TrafficPolicy | undefined, port: number): PolicyParts {
  let merged: PolicyParts = {};
  for (const layer of [top, subset]) {
    if (!layer) continue;
    merged = {
      loadBalancer: layer.loadBalancer ?? merged.loadBalancer,
      connectionPool: layer.connectionPool ?? merged.connectionPool,
      outlierDetection: layer.outlierDetection ?? merged.outlierDetection,
      tls: layer.tls ?? merged.tls,
      retryBudget: layer.retryBudget ?? merged.retryBudget,
    };
    const portLevel = layer.portLevelSettings?.find((p) => p.port?.number === port);
    if (portLevel) {
      merged = {
        loadBalancer: portLevel.loadBalancer,
        connectionPool: portLevel.connectionPool,
        outlierDetection: portLevel.outlierDetection,
        tls: portLevel.tls,
        retryBudget: merged.retryBudget,
      };
    }
  }
  return merged;
}

/** Ports whose protocol makes Istio's proxy speak HTTP/2 to the endpoints (Istio's Instance.IsHTTP2). */
const HTTP2_PROTOCOLS = new Set(["HTTP2", "GRPC", "GRPC-WEB"]);

function isWildcard(host: string): boolean {
  return host === "*" || host.startsWith("*.") || host.endsWith(".*");
}

/**
 * The checks of Istio's ValidateServiceEntry that concern the edge, with
 * Istio's words: what Istio refuses is an error here too. An unset
 * `resolution` is NONE, Istio's default. Called once per ServiceEntry, so
 * each problem is reported once.
 */
function checkServiceEntry(entry: Resource<"ServiceEntry">, diag: Diagnostics): void {
  const spec = entry.spec;
  const resolution = spec.resolution ?? "NONE";
  const endpoints = spec.endpoints ?? [];
  const error = (path: FieldPath, message: string) => diag.error(entry, path, message);

  spec.hosts.forEach((raw, i) => {
    const host = expandShortName(raw, entry.namespace);
    if (host === "*") {
      error(["spec", "hosts", i], "invalid host *: a ServiceEntry may not declare the full wildcard (Istio refuses it; at the edge it would forward every Host a client sends); expected a host name or a wildcard such as *.example.com");
    } else if ((resolution === "DNS" || resolution === "DNS_ROUND_ROBIN") && endpoints.length === 0 && isWildcard(host)) {
      error(["spec", "hosts", i], `hosts must be FQDN if no endpoints are provided for resolution mode ${resolution}, got ${host}; to connect to each request's host, use resolution: NONE`);
    }
  });

  spec.addresses?.forEach((address, i) => {
    if (address.includes("/") && resolution !== "NONE" && resolution !== "STATIC") {
      error(["spec", "addresses", i], `CIDR addresses are allowed only for NONE/STATIC resolution types, got ${address} with resolution ${resolution}`);
    }
  });

  const numbers = new Map<number, number>();
  const names = new Map<string, number>();
  spec.ports?.forEach((port, i) => {
    const sameNumber = numbers.get(port.number);
    if (sameNumber === undefined) numbers.set(port.number, i);
    else error(["spec", "ports", i, "number"], `service entry port ${port.number} already defined (spec.ports[${sameNumber}])`);
    if (port.name !== undefined) {
      const sameName = names.get(port.name);
      if (sameName === undefined) names.set(port.name, i);
      else error(["spec", "ports", i, "name"], `service entry port name "${port.name}" already defined (spec.ports[${sameName}])`);
    }
    const protocol = (port.protocol ?? "").toUpperCase();
    if (HTTP2_PROTOCOLS.has(protocol)) {
      diag.warn(
        entry,
        ["spec", "ports", i, "protocol"],
        `${protocol} is reached over HTTP/1.1: Istio's proxy would speak HTTP/2 to this port, but a Worker's fetch() speaks HTTP/1.1 to plaintext origins (HTTP/2 cleartext, h2c, is not possible), so an origin that accepts only HTTP/2, such as a plaintext gRPC server, cannot be reached (503); under isthmus serve (workerd) TLS origins get HTTP/1.1 as well`,
      );
    }
  });

  if (spec.workloadSelector !== undefined && endpoints.length > 0) {
    error(["spec", "workloadSelector"], "only one of workloadSelector or endpoints is allowed in a ServiceEntry");
  }
  if (resolution === "NONE" && endpoints.length > 0) {
    const unset = spec.resolution === undefined ? " (resolution is unset, and NONE is its default)" : "";
    error(["spec", "endpoints"], `no endpoints should be provided for resolution type NONE${unset}; expected resolution: STATIC for IP addresses or DNS for host names`);
  }
  if (resolution === "DNS_ROUND_ROBIN" && endpoints.length > 1) {
    error(["spec", "endpoints"], `there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN, got ${endpoints.length}; use resolution: DNS for several`);
  }
}

function schemeOf(port: ServicePort, policy: PolicyParts): "http" | "https" {
  const mode = policy.tls?.mode;
  // An explicit DISABLE means plaintext, whatever the port's protocol (Istio's DestinationRule: no TLS to the endpoint).
  if (mode === "DISABLE") return "http";
  return TLS_PROTOCOLS.has(port.protocol) || mode === "SIMPLE" || mode === "MUTUAL" ? "https" : "http";
}

function loadBalancerOf(policy: PolicyParts): ClusterDef["loadBalancer"] {
  switch (policy.loadBalancer?.simple) {
    case "ROUND_ROBIN":
      return "ROUND_ROBIN";
    case "RANDOM":
      return "RANDOM";
    default:
      return "LEAST_REQUEST";
  }
}
