/**
 * The Istio documents nearly every end-to-end test writes: a STATIC
 * MESH_INTERNAL ServiceEntry whose endpoints are local origins, a
 * VirtualService that routes a host to one destination, and the
 * RequestAuthentication of the test identity provider. Each builder
 * returns one YAML document (or two joined by `---`) with no leading or
 * trailing newline, to be placed between `---` separators.
 *
 * Hosts follow the tests' convention: the ServiceEntry `name` in namespace
 * `ns` serves `<name>.<ns>.internal`.
 */

/** An endpoint of a ServiceEntry: a local origin's port, with what else the endpoint says. */
export interface Endpoint {
  /** The origin's port, under the ServiceEntry's port name. */
  port: number;
  /** Default 127.0.0.1. */
  address?: string;
  labels?: Record<string, string>;
  /** region/zone/subzone, e.g. aws/us-east-1/us-east-1a. */
  locality?: string;
}

export interface ServiceEntryOptions {
  name: string;
  namespace: string;
  /** One per endpoint: a port on 127.0.0.1, or an endpoint spelled out. */
  endpoints: readonly (number | Endpoint)[];
  /** Default `<name>.<namespace>.internal`. */
  host?: string;
  /** The service port; default {number: 80, name: http, protocol: HTTP}. */
  port?: { number?: number; name?: string; protocol?: string };
}

/**
 * A STATIC MESH_INTERNAL ServiceEntry for `<name>.<namespace>.internal`
 * with one endpoint per entry of `endpoints`.
 *
 * @example
 * serviceEntry({ name: "app", namespace: "apps", endpoints: [app.port] });
 * serviceEntry({ name: "reviews", namespace: "shop", endpoints: [{ port: v1.port, labels: { version: "v1" } }, { port: v2.port, labels: { version: "v2" } }] });
 * serviceEntry({ name: "ledger", namespace: "edge", port: { number: 443, name: "https", protocol: "HTTPS" }, endpoints: [{ address: "localhost", port: ledgerPort }] });
 */
export function serviceEntry(options: ServiceEntryOptions): string {
  const port = { number: 80, name: "http", protocol: "HTTP", ...options.port };
  const endpoints = options.endpoints.map((entry) => {
    const endpoint = typeof entry === "number" ? { port: entry } : entry;
    const labels = endpoint.labels ? `, labels: ${flow(endpoint.labels)}` : "";
    const locality = endpoint.locality ? `, locality: ${endpoint.locality}` : "";
    return `  - {address: ${endpoint.address ?? "127.0.0.1"}, ports: {${port.name}: ${endpoint.port}}${labels}${locality}}`;
  });
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${options.name}, namespace: ${options.namespace}}
spec:
  hosts: [${options.host ?? internalHost(options.name, options.namespace)}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${port.number}, name: ${port.name}, protocol: ${port.protocol}}]
  endpoints:
${endpoints.join("\n")}`;
}

export interface VirtualServiceOptions {
  name: string;
  namespace: string;
  /** The host (or hosts) the VirtualService serves. */
  hosts: string | readonly string[];
  /** The destination host every request is routed to, e.g. app.apps.internal. */
  destination: string;
  /** metadata.annotations, e.g. {"isthmus.dev/retry-non-idempotent": "true"}. */
  annotations?: Record<string, string>;
  /** More fields of the one HTTP route, as YAML values: {timeout: "500ms", retries: "{attempts: 2, retryOn: 5xx}"}. */
  routeFields?: Record<string, string>;
}

/**
 * A VirtualService with one HTTP route that sends every request for
 * `hosts` to `destination`.
 *
 * @example
 * virtualService({ name: "app", namespace: "apps", hosts: "jwks.test", destination: "app.apps.internal" });
 * virtualService({ name: "hanging", namespace: "edge", hosts: "hanging.example.com", destination: "hanging.edge.internal", routeFields: { timeout: "500ms" } });
 */
export function virtualService(options: VirtualServiceOptions): string {
  const hosts = typeof options.hosts === "string" ? [options.hosts] : options.hosts;
  const annotations = options.annotations ? `, annotations: ${flow(options.annotations)}` : "";
  const fields = Object.entries(options.routeFields ?? {}).map(([field, value]) => `\n    ${field}: ${value}`);
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${options.name}, namespace: ${options.namespace}${annotations}}
spec:
  hosts: [${hosts.join(", ")}]
  http:
  - route: [{destination: {host: ${options.destination}}}]${fields.join("")}`;
}

export interface RoutedServiceOptions extends ServiceEntryOptions {
  /** The host (or hosts) routed to the service. */
  hosts: string | readonly string[];
  /** The VirtualService's name; default the ServiceEntry's. */
  virtualServiceName?: string;
}

/**
 * A host routed to local origins: the ServiceEntry `name` in `namespace`
 * ({@link serviceEntry}) and a VirtualService of the same namespace that
 * routes `hosts` to it ({@link virtualService}).
 *
 * @example
 * routedService({ hosts: "jwks.test", name: "app", namespace: "apps", endpoints: [app.port] });
 * routedService({ hosts: `${ns}.rl.test`, name: "svc", namespace: ns, virtualServiceName: "vs", endpoints: [app.port] });
 */
export function routedService(options: RoutedServiceOptions): string {
  const { hosts, virtualServiceName, ...service } = options;
  const destination = service.host ?? internalHost(service.name, service.namespace);
  return `${virtualService({ name: virtualServiceName ?? service.name, namespace: service.namespace, hosts, destination })}
---
${serviceEntry(service)}`;
}

/** An identity provider's issuer and where its keys are (test/helpers/idp.ts's Idp is one). */
export interface JwtIssuer {
  issuer: string;
  jwksUri: string;
}

/**
 * A RequestAuthentication that verifies the tokens of `idp`: by default
 * `idp` in istio-system, the root namespace, so it applies to every request.
 *
 * @example
 * requestAuthentication(idp);
 * requestAuthentication(idp, { name: "jwt" });
 */
export function requestAuthentication(idp: JwtIssuer, options: { name?: string; namespace?: string } = {}): string {
  return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ${options.name ?? "idp"}, namespace: ${options.namespace ?? "istio-system"}}
spec:
  jwtRules:
  - {issuer: "${idp.issuer}", jwksUri: "${idp.jwksUri}"}`;
}

const internalHost = (name: string, namespace: string) => `${name}.${namespace}.internal`;

/** A YAML flow mapping with the values quoted, so that "true" or "1" stay strings. */
const flow = (map: Record<string, string>) => `{${Object.entries(map).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join(", ")}}`;
