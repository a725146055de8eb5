/**
 * The benchmark's realistic config, and the parts the instruction ladder
 * (`bench:instructions --ladder`) leaves out of it one at a time.
 */
import { describe, expect, it } from "vitest";
import { realistic } from "../../bench/configs.ts";

const jwt = { issuer: "https://idp.bench", jwksUri: "http://127.0.0.1:9/jwks", tokens: ["t1", "t2"] };
const kinds = (yaml: string) => [...yaml.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]);
const count = (yaml: string, kind: string) => kinds(yaml).filter((k) => k === kind).length;

describe("realistic", () => {
  it("holds every part by default", () => {
    const { yaml, requests } = realistic(8080, { telemetry: false, jwt });
    expect(count(yaml, "VirtualService")).toBe(50);
    expect(count(yaml, "RequestAuthentication")).toBe(1);
    expect(count(yaml, "AuthorizationPolicy")).toBe(20);
    expect(count(yaml, "RateLimitPolicy")).toBe(1);
    expect(yaml.match(/retries: /g)?.length).toBe(1000);
    expect(requests.every((r) => r.headers?.authorization?.startsWith("Bearer t"))).toBe(true);
  });

  it("leaves out what `without` names, and only that", () => {
    const noLimit = realistic(8080, { telemetry: false, jwt, without: ["rateLimit"] }).yaml;
    expect(count(noLimit, "RateLimitPolicy")).toBe(0);
    expect(count(noLimit, "AuthorizationPolicy")).toBe(20);
    const noPolicies = realistic(8080, { telemetry: false, jwt, without: ["rateLimit", "authorization"] }).yaml;
    expect(count(noPolicies, "AuthorizationPolicy")).toBe(0);
    expect(count(noPolicies, "RequestAuthentication")).toBe(1);
    const routesOnly = realistic(8080, { telemetry: false, jwt, without: ["rateLimit", "authorization", "jwt", "retries"] }).yaml;
    expect(kinds(routesOnly).filter((k) => !["VirtualService", "ServiceEntry", "DestinationRule"].includes(k as string))).toEqual([]);
    expect(routesOnly).not.toContain("retries:");
    expect(count(routesOnly, "VirtualService")).toBe(50);
  });

  it("refuses to leave out JWT while the policies or the rate limit need its principal", () => {
    expect(() => realistic(8080, { telemetry: false, jwt, without: ["jwt"] })).toThrow(/leave out authorization and rateLimit with jwt/);
    expect(() => realistic(8080, { telemetry: false, jwt, without: ["jwt", "authorization"] })).toThrow(/rateLimit/);
  });
});
