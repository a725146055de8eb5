/**
 * The edge mapping of security resources (RequestAuthentication,
 * AuthorizationPolicy, PeerAuthentication) to traffic:
 *
 * - root namespace, no selector          → all traffic (gateway and every destination)
 * - selector matching the gateway labels → all traffic, as a gateway policy
 *   (also `targetRef` kind Gateway)
 * - another namespace, no selector       → traffic routed to services of that namespace
 * - a selector                           → traffic routed to clusters with an endpoint whose
 *   labels match (in the policy's namespace; any namespace for the root namespace)
 * - `targetRef(s)` Service / ServiceEntry → traffic routed to that service
 *
 * The gateway labels are GatewayConfig `gatewayLabels` when set (`{}` counts
 * as unset), else the labels of Istio's default ingress gateway plus the
 * selectors of the Gateway resources, so `selector: {istio: ingressgateway}`
 * policies copied from a mesh keep protecting the edge.
 */
import type { ClusterDef } from "../snapshot.ts";
import type { AnyResource, Resource } from "../validate.ts";
import type { Diagnostics } from "./diagnostics.ts";

/** The kinds mapped onto traffic this way (RateLimitPolicy and Telemetry use the same mapping). */
type AttachableKind = "RequestAuthentication" | "AuthorizationPolicy" | "PeerAuthentication" | "RateLimitPolicy" | "Telemetry";

export interface Attachment {
  /** Root namespace, no selector: every request. */
  all: boolean;
  /** Selects the gateway itself: every request, in the gateway layer. */
  gateway: boolean;
  /** Destination-scoped: does it apply to traffic routed to this cluster? */
  cluster: (cluster: ClusterDef) => boolean;
  /** True for namespace-wide (no selector, not root) resources. */
  namespaceWide: boolean;
  /** True for selector or targetRef resources. */
  workload: boolean;
}

export type GatewayLabels = Map<string, Set<string>>;

/** Labels of Istio's default ingress gateway deployment. */
const ISTIO_INGRESS_LABELS: Record<string, string> = { app: "istio-ingressgateway", istio: "ingressgateway" };

/**
 * GatewayConfig `gatewayLabels` when it names at least one label; `{}` is
 * read as unset, for Gateway selection, policy selectors and the settings
 * alike.
 *
 * @example
 * configuredGatewayLabels({}); // undefined
 * configuredGatewayLabels({ istio: "edge" }); // { istio: "edge" }
 */
export function configuredGatewayLabels(labels: Record<string, string> | undefined): Record<string, string> | undefined {
  return labels && Object.keys(labels).length > 0 ? labels : undefined;
}

/**
 * The labels the gateway answers to: GatewayConfig `gatewayLabels` when set,
 * else Istio's default ingress gateway labels plus every Gateway's selector.
 */
export function gatewayLabels(config: Resource<"GatewayConfig"> | undefined, gateways: Resource<"Gateway">[]): GatewayLabels {
  const labels: GatewayLabels = new Map();
  const add = (k: string, v: string) => {
    let set = labels.get(k);
    if (!set) labels.set(k, (set = new Set()));
    set.add(v);
  };
  const configured = configuredGatewayLabels(config?.spec.gatewayLabels);
  if (configured) {
    for (const [k, v] of Object.entries(configured)) add(k, v);
    return labels;
  }
  for (const [k, v] of Object.entries(ISTIO_INGRESS_LABELS)) add(k, v);
  for (const g of gateways) for (const [k, v] of Object.entries(g.spec.selector ?? {})) add(k, v);
  return labels;
}

/**
 * Works out what a security resource applies to, reporting selectors and
 * targets that cannot be honoured.
 */
export function attachment(
  resource: { [K in AttachableKind]: Resource<K> }[AttachableKind],
  rootNamespace: string,
  labels: GatewayLabels,
  clusters: readonly ClusterDef[],
  diag: Diagnostics,
): Attachment {
  const spec = resource.spec as { selector?: { matchLabels?: Record<string, string> }; targetRef?: TargetRef; targetRefs?: TargetRef[] };
  const selector = spec.selector?.matchLabels && Object.keys(spec.selector.matchLabels).length > 0 ? spec.selector.matchLabels : undefined;
  const refs: { ref: TargetRef; path: (string | number)[] }[] = [
    ...(spec.targetRef ? [{ ref: spec.targetRef, path: ["spec", "targetRef"] }] : []),
    ...(spec.targetRefs ?? []).map((ref, i) => ({ ref, path: ["spec", "targetRefs", i] })),
  ];
  return attachmentOf(resource, selector, refs, ["spec", "selector"], rootNamespace, labels, clusters, diag);
}

