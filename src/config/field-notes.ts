/**
 * Notes on fields that are valid Istio but behave differently at the edge.
 *
 * - EDGE_CAVEATS: fields Istio has that a Worker cannot honour. They are
 *   accepted (so mesh YAML applies unchanged) with a warning saying why.
 * - NOT_ENFORCED: fields Isthmus will honour but does not yet. Security
 *   fields are errors, because silently ignoring them would let traffic
 *   through that the author meant to stop; the rest are warnings.
 *
 * Paths use `[]` for "every list item" and `{}` for "every map value".
 */
import type { AnyResource } from "./validate.ts";
import type { Kind } from "./kinds.ts";
import type { Severity } from "./problems.ts";

interface FieldRule {
  path: string;
  severity: Severity;
  message: string;
  /** Only flag values for which this returns true. */
  when?: (value: unknown) => boolean;
  /** Not for resources for which this returns true. */
  skip?: (resource: AnyResource) => boolean;
}

const warn = (path: string, message: string, when?: (value: unknown) => boolean): FieldRule => ({ path, severity: "warning", message, when });
const error = (path: string, message: string, when?: (value: unknown) => boolean): FieldRule => ({ path, severity: "error", message, when });

/** A VirtualService without hosts is a delegate: its exportTo is honoured, and tls/tcp routes are errors (compile/delegates.ts). */
const delegateVirtualService = (resource: AnyResource): boolean => resource.kind === "VirtualService" && !resource.spec.hosts?.length;
const MESH_ONLY = "only selects workloads inside a mesh; at the edge every resource given to Isthmus is visible, so it is ignored";
/** exportTo: what the edge does with the resource (`serves`, `applies`) whatever it says. */
const exportTo = (does: string) =>
  `exportTo limits which namespaces' proxies see this resource (an Istio ingress gateway in another namespace would not see one exported only to "."); the edge ${does} it regardless, as it does every resource given to Isthmus, so exportTo is ignored`;
const CONNECTIONS = "Workers fetch() manages upstream connections itself; this connection setting is ignored";
const SERVER_TLS = "Cloudflare terminates TLS for the gateway; configure certificates in Cloudflare (edge or custom-hostname certificates); ignored";

