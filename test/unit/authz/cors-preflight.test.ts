/**
 * JWT verification skips CORS preflights (Istio sets jwt_authn's
 * bypass_cors_preflight), with Envoy's definition of one: OPTIONS with a
 * non-empty Origin and a non-empty Access-Control-Request-Method. Through
 * the pipeline, at the gateway-wide and at a destination's JWT rules.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { UpstreamState } from "../../../src/upstream/state.ts";

const JWKS = JSON.stringify({ keys: [{ kty: "oct", kid: "k", k: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" }] });

const config = (namespace: string) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: apps}
spec:
  hosts: [app.apps.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: app.internal}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: apps}
spec:
  hosts: [app.example.com]
  http:
  - route: [{destination: {host: app.apps.internal}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ${namespace}}
spec:
  jwtRules: [{issuer: "https://idp.test", jwks: '${JWKS}'}]
`;

async function gateway(yaml: string) {
  const result = await buildConfig([{ path: "test.yaml", text: yaml }]);
  if (!result.snapshot) throw new Error(result.problems.map((p) => `${p.resource} ${p.field}: ${p.message}`).join("\n"));
  const snapshot = hydrate(result.snapshot);
  const deps: PipelineDeps = {
    fetch: async () => new Response("ok"),
    balancer: new Balancer(Math.random),
    random: () => 0.5,
    requestId: () => "00000000-0000-4000-8000-000000000000",
    now: () => Date.now(),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    upstreams: new UpstreamState({ log: () => {} }),
  };
  return async (headers: Record<string, string>) => {
    const r = await runPipeline(new Request("http://app.example.com/", { method: "OPTIONS", headers: { authorization: "Bearer not.a.jwt", ...headers } }), snapshot, deps);
    return r.response.status;
  };
}

describe("the JWT exemption of CORS preflights", () => {
  for (const [where, namespace] of [
    ["gateway-wide rules", "istio-system"],
    ["a destination's rules", "apps"],
  ] as const) {
    it(`needs a non-empty Origin and Access-Control-Request-Method (${where})`, async () => {
      const options = await gateway(config(namespace));
      expect(await options({ origin: "https://a.example", "access-control-request-method": "GET" })).toBe(200);
      // Envoy's isCorsPreflightRequest: an empty header makes an ordinary OPTIONS, whose bad token is refused.
      expect(await options({ origin: "https://a.example", "access-control-request-method": "" })).toBe(401);
      expect(await options({ origin: "", "access-control-request-method": "GET" })).toBe(401);
      expect(await options({ "access-control-request-method": "GET" })).toBe(401);
    });
  }
});
