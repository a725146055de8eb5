/**
 * The Location of a VirtualService redirect, as Envoy builds it.
 */
import { describe, expect, it } from "vitest";
import type { RedirectDef } from "../../../src/config/snapshot.ts";
import { redirectLocation, replacePrefix } from "../../../src/routing/redirect.ts";
import { facts } from "../support.ts";

const request = (url: string) => {
  const u = new URL(url);
  const scheme = u.protocol === "https:" ? "https" : "http";
  const explicitPort = /^[a-z]+:\/\/[^/]*:\d+/.test(url);
  return facts({
    scheme,
    host: u.hostname,
    // The listener's port, as ingress sets it: a port in the Host header is in the authority only.
    port: scheme === "https" ? 443 : 80,
    authority: explicitPort ? `${u.hostname}:${u.port || (scheme === "https" ? 443 : 80)}` : u.hostname,
    path: u.pathname,
    query: u.search.slice(1),
  });
};
const location = (r: Omit<RedirectDef, "status">, url: string, uri?: Parameters<typeof redirectLocation>[2]) => redirectLocation({ status: 301, ...r }, request(url), uri);

describe("redirectLocation", () => {
  it("switches scheme and keeps host, path and query", () => {
    expect(location({ scheme: "https" }, "http://app.example.com/x?y=1&z")).toBe("https://app.example.com/x?y=1&z");
  });

  it("drops the old default port when the scheme changes, keeps any other port", () => {
    expect(location({ scheme: "https" }, "http://app.example.com:80/x")).toBe("https://app.example.com/x");
    expect(location({ scheme: "https" }, "http://app.example.com:8080/x")).toBe("https://app.example.com:8080/x");
    expect(location({ scheme: "http" }, "https://app.example.com:443/x")).toBe("http://app.example.com/x");
  });

  it("lets a query string in the redirect uri replace the request's (Envoy path_redirect)", () => {
    expect(location({ uri: "/new?foo=1" }, "http://app.example.com/old?bar=1")).toBe("http://app.example.com/new?foo=1");
    expect(location({ uri: "/new" }, "http://app.example.com/old?bar=1")).toBe("http://app.example.com/new?bar=1");
  });

  it("keeps a non-default request port when nothing else changes it", () => {
    expect(location({ uri: "/new" }, "http://app.example.com:8080/old?q=1")).toBe("http://app.example.com:8080/new?q=1");
  });

  it("sets the port, omitting the scheme's default", () => {
    expect(location({ port: 8443, scheme: "https" }, "http://app.example.com/x")).toBe("https://app.example.com:8443/x");
    expect(location({ port: 443, scheme: "https" }, "http://app.example.com:8080/x")).toBe("https://app.example.com/x");
    expect(location({ port: 80 }, "http://app.example.com:8080/x")).toBe("http://app.example.com/x");
  });

  it("derives the port from the protocol default or from the request", () => {
    // FROM_PROTOCOL_DEFAULT is no port setting: Istio sets no port_redirect, and Envoy keeps a non-default port the client sent.
    expect(location({ derivePort: "FROM_PROTOCOL_DEFAULT", scheme: "https" }, "http://app.example.com:8080/x")).toBe("https://app.example.com:8080/x");
    expect(location({ derivePort: "FROM_PROTOCOL_DEFAULT", scheme: "https" }, "http://app.example.com:80/x")).toBe("https://app.example.com/x");
    // FROM_REQUEST_PORT is the listener's port (Istio's ApplyRedirect sets port_redirect to it), not the Host header's.
    expect(location({ derivePort: "FROM_REQUEST_PORT", scheme: "https" }, "http://app.example.com:8080/x")).toBe("https://app.example.com:80/x");
    // The request port is the listener port, even when the client did not write it.
    expect(location({ derivePort: "FROM_REQUEST_PORT", scheme: "https" }, "http://app.example.com/x")).toBe("https://app.example.com:80/x");
    expect(location({ derivePort: "FROM_REQUEST_PORT" }, "http://app.example.com/x")).toBe("http://app.example.com/x");
  });

  it("replaces the host with authority, with or without a port", () => {
    expect(location({ authority: "new.example.com" }, "http://app.example.com:8080/x?a=b")).toBe("http://new.example.com/x?a=b");
    expect(location({ authority: "new.example.com:9000" }, "http://app.example.com/x")).toBe("http://new.example.com:9000/x");
    expect(location({ authority: "new.example.com:80" }, "http://app.example.com/x")).toBe("http://new.example.com/x");
    expect(location({ authority: "[2001:db8::1]" }, "http://app.example.com/x")).toBe("http://[2001:db8::1]/x");
    expect(location({ authority: "[2001:db8::1]:8080" }, "http://app.example.com/x")).toBe("http://[2001:db8::1]:8080/x");
  });

  it("keeps an IPv6 request host and its port", () => {
    const f = facts({ host: "[::1]", port: 8080, authority: "[::1]:8080", path: "/a", query: "" });
    expect(redirectLocation({ status: 301, uri: "/b" }, f, undefined)).toBe("http://[::1]:8080/b");
    const noPort = facts({ host: "[::1]", port: 80, authority: "[::1]", path: "/a", query: "" });
    expect(redirectLocation({ status: 301, scheme: "https" }, noPort, undefined)).toBe("https://[::1]/a");
  });

  it("puts a / before a path without one, so the path never changes the Location's host (Envoy's newUri)", () => {
    expect(location({ uri: "new" }, "http://a.example.com/rel?q=1")).toBe("http://a.example.com/new?q=1");
    expect(location({ prefixRewrite: "x" }, "http://a.example.com/old/@evil.example/phish", { type: "prefix", value: "/old/" })).toBe("http://a.example.com/x@evil.example/phish");
    expect(location({ prefixRewrite: "@evil.example" }, "http://a.example.com/old/phish", { type: "prefix", value: "/old/" })).toBe("http://a.example.com/@evil.examplephish");
  });

  it("reads an empty uri, prefixRewrite or authority as unset: the path and host are kept", () => {
    expect(location({ uri: "", authority: "b.example.com" }, "http://a.example.com/r/x?q=1")).toBe("http://b.example.com/r/x?q=1");
    expect(location({ prefixRewrite: "" }, "http://a.example.com/old/@evil.example/phish", { type: "prefix", value: "/old/" })).toBe("http://a.example.com/old/@evil.example/phish");
    expect(location({ authority: "", scheme: "https" }, "http://a.example.com/x")).toBe("https://a.example.com/x");
  });

  it("rewrites the matched prefix and keeps the query", () => {
    expect(location({ prefixRewrite: "/v2" }, "http://app.example.com/v1/users?id=7", { type: "prefix", value: "/v1" })).toBe("http://app.example.com/v2/users?id=7");
    expect(location({ prefixRewrite: "/landing" }, "http://app.example.com/old", { type: "exact", value: "/old" })).toBe("http://app.example.com/landing");
  });
});

describe("replacePrefix", () => {
  it("replaces the matched prefix, so prefix /foo with / turns /foo/x into //x (as Envoy does)", () => {
    expect(replacePrefix("/foo/x", { type: "prefix", value: "/foo" }, "/")).toBe("//x");
    expect(replacePrefix("/foo/x", { type: "prefix", value: "/foo/" }, "/")).toBe("/x");
    expect(replacePrefix("/foobar", { type: "prefix", value: "/foo" }, "/baz")).toBe("/bazbar");
  });

  it("replaces the whole path for an exact or a regex match and the leading / for no uri match", () => {
    expect(replacePrefix("/old", { type: "exact", value: "/old" }, "/new")).toBe("/new");
    expect(replacePrefix("/v1/abc", { type: "regex", value: "/v1/[a-z]+" }, "/v2/items")).toBe("/v2/items");
    expect(replacePrefix("/anything/here", undefined, "/base/")).toBe("/base/anything/here");
  });

  it("consumes the prefix as long as it was matched case-insensitively", () => {
    expect(replacePrefix("/API/users", { type: "prefix", value: "/api", ignoreCase: true }, "/v2")).toBe("/v2/users");
  });
});
