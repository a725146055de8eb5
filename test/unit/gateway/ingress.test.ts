/**
 * Ingress: hygiene then normalization into the RequestFacts every later
 * stage (and the upstream) sees.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_SETTINGS } from "../../../src/config/defaults.ts";
import type { GatewaySettings, PathNormalization } from "../../../src/config/snapshot.ts";
import type { PipelineDeps } from "../../../src/gateway/context.ts";
import { clientAddress, ingress, urlParts } from "../../../src/gateway/ingress.ts";
import { Balancer } from "../../../src/routing/balancer.ts";

const deps: PipelineDeps = {
  fetch: () => Promise.reject(new Error("ingress must not fetch")),
  balancer: new Balancer(() => 0),
  random: () => 0,
  requestId: () => "req-1",
  now: () => 0,
  sleep: () => Promise.resolve(),
};
const settings = (pathNormalization: PathNormalization = "DECODE_AND_MERGE_SLASHES"): GatewaySettings => ({ ...DEFAULT_SETTINGS, pathNormalization });
const enter = (url: string, init: RequestInit = {}, mode?: PathNormalization) => ingress(new Request(url, init), settings(mode), deps);
const factsOf = (url: string, init: RequestInit = {}, mode?: PathNormalization) => {
  const result = enter(url, init, mode);
  if (!result.ok) throw new Error(`${result.reply.status} ${result.reply.body}`);
  return result.facts;
};

describe("ingress", () => {
  it("builds the facts from the Host header, the normalized path and the raw query", () => {
    const f = factsOf("http://app.example.com//api/%2Fv1?b=2&a=%2F", { method: "POST", headers: { host: "App.Example.com:8080" } });
    expect(f).toMatchObject({ method: "POST", scheme: "http", host: "app.example.com", port: 80, authority: "app.example.com:8080", path: "/api/v1", query: "b=2&a=%2F" });
  });

  it("takes the port from the listener (the scheme), never from the Host header, which keeps it in the authority only", () => {
    // A client on plain HTTP that writes :443 must not match `ports: ["443"]` (nor escape `notPorts: ["443"]`).
    expect(factsOf("http://ports.test/x", { headers: { host: "ports.test:443" } })).toMatchObject({ scheme: "http", port: 80, authority: "ports.test:443" });
    expect(factsOf("https://ports.test/x", { headers: { host: "ports.test:8080" } })).toMatchObject({ scheme: "https", port: 443, authority: "ports.test:8080" });
    expect(factsOf("http://ports.test:8080/x")).toMatchObject({ port: 80, authority: "ports.test:8080" });
  });

  it("answers an asterisk-form target (OPTIONS *, which workerd hands on as http://host*) with Envoy's empty 404, not as a request for /", () => {
    for (const method of ["OPTIONS", "GET"]) {
      const result = enter("http://a.example.com*", { method, headers: { host: "a.example.com" } });
      expect(result.ok ? 200 : [result.reply.status, result.reply.body]).toEqual([404, ""]);
    }
    expect(factsOf("http://a.example.com/*", { method: "OPTIONS" }).path).toBe("/*");
  });

  it("uses the URL's host when there is no Host header, and https defaults", () => {
    expect(factsOf("https://secure.example.com/x")).toMatchObject({ scheme: "https", host: "secure.example.com", port: 443, authority: "secure.example.com" });
  });

  it("normalizes per GatewayConfig.pathNormalization", () => {
    expect(factsOf("http://a.example.com//admin", {}, "BASE").path).toBe("//admin");
    expect(factsOf("http://a.example.com//admin", {}, "MERGE_SLASHES").path).toBe("/admin");
    expect(factsOf("http://a.example.com/%2Fadmin", {}, "MERGE_SLASHES").path).toBe("/%2Fadmin");
    expect(factsOf("http://a.example.com/%2Fadmin").path).toBe("/admin");
    expect(factsOf("http://a.example.com/public/%2e%2e/admin", {}, "NONE").path).toBe("/admin");
  });

  it("never lets a fragment reach the path routing and authorization see (Envoy strips it, CVE-2021-32779)", () => {
    expect(factsOf("http://a.example.com/admin#x").path).toBe("/admin");
    expect(factsOf("http://a.example.com/admin?q=1#frag")).toMatchObject({ path: "/admin", query: "q=1" });
    expect(factsOf("http://a.example.com/admin#frag?q=1")).toMatchObject({ path: "/admin", query: "" });
    expect(factsOf("http://a.example.com/a%2F..#/b", {}, "NONE").path).toBe("/a%2F..");
  });

  it("replaces x-request-id, sets x-forwarded-for from CF-Connecting-IP and x-forwarded-proto", () => {
    const f = factsOf("https://a.example.com/", { headers: { "x-request-id": "chosen-by-client", "x-forwarded-for": "10.9.9.9", "x-forwarded-proto": "http", "cf-connecting-ip": "203.0.113.9" } });
    expect(f.remoteIp).toBe("203.0.113.9");
    expect(f.headers.get("x-request-id")).toBe("req-1");
    expect(f.headers.get("x-forwarded-for")).toBe("203.0.113.9");
    expect(f.headers.get("x-forwarded-proto")).toBe("https");
  });

  it("takes the client IP from the socket's peer that bare workerd reports as cf.clientIp when no CF-Connecting-IP names it (isthmus serve)", () => {
    const withPeer = (clientIp: string, headers: Record<string, string> = {}) => factsOf("http://a.example.com/", { headers, cf: { clientIp } } as RequestInit);
    expect(withPeer("10.0.3.7:51234").remoteIp).toBe("10.0.3.7");
    expect(withPeer("[::1]:51234").remoteIp).toBe("::1");
    expect(withPeer("[2001:db8::7]:443").headers.get("x-forwarded-for")).toBe("2001:db8::7");
    expect(withPeer("10.0.3.7").remoteIp).toBe("10.0.3.7");
    expect(withPeer("2001:db8::7").remoteIp).toBe("2001:db8::7");
    expect(withPeer("[broken").remoteIp).toBe("");
    // Cloudflare's header wins: there cf carries no peer, and CF-Connecting-IP is the client.
    expect(withPeer("10.0.3.7:51234", { "cf-connecting-ip": "203.0.113.9" }).remoteIp).toBe("203.0.113.9");
    // A client's own X-Forwarded-For is not believed over the peer.
    expect(withPeer("10.0.3.7:51234", { "x-forwarded-for": "198.51.100.1" }).headers.get("x-forwarded-for")).toBe("10.0.3.7");
  });

  it("with trusted proxies in front, takes the client from their X-Forwarded-For and appends the peer (Envoy's xff_num_trusted_hops)", () => {
    const behind = (trusted: number, xff: string) =>
      ingress(new Request("http://a.example.com/", { headers: { "x-forwarded-for": xff, "cf-connecting-ip": "192.0.2.5" } }), { ...settings(), numTrustedProxies: trusted }, deps);
    const facts = behind(2, "203.0.113.128, 203.0.113.10, 203.0.113.1");
    if (!facts.ok) throw new Error("rejected");
    // Envoy's documented example: two trusted proxies, downstream 192.0.2.5.
    expect(facts.facts.remoteIp).toBe("203.0.113.10");
    expect(facts.facts.peerIp).toBe("192.0.2.5");
    expect(facts.facts.headers.get("x-forwarded-for")).toBe("203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.5");
    const none = behind(0, "203.0.113.1");
    if (!none.ok) throw new Error("rejected");
    expect(none.facts).toMatchObject({ remoteIp: "192.0.2.5" });
    expect(none.facts.peerIp).toBeUndefined();
    expect(none.facts.headers.get("x-forwarded-for")).toBe("192.0.2.5");
  });

  it("falls back to the peer when X-Forwarded-For is absent, too short, or names no IP address at the trusted position", () => {
    expect(clientAddress("192.0.2.5", null, 1)).toEqual({ remoteIp: "192.0.2.5", forwardedFor: "192.0.2.5" });
    expect(clientAddress("192.0.2.5", "203.0.113.1", 2)).toEqual({ remoteIp: "192.0.2.5", forwardedFor: "203.0.113.1, 192.0.2.5" });
    expect(clientAddress("192.0.2.5", "203.0.113.1, unknown", 1).remoteIp).toBe("192.0.2.5");
    expect(clientAddress("192.0.2.5", "203.0.113.1:4711", 1).remoteIp).toBe("192.0.2.5");
    expect(clientAddress("192.0.2.5", "2001:db8::1", 1).remoteIp).toBe("2001:db8::1");
    expect(clientAddress("192.0.2.5", "198.51.100.2,203.0.113.1", 2).remoteIp).toBe("198.51.100.2");
    expect(clientAddress("", "203.0.113.1", 1)).toEqual({ remoteIp: "203.0.113.1", forwardedFor: "203.0.113.1" });
  });

  it("does not invent x-forwarded-for without a client IP", () => {
    const f = factsOf("http://a.example.com/", { headers: { "x-forwarded-for": "10.9.9.9" } });
    expect(f.remoteIp).toBe("");
    expect(f.headers.has("x-forwarded-for")).toBe(false);
  });

  it("answers 400 for a bad Host header or an encoded NUL, and the hygiene status otherwise", () => {
    const status = (url: string, init: RequestInit = {}) => {
      const result = enter(url, init);
      return result.ok ? "ok" : `${result.reply.status} ${result.reply.body}`;
    };
    expect(status("http://a.example.com/", { headers: { host: "a.example.com:99999" } })).toBe("400 invalid port in Host header");
    expect(status("http://a.example.com/", { headers: { host: "bad host" } })).toBe("400 invalid Host header");
    expect(status("http://a.example.com/x%00.html")).toBe("400 path contains an encoded NUL (%00)");
    expect(status("http://a.example.com/", { method: "POST", body: "x", headers: { "content-length": "1", "transfer-encoding": "chunked" } })).toBe(
      "400 both content-length and transfer-encoding are set",
    );
  });

  it("notes the client's Content-Length in the facts, as a number only when it is a plain decimal", () => {
    expect(factsOf("http://a.example.com/", { method: "POST", body: "hello", headers: { "content-length": "5" } }).bodyLength).toBe(5);
    expect(factsOf("http://a.example.com/").bodyLength).toBeUndefined();
  });
});

describe("urlParts", () => {
  // ingress splits request.url instead of parsing it again: it must agree with the URL parser on every serialized URL.
  const urls = [
    "http://a.example.com/",
    "https://a.example.com/x/y?q=1&r=2",
    "http://a.example.com:8080/p?",
    "http://a.example.com/p?a=b?c#d?e",
    "http://a.example.com/p#frag",
    "http://a.example.com/p#frag?notquery",
    "http://a.example.com/?q",
    "http://user:pw@a.example.com:81/p?q#f",
    "http://[2001:db8::1]:8080/p/%2F..?x=%20",
    "https://a.example.com/a/./b/../c//d",
    "http://a.example.com/%E2%82%AC?%E2%82%AC",
  ];
  it.each(urls)("splits %s as the URL parser does", (raw) => {
    const serialized = new Request(raw).url;
    const parsed = new URL(serialized);
    const parts = urlParts(serialized);
    expect(parts.scheme).toBe(parsed.protocol.slice(0, -1));
    expect(parts.authority).toBe(parsed.host);
    expect(parts.query).toBe(parsed.search.slice(1));
    // The path is the raw one (URL.pathname would be the same here: the runtime already serialized it).
    expect(parts.path).toBe(parsed.pathname);
  });
});
