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

/** Cached label values, with the number that stands for their content in series keys (see `cached`). */
interface Part {
  values: string[];
  id: number;
}

const destinations = new WeakMap<object, Map<EndpointDef | undefined, Part>>();
const sources = new WeakMap<TelemetrySettingsDef, Part>();

function sourcePart(settings: TelemetrySettingsDef): Part {
  let part = sources.get(settings);
  if (!part) {
    const w = settings.sourceWorkload;
    part = cached(["source", w, settings.sourceNamespace, UNKNOWN, w, UNKNOWN, w, "latest", UNKNOWN]);
    sources.set(settings, part);
  }
  return part;
}

/** Short service name: the first label of a Kubernetes service host, else the host. */
function serviceName(host: string): string {
  return host.endsWith(".svc.cluster.local") ? (host.split(".")[0] as string) : host;
}

/** The destination labels of a request without a cluster (per request: a passthrough's host is one of them). */
function unroutedValues(passthroughHost: string | undefined): string[] {
  const host = passthroughHost ?? UNKNOWN;
  return [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, host, passthroughHost ? serviceName(host) : UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN];
}

function destinationPart(cluster: ClusterDef, endpoint: EndpointDef | undefined): Part {
  let byEndpoint = destinations.get(cluster);
  if (!byEndpoint) destinations.set(cluster, (byEndpoint = new Map()));
  let part = byEndpoint.get(endpoint);
  if (!part) {
    const labels = endpoint?.labels ?? {};
    const app = labels.app ?? UNKNOWN;
    const canonical = labels["service.istio.io/canonical-name"] ?? labels["app.kubernetes.io/name"] ?? labels.app ?? serviceName(cluster.service);
    const revision = labels["service.istio.io/canonical-revision"] ?? labels["app.kubernetes.io/version"] ?? labels.version ?? "latest";
    const version = cluster.subset ?? labels.version ?? UNKNOWN;
    const region = endpoint?.locality?.split("/")[0];
    part = cached([UNKNOWN, cluster.namespace, UNKNOWN, app, version, cluster.service, serviceName(cluster.service), cluster.namespace, canonical, revision, region || UNKNOWN]);
    byEndpoint.set(endpoint, part);
  }
  return part;
}

/**
 * A small number per distinct content of a cached label-value array, so a
 * request's series key stays short. Equal contents share a number (two
 * clusters of one service on different ports have the same labels and must
 * be one series); the content is joined once per array, when it is cached.
 */
const byContent = new Map<string, number>();
/** Bound on remembered contents (configurations come and go); past it the memory starts over with new numbers. */
const MAX_CONTENTS = 50_000;
let lastId = 0;

function cached(values: string[]): Part {
  const content = values.join("\u0001");
  let id = byContent.get(content);
  if (id === undefined) {
    if (byContent.size >= MAX_CONTENTS) byContent.clear();
    byContent.set(content, (id = ++lastId));
  }
  return { values, id };
}

/** A finished request's Istio labels: a short key that identifies the values, and the values themselves. */
export interface IstioLabels {
  /** Equal for two requests exactly when their label values are equal (for one configuration). */
  key: string;
  values(): LabelValues;
}

/**
 * The labels of a finished request. The key is built from the identities
 * of the cached source and destination parts plus the per-request values
 * (a few dozen characters instead of the ~300 of all 25 values), and the
 * values are only assembled when a new series needs them.
 */
export function istioLabels(c: Completed, settings: TelemetrySettingsDef): IstioLabels {
  const ctx = c.context;
  const passthrough = c.record.cluster === "PassthroughCluster" ? ctx?.facts.host : undefined;
  const source = sourcePart(settings);
  const cluster = ctx?.cluster;
  const destination = cluster ? destinationPart(cluster, c.record.upstreamEndpoint) : undefined;
  const protocol = c.grpc ? "grpc" : "http";
  const status = String(c.status);
  // A passthrough's destination is built per request (its host); the host itself identifies it.
  const destinationKey = destination ? destination.id : `p:${passthrough ?? ""}`;
  return {
    key: `${source.id}\u0001${destinationKey}\u0001${protocol}\u0001${c.flags}\u0001${status}\u0001${c.grpcStatus}`,
    values: () => [...source.values, ...(destination?.values ?? unroutedValues(passthrough)), protocol, c.flags, UNKNOWN, status, c.grpcStatus],
  };
}