/** Fields Istio has that cannot be honoured by a Worker, per kind. */
export const EDGE_CAVEATS: Record<Kind, FieldRule[]> = {
  VirtualService: [
    { ...warn("spec.exportTo", exportTo("serves")), skip: delegateVirtualService },
    { ...warn("spec.tls", "TLS routes need the raw TLS stream; a Worker only receives HTTP requests, so these routes are ignored"), skip: delegateVirtualService },
    { ...warn("spec.tcp", "TCP routes need a raw TCP listener; a Worker only receives HTTP requests, so these routes are ignored"), skip: delegateVirtualService },
    warn("spec.http[].match[].statPrefix", "Envoy stat prefixes do not exist at the edge; Isthmus reports Istio's standard metrics; ignored"),
    error("spec.http[].fault.delay.exponentialDelay", "exponentialDelay is not supported (Istio rejects it too); use fixedDelay"),
    error("spec.http[].fault.abort.http2Error", "http2Error is not supported (Istio rejects it too); use httpStatus or grpcStatus"),
  ],
  DestinationRule: [
    warn("spec.exportTo", exportTo("applies")),
    warn("spec.workloadSelector", MESH_ONLY),
    ...originProtocolCaveats("spec.trafficPolicy"),
    ...originProtocolCaveats("spec.subsets[].trafficPolicy"),
    ...trafficPolicyCaveats("spec.trafficPolicy"),
    ...trafficPolicyCaveats("spec.trafficPolicy.portLevelSettings[]"),
    ...trafficPolicyCaveats("spec.subsets[].trafficPolicy"),
    ...trafficPolicyCaveats("spec.subsets[].trafficPolicy.portLevelSettings[]"),
  ],
  ServiceEntry: [
    warn("spec.exportTo", exportTo("serves")),
    warn("spec.addresses", "virtual IPs only matter to in-mesh TCP capture; ignored"),
    warn("spec.workloadSelector", "workloadSelector selects in-mesh pods; list the origins as endpoints instead; ignored"),
    warn("spec.subjectAltNames", "a Worker verifies origin certificates against public CAs and the URL host; SAN pinning is ignored"),
    warn("spec.endpoints[].network", "networks describe in-mesh gateways; at the edge every endpoint is reached directly; ignored"),
    warn("spec.endpoints[].serviceAccount", "service accounts are mesh identities; ignored"),
  ],
  Gateway: [
    warn("spec.servers[].bind", "the edge has no listener address to bind; ignored"),
    warn("spec.servers[].defaultEndpoint", "sidecar ingress listeners do not exist at the edge; ignored"),
    warn("spec.servers[].tls.mode", SERVER_TLS, (v) => v !== "SIMPLE" && v !== undefined),
    warn("spec.servers[].tls.serverCertificate", SERVER_TLS),
    warn("spec.servers[].tls.privateKey", SERVER_TLS),
    warn("spec.servers[].tls.caCertificates", "client certificates are verified by Cloudflare API Shield mTLS; PeerAuthentication reads the result; ignored"),
    warn("spec.servers[].tls.caCrl", SERVER_TLS),
    warn("spec.servers[].tls.credentialName", SERVER_TLS),
    warn("spec.servers[].tls.credentialNames", SERVER_TLS),
    warn("spec.servers[].tls.tlsCertificates", SERVER_TLS),
    warn("spec.servers[].tls.subjectAltNames", SERVER_TLS),
    warn("spec.servers[].tls.verifyCertificateSpki", SERVER_TLS),
    warn("spec.servers[].tls.verifyCertificateHash", SERVER_TLS),
    warn("spec.servers[].tls.minProtocolVersion", "set the minimum TLS version in the Cloudflare zone settings; ignored"),
    warn("spec.servers[].tls.maxProtocolVersion", "TLS versions are set in the Cloudflare zone settings; ignored"),
    warn("spec.servers[].tls.cipherSuites", "cipher suites are set in the Cloudflare zone settings; ignored"),
  ],
  RequestAuthentication: [],
  AuthorizationPolicy: [],
  PeerAuthentication: [],
  Telemetry: [
    warn("spec.tracing[].useRequestIdForTraceSampling", "Isthmus samples on the trace id; ignored"),
    warn("spec.tracing[].enableIstioTags", "Isthmus always adds its standard span attributes; ignored"),
  ],
  GatewayConfig: [warn("spec.connectTimeout", "a Worker cannot observe the TCP connect phase of fetch(); use VirtualService timeouts; ignored")],
  RateLimitPolicy: [],
  EnvoyFilter: [],
};

/**
 * `tunnel` and `proxyProtocol`, which a traffic policy has at the top level
 * and in a subset (not in `portLevelSettings`).
 */
function originProtocolCaveats(base: string): FieldRule[] {
  return [
    warn(`${base}.tunnel`, "HTTP CONNECT tunnelling to origins is not available from a Worker; ignored"),
    warn(`${base}.proxyProtocol`, "a Worker cannot send a PROXY protocol header to origins; ignored"),
  ];
}

