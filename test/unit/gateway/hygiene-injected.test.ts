/**
 * Request hygiene and path normalization, the pure core in workerd: what
 * each GatewayConfig pathNormalization option does to the paths of the
 * bypass CVEs, and which headers never survive ingress.
 */
import { describe, expect, it } from "vitest";
import { normalizePath } from "../../../src/gateway/normalize.ts";
import { sanitizeRequest, strippedAtIngress } from "../../../src/gateway/hygiene.ts";
import { DEFAULT_SETTINGS } from "../../../src/config/defaults.ts";

const path = (raw: string, mode: Parameters<typeof normalizePath>[1]) => {
  const r = normalizePath(raw, mode);
  return r.ok ? r.path : `error: ${r.reason}`;
};

describe("pathNormalization", () => {
  it("DECODE_AND_MERGE_SLASHES (the default) turns every CVE-2021-31920 form into /admin", () => {
    expect(DEFAULT_SETTINGS.pathNormalization).toBe("DECODE_AND_MERGE_SLASHES");
    for (const raw of ["//admin", "/%2Fadmin", "/%2fadmin", "/%5Cadmin", "/a/../admin", "/./admin", "/%61dmin", "/public%2F..%2Fadmin"]) {
      expect(path(raw, "DECODE_AND_MERGE_SLASHES"), raw).toBe("/admin");
    }
  });

  it("MERGE_SLASHES merges slashes but keeps %2F encoded", () => {
    expect(path("//admin", "MERGE_SLASHES")).toBe("/admin");
    expect(path("/%2Fadmin", "MERGE_SLASHES")).toBe("/%2Fadmin");
  });

  it("BASE resolves dot segments and unreserved escapes only (Istio's default, which CVE-2021-31920 bypasses)", () => {
    expect(path("/a/../admin", "BASE")).toBe("/admin");
    expect(path("/%61dmin", "BASE")).toBe("/admin");
    expect(path("//admin", "BASE")).toBe("//admin");
    expect(path("/%2Fadmin", "BASE")).toBe("/%2Fadmin");
  });

  it("NONE leaves the path alone, and every mode refuses an encoded NUL", () => {
    expect(path("//a/%2F", "NONE")).toBe("//a/%2F");
    for (const mode of ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] as const) expect(path("/a%00b", mode)).toMatch(/^error/);
  });
});

describe("ingress hygiene", () => {
  it("removes spoofable identity headers and the headers Isthmus injects, before anything reads them", () => {
    const request = new Request("http://h.test/", {
      headers: { "x-forwarded-for": "1.2.3.4", "client-cert": ":AA==:", "x-jwt-sub": "admin", "x-envoy-original-path": "/x", "x-ok": "1" },
    });
    const r = sanitizeRequest(request, { limits: DEFAULT_SETTINGS.limits, injected: new Set(["x-jwt-sub"]) });
    expect(r.ok && [...r.headers.keys()]).toEqual(["x-ok"]);
    for (const h of ["x-forwarded-client-cert", "client-cert-chain", "forwarded", "x-real-ip", "x-isthmus-anything", "x-envoy-peer-metadata", "connection"]) {
      expect(strippedAtIngress(h), h).toBe(true);
    }
    expect(strippedAtIngress("authorization")).toBe(false);
  });
});
