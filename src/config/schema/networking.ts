/**
 * networking.istio.io kinds: VirtualService, DestinationRule, ServiceEntry
 * and Gateway, with every field of the Istio API (istio/api networking/v1alpha3).
 * Defaults are applied by the compiler, not here, so that a resource keeps
 * the shape its author wrote (which is what `isthmus diff` compares).
 */
import { z } from "zod";
import {
  Duration,
  isDns1123Label,
  Labels,
  Percent,
  PortNumber,
  ProxyDuration,
  ProxyDurationOrZero,
  SecondsDuration,
  StringMatch,
  UInt,
  WorkloadSelector,
} from "./common.ts";

const atMostOne =
  (fields: string[], what: string) =>
  (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const present = fields.filter((f) => value[f] !== undefined);
    if (present.length > 1) {
      ctx.addIssue({ code: "custom", message: `expected only one of ${fields.join(", ")} in ${what}, got ${present.join(" and ")}` });
    }
  };

// ---------------------------------------------------------------- VirtualService

export const PortSelector = z.strictObject({ number: PortNumber.optional() });

/**
 * Istio's labels.IsDNS1123Label, which (unlike Kubernetes' for object names)
 * takes upper-case letters too: `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`.
 */
function isIstioLabel(value: string): boolean {
  return isDns1123Label(value.toLowerCase());
}

/** Istio's validateSubsetName: a subset name is a DNS-1123 label (either case, as Istio's check takes). */
const SubsetName = z.string().superRefine((name, ctx) => {
  if (!isIstioLabel(name)) {
    ctx.addIssue({ code: "custom", message: `expected a subset name of letters, digits and '-' (a DNS-1123 label, at most 63 characters), got ${JSON.stringify(name)}` });
  }
});

export const Destination = z.strictObject({
  host: z.string().min(1, { message: "expected a destination host" }),
  subset: SubsetName.optional(),
  port: PortSelector.optional(),
});

/**
 * Header names Istio refuses in header operations (ValidateHTTPHeaderWithAuthorityOperationName
 * for request set/add, ValidateHTTPHeaderOperationName for the rest): pseudo-headers (`:path`,
 * `:method`, ...) cannot be changed, except `:authority` (or `host`) set or added on the request,
 * which rewrites the authority.
 */
function headerNameProblem(name: string, op: "set" | "add" | "remove", direction: "request" | "response"): string | undefined {
  if (name === "") return "expected a header name, got an empty one";
  const lower = name.toLowerCase();
  const authority = lower === ":authority" || lower === "host";
  if (direction === "request" && op !== "remove" && authority) return undefined;
  if (lower === "host") return `cannot ${op} the Host header${direction === "request" ? "" : " of a response"}`;
  if (name.startsWith(":")) {
    return `header ${JSON.stringify(name)} cannot have a ":" prefix: pseudo-headers cannot be ${op === "remove" ? "removed" : op === "set" ? "set" : "added"}${direction === "request" && op !== "remove" ? " (only :authority, which rewrites the host)" : ""}`;
  }
  return undefined;
}

const headerOperations = (direction: "request" | "response") =>
  z
    .strictObject({
      set: z.record(z.string(), z.string()).optional(),
      add: z.record(z.string(), z.string()).optional(),
      remove: z.array(z.string()).optional(),
    })
    .superRefine((ops, ctx) => {
      for (const op of ["set", "add"] as const) {
        for (const name of Object.keys(ops[op] ?? {})) {
          const message = headerNameProblem(name, op, direction);
          if (message) ctx.addIssue({ code: "custom", message, path: [op, name] });
        }
      }
      (ops.remove ?? []).forEach((name, i) => {
        const message = headerNameProblem(name, "remove", direction);
        if (message) ctx.addIssue({ code: "custom", message, path: ["remove", i] });
      });
    });

export const Headers = z.strictObject({
  request: headerOperations("request").optional(),
  response: headerOperations("response").optional(),
});

