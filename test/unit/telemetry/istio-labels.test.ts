/**
 * The short series key of Istio's labels: equal exactly when the 25 label
 * values are equal, whichever cluster and endpoint objects they came from.
 */
import { describe, expect, it } from "vitest";
import { istioLabels } from "../../../src/telemetry/istio-labels.ts";
import { ISTIO_LABELS } from "../../../src/telemetry/metric-names.ts";
import type { ClusterDef, EndpointDef } from "../../../src/config/snapshot.ts";
import type { TelemetrySettingsDef } from "../../../src/config/snapshot-telemetry.ts";
import type { Completed } from "../../../src/telemetry/completed.ts";
import type { RequestContext } from "../../../src/gateway/context.ts";

const settings: TelemetrySettingsDef = { resourceAttributes: {}, flushIntervalMs: 1, flushRequests: 1, maxSeries: 1, exportRetries: 0, propagators: [], sourceWorkload: "isthmus", sourceNamespace: "istio-system" };
const endpoint = (version: string): EndpointDef => ({ address: "10.0.0.1", port: 9080, labels: { app: "reviews", version }, weight: 1 });
const cluster = (port: number, subset?: string): ClusterDef => ({
  name: `outbound|${port}|${subset ?? ""}|reviews`,
  service: "reviews.default.svc.cluster.local",
  source: "ServiceEntry/default/reviews",
  namespace: "default",
  port,
  ...(subset ? { subset } : {}),
  scheme: "http",
  endpoints: [],
  loadBalancer: "ROUND_ROBIN",
});
const completed = (c: ClusterDef, e: EndpointDef, status = 200, flags = "-"): Completed =>
  ({ context: { cluster: c, facts: { host: "reviews" } } as unknown as RequestContext, record: { flags: [], cluster: c.name, upstreamEndpoint: e }, grpc: false, flags, status, grpcStatus: "" }) as unknown as Completed;

describe("Istio label keys", () => {
  it("are equal for equal label values from different clusters and endpoints (one series)", () => {
    const a = istioLabels(completed(cluster(9080), endpoint("v1")), settings);
    const b = istioLabels(completed(cluster(9443), endpoint("v1")), settings);
    expect(b.values()).toEqual(a.values());
    expect(b.key).toBe(a.key);
  });

  it("differ when any value differs", () => {
    const base = istioLabels(completed(cluster(9080, "v1"), endpoint("v1")), settings);
    const others = [
      istioLabels(completed(cluster(9080, "v2"), endpoint("v1")), settings),
      istioLabels(completed(cluster(9080, "v1"), endpoint("v1"), 503), settings),
      istioLabels(completed(cluster(9080, "v1"), endpoint("v1"), 200, "URX"), settings),
      istioLabels(completed(cluster(9080, "v1"), endpoint("v1")), { ...settings, sourceNamespace: "edge" }),
    ];
    for (const o of others) {
      expect(o.values()).not.toEqual(base.values());
      expect(o.key).not.toBe(base.key);
    }
  });

  it("carry every one of Istio's labels, in order", () => {
    const v = istioLabels(completed(cluster(9080, "v1"), endpoint("v1"), 404), settings).values();
    expect(v.length).toBe(ISTIO_LABELS.length);
    const byName = Object.fromEntries(ISTIO_LABELS.map((n, i) => [n, v[i]]));
    expect(byName).toMatchObject({ reporter: "source", destination_version: "v1", response_code: "404", request_protocol: "http", destination_service: "reviews.default.svc.cluster.local" });
  });
});
