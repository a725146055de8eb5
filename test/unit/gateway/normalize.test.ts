/**
 * Path and host normalization (Istio's pathNormalization options) with the
 * classic authorization-bypass vectors (CVE-2021-31920, CVE-2019-9901).
 */
import { describe, expect, it } from "vitest";
import type { PathNormalization } from "../../../src/config/snapshot.ts";
import { normalizeHost, normalizePath, removeDotSegments } from "../../../src/gateway/normalize.ts";

const path = (raw: string, mode: PathNormalization) => {
  const result = normalizePath(raw, mode);
  return result.ok ? result.path : `error: ${result.reason}`;
};
const MODES: PathNormalization[] = ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"];

describe("normalizePath", () => {
  // raw path → expected per mode [NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES]
  const vectors: [string, [string, string, string, string]][] = [
    ["/admin", ["/admin", "/admin", "/admin", "/admin"]],
    ["//admin", ["//admin", "//admin", "/admin", "/admin"]],
    ["/a///b//", ["/a///b//", "/a///b//", "/a/b/", "/a/b/"]],
    ["/%2Fadmin", ["/%2Fadmin", "/%2Fadmin", "/%2Fadmin", "/admin"]],
    ["/%2fadmin", ["/%2fadmin", "/%2fadmin", "/%2fadmin", "/admin"]],
    ["/%5Cadmin", ["/%5Cadmin", "/%5Cadmin", "/%5Cadmin", "/admin"]],
    ["/%5cadmin", ["/%5cadmin", "/%5cadmin", "/%5cadmin", "/admin"]],
    ["/public/%2e%2e/admin", ["/public/%2e%2e/admin", "/admin", "/admin", "/admin"]],
    ["/public/..%2Fadmin", ["/public/..%2Fadmin", "/public/..%2Fadmin", "/public/..%2Fadmin", "/admin"]],
    ["/./admin", ["/./admin", "/admin", "/admin", "/admin"]],
    ["/public/../admin", ["/public/../admin", "/admin", "/admin", "/admin"]],
    ["/a/b/../../../../admin", ["/a/b/../../../../admin", "/admin", "/admin", "/admin"]],
    ["/\\admin", ["/\\admin", "//admin", "/admin", "/admin"]],
    ["/%61dmin", ["/%61dmin", "/admin", "/admin", "/admin"]],
    ["/%41%2D%5F%7E%30%7a", ["/%41%2D%5F%7E%30%7a", "/A-_~0z", "/A-_~0z", "/A-_~0z"]],
    ["/a%20b/%3A%40%25%5B", ["/a%20b/%3A%40%25%5B", "/a%20b/%3A%40%25%5B", "/a%20b/%3A%40%25%5B", "/a%20b/%3A%40%25%5B"]],
    ["/%252Fadmin", ["/%252Fadmin", "/%252Fadmin", "/%252Fadmin", "/%252Fadmin"]],
    ["/admin/.", ["/admin/.", "/admin/", "/admin/", "/admin/"]],
    ["/..", ["/..", "/", "/", "/"]],
    // Dots that are not whole segments, and segments that become dot segments only once decoded or once `\` is a `/`.
    ["/a/.hidden/..b/c.d", ["/a/.hidden/..b/c.d", "/a/.hidden/..b/c.d", "/a/.hidden/..b/c.d", "/a/.hidden/..b/c.d"]],
    ["/a/%2E/b", ["/a/%2E/b", "/a/b", "/a/b", "/a/b"]],
    ["/a/b\\..\\c", ["/a/b\\..\\c", "/a/c", "/a/c", "/a/c"]],
    ["", ["", "/", "/", "/"]],
  ];

  for (const [raw, expected] of vectors) {
    it(`normalizes ${raw} per mode`, () => {
      expect(MODES.map((mode) => path(raw, mode))).toEqual(expected);
    });
  }

  it("decodes once only: %2525 stays encoded", () => {
    expect(path("/%2525", "DECODE_AND_MERGE_SLASHES")).toBe("/%2525");
  });

  it("rejects an encoded NUL and raw control characters in every mode", () => {
    for (const mode of MODES) {
      expect(path("/admin%00.html", mode)).toBe("error: path contains an encoded NUL (%00)");
      expect(path("/a\u0001b", mode)).toBe("error: path contains a control character");
      expect(path("/a\u007fb", mode)).toBe("error: path contains a control character");
    }
  });

  it("always yields an absolute path once normalizing", () => {
    expect(path("admin", "BASE")).toBe("/admin");
    expect(path("", "MERGE_SLASHES")).toBe("/");
  });
});

describe("removeDotSegments", () => {
  it("follows RFC 3986 §5.2.4 and never climbs above the root", () => {
    expect(removeDotSegments("/a/b/c/./../../g")).toBe("/a/g");
    expect(removeDotSegments("/a/b/..")).toBe("/a/");
    expect(removeDotSegments("/../../x")).toBe("/x");
    expect(removeDotSegments("/a/..b/.c")).toBe("/a/..b/.c");
  });
});

describe("normalizeHost", () => {
  const host = (raw: string) => normalizeHost(raw);

  it("lower-cases and drops a trailing dot", () => {
    expect(host("App.Example.COM")).toEqual({ ok: true, host: "app.example.com", authority: "app.example.com" });
    expect(host("example.com.")).toEqual({ ok: true, host: "example.com", authority: "example.com" });
    expect(host("example.com.:8080")).toEqual({ ok: true, host: "example.com", authority: "example.com:8080" });
  });

  it("splits off a port and keeps it in the authority only (the port matched is the listener's: ingress)", () => {
    expect(host("example.com")).toEqual({ ok: true, host: "example.com", authority: "example.com" });
    expect(host("example.com:8443")).toEqual({ ok: true, host: "example.com", authority: "example.com:8443" });
    expect(host("example.com:80")).toEqual({ ok: true, host: "example.com", authority: "example.com:80" });
    expect(host("example.com:08080")).toEqual({ ok: true, host: "example.com", authority: "example.com:8080" });
  });

  it("understands IPv6 literals with and without a port", () => {
    expect(host("[2001:DB8::1]:8443")).toEqual({ ok: true, host: "[2001:db8::1]", authority: "[2001:db8::1]:8443" });
    expect(host("[::1]")).toEqual({ ok: true, host: "[::1]", authority: "[::1]" });
  });

  it("rejects what is not a host", () => {
    for (const [raw, reason] of [
      ["", "missing Host header"],
      ["   ", "missing Host header"],
      ["exa mple.com", "invalid Host header"],
      ["a:b:c", "invalid Host header"],
      ["example.com/path", "invalid Host header"],
      ["user@example.com", "invalid Host header"],
      ["[::1", "invalid IPv6 host"],
      ["[::1]x", "invalid Host header"],
      ["[zz::1]", "invalid Host header"],
      ["example.com:", "invalid port in Host header"],
      ["example.com:0", "invalid port in Host header"],
      ["example.com:65536", "invalid port in Host header"],
      ["example.com:80a", "invalid port in Host header"],
      [".", "invalid Host header"],
    ] as const) {
      expect(host(raw), raw).toEqual({ ok: false, reason });
    }
  });
});