export const HTTPMatchRequest = z.strictObject({
  name: z.string().optional(),
  uri: StringMatch.optional(),
  scheme: StringMatch.optional(),
  method: StringMatch.optional(),
  authority: StringMatch.optional(),
  headers: z.record(z.string(), StringMatch).optional(),
  port: PortNumber.optional(),
  sourceLabels: Labels.optional(),
  gateways: z.array(z.string()).optional(),
  queryParams: z.record(z.string(), StringMatch).optional(),
  ignoreUriCase: z.boolean().optional(),
  withoutHeaders: z.record(z.string(), StringMatch).optional(),
  sourceNamespace: z.string().optional(),
  statPrefix: z.string().optional(),
});

export const HTTPRouteDestination = z.strictObject({
  destination: Destination,
  weight: z.number().int().min(0, { message: "expected a weight >= 0" }).optional(),
  headers: Headers.optional(),
});

export const HTTPRedirect = z
  .strictObject({
    uri: z.string().optional(),
    authority: z.string().optional(),
    port: PortNumber.optional(),
    derivePort: z.enum(["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"]).optional(),
    scheme: z.string().optional(),
    redirectCode: z.number().int().optional(),
    prefixRewrite: z.string().optional(),
  })
  .superRefine(atMostOne(["uri", "prefixRewrite"], "redirect"))
  .superRefine(atMostOne(["port", "derivePort"], "redirect"));

export const HTTPDirectResponse = z.strictObject({
  status: z
    .number()
    .int()
    .min(200, { message: "expected an HTTP status between 200 and 599" })
    .max(599, { message: "expected an HTTP status between 200 and 599" }),
  body: z
    .strictObject({ string: z.string().optional(), bytes: z.string().optional() })
    .superRefine(atMostOne(["string", "bytes"], "directResponse.body"))
    .optional(),
});

export const HTTPRewrite = z
  .strictObject({
    uri: z.string().optional(),
    authority: z.string().optional(),
    uriRegexRewrite: z.strictObject({ match: z.string(), rewrite: z.string() }).optional(),
  })
  .superRefine(atMostOne(["uri", "uriRegexRewrite"], "rewrite"));

export const HTTPRetry = z.strictObject({
  attempts: z.number().int().min(0).optional(),
  perTryTimeout: ProxyDuration.optional(),
  retryOn: z.string().optional(),
  retryRemoteLocalities: z.boolean().optional(),
  retryIgnorePreviousHosts: z.boolean().optional(),
  backoff: Duration.optional(),
});

/** Istio's supportedMethods for CORS allowMethods (Go's net/http method constants; case-sensitive). */
// Istio's supportedCORSMethods, `*` included (Isthmus echoes the requested method for it).
const CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"];

/** Istio's validateAllowOrigins: an origin match must name a non-empty exact, prefix or regex. */
const AllowOrigin = StringMatch.superRefine((m, ctx) => {
  if (!(m.exact || m.prefix || m.regex)) ctx.addIssue({ code: "custom", message: "expected a non-empty exact, prefix or regex origin" });
});

export const CorsPolicy = z.strictObject({
  allowOrigins: z.array(AllowOrigin).optional(),
  allowOrigin: z.array(z.string()).optional(),
  allowMethods: z
    .array(
      z.string().superRefine((method, ctx) => {
        if (!CORS_METHODS.includes(method)) {
          ctx.addIssue({ code: "custom", message: `expected one of ${CORS_METHODS.join(", ")}, got ${JSON.stringify(method)}` });
        }
      }),
    )
    .optional(),
  allowHeaders: z.array(z.string()).optional(),
  exposeHeaders: z.array(z.string()).optional(),
  maxAge: SecondsDuration.optional(),
  allowCredentials: z.boolean().optional(),
  unmatchedPreflights: z.enum(["UNSPECIFIED", "FORWARD", "IGNORE"]).optional(),
});

