/**
 * PeerAuthentication → the mTLS mode each destination requires, composed
 * as Istio's ComposePeerAuthentication does: the mesh-wide policy (root
 * namespace, no selector), overridden by the namespace policy, overridden
 * by the workload policy (selector), whose portLevelMtls overrides it for
 * the matching workload (endpoint) ports. UNSET inherits from the level
 * above; with nothing set the mode is PERMISSIVE. When several policies
 * exist at one level the oldest (creationTimestamp, then name, then namespace) wins.
 */
import { byCreationTime } from "./creation-order.ts";
import type { ClusterDef, PeerMode } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics } from "./diagnostics.ts";

type PA = Resource<"PeerAuthentication">;
type Mode = "UNSET" | "DISABLE" | "PERMISSIVE" | "STRICT" | undefined;

const STRICTNESS: Record<PeerMode, number> = { DISABLE: 0, PERMISSIVE: 1, STRICT: 2 };

export class PeerModes {
  private readonly mesh?: PA;
  private readonly namespaces = new Map<string, PA>();
  private readonly workloads: PA[] = [];

  constructor(policies: PA[], rootNamespace: string, gatewayMatches: (labels: Record<string, string>) => boolean, diag: Diagnostics) {
    // Istio's order: oldest first, then name, then namespace (not the order of the files).
    const ordered = policies.slice().sort(byCreationTime);
    let mesh: PA | undefined;
    for (const pa of ordered) {
      const selector = pa.spec.selector?.matchLabels;
      const hasSelector = selector !== undefined && Object.keys(selector).length > 0;
      if (pa.spec.portLevelMtls && Object.keys(pa.spec.portLevelMtls).length > 0 && !hasSelector) {
        diag.error(pa, ["spec", "portLevelMtls"], "portLevelMtls requires a selector (Istio rejects it on namespace- and mesh-wide policies)");
        continue;
      }
      if (!hasSelector) {
        if (pa.namespace === rootNamespace) {
          if (mesh) diag.warn(pa, ["metadata", "name"], `ignored: ${mesh.id} is the older mesh-wide PeerAuthentication (Istio keeps the oldest)`);
          else mesh = pa;
        } else {
          const existing = this.namespaces.get(pa.namespace);
          if (existing) diag.warn(pa, ["metadata", "name"], `ignored: ${existing.id} is the older PeerAuthentication of namespace ${pa.namespace} (Istio keeps the oldest)`);
          else this.namespaces.set(pa.namespace, pa);
        }
        continue;
      }
      if (pa.namespace === rootNamespace) {
        diag.warn(pa, ["spec", "selector"], "a PeerAuthentication with a selector in the root namespace is ignored (as in Istio); remove the selector to apply it to all traffic");
        continue;
      }
      if (gatewayMatches(selector)) {
        diag.warn(pa, ["spec", "selector"], "selects the gateway itself; as in Istio, PeerAuthentication does not apply to gateways — use a root-namespace policy to require client certificates for all traffic");
        continue;
      }
      this.workloads.push(pa);
    }
    if (mesh) {
      this.mesh = mesh;
      if (mesh.spec.mtls?.mode === "STRICT") warnEdgeWide(mesh, diag);
    }
  }

  /** Whether any PeerAuthentication is in effect. */
  get configured(): boolean {
    return this.mesh !== undefined || this.namespaces.size > 0 || this.workloads.length > 0;
  }

  /** The mode for traffic that reaches no destination cluster. */
  gatewayMode(): PeerMode {
    return settle(this.mesh?.spec.mtls?.mode, "PERMISSIVE");
  }

  /** The mode for traffic routed to `cluster`. */
  clusterMode(cluster: ClusterDef): PeerMode {
    let mode = this.gatewayMode();
    const ns = this.namespaces.get(cluster.namespace);
    if (ns) mode = settle(ns.spec.mtls?.mode, mode);
    const workload = this.workloads.find(
      (pa) =>
        pa.namespace === cluster.namespace &&
        cluster.endpoints.some((e) => Object.entries(pa.spec.selector?.matchLabels ?? {}).every(([k, v]) => e.labels[k] === v)),
    );
    if (!workload) return mode;
    mode = settle(workload.spec.mtls?.mode, mode);
    const ports = workload.spec.portLevelMtls ?? {};
    const endpointPorts = cluster.endpoints.length > 0 && !cluster.dynamicAddress ? cluster.endpoints.map((e) => e.port) : [cluster.port];
    let portMode: PeerMode | undefined;
    for (const [port, setting] of Object.entries(ports)) {
      if (!endpointPorts.includes(Number(port))) continue;
      const m = settle(setting.mode, mode);
      // Endpoints of one cluster may listen on different ports; the strictest matching setting wins.
      if (portMode === undefined || STRICTNESS[m] > STRICTNESS[portMode]) portMode = m;
    }
    return portMode ?? mode;
  }
}

function settle(mode: Mode, parent: PeerMode): PeerMode {
  return mode === undefined || mode === "UNSET" ? parent : mode;
}

/** Acknowledges that a mesh-wide STRICT policy is meant to require client certificates at the edge. */
export const EDGE_CLIENT_CERTIFICATES_ANNOTATION = "isthmus.dev/edge-client-certificates";

/**
 * Istio's most common baseline, a mesh-wide STRICT policy, leaves an ingress
 * gateway's clients alone (their TLS is the Gateway server's). At the edge it
 * asks every request for a verified client certificate, so a copied mesh
 * config answers 403 to all traffic: warn, unless the annotation says
 * `required` (meant) or is otherwise set wrongly (an error).
 */
function warnEdgeWide(mesh: PA, diag: Diagnostics): void {
  const ack = mesh.metadata.annotations?.[EDGE_CLIENT_CERTIFICATES_ANNOTATION];
  if (ack === "required") return;
  if (ack !== undefined) {
    diag.error(mesh, ["metadata", "annotations", EDGE_CLIENT_CERTIFICATES_ANNOTATION], `expected "required", got "${ack}"`);
    return;
  }
  diag.warn(
    mesh,
    ["spec", "mtls", "mode"],
    `mesh-wide STRICT: every request to the edge needs a verified client certificate (Cloudflare API Shield mTLS), else 403; an Istio ingress gateway's clients are not affected by it. Annotate ${EDGE_CLIENT_CERTIFICATES_ANNOTATION}: "required" if that is meant, or set STRICT per namespace or workload`,
  );
}
