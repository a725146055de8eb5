/**
 * The edge mapping of security resources (RequestAuthentication,
 * AuthorizationPolicy, PeerAuthentication) to traffic:
 *
 * - root namespace, no selector          → all traffic (gateway and every destination)
 * - selector matching the gateway labels → all traffic, as a gateway policy, when the
 *   resource is in the gateway's namespace or the root namespace (Istio searches
 *   a selector's workloads in the resource's own namespace only)
 * - `targetRef(s)` kind Gateway naming a served Gateway of the resource's own
 *   namespace → all traffic, as a gateway policy
 * - another namespace, no selector       → traffic routed to services of that namespace
 * - a selector                           → traffic routed to clusters with an endpoint whose
 *   labels match (in the policy's namespace; any namespace for the root namespace)
 * - `targetRef(s)` Service / ServiceEntry → traffic routed to that service
 *
 * The gateway labels are GatewayConfig `gatewayLabels` when set (`{}` counts
 * as unset), else the labels of Istio's default ingress gateway plus the
 * selectors of the Gateway resources, so `selector: {istio: ingressgateway}`
 * policies copied from a mesh keep protecting the edge. The gateway's
 * namespace is the GatewayConfig's, else the root namespace.
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

/**
 * The gateway workload as policies select it: its labels (name → values),
 * the namespace it runs in and the Gateways it serves. A Map of its labels,
 * so code that only matches labels reads it as one.
 */
export class GatewayLabels extends Map<string, Set<string>> {
  /** The GatewayConfig's namespace; undefined means the root namespace. */
  readonly namespace: string | undefined;
  /** `namespace/name` of every Gateway resource the edge serves. */
  readonly gateways: ReadonlySet<string>;

  constructor(namespace: string | undefined = undefined, gateways: ReadonlySet<string> = new Set()) {
    super();
    this.namespace = namespace;
    this.gateways = gateways;
  }
}

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
  const configured = configuredGatewayLabels(config?.spec.gatewayLabels);
  // The Gateways the edge serves: with gatewayLabels set, those whose selector they satisfy (virtual-hosts.ts).
  const served = gateways.filter((g) => !configured || Object.entries(g.spec.selector ?? {}).every(([k, v]) => configured[k] === v));
  const labels = new GatewayLabels(config?.namespace, new Set(served.map((g) => `${g.namespace}/${g.name}`)));
  const add = (k: string, v: string) => {
    let set = labels.get(k);
    if (!set) labels.set(k, (set = new Set()));
    set.add(v);
  };
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
    return targetRefAttachment(resource, refs, root, labels, diag);
  }
  if (!selector) {
    if (root) return { all: true, gateway: false, cluster: () => false, namespaceWide: false, workload: false };
    const ns = resource.namespace;
    return { all: false, gateway: false, cluster: (c) => c.namespace === ns, namespaceWide: true, workload: false };
  }
  const ns = resource.namespace;
  const gatewayNamespace = labels.namespace ?? rootNamespace;
  const gatewayLabelled = Object.entries(selector).every(([k, v]) => labels.get(k)?.has(v) === true);
  // Istio looks for a selector's workloads in the resource's own namespace only (the root namespace's
  // reach every namespace): a tenant's copy of `istio: ingressgateway` must not become an edge policy.
  const gateway = gatewayLabelled && (root || ns === gatewayNamespace);
  const matches = (c: ClusterDef) =>
    (root || c.namespace === ns) && c.endpoints.some((e) => Object.entries(selector).every(([k, v]) => e.labels[k] === v));
  const selectsDestination = clusters.some(matches);
  if (gatewayLabelled && !gateway) {
    diag.warn(
      resource,
      selectorPath,
      `matches the gateway's labels, but the gateway runs in namespace ${gatewayNamespace} (the GatewayConfig's namespace, else the root namespace) and, as in Istio, a selector only selects workloads of its own namespace (${ns}); it does not apply at the gateway (put it in ${gatewayNamespace === rootNamespace ? gatewayNamespace : `${gatewayNamespace} or the root namespace ${rootNamespace}`} for that)${selectsDestination ? "" : "; it selects no destination either, so it has no effect at the edge"}`,
    );
  } else if (!gateway && !selectsDestination) {
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

/**
 * `targetRef(s)`: as in Istio, a reference attaches only within the
 * resource's own namespace. A Gateway reference selects the edge when it
 * names a Gateway the edge serves in that namespace; a GatewayClass one only
 * from the root namespace (Istio attaches GatewayClass references from there
 * alone), since either makes the resource a policy for all traffic.
 */
function targetRefAttachment(resource: AnyResource, refs: { ref: TargetRef; path: (string | number)[] }[], root: boolean, labels: GatewayLabels, diag: Diagnostics): Attachment {
  let gateway = false;
  const services = new Set<string>();
  const entries = new Set<string>();
  refs.forEach(({ ref, path: field }) => {
    if (ref.namespace && ref.namespace !== resource.namespace) {
      diag.error(resource, [...field, "namespace"], `expected the policy's own namespace (${resource.namespace}); cross-namespace targetRef is not allowed`);
      return;
    }
    if (ref.kind === "Gateway") {
      if (labels.gateways.has(`${resource.namespace}/${ref.name}`)) gateway = true;
      else {
        diag.warn(
          resource,
          [...field, "name"],
          `expected a Gateway of namespace ${resource.namespace} that the edge serves, got "${ref.name}" (as in Istio, a targetRef names a Gateway of the resource's own namespace); this reference selects nothing`,
        );
      }
    } else if (ref.kind === "GatewayClass") {
      if (root) gateway = true;
      else diag.warn(resource, [...field, "kind"], "a GatewayClass targetRef only applies from the root namespace (as in Istio); this reference selects nothing");
    } else if (ref.kind === "Service") services.add(`${ref.name}.${resource.namespace}.svc.cluster.local`);
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
