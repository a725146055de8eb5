/**
 * GatewayConfig → gateway-wide settings, with the documented defaults.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_SETTINGS } from "../../../src/config/defaults.ts";
import { durationMs } from "../../../src/config/duration.ts";
import { build, doc, errors, snapshotOf, virtualService } from "../support.ts";

const vs = virtualService("v", ["app.example.com"], [{ directResponse: { status: 200 } }]);

describe("gateway settings", () => {
  it("uses the defaults without a GatewayConfig", async () => {
    const snapshot = await snapshotOf(vs);
    expect(snapshot.settings).toEqual(DEFAULT_SETTINGS);
    expect(DEFAULT_SETTINGS).toMatchObject({ rootNamespace: "istio-system", configRefreshMs: 5000, pathNormalization: "DECODE_AND_MERGE_SLASHES", outboundTrafficPolicy: "REGISTRY_ONLY", adminPathPrefix: "/__isthmus" });
  });

  it("takes every field GatewayConfig sets and keeps defaults for the rest", async () => {
    const snapshot = await snapshotOf(
      vs,
      doc("GatewayConfig", "isthmus", {
        rootNamespace: "mesh-root",
        configRefreshInterval: "1m30s",
        pathNormalization: { normalization: "BASE" },
        outboundTrafficPolicy: { mode: "ALLOW_ANY" },
        limits: { maxRequestHeadersKb: 32, maxUrlBytes: 4096 },
        admin: { pathPrefix: "/_admin" },
      }, "istio-system"),
    );
    expect(snapshot.settings).toEqual({
      ...DEFAULT_SETTINGS,
      rootNamespace: "mesh-root",
      configRefreshMs: 90_000,
      pathNormalization: "BASE",
      outboundTrafficPolicy: "ALLOW_ANY",
      limits: { ...DEFAULT_SETTINGS.limits, maxRequestHeadersBytes: 32 * 1024, maxUrlBytes: 4096 },
      adminPathPrefix: "/_admin",
    });
  });

  it("takes gatewayTopology.numTrustedProxies as Istio's ProxyConfig spells it, and rejects what is not a count", async () => {
    const trusted = await snapshotOf(vs, doc("GatewayConfig", "isthmus", { gatewayTopology: { numTrustedProxies: 2 } }, "istio-system"));
    expect(trusted.settings.numTrustedProxies).toBe(2);
    expect((await snapshotOf(vs, doc("GatewayConfig", "isthmus", { gatewayTopology: { numTrustedProxies: 0 } }, "istio-system"))).settings).toEqual(DEFAULT_SETTINGS);
    expect(errors(await build(vs, doc("GatewayConfig", "g", { gatewayTopology: { numTrustedProxies: -1 } })))).toEqual([
      expect.stringMatching(/GatewayConfig\/default\/g: spec\.gatewayTopology\.numTrustedProxies: .*0/),
    ]);
    expect(errors(await build(vs, doc("GatewayConfig", "g", { gatewayTopology: { numTrustedProxies: 1, proxyProtocol: {} } })))).toEqual([
      expect.stringMatching(/GatewayConfig\/default\/g: spec\.gatewayTopology.*proxyProtocol/),
    ]);
  });

  it("takes headersWithUnderscoresAction as Envoy spells it, leaves ALLOW (the default) out of the snapshot, and rejects other values", async () => {
    const action = async (value: string) => (await snapshotOf(vs, doc("GatewayConfig", "isthmus", { headersWithUnderscoresAction: value }, "istio-system"))).settings.headersWithUnderscoresAction;
    expect(await action("REJECT_REQUEST")).toBe("REJECT_REQUEST");
    expect(await action("DROP_HEADER")).toBe("DROP_HEADER");
    expect((await snapshotOf(vs, doc("GatewayConfig", "isthmus", { headersWithUnderscoresAction: "ALLOW" }, "istio-system"))).settings).toEqual(DEFAULT_SETTINGS);
    expect(errors(await build(vs, doc("GatewayConfig", "g", { headersWithUnderscoresAction: "reject" })))).toEqual([
      expect.stringMatching(/GatewayConfig\/default\/g: spec\.headersWithUnderscoresAction: .*ALLOW.*DROP_HEADER.*REJECT_REQUEST/),
    ]);
  });

  it("rejects a refresh interval under one second and a second GatewayConfig", async () => {
    expect(errors(await build(vs, doc("GatewayConfig", "g", { configRefreshInterval: "500ms" })))).toEqual([
      expect.stringMatching(/GatewayConfig\/default\/g: spec\.configRefreshInterval: expected at least 1s \(each check is a KV read\)$/),
    ]);
    expect(errors(await build(vs, doc("GatewayConfig", "one", {}), doc("GatewayConfig", "two", {}, "other")))).toEqual([
      expect.stringMatching(/GatewayConfig\/other\/two: metadata\.name: only one GatewayConfig is allowed; GatewayConfig\/default\/one is defined at config\.yaml:\d+$/),
    ]);
  });
});

describe("durationMs", () => {
  it("reads Go durations", () => {
    expect(durationMs("250ms")).toBe(250);
    expect(durationMs("5s")).toBe(5000);
    expect(durationMs("1.5s")).toBe(1500);
    expect(durationMs("1h30m")).toBe(5_400_000);
    expect(durationMs("1m0.5s")).toBe(60_500);
    expect(durationMs("100us")).toBeCloseTo(0.1);
    expect(durationMs("0s")).toBe(0);
  });
});
