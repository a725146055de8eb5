/**
 * The pure JWT core inside workerd: the total parser, duplicate-member
 * detection, token extraction, key selection, the verified-token cache
 * and claim outputs.
 */
import { describe, expect, it } from "vitest";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { hasDuplicateMembers, parseJsonObject } from "../../../src/authz/jwt/json-object.ts";
import { parseJwt } from "../../../src/authz/jwt/parse.ts";
import { JWT_STATUS } from "../../../src/authz/jwt/status.ts";
import { extractionPlan, extractTokens } from "../../../src/authz/jwt/extract.ts";
import { keySetOf, parseJwks } from "../../../src/authz/jwt/keys.ts";
import { VerifiedTokens } from "../../../src/authz/jwt/token-cache.ts";
import { signatureStatus, timeStatus } from "../../../src/authz/jwt/verify.ts";
import { claimHeaderValue } from "../../../src/authz/jwt/outputs.ts";
import type { RequestFacts } from "../../../src/gateway/facts.ts";

const b64 = (s: string | Uint8Array) => {
  let binary = "";
  for (const byte of typeof s === "string" ? new TextEncoder().encode(s) : s) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
};
const token = (header: object | string, payload: object | string, sig = "c2ln") =>
  `${b64(typeof header === "string" ? header : JSON.stringify(header))}.${b64(typeof payload === "string" ? payload : JSON.stringify(payload))}.${sig}`;