export const HTTPFaultInjection = z
  .strictObject({
    delay: z
      .strictObject({
        fixedDelay: ProxyDuration.optional(),
        exponentialDelay: ProxyDuration.optional(),
        percentage: Percent.optional(),
        percent: z.number().int().min(0).max(100).optional(),
      })
      .optional(),
    abort: z
      .strictObject({
        httpStatus: z.number().int().optional(),
        grpcStatus: z.string().optional(),
        http2Error: z.string().optional(),
        percentage: Percent.optional(),
      })
      .superRefine(atMostOne(["httpStatus", "grpcStatus", "http2Error"], "fault.abort"))
      .optional(),
  })
  .superRefine((fault, ctx) => {
    // Istio: "HTTP fault injection must have an abort and/or a delay".
    if (fault.abort === undefined && fault.delay === undefined) ctx.addIssue({ code: "custom", message: "expected an abort and/or a delay" });
  });

export const HTTPMirrorPolicy = z.strictObject({
  destination: Destination,
  percentage: Percent.optional(),
});

export const HTTPRoute = z.strictObject({
  name: z.string().optional(),
  match: z.array(HTTPMatchRequest).optional(),
  route: z.array(HTTPRouteDestination).optional(),
  redirect: HTTPRedirect.optional(),
  directResponse: HTTPDirectResponse.optional(),
  delegate: z.strictObject({ name: z.string().optional(), namespace: z.string().optional() }).optional(),
  rewrite: HTTPRewrite.optional(),
  timeout: ProxyDuration.optional(),
  retries: HTTPRetry.optional(),
  fault: HTTPFaultInjection.optional(),
  mirror: Destination.optional(),
  mirrors: z.array(HTTPMirrorPolicy).optional(),
  mirrorPercentage: Percent.optional(),
  mirrorPercent: z.number().int().min(0).max(100).optional(),
  corsPolicy: CorsPolicy.optional(),
  headers: Headers.optional(),
});
export type HTTPRoute = z.infer<typeof HTTPRoute>;

const L4MatchAttributes = z.strictObject({
  destinationSubnets: z.array(z.string()).optional(),
  port: PortNumber.optional(),
  sourceLabels: Labels.optional(),
  gateways: z.array(z.string()).optional(),
  sourceNamespace: z.string().optional(),
});

const RouteDestination = z.strictObject({ destination: Destination, weight: z.number().int().min(0).optional() });

export const TLSRoute = z.strictObject({
  match: z.array(L4MatchAttributes.extend({ sniHosts: z.array(z.string()) })),
  route: z.array(RouteDestination).optional(),
});

export const TCPRoute = z.strictObject({
  match: z.array(L4MatchAttributes).optional(),
  route: z.array(RouteDestination).optional(),
});

/**
 * Istio's host.Name.Matches: equal names, or a wildcard (`*.app.local`, `*`)
 * whose suffix covers the other name (or the other wildcard's suffix).
 */
export function hostsOverlap(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const xWild = x.startsWith("*");
  const yWild = y.startsWith("*");
  if (xWild && yWild) return x.length < y.length ? y.slice(1).endsWith(x.slice(1)) : x.slice(1).endsWith(y.slice(1));
  if (xWild) return y.endsWith(x.slice(1));
  if (yWild) return x.endsWith(y.slice(1));
  return x === y;
}

