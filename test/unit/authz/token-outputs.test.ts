/**
 * What a verified token changes upstream: the query parameter that carried
 * it goes (Envoy since envoyproxy/envoy#34418), unless the rule forwards the
 * original token; the rest of the query keeps its order and encoding.
 */
import { describe, expect, it } from "vitest";
import type { VerifiedToken } from "../../../src/authz/jwt/authenticate.ts";
import { applyTokenOutputs, withoutParam } from "../../../src/authz/jwt/outputs.ts";
import { facts } from "../support.ts";

const verified = (forwardOriginalToken: boolean, where: { param?: string; header?: string }): VerifiedToken =>
  ({
    jwt: { payload: { sub: "carol" }, payloadSegment: "e30" },
    rule: { def: { forwardOriginalToken, outputClaimToHeaders: [] } },
    ...where,
  }) as unknown as VerifiedToken;

describe("withoutParam", () => {
  it("drops every occurrence of the parameter, matched by its decoded name, and keeps the rest as sent", () => {
    expect(withoutParam("a=1&access_token=xyz&b=%20x", "access_token")).toBe("a=1&b=%20x");
    expect(withoutParam("access_token=1&access%5Ftoken=2&access_tokens=3", "access_token")).toBe("access_tokens=3");
    expect(withoutParam("access_token", "access_token")).toBe("");
    expect(withoutParam("q=%E0%A4%A", "access_token")).toBe("q=%E0%A4%A");
  });
});

describe("applyTokenOutputs", () => {
  it("removes the query parameter that carried a verified token, unless forwardOriginalToken", () => {
    const f = facts({ query: "a=0&access_token=t&x=1", headers: { authorization: "Bearer t2" } });
    applyTokenOutputs(f, [verified(false, { param: "access_token" })]);
    expect([f.query, f.headers.get("authorization")]).toEqual(["a=0&x=1", "Bearer t2"]);
    const kept = facts({ query: "access_token=t" });
    applyTokenOutputs(kept, [verified(true, { param: "access_token" })]);
    expect(kept.query).toBe("access_token=t");
  });

  it("still removes the header that carried one, and leaves the query alone", () => {
    const f = facts({ query: "access_token=other", headers: { authorization: "Bearer t" } });
    applyTokenOutputs(f, [verified(false, { header: "authorization" })]);
    expect([f.query, f.headers.get("authorization")]).toEqual(["access_token=other", null]);
  });
});