/** The caveats of every traffic policy: top level, subset, and their `portLevelSettings` entries. */
function trafficPolicyCaveats(base: string): FieldRule[] {
  return [
    warn(`${base}.connectionPool.tcp.maxConnections`, CONNECTIONS),
    warn(`${base}.connectionPool.tcp.connectTimeout`, "a Worker cannot observe the TCP connect phase of fetch(); use the route timeout; ignored"),
    warn(`${base}.connectionPool.tcp.tcpKeepalive`, CONNECTIONS),
    warn(`${base}.connectionPool.tcp.maxConnectionDuration`, CONNECTIONS),
    warn(`${base}.connectionPool.tcp.idleTimeout`, CONNECTIONS),
    warn(`${base}.connectionPool.http.maxRequestsPerConnection`, CONNECTIONS),
    warn(`${base}.connectionPool.http.idleTimeout`, CONNECTIONS),
    warn(`${base}.connectionPool.http.h2UpgradePolicy`, "the Workers runtime chooses the upstream HTTP version; ignored"),
    warn(`${base}.connectionPool.http.useClientProtocol`, "the Workers runtime chooses the upstream HTTP version; ignored"),
    warn(`${base}.connectionPool.http.maxConcurrentStreams`, CONNECTIONS),
    warn(`${base}.loadBalancer.warmup`, "slow start is not supported at the edge; ignored"),
    warn(`${base}.loadBalancer.warmupDurationSecs`, "slow start is not supported at the edge; ignored"),
    warn(`${base}.loadBalancer.simple`, "PASSTHROUGH forwards to the original destination IP, which an edge request does not have; the default (LEAST_REQUEST) is used", (v) => v === "PASSTHROUGH"),
    error(`${base}.tls.mode`, "ISTIO_MUTUAL uses mesh certificates that exist only inside the mesh; use MUTUAL with a credentialName backed by an mtls_certificates binding", (v) => v === "ISTIO_MUTUAL"),
    warn(`${base}.tls.clientCertificate`, "file paths inside a proxy do not exist at the edge; use credentialName with an mtls_certificates binding; ignored"),
    warn(`${base}.tls.privateKey`, "file paths inside a proxy do not exist at the edge; use credentialName with an mtls_certificates binding; ignored"),
    warn(
      `${base}.tls.caCertificates`,
      "not enforced, so verification is weaker than Envoy's: the origin is accepted with any certificate for its host from a public CA (under isthmus serve, also from the CAs of --trusted-ca, or the ca.crt of a --credentials directory), not only from these CAs",
    ),
    warn(`${base}.tls.caCrl`, "a Worker cannot load a CRL for origin certificates; ignored"),
    warn(
      `${base}.tls.subjectAltNames`,
      "not enforced, so verification is weaker than Envoy's: the origin certificate is checked against the URL host only, not against these names",
    ),
    warn(`${base}.tls.sni`, "a Worker sends the URL host as SNI; ignored"),
    error(`${base}.tls.insecureSkipVerify`, "a Worker always verifies origin certificates; insecureSkipVerify cannot be honoured", (v) => v === true),
  ];
}

/**
 * Fields Isthmus will honour but does not yet: empty now that every kind's
 * runtime exists. A field added to a schema before its runtime goes here —
 * a warning, or an error where letting it pass would let through traffic
 * the resource is meant to stop — and docs/CONFIG.md's status table says so.
 */
export const NOT_ENFORCED: Record<Kind, FieldRule[]> = {
  VirtualService: [],
  DestinationRule: [],
  ServiceEntry: [],
  Gateway: [],
  RequestAuthentication: [],
  AuthorizationPolicy: [],
  PeerAuthentication: [],
  Telemetry: [],
  GatewayConfig: [],
  RateLimitPolicy: [],
  EnvoyFilter: [],
};

export interface FieldNote {
  path: (string | number)[];
  severity: Severity;
  message: string;
}

/** Every caveat and not-yet-enforced note that applies to the fields present in a resource. */
export function fieldNotes(resource: AnyResource): FieldNote[] {
  const notes: FieldNote[] = [];
  const root = { spec: resource.spec, metadata: resource.metadata };
  for (const rule of [...EDGE_CAVEATS[resource.kind], ...NOT_ENFORCED[resource.kind]]) {
    if (rule.skip?.(resource)) continue;
    for (const { path, value } of expand(root, rule.path.split("."))) {
      if (value === undefined) continue;
      if (rule.when && !rule.when(value)) continue;
      notes.push({ path, severity: rule.severity, message: rule.message });
    }
  }
  return notes;
}

function* expand(node: unknown, segments: string[], prefix: (string | number)[] = []): Generator<{ path: (string | number)[]; value: unknown }> {
  if (segments.length === 0) {
    yield { path: prefix, value: node };
    return;
  }
  const [head, ...rest] = segments as [string, ...string[]];
  const iterate = head.endsWith("[]") ? "list" : head.endsWith("{}") ? "map" : undefined;
  const key = iterate ? head.slice(0, -2) : head;
  if (typeof node !== "object" || node === null) return;
  const child = (node as Record<string, unknown>)[key];
  if (child === undefined) return;
  if (iterate === "list") {
    if (!Array.isArray(child)) return;
    for (let i = 0; i < child.length; i++) yield* expand(child[i], rest, [...prefix, key, i]);
  } else if (iterate === "map") {
    if (typeof child !== "object" || child === null) return;
    for (const [k, v] of Object.entries(child)) yield* expand(v, rest, [...prefix, key, k]);
  } else {
    yield* expand(child, rest, [...prefix, key]);
  }
}
