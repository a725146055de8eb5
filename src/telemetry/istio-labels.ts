/**
 * Istio's standard labels as a gateway reports them (reporter=source,
 * semantics reference §5.1), for one finished request. The destination
 * part is worked out once per (cluster, endpoint) and kept.
 *
 * Edge mapping (docs/CONFIG.md, Telemetry): the source is the gateway
 * itself; destination_service is the ServiceEntry host; destination_version
 * the subset (else the endpoint's `version` label); destination_cluster the
 * region of the endpoint's locality (with the multi-cloud convention
 * `aws/us-east-1/...`, the cloud); workload and principals are unknown at
 * the edge (no workload metadata exchange).
 */
import type { ClusterDef, EndpointDef, TelemetrySettingsDef } from "../config/snapshot.ts";
import type { Completed } from "./completed.ts";

const UNKNOWN = "unknown";

/** Label values in the order of ISTIO_LABELS (metric-names.ts). */
export type LabelValues = string[];

const destinations = new WeakMap<object, Map<EndpointDef | undefined, string[]>>();
const sources = new WeakMap<TelemetrySettingsDef, string[]>();

function sourceValues(settings: TelemetrySettingsDef): string[] {
  let v = sources.get(settings);
  if (!v) {
    const w = settings.sourceWorkload;
    v = ["source", w, settings.sourceNamespace, UNKNOWN, w, UNKNOWN, w, "latest", UNKNOWN];
    sources.set(settings, v);
  }
  return v;
}

/** Short service name: the first label of a Kubernetes service host, else the host. */
function serviceName(host: string): string {
  return host.endsWith(".svc.cluster.local") ? (host.split(".")[0] as string) : host;
}

function destinationValues(cluster: ClusterDef | undefined, endpoint: EndpointDef | undefined, passthroughHost: string | undefined): string[] {
  if (!cluster) {
    const host = passthroughHost ?? UNKNOWN;
    return [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, host, passthroughHost ? serviceName(host) : UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN];
  }
  let byEndpoint = destinations.get(cluster);
  if (!byEndpoint) destinations.set(cluster, (byEndpoint = new Map()));
  let v = byEndpoint.get(endpoint);
  if (!v) {
    const labels = endpoint?.labels ?? {};
    const app = labels.app ?? UNKNOWN;
    const canonical = labels["service.istio.io/canonical-name"] ?? labels["app.kubernetes.io/name"] ?? labels.app ?? serviceName(cluster.service);
    const revision = labels["service.istio.io/canonical-revision"] ?? labels["app.kubernetes.io/version"] ?? labels.version ?? "latest";
    const version = cluster.subset ?? labels.version ?? UNKNOWN;
    const region = endpoint?.locality?.split("/")[0];
    v = [UNKNOWN, cluster.namespace, UNKNOWN, app, version, cluster.service, serviceName(cluster.service), cluster.namespace, canonical, revision, region || UNKNOWN];
    byEndpoint.set(endpoint, v);
  }
  return v;
}

/** The label values of a finished request. */
export function istioLabelValues(c: Completed, settings: TelemetrySettingsDef): LabelValues {
  const ctx = c.context;
  const passthrough = c.record.cluster === "PassthroughCluster" ? ctx?.facts.host : undefined;
  return [
    ...sourceValues(settings),
    ...destinationValues(ctx?.cluster, c.record.upstreamEndpoint, passthrough),
    c.grpc ? "grpc" : "http",
    c.flags,
    UNKNOWN,
    String(c.status),
    c.grpcStatus,
  ];
}
