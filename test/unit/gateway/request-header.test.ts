/**
 * Policies and rate-limit keys that name a request header, pseudo-headers
 * included: Envoy's matchers see `:authority`, `:path`, `:method` and
 * `:scheme`, which a Worker's Headers cannot hold (asking for one throws),
 * so they are read from the request's facts — never a 500 — and a name
 * that is not a header name at all is refused when the config is built.
 */
import { describe, expect, it } from "vitest";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { requestHeaderReader } from "../../../src/gateway/request-header.ts";
import { rateLimitEnv } from "../../../src/ratelimit/decide.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { build, doc, errors, facts, pipelineDeps, snapshotOf, virtualService } from "../support.ts";

const site = virtualService("v", ["app.test", "other.test"], [{ name: "all", directResponse: { status: 200, body: { string: "ok" } } }], {}, "istio-system");

const deps = (): PipelineDeps => pipelineDeps({ rateLimits: rateLimitEnv() });

const status = async (runtime: ReturnType<typeof hydrate>, isolate: PipelineDeps, url: string, method = "GET") =>
  (await runPipeline(new Request(url, { method }), runtime, isolate)).response.status;

describe("request.headers[<pseudo-header>]", () => {
  it("reads :authority, :path (with its query), :method and :scheme from the request", () => {
    const f = facts({ authority: "app.test:8443", path: "/a", query: "q=1", method: "PUT", scheme: "https", headers: { "x-tenant": "acme" } });
    expect([":authority", ":path", ":method", ":scheme", "x-tenant", "x-absent"].map((n) => requestHeaderReader(n)(f))).toEqual(["app.test:8443", "/a?q=1", "PUT", "https", "acme", undefined]);
    // A name no compiler would let through (a snapshot written by something else) matches nothing instead of throwing.
    expect(requestHeaderReader("x bad")(f)).toBeUndefined();
  });

  it("lets an AuthorizationPolicy condition on :authority and :path decide, instead of failing every request with a 500", async () => {
    const runtime = hydrate(
      await snapshotOf(
        site,
        doc("AuthorizationPolicy", "no-admin", {
          action: "DENY",
          rules: [{ when: [{ key: "request.headers[:authority]", values: ["app.test"] }, { key: "request.headers[:path]", values: ["/admin*"] }] }],
        }, "istio-system"),
      ),
    );
    const isolate = deps();
    expect(await status(runtime, isolate, "http://app.test/admin?x=1")).toBe(403);
    expect(await status(runtime, isolate, "http://app.test/public")).toBe(200);
    expect(await status(runtime, isolate, "http://other.test/admin")).toBe(200);
  });

  it("treats values ['*'] on a header as present, empty or not (Envoy's present_match), so an empty header cannot slip past a DENY", async () => {
    const runtime = hydrate(
      await snapshotOf(
        site,
        doc("AuthorizationPolicy", "no-debug", { action: "DENY", rules: [{ when: [{ key: "request.headers[x-debug]", values: ["*"] }] }] }, "istio-system"),
        doc("AuthorizationPolicy", "tenant-required", { action: "DENY", rules: [{ to: [{ operation: { hosts: ["other.test"] } }], when: [{ key: "request.headers[x-tenant]", notValues: ["*"] }] }] }, "istio-system"),
      ),
    );
    const isolate = deps();
    const get = async (url: string, headers: Record<string, string>) => (await runPipeline(new Request(url, { headers }), runtime, isolate)).response.status;
    expect([await get("http://app.test/", {}), await get("http://app.test/", { "x-debug": "" }), await get("http://app.test/", { "x-debug": "1" })]).toEqual([200, 403, 403]);
    // notValues ['*']: the header is absent. An empty one is present.
    expect([await get("http://other.test/", {}), await get("http://other.test/", { "x-tenant": "" })]).toEqual([403, 200]);
  });

  it("counts a rate-limit key by :method", async () => {
    const runtime = hydrate(
      await snapshotOf(site, doc("RateLimitPolicy", "per-method", { rules: [{ name: "m", scope: "LOCAL", key: ["request.headers[:method]"], limits: [{ requests: 1, unit: "minute" }] }] }, "istio-system")),
    );
    const isolate = deps();
    expect([await status(runtime, isolate, "http://app.test/"), await status(runtime, isolate, "http://app.test/"), await status(runtime, isolate, "http://app.test/", "POST")]).toEqual([200, 429, 200]);
  });

  it("refuses a name that is neither a header name nor a pseudo-header, naming the field", async () => {
    const result = await build(
      site,
      doc("AuthorizationPolicy", "bad", { action: "DENY", rules: [{ when: [{ key: "request.headers[x bad]", values: ["1"] }] }] }, "istio-system"),
      doc("RateLimitPolicy", "bad-key", { rules: [{ name: "k", scope: "LOCAL", key: ["request.headers[:status]"], limits: [{ requests: 1, unit: "minute" }] }] }, "istio-system"),
    );
    expect(errors(result)).toEqual([
      expect.stringMatching(/AuthorizationPolicy\/istio-system\/bad.*spec\.rules\[0\]\.when\[0\]\.key.*expected request\.headers\[<header name>\] \(an HTTP header name, or :authority, :path, :method or :scheme\), got "request\.headers\[x bad\]"/),
      expect.stringMatching(/RateLimitPolicy\/istio-system\/bad-key.*spec\.rules\[0\]\.key\[0\].*unknown key part "request\.headers\[:status\]"/),
    ]);
  });
});