export const VirtualServiceSpec = z
  .strictObject({
    hosts: z.array(z.string().min(1)).optional(),
    gateways: z.array(z.string()).optional(),
    http: z.array(HTTPRoute).optional(),
    tls: z.array(TLSRoute).optional(),
    tcp: z.array(TCPRoute).optional(),
    exportTo: z.array(z.string()).optional(),
  })
  .superRefine((vs, ctx) => {
    // Istio: "http, tcp or tls must be provided in virtual service" (delegates included).
    if (!vs.http?.length && !vs.tcp?.length && !vs.tls?.length) {
      ctx.addIssue({ code: "custom", message: "expected http, tcp or tls routes: a VirtualService without any routes serves nothing" });
    }
    // Istio: "duplicate hosts in virtual service" for every pair whose names match (wildcards included).
    const hosts = vs.hosts ?? [];
    hosts.forEach((host, j) => {
      const earlier = hosts.findIndex((other, i) => i < j && hostsOverlap(other, host));
      if (earlier >= 0) {
        ctx.addIssue({
          code: "custom",
          message: `duplicate host: ${JSON.stringify(host)} overlaps ${JSON.stringify(hosts[earlier])} (hosts[${earlier}]); list each host once`,
          path: ["hosts", j],
        });
      }
    });
  });
export type VirtualServiceSpec = z.infer<typeof VirtualServiceSpec>;

// ---------------------------------------------------------------- DestinationRule

