/**
 * A route's response header operations on the replies the gateway makes
 * itself once the route is chosen (Envoy finalizes every local reply's
 * headers with its route): a connection failure's 503, a fault abort, an
 * authorization 403, a rate limit's 429, each with the route's security
 * header, and not twice on a forwarded response.
 */
import { describe, expect, it } from "vitest";
import { runPipeline } from "../../../src/gateway/pipeline.ts";
import { rateLimitEnv } from "../../../src/ratelimit/decide.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { UpstreamState } from "../../../src/upstream/state.ts";
import { doc, pipelineDeps, serviceEntry, snapshotOf, virtualService } from "../support.ts";

const hsts = { response: { set: { "strict-transport-security": "max-age=31536000" }, add: { "x-route": "shop" } } };

async function gateway(upstream: () => Response | Promise<Response>) {
  const runtime = hydrate(
    await snapshotOf(
      serviceEntry("shop", ["shop.internal"], { endpoints: [{ address: "10.0.0.1" }], ports: [{ number: 80, name: "http", protocol: "HTTP" }], resolution: "STATIC", location: "MESH_INTERNAL" }),
      virtualService(
        "shop",
        ["shop.test"],
        [
          { name: "abort", match: [{ uri: { prefix: "/abort" } }], fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }, route: [{ destination: { host: "shop.internal" } }], headers: hsts },
          { name: "limited", match: [{ uri: { prefix: "/limited" } }], route: [{ destination: { host: "shop.internal" } }], headers: hsts },
          { name: "rest", route: [{ destination: { host: "shop.internal" } }], retries: { attempts: 0 }, headers: hsts },
        ],
      ),
      doc("AuthorizationPolicy", "no-admin", { action: "DENY", rules: [{ to: [{ operation: { paths: ["/admin"] } }] }] }),
      doc("RateLimitPolicy", "one", { rules: [{ name: "one", scope: "LOCAL", match: { routes: ["limited"] }, limits: [{ requests: 1, unit: "minute" }] }] }),
    ),
  );
  const deps = pipelineDeps({ fetch: async () => upstream(), upstreams: new UpstreamState({ log: () => {} }), rateLimits: rateLimitEnv() });
  return async (path: string) => {
    const r = await runPipeline(new Request(`http://shop.test${path}`), runtime, deps);
    return { status: r.response.status, hsts: r.response.headers.get("strict-transport-security"), route: r.response.headers.get("x-route") };
  };
}

describe("a route's response headers on the gateway's own replies", () => {
  it("are on a forwarded response once, and on 503 UF, a fault abort, an RBAC 403 and a 429", async () => {
    let refuse = false;
    const get = await gateway(() => {
      if (refuse) throw new Error("Network connection lost.");
      return new Response("ok");
    });
    const withHeaders = { hsts: "max-age=31536000", route: "shop" };
    expect(await get("/")).toEqual({ status: 200, ...withHeaders });
    refuse = true;
    expect(await get("/")).toEqual({ status: 503, ...withHeaders });
    expect(await get("/abort")).toEqual({ status: 418, ...withHeaders });
    expect(await get("/admin")).toEqual({ status: 403, ...withHeaders });
    refuse = false;
    expect(await get("/limited")).toEqual({ status: 200, ...withHeaders });
    expect(await get("/limited")).toEqual({ status: 429, ...withHeaders });
  });
});

describe("a direct response", () => {
  it("gives a 201 or a 3xx the request's own URL as its Location, as Envoy's router does, and a 200 none", async () => {
    const runtime = hydrate(
      await snapshotOf(
        virtualService("d", ["direct.test"], [
          { match: [{ uri: { prefix: "/created" } }], directResponse: { status: 201 } },
          { match: [{ uri: { prefix: "/moved" } }], directResponse: { status: 302, body: { string: "see there" } } },
          { directResponse: { status: 200 } },
        ]),
      ),
    );
    const deps = pipelineDeps();
    const location = async (url: string) => (await runPipeline(new Request(url), runtime, deps)).response.headers.get("location");
    expect(await location("http://direct.test/created/7?x=1")).toBe("http://direct.test/created/7?x=1");
    expect(await location("http://direct.test:8080/moved")).toBe("http://direct.test:8080/moved");
    expect(await location("http://direct.test/other")).toBeNull();
  });
});