/**
 * The mapping itself, for a resource whose selector and target references
 * were read from wherever its kind keeps them (`selectorPath` locates the
 * selector in messages).
 */
export function attachmentOf(
  resource: AnyResource,
  selector: Record<string, string> | undefined,
  refs: { ref: TargetRef; path: (string | number)[] }[],
  selectorPath: (string | number)[],
  rootNamespace: string,
  labels: GatewayLabels,
  clusters: readonly ClusterDef[],
  diag: Diagnostics,
): Attachment {
  const root = resource.namespace === rootNamespace;
  const none: Attachment = { all: false, gateway: false, cluster: () => false, namespaceWide: false, workload: true };

  if (refs.length > 0) {
    if (selector) {
      diag.error(resource, selectorPath, "expected either selector or targetRef(s), not both (Istio rejects both)");
      return none;
    }
    return targetRefAttachment(resource, refs, diag);
  }
  if (!selector) {
    if (root) return { all: true, gateway: false, cluster: () => false, namespaceWide: false, workload: false };
    const ns = resource.namespace;
    return { all: false, gateway: false, cluster: (c) => c.namespace === ns, namespaceWide: true, workload: false };
  }
  const gateway = Object.entries(selector).every(([k, v]) => labels.get(k)?.has(v) === true);
  const ns = resource.namespace;
  const matches = (c: ClusterDef) =>
    (root || c.namespace === ns) && c.endpoints.some((e) => Object.entries(selector).every(([k, v]) => e.labels[k] === v));
  if (!gateway && !clusters.some(matches)) {
    diag.warn(
      resource,
      selectorPath,
      "selects no destination (no ServiceEntry endpoint has these labels) and not the gateway (see GatewayConfig gatewayLabels); it has no effect at the edge",
    );
  }
  return { all: false, gateway, cluster: matches, namespaceWide: false, workload: true };
}

export interface TargetRef {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

function targetRefAttachment(resource: AnyResource, refs: { ref: TargetRef; path: (string | number)[] }[], diag: Diagnostics): Attachment {
  let gateway = false;
  const services = new Set<string>();
  const entries = new Set<string>();
  refs.forEach(({ ref, path: field }) => {
    if (ref.namespace && ref.namespace !== resource.namespace) {
      diag.error(resource, [...field, "namespace"], `expected the policy's own namespace (${resource.namespace}); cross-namespace targetRef is not allowed`);
      return;
    }
    if (ref.kind === "Gateway" || ref.kind === "GatewayClass") gateway = true;
    else if (ref.kind === "Service") services.add(`${ref.name}.${resource.namespace}.svc.cluster.local`);
    else if (ref.kind === "ServiceEntry") entries.add(`ServiceEntry/${resource.namespace}/${ref.name}`);
    else diag.error(resource, [...field, "kind"], `expected Gateway, Service or ServiceEntry, got ${ref.kind}`);
  });
  return {
    all: false,
    gateway,
    cluster: (c) => services.has(c.service) || entries.has(c.source),
    namespaceWide: false,
    workload: true,
  };
}

/**
 * The scopes of the gateway and of each cluster, with equal scopes stored
 * once: `scopes[0]` is the gateway's, and `clusterScopes` names the index of
 * each cluster whose scope differs from it (a cluster left out uses the
 * gateway's). Scopes are compared by their JSON.
 *
 * @example
 * distinctScopes([1], clusters, (c) => (c.name === "reviews" ? [1, 2] : [1]));
 * // { scopes: [[1], [1, 2]], clusterScopes: { reviews: 1 } }
 */
export function distinctScopes<T>(gateway: T, clusters: readonly ClusterDef[], scopeOf: (cluster: ClusterDef) => T): { scopes: T[]; clusterScopes: Record<string, number> } {
  const scopes: T[] = [gateway];
  const indexOf = new Map<string, number>([[JSON.stringify(gateway), 0]]);
  const clusterScopes: Record<string, number> = {};
  for (const cluster of clusters) {
    const scope = scopeOf(cluster);
    const key = JSON.stringify(scope);
    let index = indexOf.get(key);
    if (index === undefined) {
      index = scopes.push(scope) - 1;
      indexOf.set(key, index);
    }
    if (index !== 0) clusterScopes[cluster.name] = index;
  }
  return { scopes, clusterScopes };
}
