/**
 * Active health checks probe each endpoint over the transport of the
 * clusters that reach it: a subset whose DestinationRule trafficPolicy
 * asks for TLS (SIMPLE, or MUTUAL with a client certificate) has its
 * endpoints probed that way, and each cluster reads the result of its own
 * transport.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import type { Snapshot } from "../../../src/config/snapshot.ts";
import { UpstreamState, healthKey, type HealthExchange } from "../../../src/upstream/state.ts";

const yaml = `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  credentials: [{credentialName: mixed-client, binding: ORIGIN_CERT}]
  healthChecks:
  - {host: mixed.edge.internal, path: /healthz, interval: 1s, timeout: 500ms}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mixed, namespace: edge}
spec:
  hosts: [mixed.edge.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: tls.internal, labels: {v: tls}}
  - {address: mtls.internal, labels: {v: mtls}}
  - {address: plain.internal, labels: {v: plain}}
  - {address: both.internal, labels: {v: both}}
  - {address: idle.internal, labels: {v: idle}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mixed, namespace: edge}
spec:
  host: mixed.edge.internal
  subsets:
  - {name: tls, labels: {v: tls}, trafficPolicy: {tls: {mode: SIMPLE}}}
  - {name: mtls, labels: {v: mtls}, trafficPolicy: {tls: {mode: MUTUAL, credentialName: mixed-client}}}
  - {name: plain, labels: {v: plain}}
  - {name: both-tls, labels: {v: both}, trafficPolicy: {tls: {mode: SIMPLE}}}
  - {name: both-plain, labels: {v: both}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mixed, namespace: edge}
spec:
  hosts: [mixed.test]
  http:
  - match: [{uri: {prefix: /tls/}}]
    route: [{destination: {host: mixed.edge.internal, subset: tls}}]
  - match: [{uri: {prefix: /mtls/}}]
    route: [{destination: {host: mixed.edge.internal, subset: mtls}}]
  - match: [{uri: {prefix: /both-tls/}}]
    route: [{destination: {host: mixed.edge.internal, subset: both-tls}}]
  - match: [{uri: {prefix: /both-plain/}}]
    route: [{destination: {host: mixed.edge.internal, subset: both-plain}}]
  - route: [{destination: {host: mixed.edge.internal, subset: plain}}]
`;

async function compiled(): Promise<Snapshot> {
  const result = await buildConfig([{ path: "mixed.yaml", text: yaml }]);
  expect(result.problems.filter((p) => p.severity === "error")).toEqual([]);
  return result.snapshot as Snapshot;
}

describe("health checks over the clusters' transports", () => {
  it("probes a tls SIMPLE subset's endpoint over https and a MUTUAL one with its client certificate", async () => {
    const s = await compiled();
    expect(s.settings.healthChecks?.[0]?.targets).toEqual([
      { address: "tls.internal", port: 80, scheme: "https" },
      { address: "mtls.internal", port: 80, scheme: "https", mtlsBinding: "ORIGIN_CERT" },
      { address: "plain.internal", port: 80, scheme: "http" },
      // In two clusters with different transports: probed over each.
      { address: "both.internal", port: 80, scheme: "http" },
      { address: "both.internal", port: 80, scheme: "https" },
      // No route reaches it: the transport without a subset.
      { address: "idle.internal", port: 80, scheme: "http" },
    ]);
  });

  it("takes an endpoint out only of the clusters whose transport its probe failed on", async () => {
    const s = await compiled();
    const view = { ejections: [], unhealthy: [healthKey("mixed.edge.internal", 80, "https", "both.internal:80"), healthKey("mixed.edge.internal", 80, "https+ORIGIN_CERT", "mtls.internal:80")], at: Date.now() };
    const exchange: HealthExchange = { sync: async () => view };
    const pending: Promise<unknown>[] = [];
    const upstreams = new UpstreamState({ exchange, log: () => {} });
    upstreams.maybeSync(s, (p) => pending.push(p));
    await Promise.all(pending);
    const cluster = (subset: string) => s.clusters[`outbound|80|${subset}|mixed.edge.internal`]!;
    const healthy = (subset: string) => cluster(subset).endpoints.map((e) => upstreams.healthy(cluster(subset), e));
    expect(healthy("both-tls")).toEqual([false]);
    expect(healthy("both-plain")).toEqual([true]);
    expect(healthy("mtls")).toEqual([false]);
    expect(healthy("tls")).toEqual([true]);
  });
});
