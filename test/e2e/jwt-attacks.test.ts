/**
 * The JWT attack corpus (performance-security-anchors §3: jwt_tool's
 * exploit modes and the CVEs behind them) against the real gateway. Every
 * hostile token must be refused with 400/401/403, never reach the origin,
 * and never produce a 500; an attacker's key server must never be asked
 * for anything.
 */
import { execFileSync } from "node:child_process";
import { createHmac, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compactVerify, importJWK, importX509, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { b64url, rawToken, signingKey, startIdp, type Idp, type SigningKey } from "../helpers/idp.ts";
import { send, type Reply } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { requestAuthentication, routedService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let app: Origin;
let idp: Idp;
let attacker: Idp;
let rsa: SigningKey;
let ec: SigningKey;
let evil: SigningKey;

const HOST = "attacks.test";

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  limits: {maxJwtBytes: 2048}
---
${routedService({ hosts: HOST, name: "app", namespace: "apps", endpoints: [app.port] })}
---
${requestAuthentication(idp)}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: istio-system}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
`;

beforeAll(async () => {
  [app, idp, attacker] = await Promise.all([startOrigin("app"), startIdp(), startIdp()]);
  rsa = idp.keys[0] as SigningKey;
  ec = await idp.addKey("ES256", "ec-1");
  evil = attacker.keys[0] as SigningKey;
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app, idp, attacker].map((s) => s?.close()));
});

const now = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({ iss: idp.issuer, sub: "mallory", iat: now(), exp: now() + 3600, ...extra });

/** Signs header.payload (already encoded) with a key, the way a forger with that key would. */
async function signInput(input: string, key: SigningKey): Promise<string> {
  const algorithm = key.alg === "ES256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "RSASSA-PKCS1-v1_5" };
  return b64url(new Uint8Array(await crypto.subtle.sign(algorithm, key.privateKey, new TextEncoder().encode(input))));
}

async function forge(header: Record<string, unknown> | string, payload: Record<string, unknown> | string, key: SigningKey): Promise<string> {
  const unsigned = rawToken(header, payload).slice(0, -1);
  return `${unsigned}.${await signInput(unsigned, key)}`;
}

function hmacToken(header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | Buffer): string {
  const unsigned = rawToken(header, payload).slice(0, -1);
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

/**
 * An attacker's RS256 key and a self-signed certificate for it, made with openssl (as
 * test/helpers/pki.ts makes its PKI): what a forger would put in `x5c`.
 */
async function selfSignedAttacker(): Promise<{ key: SigningKey; cert: X509Certificate; pem: string }> {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-x5c-"));
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "x5c.key", "-subj", "/CN=attacker", "-days", "2", "-sha256", "-out", "x5c.crt"], { cwd: dir, stdio: "pipe" });
    const pem = readFileSync(join(dir, "x5c.crt"), "utf8");
    const pkcs8 = createPrivateKey(readFileSync(join(dir, "x5c.key"))).export({ type: "pkcs8", format: "der" });
    const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["sign"]);
    const cert = new X509Certificate(pem);
    return { key: { kid: "attacker-x5c", alg: "RS256", privateKey, publicJwk: cert.publicKey.export({ format: "jwk" }) }, cert, pem };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function attempt(headers: Record<string, string>, path = "/"): Promise<Reply> {
  const before = app.received.length;
  const res = await send(gw.url, path, { host: HOST, headers });
  expect([400, 401, 403], `status ${res.status}: ${res.body}`).toContain(res.status);
  expect(app.received.length, "the origin must not be called").toBe(before);
  return res;
}
const withBearer = (token: string) => attempt({ authorization: `Bearer ${token}` });

describe("the setup", () => {
  it("lets a genuine token through (so every refusal below is the attack's doing)", async () => {
    const res = await send(gw.url, "/", { host: HOST, headers: { authorization: `Bearer ${await forge({ alg: "RS256", kid: rsa.kid }, claims(), rsa)}` } });
    expect(res.status).toBe(200);
    const ecRes = await send(gw.url, "/", { host: HOST, headers: { authorization: `Bearer ${await forge({ alg: "ES256", kid: ec.kid }, claims(), ec)}` } });
    expect(ecRes.status).toBe(200);
  });
});

describe("algorithm attacks", () => {
  for (const alg of ["none", "None", "NONE", "nOnE"]) {
    it(`alg ${alg} (unsigned token) → 401`, async () => {
      const res = await withBearer(rawToken({ alg, typ: "JWT" }, claims()));
      expect(res.status).toBe(401);
      expect(res.body).toBe("Jwt header [alg] is not supported");
    });
  }

  it("a valid header and payload with an empty signature → 401", async () => {
    const token = await forge({ alg: "RS256", kid: rsa.kid }, claims(), rsa);
    const res = await withBearer(token.slice(0, token.lastIndexOf(".") + 1));
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwt verification fails");
  });

  it("HS256 signed with the RSA public key as the secret (key confusion) → 401", async () => {
    const pem = createPublicKey({ key: rsa.publicJwk as never, format: "jwk" }).export({ type: "spki", format: "pem" });
    for (const secret of [pem, JSON.stringify(rsa.publicJwk)]) {
      const res = await withBearer(hmacToken({ alg: "HS256", kid: rsa.kid }, claims(), secret));
      expect(res.status).toBe(401);
      expect(res.body).toBe("Jwks doesn't have key to match kid or alg from Jwt");
    }
  });

  it("HS256 with a blank secret → 401", async () => {
    const res = await withBearer(hmacToken({ alg: "HS256" }, claims(), ""));
    expect(res.status).toBe(401);
  });

  it("ECDSA r = s = 0 (psychic signature, CVE-2022-21449), raw and DER → 401", async () => {
    const unsigned = rawToken({ alg: "ES256", kid: ec.kid }, claims()).slice(0, -1);
    for (const sig of [b64url(new Uint8Array(64)), "MAYCAQACAQA"]) {
      const res = await withBearer(`${unsigned}.${sig}`);
      expect(res.status).toBe(401);
      expect(res.body).toBe("Jwt verification fails");
    }
  });
});

describe("key injection", () => {
  it("an embedded jwk (CVE-2018-0114) is never used → 401", async () => {
    for (const kid of [evil.kid, rsa.kid]) {
      const res = await withBearer(await forge({ alg: "RS256", kid, jwk: evil.publicJwk }, claims(), evil));
      expect(res.status).toBe(401);
    }
  });

  it("jku and x5u pointing at an attacker's key server → 401, and that server receives no request", async () => {
    for (const header of [
      { alg: "RS256", kid: evil.kid, jku: attacker.jwksUri },
      { alg: "RS256", kid: rsa.kid, jku: attacker.jwksUri },
      { alg: "RS256", kid: evil.kid, x5u: `${attacker.url}/cert.pem` },
    ]) {
      const res = await withBearer(await forge(header, claims(), evil));
      expect(res.status).toBe(401);
    }
    expect(attacker.requests).toEqual([]);
  });

  it("kid path traversal and injection strings are only ever exact-match lookups → 401", async () => {
    for (const kid of ["../../../../../../etc/passwd", "/dev/null", "' OR '1'='1", "key-1' --", `${rsa.kid}\u0000`, `${rsa.kid}/../${rsa.kid}`, "|| whoami", "${jndi:ldap://x}"]) {
      const res = await withBearer(await forge({ alg: "RS256", kid }, claims(), evil));
      expect(res.status, kid).toBe(401);
      const hs = await withBearer(hmacToken({ alg: "HS256", kid }, claims(), ""));
      expect(hs.status, kid).toBe(401);
    }
    expect(attacker.requests).toEqual([]);
  });

  it("an unknown critical header parameter → 401", async () => {
    const res = await withBearer(await forge({ alg: "RS256", kid: rsa.kid, crit: ["x-magic"], "x-magic": true }, claims(), rsa));
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwt verification fails");
  });

  it("an x5c carrying the attacker's own self-signed certificate is never trusted → 401", async () => {
    const { key, cert, pem } = await selfSignedAttacker();
    expect(cert.checkIssued(cert) && cert.verify(cert.publicKey)).toBe(true);
    for (const kid of [rsa.kid, undefined]) {
      const token = await forge({ alg: "RS256", ...(kid ? { kid } : {}), x5c: [cert.raw.toString("base64")] }, claims(), key);
      // A verifier that took the key from x5c would accept this token.
      await expect(jwtVerify(token, await importX509(pem, "RS256"), { algorithms: ["RS256"] })).resolves.toBeDefined();
      const res = await withBearer(token);
      expect(res.status, String(kid)).toBe(401);
      expect(res.body, String(kid)).toBe("Jwt verification fails");
    }
  });

  it("b64: false (RFC 7797 unencoded payload), validly signed by the real key → 401", async () => {
    // Signed over header.base64url(payload) with b64 in crit: read as RFC 7797, that is exactly the
    // signing input, so the signature is valid and only the JWT rule against b64: false refuses it.
    const token = await forge({ alg: "RS256", b64: false, crit: ["b64"], kid: rsa.kid }, claims(), rsa);
    await expect(compactVerify(token, await importJWK(rsa.publicJwk, "RS256"))).resolves.toBeDefined();
    await expect(jwtVerify(token, await importJWK(rsa.publicJwk, "RS256"))).rejects.toThrow("JWTs MUST NOT use unencoded payload");
    const res = await withBearer(token);
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwt verification fails");
    // With the payload detached (RFC 7515 Appendix F) there is no payload to read: not a JWT at all.
    const detached = await withBearer(`${token.slice(0, token.indexOf("."))}.${token.slice(token.lastIndexOf("."))}`);
    expect(detached.body).toBe("Jwt payload is an invalid JSON");
  });
});

describe("claims", () => {
  it("expired beyond the 60 s skew → 401 Jwt is expired", async () => {
    const res = await withBearer(await forge({ alg: "RS256", kid: rsa.kid }, claims({ exp: now() - 120 }), rsa));
    expect(res.body).toBe("Jwt is expired");
  });

  it("nbf and iat in the future beyond the skew → 401 Jwt not yet valid", async () => {
    for (const extra of [{ nbf: now() + 300 }, { iat: now() + 300 }]) {
      const res = await withBearer(await forge({ alg: "RS256", kid: rsa.kid }, claims(extra), rsa));
      expect(res.status).toBe(401);
      expect(res.body).toBe("Jwt not yet valid");
    }
  });

  it("a wrong issuer, even signed with a trusted key → 401 Jwt issuer is not configured", async () => {
    const res = await withBearer(await forge({ alg: "RS256", kid: rsa.kid }, claims({ iss: "https://evil.example" }), rsa));
    expect(res.body).toBe("Jwt issuer is not configured");
  });

  it("duplicate claims are rejected deterministically, even with a valid signature → 401", async () => {
    const c = claims();
    const payload = `{"iss":${JSON.stringify(c.iss)},"sub":"mallory","sub":"admin","exp":${c.exp}}`;
    const res = await withBearer(await forge({ alg: "RS256", kid: rsa.kid }, payload, rsa));
    expect(res.body).toBe("Jwt payload is an invalid JSON");
    const header = `{"alg":"RS256","kid":${JSON.stringify(rsa.kid)},"alg":"none"}`;
    const dupHeader = await withBearer(await forge(header, claims(), rsa));
    expect(dupHeader.body).toBe("Jwt header is an invalid JSON");
  });

  it("a token over limits.maxJwtBytes is refused before it is decoded → 401", async () => {
    const res = await withBearer(await forge({ alg: "RS256", kid: rsa.kid }, claims({ pad: "x".repeat(3000) }), rsa));
    expect(res.body).toBe("Jwt exceeds the maximum size");
    const huge = await withBearer(`${"A".repeat(40_000)}.${"B".repeat(10)}.C`);
    expect(huge.status).toBe(401);
  });
});

describe("malformed tokens", () => {
  const cases: [string, () => string | Promise<string>, string][] = [
    ["two segments", () => "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"],
    ["four segments", () => "a.b.c.d", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"],
    ["header of impossible base64url length", () => `AAAAA.${b64url("{}")}.x`, "Jwt header is an invalid Base64url encoded"],
    ["header not JSON", () => `${b64url("{alg:RS256")}.${b64url("{}")}.x`, "Jwt header is an invalid JSON"],
    ["header a JSON array", () => `${b64url("[1]")}.${b64url("{}")}.x`, "Jwt header is an invalid JSON"],
    ["header not UTF-8", () => `${b64url(new Uint8Array([0xff, 0xfe, 0x7b]))}.${b64url("{}")}.x`, "Jwt header is an invalid JSON"],
    ["alg missing", () => rawToken({ typ: "JWT" }, claims(), "x"), "Jwt header [alg] field is required and must be a string"],
    ["alg not a string", () => rawToken({ alg: 256 }, claims(), "x"), "Jwt header [alg] field is required and must be a string"],
    ["kid not a string", () => rawToken({ alg: "RS256", kid: 7 }, claims(), "x"), "Jwt header [kid] field is not a string"],
    ["payload of impossible base64url length", () => `${b64url('{"alg":"RS256"}')}.AAAAA.x`, "Jwt payload is an invalid Base64url encoded"],
    ["payload not JSON", () => rawToken({ alg: "RS256" }, "not json", "x"), "Jwt payload is an invalid JSON"],
    ["payload JSON null", () => rawToken({ alg: "RS256" }, "null", "x"), "Jwt payload is an invalid JSON"],
    ["deeply nested payload", () => rawToken({ alg: "RS256" }, `{"a":${"[".repeat(600)}${"]".repeat(600)}}`, "x"), "Jwt signature is an invalid Base64url encoded"],
    ["exp a string", () => rawToken({ alg: "RS256" }, claims({ exp: "tomorrow" }), "x"), "Jwt payload [exp] field is not an integer"],
    ["exp negative", () => rawToken({ alg: "RS256" }, claims({ exp: -5 }), "x"), "Jwt payload [exp] field is not a positive 64 bit integer"],
    ["iss not a string", () => rawToken({ alg: "RS256" }, claims({ iss: ["a"] }), "x"), "Jwt payload [iss] field is not a string"],
    ["aud a number", () => rawToken({ alg: "RS256" }, claims({ aud: 1 }), "x"), "Jwt payload [aud] field is not a string or string list"],
    ["signature of impossible base64url length", () => rawToken({ alg: "RS256" }, claims(), "AAAAA"), "Jwt signature is an invalid Base64url encoded"],
  ];
  for (const [name, make, body] of cases) {
    it(`${name} → 401 ${body}`, async () => {
      const res = await withBearer(await make());
      expect(res.status).toBe(401);
      expect(res.body).toBe(body);
    });
  }

  // A header token is the run of JWT characters after the prefix (Envoy's extractor); a query
  // parameter is taken whole, so characters outside base64url reach the parser from there.
  const viaParam: [string, () => string, string][] = [
    ["header with non-base64url characters", () => `e*J.${b64url("{}")}.x`, "Jwt header is an invalid Base64url encoded"],
    ["padded (standard) base64", () => `${Buffer.from('{"alg":"RS256"} ').toString("base64")}.${b64url("{}")}.AAAA`, "Jwt header is an invalid Base64url encoded"],
    ["payload with non-base64url characters", () => `${b64url('{"alg":"RS256"}')}.%%%.x`, "Jwt payload is an invalid Base64url encoded"],
    ["signature with non-base64url characters", () => `${rawToken({ alg: "RS256" }, claims())}***`, "Jwt signature is an invalid Base64url encoded"],
  ];
  for (const [name, token, body] of viaParam) {
    it(`${name} (in access_token) → 401 ${body}`, async () => {
      const res = await attempt({}, `/?access_token=${encodeURIComponent(token())}`);
      expect(res.status).toBe(401);
      expect(res.body).toBe(body);
    });
  }

  it("a bearer value with no token characters counts as no token (and the policy refuses it)", async () => {
    const res = await attempt({ authorization: "Bearer ###" });
    expect(res.status).toBe(403);
  });
});
