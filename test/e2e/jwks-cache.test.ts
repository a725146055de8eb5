/**
 * The JWKS cache against a real, misbehaving identity provider: down at
 * first use, down later (stale keys are kept until maxAge), slow (the rule
 * timeout fails closed), and rotating keys (a key removed from the JWKS
 * stops verifying once the cache refreshes). Short intervals are set in
 * GatewayConfig so the test runs in seconds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { startIdp, type Idp } from "../helpers/idp.ts";
import { send } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { routedService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let app: Origin;
let flaky: Idp;
let slow: Idp;
let rotating: Idp;

const HOST = "jwks.test";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  jwks: {refreshInterval: 2s, maxAge: 6s, unknownKidCooldown: 1s}
---
${routedService({ hosts: HOST, name: "app", namespace: "apps", endpoints: [app.port] })}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: idps, namespace: istio-system}
spec:
  jwtRules:
  - {issuer: "${flaky.issuer}", jwksUri: "${flaky.jwksUri}", timeout: 1s}
  - {issuer: "${slow.issuer}", jwksUri: "${slow.jwksUri}", timeout: 1s}
  - {issuer: "${rotating.issuer}", jwksUri: "${rotating.jwksUri}", timeout: 1s}
`;

beforeAll(async () => {
  [app, flaky, slow, rotating] = await Promise.all([startOrigin("app"), startIdp(), startIdp(), startIdp()]);
  flaky.setDown(true);
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app, flaky, slow, rotating].map((s) => s?.close()));
});

const get = (token?: string) => send(gw.url, "/", { host: HOST, headers: token ? { authorization: `Bearer ${token}` } : {} });

describe("an identity provider that is down", () => {
  it("fails presented tokens closed while token-less requests continue", async () => {
    const token = await flaky.sign();
    const res = await get(token);
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwks remote fetch is failed");
    expect((await get()).status).toBe(200);
  });

  it("is used as soon as it is back (failed fetches are retried after a second)", async () => {
    flaky.setDown(false);
    await sleep(1_100);
    expect((await get(await flaky.sign())).status).toBe(200);
  });

  it("going down again leaves the cached keys in use past the refresh interval, until maxAge", async () => {
    flaky.setDown(true);
    await sleep(2_200);
    const attempts = flaky.requests.length;
    expect((await get(await flaky.sign({ n: 1 }))).status).toBe(200);
    // That request started a background refresh, which the IdP answered with 503.
    for (let i = 0; i < 20 && flaky.requests.length === attempts; i++) await sleep(100);
    expect(flaky.requests.length).toBeGreaterThan(attempts);
    expect((await get(await flaky.sign({ n: 2 }))).status).toBe(200);
    await sleep(4_500);
    const res = await get(await flaky.sign({ n: 3 }));
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwks remote fetch is failed");
    flaky.setDown(false);
  });
});

describe("an identity provider slower than the rule timeout", () => {
  it("fails the token closed within about the timeout", async () => {
    slow.setDelay(4_000);
    const started = Date.now();
    const res = await get(await slow.sign());
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwks remote fetch is failed");
    expect(Date.now() - started).toBeLessThan(3_500);
  });
});

describe("key rotation", () => {
  it("stops accepting tokens of a key the IdP no longer publishes once the cache refreshes", async () => {
    const token = await rotating.sign();
    expect((await get(token)).status).toBe(200);
    const old = rotating.keys[0]?.kid as string;
    await rotating.addKey("RS256", "next");
    rotating.unpublish(old);
    await sleep(2_200);
    const fetches = rotating.jwksFetches();
    // Served from the cached keys, and starts the background refresh.
    expect((await get(token)).status).toBe(200);
    for (let i = 0; i < 20 && rotating.jwksFetches() === fetches; i++) await sleep(100);
    await sleep(200);
    const res = await get(token);
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwks doesn't have key to match kid or alg from Jwt");
    expect((await get(await rotating.sign({}, { key: rotating.keys[0] })))).toMatchObject({ status: 200 });
  });
});