describe("parseJwt", () => {
  it("parses header, payload and registered claims", () => {
    const r = parseJwt(token({ alg: "RS256", kid: "k" }, { iss: "i", sub: "s", aud: ["a", "b"], exp: 10, nbf: 1, iat: 2 }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.jwt).toMatchObject({ alg: "RS256", kid: "k", iss: "i", sub: "s", audiences: ["a", "b"], exp: 10, nbf: 1, iat: 2 });
  });

  it.each([
    ["a.b", JWT_STATUS.badFormat],
    ["a.b.c.d", JWT_STATUS.badFormat],
    ["", JWT_STATUS.badFormat],
    [`A.${b64("{}")}.x`, JWT_STATUS.headerBadBase64],
    [`${b64("nope")}.${b64("{}")}.x`, JWT_STATUS.headerBadJson],
    [token({ alg: "none" }, {}), JWT_STATUS.headerUnsupportedAlg],
    [token({ alg: "HS1" }, {}), JWT_STATUS.headerUnsupportedAlg],
    [token({}, {}), JWT_STATUS.headerBadAlg],
    [token({ alg: "RS256", kid: 1 }, {}), JWT_STATUS.headerBadKid],
    [token({ alg: "RS256" }, "[]"), JWT_STATUS.payloadBadJson],
    [token({ alg: "RS256" }, '{"a":1,"a":2}'), JWT_STATUS.payloadBadJson],
    [token('{"alg":"RS256","alg":"none"}', {}), JWT_STATUS.headerBadJson],
    [token({ alg: "RS256" }, { iss: 1 }), JWT_STATUS.issNotString],
    [token({ alg: "RS256" }, { sub: {} }), JWT_STATUS.subNotString],
    [token({ alg: "RS256" }, { aud: [1] }), JWT_STATUS.audNotString],
    [token({ alg: "RS256" }, { exp: "1" }), JWT_STATUS.expNotInteger],
    [token({ alg: "RS256" }, { nbf: -1 }), JWT_STATUS.nbfOutOfRange],
    [token({ alg: "RS256" }, { iat: 1e300 }), JWT_STATUS.iatOutOfRange],
    [token({ alg: "RS256" }, { jti: 5 }), JWT_STATUS.jtiNotString],
    [token({ alg: "RS256" }, {}, "a"), JWT_STATUS.signatureBadBase64],
  ])("%s → %s", (input, status) => {
    expect(parseJwt(input)).toEqual({ ok: false, status });
  });

  it("never throws, whatever the input", () => {
    const samples = ["...", "..", ".", "\u0000.\u0000.\u0000", "a".repeat(10_000), `${btoa("\xff\xfe")}.x.y`, token({ alg: "RS256" }, `{"a":${"[".repeat(2000)}${"]".repeat(2000)}}`)];
    for (let i = 0; i < 300; i++) samples.push(Array.from({ length: 40 }, () => String.fromCharCode(32 + ((i * 7919 + samples.length * 31) % 95))).join(""));
    for (const s of samples) expect(() => parseJwt(s)).not.toThrow();
  });

  it("reads claims named like Object.prototype members as plain data", () => {
    const r = parseJwt(token({ alg: "RS256" }, '{"__proto__":{"admin":true},"constructor":"x"}'));
    expect(r.ok).toBe(true);
    if (r.ok) expect(Object.getPrototypeOf(r.jwt.payload)).toBe(Object.prototype);
  });
});

describe("duplicate JSON members", () => {
  it("are found at any depth, after unescaping, and not across objects or in arrays", () => {
    expect(hasDuplicateMembers('{"a":1,"b":{"c":1,"c":2}}')).toBe(true);
    expect(hasDuplicateMembers('{"sub":"x","s\\u0075b":"y"}')).toBe(true);
    expect(hasDuplicateMembers('{"a":{"x":1},"b":{"x":1},"c":["x","x"],"d":[{"x":1},{"x":2}]}')).toBe(false);
    expect(hasDuplicateMembers('{"a":"{\\"a\\":1}","b":"a"}')).toBe(false);
    expect(parseJsonObject('{"a":1,"a":1}')).toBeUndefined();
    expect(parseJsonObject("1")).toBeUndefined();
  });
});

describe("token extraction", () => {
  const facts = (headers: Record<string, string>, query = ""): RequestFacts => ({
    method: "GET",
    scheme: "http",
    host: "h",
    port: 80,
    authority: "h",
    path: "/",
    query,
    headers: new Headers(headers),
    remoteIp: "",
  });
  const plan = extractionPlan([
    ["A", [{ header: "authorization", prefix: "Bearer " }, { param: "access_token" }]],
    ["B", [{ header: "authorization", prefix: "Bearer " }, { header: "x-jwt", prefix: "" }, { cookie: "session" }]],
  ]);

  it("dedupes locations and keeps every rule that declared them", () => {
    expect(plan.headers).toEqual([
      { name: "authorization", prefix: "Bearer ", rules: ["A", "B"] },
      { name: "x-jwt", prefix: "", rules: ["B"] },
    ]);
  });

  it("takes the run of JWT characters after the prefix, from every repeated value", () => {
    const r = extractTokens(plan, facts({ authorization: "Bearer  a.b.c trailing, Bearer d.e.f" }), 100);
    expect(r).toEqual({
      ok: true,
      tokens: [
        { token: "a.b.c", rules: ["A", "B"], header: "authorization" },
        { token: "d.e.f", rules: ["A", "B"], header: "authorization" },
      ],
    });
  });

  it("starts the run after a prefix made of JWT characters, whatever header came before", () => {
    const custom = extractionPlan([["C", [{ header: "x-a", prefix: "tok" }, { header: "x-b", prefix: "Bearer " }]]]);
    const r = extractTokens(custom, facts({ "x-a": "tokabc.def", "x-b": "Bearer !!, Bearer g.h.i" }), 100);
    expect(r.ok && r.tokens.map((t) => t.token)).toEqual(["abc.def", "g.h.i"]);
    expect(extractTokens(custom, facts({ "x-a": "tok" }), 100)).toEqual({ ok: true, tokens: [] });
  });

  it("ignores a header without the prefix (case-sensitive)", () => {
    expect(extractTokens(plan, facts({ authorization: "bearer a.b.c" }), 100)).toEqual({ ok: true, tokens: [] });
  });

  it("reads every value of a query parameter and the first cookie of a name", () => {
    const r = extractTokens(plan, facts({ cookie: 'x=1; session="s.t.u"; session=other' }, "access_token=p.q.r&access_token=v.w.x"), 100);
    expect(r.ok && r.tokens.map((t) => t.token)).toEqual(["p.q.r", "v.w.x", "s.t.u"]);
  });

  it("takes a present but empty query parameter or cookie as a token, as Envoy does (it then fails as malformed)", () => {
    const r = extractTokens(plan, facts({ cookie: "x=1; session=" }, "a=1&access_token="), 100);
    expect(r).toEqual({
      ok: true,
      tokens: [
        { token: "", rules: ["A"], param: "access_token" },
        { token: "", rules: ["B"] },
      ],
    });
    expect(extractTokens(plan, facts({ cookie: "x=1" }, "a=1"), 100)).toEqual({ ok: true, tokens: [] });
  });

  it("refuses a token over the cap before anything else", () => {
    expect(extractTokens(plan, facts({ authorization: `Bearer ${"a".repeat(101)}` }), 100)).toEqual({ ok: false, tooLarge: true });
  });

  it("takes a part's whole rest as the token when `known` says a rule verified it, and scans anything else", () => {
    const asked: [string, string[]][] = [];
    const known = (candidate: string, rules: readonly string[]) => {
      asked.push([candidate, [...rules]]);
      return candidate === "a.b.c";
    };
    const r = extractTokens(plan, facts({ authorization: "Bearer a.b.c, Bearer d.e.f trailing", "x-jwt": "g.h.i" }), 100, known);
    expect(r.ok && r.tokens).toEqual([
      { token: "a.b.c", rules: ["A", "B"], header: "authorization" },
      { token: "d.e.f", rules: ["A", "B"], header: "authorization" },
      { token: "g.h.i", rules: ["B"], header: "x-jwt" },
    ]);
    expect(asked).toEqual([
      ["a.b.c", ["A", "B"]],
      ["d.e.f trailing", ["A", "B"]],
      ["g.h.i", ["B"]],
    ]);
  });

  it("does not ask `known` about a rest over the cap: the scan refuses it", () => {
    let asked = 0;
    const r = extractTokens(plan, facts({ authorization: `Bearer ${"a".repeat(101)}` }), 100, () => ++asked > 0);
    expect(r).toEqual({ ok: false, tooLarge: true });
    expect(asked).toBe(0);
  });
});

describe("key sets", () => {
  it("select candidates by kid, alg, use and key type (kid is an exact lookup)", () => {
    const set = keySetOf(
      [
        { kty: "RSA", kid: "r1", n: "x", e: "AQAB" },
        { kty: "RSA", kid: "r2", alg: "RS384", n: "x", e: "AQAB" },
        { kty: "EC", kid: "e1", crv: "P-256", x: "x", y: "y" },
        { kty: "RSA", kid: "enc", use: "enc", n: "x", e: "AQAB" },
        { kty: "oct", kid: "h1", k: "c2VjcmV0" },
        { kty: "unknown" },
      ],
      "",
    );
    expect(set?.keys).toHaveLength(5);
    expect(set?.candidates("RS256", "r1")).toEqual([0]);
    expect(set?.candidates("RS256", undefined)).toEqual([0]);
    expect(set?.candidates("RS384", undefined)).toEqual([0, 1]);
    expect(set?.candidates("ES256", undefined)).toEqual([2]);
    expect(set?.candidates("ES384", undefined)).toEqual([]);
    expect(set?.candidates("HS256", "r1")).toEqual([]);
    expect(set?.candidates("RS256", "../r1")).toEqual([]);
  });

  it("treat an empty kid, on the token or on a key, as matching every key (jwt_verify_lib)", () => {
    const rsa = { kty: "RSA", n: "x", e: "AQAB" };
    const set = keySetOf([{ ...rsa, kid: "r1" }, { ...rsa, kid: "" }, rsa], "");
    expect(set?.candidates("RS256", "")).toEqual([0, 1, 2]);
    expect(set?.candidates("RS256", "r2")).toEqual([1, 2]);
    expect(set?.candidates("RS256", "r1")).toEqual([0, 1, 2]);
  });

  it("drop private members of asymmetric keys and reject documents without usable keys", () => {
    const set = parseJwks(JSON.stringify({ keys: [{ kty: "RSA", n: "x", e: "AQAB", d: "secret", p: "p" }] }));
    expect(set?.keys[0]).toEqual({ kty: "RSA", n: "x", e: "AQAB" });
    expect(parseJwks("{}")).toBeUndefined();
    expect(parseJwks('{"keys":[{"kty":"XYZ"}]}')).toBeUndefined();
    expect(parseJwks("not json")).toBeUndefined();
  });

  it("never verify with an empty HMAC secret, even a token really signed with it", async () => {
    // HMAC pads its key with zeros to the hash's block size (RFC 2104 §2), so for SHA-256 the empty
    // key and 64 zero bytes give the same MAC. WebCrypto (workerd's too) refuses to import a
    // zero-length HMAC key, so the forger signs with the 64 zero bytes; the known
    // HMAC-SHA256("", "") below pins that equivalence.
    const zeros = new Uint8Array(64);
    const hmac = await crypto.subtle.importKey("raw", zeros, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const mac = async (data: string) => new Uint8Array(await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(data)));
    const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(hex(await mac(""))).toBe("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    const unsigned = `${b64(JSON.stringify({ alg: "HS256" }))}.${b64(JSON.stringify({ sub: "mallory" }))}`;
    const parsed = parseJwt(`${unsigned}.${b64(await mac(unsigned))}`);
    const empty = keySetOf([{ kty: "oct", k: "" }], "");
    const sameMac = keySetOf([{ kty: "oct", k: b64(zeros) }], "");
    if (!parsed.ok || !empty || !sameMac) throw new Error("setup");
    // The signature is genuine: a verifier that MACed with the empty secret would accept the token.
    expect(await signatureStatus(parsed.jwt, sameMac)).toBeUndefined();
    expect(await signatureStatus(parsed.jwt, empty)).toBe(JWT_STATUS.verificationFails);
  });

  it("verify a real signature and import each key once", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k" };
    const set = keySetOf([jwk], "");
    const t = await new SignJWT({ sub: "a" }).setProtectedHeader({ alg: "ES256", kid: "k" }).sign(privateKey);
    const parsed = parseJwt(t);
    if (!parsed.ok || !set) throw new Error("setup");
    expect(await signatureStatus(parsed.jwt, set)).toBeUndefined();
    const first = await set.cryptoKey(0, "ES256");
    expect(await set.cryptoKey(0, "ES256")).toBe(first);
    const tampered = parseJwt(`${t.slice(0, t.lastIndexOf(".") + 1)}${b64("x".repeat(64))}`);
    if (!tampered.ok) throw new Error("setup");
    expect(await signatureStatus(tampered.jwt, set)).toBe(JWT_STATUS.verificationFails);
  });
});

describe("time checks", () => {
  const at = (claims: object) => {
    const r = parseJwt(token({ alg: "RS256" }, claims));
    if (!r.ok) throw new Error("setup");
    return r.jwt;
  };
  it("allow 60 s of skew on exp, nbf and iat", () => {
    const now = 1_000_000_000_000;
    const s = now / 1000;
    expect(timeStatus(at({ exp: s - 60 }), now)).toBeUndefined();
    expect(timeStatus(at({ exp: s - 61 }), now)).toBe(JWT_STATUS.expired);
    expect(timeStatus(at({ nbf: s + 60 }), now)).toBeUndefined();
    expect(timeStatus(at({ nbf: s + 61 }), now)).toBe(JWT_STATUS.notYetValid);
    expect(timeStatus(at({ iat: s + 61 }), now)).toBe(JWT_STATUS.notYetValid);
    expect(timeStatus(at({}), now)).toBeUndefined();
  });

  it("read exp 0 as no expiry, as jwt_verify_lib does", () => {
    expect(timeStatus(at({ exp: 0 }), 1_000_000_000_000)).toBeUndefined();
  });
});

describe("the verified-token cache", () => {
  const jwt = (exp?: number) => {
    const r = parseJwt(token({ alg: "RS256" }, exp === undefined ? {} : { exp }));
    if (!r.ok) throw new Error("setup");
    return r.jwt;
  };
  const keys = keySetOf([{ kty: "RSA", n: "x", e: "AQAB" }], "a")!;
  const rotated = keySetOf([{ kty: "RSA", n: "y", e: "AQAB" }], "b")!;

  it("is keyed by the whole token: one character more or less is a miss", () => {
    const cache = new VerifiedTokens();
    cache.set("a.b.c", jwt(), keys, 0, 60_000);
    expect(cache.get("a.b.c", keys, 1)).toBeDefined();
    expect(cache.get("a.b.d", keys, 1)).toBeUndefined();
    expect(cache.get("a.b.c ", keys, 1)).toBeUndefined();
    expect(cache.get("a.b.", keys, 1)).toBeUndefined();
  });

  it("expires entries at exp plus skew, and after 10 minutes without exp", () => {
    const cache = new VerifiedTokens();
    cache.set("h", jwt(100), keys, 50_000, 60_000);
    expect(cache.get("h", keys, 159_999)).toBeDefined();
    expect(cache.get("h", keys, 160_000)).toBeUndefined();
    cache.set("n", jwt(), keys, 0, 60_000);
    expect(cache.get("n", keys, 599_999)).toBeDefined();
    expect(cache.get("n", keys, 600_000)).toBeUndefined();
  });

  it("misses once the key set that verified the token is replaced", () => {
    const cache = new VerifiedTokens();
    cache.set("h", jwt(), keys, 0, 60_000);
    expect(cache.get("h", rotated, 1)).toBeUndefined();
    expect(cache.get("h", keys, 1)).toBeUndefined();
  });

  it("knows a token it holds, by the whole token, whatever its validity", () => {
    const cache = new VerifiedTokens();
    cache.set("a.b.c", jwt(1), keys, 0, 0);
    expect(cache.has("a.b.c")).toBe(true);
    expect(cache.has("x.b.c")).toBe(false);
    expect(cache.has("a.b.c ")).toBe(false);
    expect(cache.has("")).toBe(false);
  });

  it("is bounded, evicting the least recently used entry", () => {
    const cache = new VerifiedTokens(2);
    cache.set("a", jwt(), keys, 0, 0);
    cache.set("b", jwt(), keys, 0, 0);
    cache.get("a", keys, 1);
    cache.set("c", jwt(), keys, 0, 0);
    expect(cache.size).toBe(2);
    expect(cache.get("b", keys, 1)).toBeUndefined();
    expect(cache.get("a", keys, 1)).toBeDefined();
  });
});

describe("claim headers", () => {
  it("are written the way Envoy writes them", () => {
    const payload = { s: "x", n: 42, f: 1.5, t: true, o: { a: [1] }, l: ["a"], nested: { deep: { v: "ok" } }, nul: null };
    expect(claimHeaderValue(payload, "s")).toBe("x");
    expect(claimHeaderValue(payload, "n")).toBe("42");
    expect(claimHeaderValue(payload, "f")).toBe("1.500000");
    expect(claimHeaderValue(payload, "t")).toBe("true");
    expect(claimHeaderValue(payload, "o")).toBe(btoa('{"a":[1]}'));
    expect(claimHeaderValue(payload, "l")).toBe(btoa('["a"]'));
    expect(claimHeaderValue(payload, "nested.deep.v")).toBe("ok");
    expect(claimHeaderValue(payload, "nul")).toBeUndefined();
    expect(claimHeaderValue(payload, "missing.x")).toBeUndefined();
    expect(claimHeaderValue(payload, "constructor")).toBeUndefined();
  });
});
