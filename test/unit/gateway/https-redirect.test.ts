/**
 * Gateway `tls.httpsRedirect` inside workerd: the scheme of the Location is
 * pinned here because wrangler dev rewrites same-host https:// Locations.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { Balancer } from "../../../src/routing/balancer.ts";

async function gateway(yaml: string) {
  const result = await buildConfig([{ path: "test.yaml", text: yaml }]);
  if (!result.snapshot) throw new Error(result.problems.map((p) => p.message).join("\n"));
  const snapshot = hydrate(result.snapshot);
  const deps: PipelineDeps = {
    fetch: () => Promise.reject(new Error("no origin in this test")),
    balancer: new Balancer(() => 0),
    random: () => 0,
    requestId: () => "00000000-0000-4000-8000-000000000000",
    now: () => 0,
    sleep: () => Promise.resolve(),
  };
  return (url: string, init?: RequestInit) => runPipeline(new Request(url, init), snapshot, deps);
}

describe("httpsRedirect", () => {
  it("sends plain-HTTP requests to the https:// URL, keeping path and query", async () => {
    const run = await gateway(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [secure.example.com]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [secure.example.com]
  gateways: [gw]
  http:
  - directResponse: {status: 200}
`);
    const http = await run("http://secure.example.com/a/b?c=1");
    expect(http.response.status).toBe(301);
    expect(http.response.headers.get("location")).toBe("https://secure.example.com/a/b?c=1");
    const https = await run("https://secure.example.com/a/b?c=1");
    expect(https.response.status).toBe(200);
  });
});
