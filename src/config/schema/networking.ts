/**
 * networking.istio.io kinds: VirtualService, DestinationRule, ServiceEntry
 * and Gateway, with every field of the Istio API (istio/api networking/v1alpha3).
 * Defaults are applied by the compiler, not here, so that a resource keeps
 * the shape its author wrote (which is what `isthmus diff` compares).
 */
import { z } from "zod";
import { Duration, Labels, Percent, PortNumber, StringMatch, UInt, WorkloadSelector } from "./common.ts";

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

export const Destination = z.strictObject({
  host: z.string().min(1, { message: "expected a destination host" }),
  subset: z.string().optional(),
  port: PortSelector.optional(),
});

const HeaderOperations = z.strictObject({
  set: z.record(z.string(), z.string()).optional(),
  add: z.record(z.string(), z.string()).optional(),
  remove: z.array(z.string()).optional(),
});

export const Headers = z.strictObject({
  request: HeaderOperations.optional(),
  response: HeaderOperations.optional(),
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
  perTryTimeout: Duration.optional(),
  retryOn: z.string().optional(),
  retryRemoteLocalities: z.boolean().optional(),
  retryIgnorePreviousHosts: z.boolean().optional(),
  backoff: Duration.optional(),
});

export const CorsPolicy = z.strictObject({
  allowOrigins: z.array(StringMatch).optional(),
  allowOrigin: z.array(z.string()).optional(),
  allowMethods: z.array(z.string()).optional(),
  allowHeaders: z.array(z.string()).optional(),
  exposeHeaders: z.array(z.string()).optional(),
  maxAge: Duration.optional(),
  allowCredentials: z.boolean().optional(),
  unmatchedPreflights: z.enum(["UNSPECIFIED", "FORWARD", "IGNORE"]).optional(),
});

export const HTTPFaultInjection = z.strictObject({
  delay: z
    .strictObject({
      fixedDelay: Duration.optional(),
      exponentialDelay: Duration.optional(),
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
  timeout: Duration.optional(),
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

export const VirtualServiceSpec = z.strictObject({
  hosts: z.array(z.string().min(1)).optional(),
  gateways: z.array(z.string()).optional(),
  http: z.array(HTTPRoute).optional(),
  tls: z.array(TLSRoute).optional(),
  tcp: z.array(TCPRoute).optional(),
  exportTo: z.array(z.string()).optional(),
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
    warmupDurationSecs: Duration.optional(),
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
      connectTimeout: Duration.optional(),
      tcpKeepalive: z
        .strictObject({ probes: UInt.optional(), time: Duration.optional(), interval: Duration.optional() })
        .optional(),
      maxConnectionDuration: Duration.optional(),
      idleTimeout: Duration.optional(),
    })
    .optional(),
  http: z
    .strictObject({
      http1MaxPendingRequests: z.number().int().optional(),
      http2MaxRequests: z.number().int().optional(),
      maxRequestsPerConnection: z.number().int().optional(),
      maxRetries: z.number().int().optional(),
      idleTimeout: Duration.optional(),
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
  interval: Duration.optional(),
  baseEjectionTime: Duration.optional(),
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
  name: z.string().min(1),
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

export const Server = z.strictObject({
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
});

export const GatewaySpec = z.strictObject({
  selector: Labels.optional(),
  servers: z.array(Server).optional(),
});
export type GatewaySpec = z.infer<typeof GatewaySpec>;
