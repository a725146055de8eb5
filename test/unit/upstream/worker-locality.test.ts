/**
 * The Worker entry with request.cf injected (exports.default.fetch with
 * `cf`, which `wrangler dev` cannot do): the Cloudflare location picks
 * the endpoint. The endpoints do not resolve, so each request's single
 * attempt fails and outlier detection ejects the endpoint it went to;
 * the ejection reaches the UpstreamHealth Durable Object, which is where
 * this test reads it.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import { applySnapshot } from "../../../src/config/store.ts";

const yaml = `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: gw}
spec:
  locality:
    rules:
    - {match: {colos: [FRA, AMS]}, locality: gcp/europe-west3/a}
    - {match: {continents: [NA]}, locality: aws/us-east-1/a}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: shop}
spec:
  hosts: [app.shop.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: fra.isthmus.invalid, locality: gcp/europe-west3/a}
  - {address: iad.isthmus.invalid, locality: aws/us-east-1/a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: shop}
spec:
  host: app.shop.internal
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: shop}
spec:
  hosts: [app.example.com]
  http:
  - match: [{uri: {exact: /ready}}]
    directResponse: {status: 200}
  - route: [{destination: {host: app.shop.internal}}]
    retries: {attempts: 0}
`;

async function ejected(version: string): Promise<string[]> {
  const view = await env.UPSTREAM_HEALTH.getByName("isthmus").sync({ version, ejections: [], at: Date.now() });
  return view.ejections.map((e) => e.endpoint).sort();
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  let value = await read();
  for (let i = 0; i < 50 && !done(value); i++) {
    await scheduler.wait(100);
    value = await read();
  }
  return value;
}

describe("request.cf decides the locality", () => {
  it("sends a request received in Frankfurt to the GCP endpoint and one received in Dallas to the AWS endpoint", async () => {
    const result = await buildConfig([{ path: "locality.yaml", text: yaml }]);
    expect(result.problems).toEqual([]);
    await applySnapshot(env.CONFIG, result.snapshot!, result.sources, new Date());
    const version = result.snapshot!.version;
    expect((await until(() => exports.default.fetch("http://app.example.com/ready"), (r) => r.status === 200)).status).toBe(200);

    const fra = await exports.default.fetch("http://app.example.com/", { cf: { colo: "FRA", country: "DE", continent: "EU" } });
    expect(fra.status).toBe(503);
    expect(await until(() => ejected(version), (e) => e.length > 0)).toEqual(["fra.isthmus.invalid:80"]);

    const dfw = await exports.default.fetch("http://app.example.com/", { cf: { colo: "DFW", country: "US", continent: "NA" } });
    expect(dfw.status).toBe(503);
    expect(await until(() => ejected(version), (e) => e.length > 1)).toEqual(["fra.isthmus.invalid:80", "iad.isthmus.invalid:80"]);
  }, 30_000);
});
