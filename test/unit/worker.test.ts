/**
 * The Worker entry inside workerd, with the real KV binding.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../src/config/build.ts";
import { applySnapshot } from "../../src/config/store.ts";

describe("a gateway with no configuration", () => {
  it("answers 503 with a body that says so", async () => {
    const res = await exports.default.fetch("http://app.example.com/");
    expect(res.status).toBe(503);
    expect(await res.text()).toMatch(/no configuration has been applied/);
  });

  it("is not ready: the Health entrypoint answers /healthz/ready with 503, and 404 elsewhere", async () => {
    const ready = await exports.Health.fetch("http://127.0.0.1:15021/healthz/ready");
    expect(ready.status).toBe(503);
    expect(await ready.text()).toMatch(/no configuration has been applied/);
    expect((await exports.Health.fetch("http://127.0.0.1:15021/")).status).toBe(404);
  });
});

describe("a gateway with a configuration", () => {
  it("serves the active snapshot and its local replies", async () => {
    const yaml = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: prod}
spec:
  hosts: [app.example.com]
  http:
  - match: [{uri: {exact: /hello}}]
    directResponse: {status: 200, body: {string: "hi"}}
`;
    const result = await buildConfig([{ path: "app.yaml", text: yaml }]);
    expect(result.problems).toEqual([]);
    await applySnapshot(env.CONFIG, result.snapshot!, result.sources, new Date());
    // An isolate with no configuration looks again at most once a second.
    let hello = await exports.default.fetch("http://app.example.com/hello");
    for (let i = 0; i < 30 && hello.status === 503; i++) {
      await scheduler.wait(100);
      hello = await exports.default.fetch("http://app.example.com/hello");
    }
    expect(hello.status).toBe(200);
    expect(await hello.text()).toBe("hi");
    const missing = await exports.default.fetch("http://app.example.com/other");
    expect(missing.status).toBe(404);
    // Ready once it serves a configuration.
    const ready = await exports.Health.fetch("http://127.0.0.1:15021/healthz/ready");
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe(`ready: config ${result.snapshot!.version}\n`);
  });
});
