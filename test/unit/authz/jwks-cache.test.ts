/**
 * The JWKS cache's timing rules, exact: the clock and the fetch are
 * injected (the end-to-end tests in test/e2e/jwks-cache.test.ts run the
 * same rules against a real IdP). The fetch here serves a JWKS document
 * from memory, so each test states precisely which requests are made.
 */
import { describe, expect, it } from "vitest";
import { JwksCache, type JwksPolicy } from "../../../src/authz/jwt/jwks-cache.ts";

const POLICY: JwksPolicy = { refreshMs: 60_000, maxAgeMs: 600_000, unknownKidCooldownMs: 30_000 };
const jwks = (...kids: string[]) => JSON.stringify({ keys: kids.map((kid) => ({ kty: "RSA", kid, n: "AQAB", e: "AQAB" })) });

function setup() {
  let now = 1_000_000;
  let body = jwks("a");
  let status = 200;
  const requests: string[] = [];
  const background: Promise<unknown>[] = [];
  const cache = new JwksCache(
    async (url) => {
      requests.push(url);
      return new Response(body, { status });
    },
    () => now,
  );
  const source = { uri: "https://idp.example/jwks" };
  return {
    cache,
    requests,
    get: (kid?: string) => cache.keys(source, kid, 5_000, POLICY, (p) => background.push(p)),
    current: () => cache.current(source, 5_000, POLICY, (p) => background.push(p)),
    settle: () => Promise.all(background.splice(0)),
    advance: (ms: number) => (now += ms),
    publish: (text: string) => (body = text),
    fail: (s: number) => (status = s),
  };
}

describe("JwksCache", () => {
  it("fetches on first use and serves later requests from memory", async () => {
    const t = setup();
    expect((await t.get("a")).ok).toBe(true);
    await t.get("a");
    await t.get();
    expect(t.requests).toHaveLength(1);
  });

  it("refreshes stale keys in the background, never making the request wait", async () => {
    const t = setup();
    await t.get("a");
    t.advance(60_000);
    t.publish(jwks("a", "b"));
    const stale = await t.get("a");
    expect(stale.ok && [...stale.keys.kids]).toEqual(["a"]);
    expect(t.requests).toHaveLength(2);
    await t.get("a");
    expect(t.requests).toHaveLength(2);
    await t.settle();
    const fresh = await t.get("b");
    expect(fresh.ok && [...fresh.keys.kids]).toEqual(["a", "b"]);
  });

  it("starts the refresh also for requests served from the verified-token cache", async () => {
    const t = setup();
    await t.get("a");
    t.advance(61_000);
    expect(t.current()).toBeDefined();
    expect(t.requests).toHaveLength(2);
  });

  it("refetches for an unknown kid at most once per cooldown", async () => {
    const t = setup();
    await t.get("a");
    t.advance(30_000);
    t.publish(jwks("a", "new"));
    const found = await t.get("new");
    expect(found.ok && found.keys.kids.has("new")).toBe(true);
    expect(t.requests).toHaveLength(2);
    await t.get("other");
    await t.get("another");
    expect(t.requests).toHaveLength(2);
    t.advance(30_000);
    await t.get("other");
    expect(t.requests).toHaveLength(3);
  });

  it("keeps the last good keys while the IdP fails, until maxAge, then fails closed", async () => {
    const t = setup();
    await t.get("a");
    t.fail(503);
    t.advance(60_000);
    expect((await t.get("a")).ok).toBe(true);
    await t.settle();
    t.advance(60_000);
    expect((await t.get("a")).ok).toBe(true);
    await t.settle();
    t.advance(480_000);
    expect((await t.get("a")).ok).toBe(false);
    expect(t.current()).toBeUndefined();
  });

  it("retries a failed first fetch at most once a second", async () => {
    const t = setup();
    t.fail(500);
    expect((await t.get("a")).ok).toBe(false);
    expect((await t.get("a")).ok).toBe(false);
    expect(t.requests).toHaveLength(1);
    t.fail(200);
    t.advance(1_000);
    expect((await t.get("a")).ok).toBe(true);
    expect(t.requests).toHaveLength(2);
  });

  it("keeps the same key set when a refresh returns the same document", async () => {
    const t = setup();
    const first = await t.get("a");
    t.advance(60_000);
    await t.get("a");
    await t.settle();
    const second = await t.get("a");
    expect(first.ok && second.ok && first.keys === second.keys).toBe(true);
  });

  it("stops reading a document that passes 1 MiB, instead of buffering all of it, and fails closed", async () => {
    let pulled = 0;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const cache = new JwksCache(
      async () =>
        new Response(
          new ReadableStream<Uint8Array>({
            pull(controller) {
              // 8 MiB of whitespace, handed out as it is read.
              if (pulled >= 8 * 1024 * 1024) return controller.close();
              pulled += chunk.byteLength;
              controller.enqueue(chunk);
            },
          }),
        ),
      () => 1_000_000,
    );
    const result = await cache.keys({ uri: "https://idp.example/huge" }, "a", 5_000, POLICY, () => {});
    expect(result.ok).toBe(false);
    expect(pulled).toBeGreaterThan(1024 * 1024);
    expect(pulled).toBeLessThan(2 * 1024 * 1024);
  });

  it("rejects a document without usable keys and keeps the previous ones", async () => {
    const t = setup();
    await t.get("a");
    t.publish('{"keys":[]}');
    t.advance(60_000);
    await t.get("a");
    await t.settle();
    const r = await t.get("a");
    expect(r.ok && r.keys.kids.has("a")).toBe(true);
  });
});