export const ClientTLSSettings = z.strictObject({
  mode: z.enum(["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]).optional(),
  clientCertificate: z.string().optional(),
  privateKey: z.string().optional(),
  caCertificates: z.string().optional(),
  credentialName: z.string().optional(),
  subjectAltNames: z.array(z.string()).optional(),
  sni: z.string().optional(),
  insecureSkipVerify: z.boolean().optional(),
  caCrl: z.string().optional(),
});

const ConsistentHashLB = z
  .strictObject({
    httpHeaderName: z.string().optional(),
    httpCookie: z
      .strictObject({
        name: z.string(),
        path: z.string().optional(),
        ttl: Duration.optional(),
        attributes: z.array(z.strictObject({ name: z.string(), value: z.string().optional() })).optional(),
      })
      .optional(),
    useSourceIp: z.boolean().optional(),
    httpQueryParameterName: z.string().optional(),
    ringHash: z.strictObject({ minimumRingSize: UInt.optional() }).optional(),
    maglev: z.strictObject({ tableSize: UInt.optional() }).optional(),
    minimumRingSize: UInt.optional(),
  })
  .superRefine(atMostOne(["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"], "consistentHash"))
  .superRefine(atMostOne(["ringHash", "maglev"], "consistentHash"));

export const LocalityLoadBalancerSetting = z
  .strictObject({
    distribute: z
      .array(z.strictObject({ from: z.string(), to: z.record(z.string(), UInt) }))
      .optional(),
    failover: z.array(z.strictObject({ from: z.string(), to: z.string() })).optional(),
    failoverPriority: z.array(z.string()).optional(),
    enabled: z.boolean().optional(),
  })
  .superRefine(atMostOne(["distribute", "failover"], "localityLbSetting"))
  .superRefine(atMostOne(["distribute", "failoverPriority"], "localityLbSetting"));

export const LoadBalancerSettings = z
  .strictObject({
    simple: z.enum(["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]).optional(),
    consistentHash: ConsistentHashLB.optional(),
    localityLbSetting: LocalityLoadBalancerSetting.optional(),
    warmupDurationSecs: ProxyDuration.optional(),
    warmup: z
      .strictObject({
        duration: Duration,
        minimumPercent: z.number().min(0).max(100).optional(),
        aggression: z.number().min(1).optional(),
      })
      .optional(),
  })
  .superRefine(atMostOne(["simple", "consistentHash"], "loadBalancer"));

export const ConnectionPoolSettings = z.strictObject({
  tcp: z
    .strictObject({
      maxConnections: z.number().int().optional(),
      connectTimeout: ProxyDuration.optional(),
      tcpKeepalive: z
        .strictObject({ probes: UInt.optional(), time: ProxyDuration.optional(), interval: ProxyDuration.optional() })
        .optional(),
      maxConnectionDuration: ProxyDuration.optional(),
      idleTimeout: ProxyDurationOrZero.optional(),
    })
    .optional(),
  http: z
    .strictObject({
      http1MaxPendingRequests: z.number().int().optional(),
      http2MaxRequests: z.number().int().optional(),
      maxRequestsPerConnection: z.number().int().optional(),
      maxRetries: z.number().int().optional(),
      idleTimeout: ProxyDurationOrZero.optional(),
      h2UpgradePolicy: z.enum(["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]).optional(),
      useClientProtocol: z.boolean().optional(),
      maxConcurrentStreams: z.number().int().optional(),
    })
    .optional(),
});

export const OutlierDetection = z.strictObject({
  splitExternalLocalOriginErrors: z.boolean().optional(),
  consecutiveLocalOriginFailures: UInt.optional(),
  consecutiveGatewayErrors: UInt.optional(),
  consecutive5xxErrors: UInt.optional(),
  consecutiveErrors: z.number().int().optional(),
  interval: ProxyDuration.optional(),
  baseEjectionTime: ProxyDuration.optional(),
  maxEjectionPercent: z.number().int().min(0).max(100).optional(),
  minHealthPercent: z.number().int().min(0).max(100).optional(),
});

const TrafficPolicyFields = {
  loadBalancer: LoadBalancerSettings.optional(),
  connectionPool: ConnectionPoolSettings.optional(),
  outlierDetection: OutlierDetection.optional(),
  tls: ClientTLSSettings.optional(),
};

export const TrafficPolicy = z.strictObject({
  ...TrafficPolicyFields,
  portLevelSettings: z
    .array(z.strictObject({ port: PortSelector.optional(), ...TrafficPolicyFields }))
    .optional(),
  tunnel: z
    .strictObject({ protocol: z.string().optional(), targetHost: z.string(), targetPort: PortNumber })
    .optional(),
  proxyProtocol: z.strictObject({ version: z.enum(["V1", "V2"]).optional() }).optional(),
  retryBudget: z
    .strictObject({
      percent: z.number().min(0).max(100).optional(),
      minRetryConcurrency: UInt.optional(),
    })
    .optional(),
});
export type TrafficPolicy = z.infer<typeof TrafficPolicy>;

export const Subset = z.strictObject({
  name: SubsetName,
  labels: Labels.optional(),
  trafficPolicy: TrafficPolicy.optional(),
});

export const DestinationRuleSpec = z.strictObject({
  host: z.string({ message: "expected spec.host" }).min(1),
  trafficPolicy: TrafficPolicy.optional(),
  subsets: z.array(Subset).optional(),
  exportTo: z.array(z.string()).optional(),
  workloadSelector: WorkloadSelector.optional(),
});
export type DestinationRuleSpec = z.infer<typeof DestinationRuleSpec>;

// ---------------------------------------------------------------- ServiceEntry

export const ServicePort = z.strictObject({
  number: PortNumber,
  protocol: z.string().optional(),
  name: z.string().optional(),
  targetPort: PortNumber.optional(),
});

export const WorkloadEntry = z.strictObject({
  address: z.string().optional(),
  ports: z.record(z.string(), PortNumber).optional(),
  labels: Labels.optional(),
  network: z.string().optional(),
  locality: z.string().optional(),
  weight: UInt.optional(),
  serviceAccount: z.string().optional(),
});

export const ServiceEntrySpec = z.strictObject({
  hosts: z.array(z.string().min(1), { message: "expected spec.hosts" }).min(1, { message: "expected at least one host" }),
  addresses: z.array(z.string()).optional(),
  ports: z.array(ServicePort).optional(),
  location: z.enum(["MESH_EXTERNAL", "MESH_INTERNAL"]).optional(),
  resolution: z.enum(["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]).optional(),
  endpoints: z.array(WorkloadEntry).optional(),
  workloadSelector: z.strictObject({ labels: Labels.optional() }).optional(),
  exportTo: z.array(z.string()).optional(),
  subjectAltNames: z.array(z.string()).optional(),
});
export type ServiceEntrySpec = z.infer<typeof ServiceEntrySpec>;

// ---------------------------------------------------------------- Gateway

export const ServerTLSSettings = z.strictObject({
  httpsRedirect: z.boolean().optional(),
  mode: z.enum(["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]).optional(),
  serverCertificate: z.string().optional(),
  privateKey: z.string().optional(),
  caCertificates: z.string().optional(),
  caCrl: z.string().optional(),
  credentialName: z.string().optional(),
  credentialNames: z.array(z.string()).optional(),
  tlsCertificates: z
    .array(z.strictObject({ serverCertificate: z.string().optional(), privateKey: z.string().optional(), caCertificates: z.string().optional() }))
    .optional(),
  subjectAltNames: z.array(z.string()).optional(),
  verifyCertificateSpki: z.array(z.string()).optional(),
  verifyCertificateHash: z.array(z.string()).optional(),
  minProtocolVersion: z.enum(["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]).optional(),
  maxProtocolVersion: z.enum(["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]).optional(),
  cipherSuites: z.array(z.string()).optional(),
});

/** Istio's protocol.Parse: the port protocols it knows, matched in any case. */
const GATEWAY_PROTOCOLS = ["HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY", "TCP", "TLS", "UDP", "MONGO", "REDIS", "MYSQL"];
const TLS_PROTOCOLS = ["HTTPS", "TLS"];
const HTTP_PROTOCOLS = ["HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"];

/** An IPv4 or IPv6 address (Istio's gateways accept one as a host). */
function isIpAddress(value: string): boolean {
  if (/^(\d{1,3})(\.\d{1,3}){3}$/.test(value)) return value.split(".").every((o) => Number(o) <= 255 && (o === "0" || !o.startsWith("0")));
  if (!value.includes(":") || !/^[0-9a-fA-F:.]+$/.test(value)) return false;
  try {
    new URL(`http://[${value}]/`);
    return true;
  } catch {
    return false;
  }
}

/** Istio's ValidateWildcardDomain: DNS-1123 labels, a wildcard allowed only in the first; the last label not all digits. */
function wildcardDomainProblem(host: string): string | undefined {
  if (host.length > 255) return "is longer than 255 characters";
  const labels = host.split(".");
  const first = labels[0] ?? "";
  if (!(first === "*" || (first.length <= 63 && /^(\*|\*-)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/.test(first)))) return `has an invalid label ${JSON.stringify(first)}`;
  const rest = labels.slice(1);
  if (rest.length > 0 && rest[rest.length - 1] === "") rest.pop(); // a trailing dot (`istio.io.`) is allowed
  if (rest.length > 0 && /^\d+$/.test(rest[rest.length - 1] ?? "")) return "has an all-numeric top-level domain";
  const bad = rest.find((l) => !isIstioLabel(l));
  return bad === undefined ? undefined : `has an invalid label ${JSON.stringify(bad)}`;
}

/**
 * Istio's ValidateNamespaceSlashWildcardHostname for a Gateway server host:
 * `host` or `namespace/host`, where namespace is `*`, `.` or a DNS-1123 label and host
 * is `*`, an IP address, or a fully qualified name whose only wildcard is a leading `*.`.
 */
export function gatewayHostProblem(raw: string): string | undefined {
  const expected = `expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com`;
  const slash = raw.indexOf("/");
  const namespace = slash >= 0 ? raw.slice(0, slash) : undefined;
  const host = slash >= 0 ? raw.slice(slash + 1) : raw;
  if (namespace !== undefined) {
    if (namespace === "" || host === "") return `${expected}, got ${JSON.stringify(raw)}`;
    if (namespace !== "*" && namespace !== "." && !isIstioLabel(namespace)) {
      return `${expected}, got ${JSON.stringify(raw)} (namespace ${JSON.stringify(namespace)} is not "*", "." or a DNS-1123 label)`;
    }
  }
  if (host === "*" || isIpAddress(host)) return undefined;
  // Isthmus also serves Envoy's prefix patterns (`api.*`), which Istio's validation has no form for.
  if (host.endsWith(".*") && !host.slice(0, -2).includes("*") && host.slice(0, -2).split(".").every(isIstioLabel)) return undefined;
  const domain = wildcardDomainProblem(host);
  if (domain) return `${expected}, got ${JSON.stringify(raw)} (${JSON.stringify(host)} ${domain})`;
  if (!host.includes(".")) return `${expected}, got ${JSON.stringify(raw)} (short names are not allowed)`;
  if (host.includes("*") && !host.startsWith("*.")) return `${expected}, got ${JSON.stringify(raw)} (partial wildcard ${JSON.stringify(host)})`;
  return undefined;
}

export const Server = z
  .strictObject({
    port: z.strictObject({
      number: PortNumber,
      protocol: z.string(),
      name: z.string().optional(),
      targetPort: PortNumber.optional(),
    }),
    bind: z.string().optional(),
    hosts: z.array(z.string().min(1)).min(1, { message: "expected at least one host" }),
    tls: ServerTLSSettings.optional(),
    defaultEndpoint: z.string().optional(),
    name: z.string().optional(),
  })
  .superRefine((server, ctx) => {
    // Istio's validateServer / validateServerPort.
    server.hosts.forEach((host, j) => {
      const message = gatewayHostProblem(host);
      if (message) ctx.addIssue({ code: "custom", message, path: ["hosts", j] });
    });
    const { port, tls } = server;
    if (!port.name) ctx.addIssue({ code: "custom", message: "required field is missing (every Gateway server port needs a name, such as http or https)", path: ["port", "name"] });
    if (port.targetPort !== undefined) ctx.addIssue({ code: "custom", message: "not allowed: targetPort has no effect on a Gateway", path: ["port", "targetPort"] });
    const protocol = port.protocol.toUpperCase();
    if (!GATEWAY_PROTOCOLS.includes(protocol)) {
      ctx.addIssue({ code: "custom", message: `expected one of ${GATEWAY_PROTOCOLS.join(", ")}, got ${JSON.stringify(port.protocol)}`, path: ["port", "protocol"] });
      return;
    }
    if (TLS_PROTOCOLS.includes(protocol)) {
      if (!tls) ctx.addIssue({ code: "custom", message: `required field is missing (a ${protocol} server needs TLS settings, such as {mode: SIMPLE, credentialName: ...})`, path: ["tls"] });
    } else if (tls) {
      if (!HTTP_PROTOCOLS.includes(protocol)) {
        ctx.addIssue({ code: "custom", message: `not allowed on a ${protocol} server: TLS settings need an HTTPS or TLS port`, path: ["tls"] });
      } else if ((tls.mode !== undefined && tls.mode !== "PASSTHROUGH" && tls.mode !== "AUTO_PASSTHROUGH") || tls.serverCertificate || tls.privateKey || tls.caCertificates) {
        ctx.addIssue({ code: "custom", message: `not allowed on a plain-text ${protocol} server: only httpsRedirect may be set (terminate TLS on an HTTPS server)`, path: ["tls"] });
      }
    }
  });

export const GatewaySpec = z
  .strictObject({
    selector: Labels.optional(),
    servers: z.array(Server).optional(),
  })
  .superRefine((gateway, ctx) => {
    const servers = gateway.servers ?? [];
    // Istio: "gateway must have at least one server".
    if (servers.length === 0) ctx.addIssue({ code: "custom", message: "expected at least one server", path: gateway.servers ? ["servers"] : [] });
    // Istio: "port names in servers must be unique".
    const seen = new Map<string, number>();
    servers.forEach((server, i) => {
      const name = server.port.name;
      if (!name) return;
      const first = seen.get(name);
      if (first === undefined) seen.set(name, i);
      else ctx.addIssue({ code: "custom", message: `duplicate port name ${JSON.stringify(name)} (also servers[${first}]); port names must be unique across servers`, path: ["servers", i, "port", "name"] });
    });
  });
export type GatewaySpec = z.infer<typeof GatewaySpec>;
