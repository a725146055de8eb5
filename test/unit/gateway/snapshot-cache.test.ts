/**
 * The isolate's snapshot cache, with an injected clock: first load, the
 * refresh interval, and the last good version surviving a bad one.
 */
import { describe, expect, it, vi } from "vitest";
import type { Snapshot } from "../../../src/config/snapshot.ts";
import { packSnapshot } from "../../../src/config/snapshot-packing.ts";
import { nothingServed, SnapshotCache } from "../../../src/gateway/snapshot-cache.ts";
import { doc, snapshotOf, virtualService } from "../support.ts";

class Source {
  readonly data = new Map<string, string>();
  reads = 0;
  async get(key: string) {
    this.reads++;
    return this.data.get(key) ?? null;
  }
  /** Stores a snapshot as the CLI does (packed), or as a CLI before the packed layout did ("plain"). */
  activate(snapshot: Snapshot, layout: "packed" | "plain" = "packed") {
    this.data.set(`snapshot:${snapshot.version}`, JSON.stringify(layout === "packed" ? packSnapshot(snapshot) : snapshot));
    this.data.set("active", JSON.stringify({ version: snapshot.version, appliedAt: "2025-01-01T00:00:00.000Z" }));
  }
}

const config = (body: string, refresh = "5s") =>
  snapshotOf(virtualService("v", ["app.example.com"], [{ directResponse: { status: 200, body: { string: body } } }]), doc("GatewayConfig", "g", { configRefreshInterval: refresh }, "istio-system"));

describe("SnapshotCache", () => {
  it("serves nothing until a configuration is applied, looking again at most once a second", async () => {
    let now = 0;
    const source = new Source();
    const cache = new SnapshotCache(source, () => now);
    const pending: Promise<unknown>[] = [];
    const waitUntil = (p: Promise<unknown>) => void pending.push(p);
    expect(await cache.get(waitUntil)).toBeUndefined();
    const reads = source.reads;
    now = 500;
    expect(await cache.get(waitUntil)).toBeUndefined();
    expect(source.reads).toBe(reads);
    const one = await config("one");
    source.activate(one);
    now = 1000;
    expect((await cache.get(waitUntil))?.version).toBe(one.version);
  });

  it("gives the configuration to every request that reaches a cold isolate while the first load is in flight", async () => {
    const source = new Source();
    const one = await config("one");
    source.activate(one);
    const slow = { get: async (key: string) => (await scheduler.wait(50), source.get(key)) };
    const cache = new SnapshotCache(slow, () => 0);
    const versions = await Promise.all([1, 2, 3].map(() => cache.get(() => {}).then((r) => r?.version)));
    expect(versions).toEqual([one.version, one.version, one.version]);
    // Once a version is served, the next request neither waits nor reads.
    const reads = source.reads;
    expect((await cache.get(() => {}))?.version).toBe(one.version);
    expect(source.reads).toBe(reads);
  });

  it("says why it serves nothing: none applied, or the active one failed to load", async () => {
    const source = new Source();
    const cache = new SnapshotCache(source, () => 0);
    await cache.get(() => {});
    expect(nothingServed(cache)).toMatch(/^isthmus: no configuration has been applied to this gateway yet\./);
    source.data.set("active", JSON.stringify({ version: "0123456789ab", appliedAt: "2025-01-01T00:00:00.000Z" }));
    const broken = new SnapshotCache(source, () => 0);
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    expect(await broken.get(() => {})).toBeUndefined();
    logged.mockRestore();
    expect(nothingServed(broken)).toBe("isthmus: the active configuration (0123456789ab) could not be loaded, so this gateway serves nothing yet; the Worker's logs and the admin status say why.\n");
  });

  it("serves a snapshot stored by an older CLI (plain layout) as it serves a packed one", async () => {
    const source = new Source();
    const plain = await config("plain");
    const packed = await config("packed");
    source.activate(plain, "plain");
    let now = 0;
    const cache = new SnapshotCache(source, () => now);
    const served = async () => {
      const runtime = await cache.get(() => {});
      const host = runtime?.virtualHosts[runtime.hosts.exact.get("app.example.com") as number];
      return host?.routes[0]?.rule.def.action;
    };
    expect(await served()).toMatchObject({ type: "direct", body: "plain" });
    source.activate(packed);
    now = 10_000;
    await cache.refresh();
    expect(await served()).toMatchObject({ type: "direct", body: "packed" });
    expect(cache.status().lastError).toBeUndefined();
  });

  it("re-reads the pointer in the background once the refresh interval has passed", async () => {
    let now = 0;
    const source = new Source();
    const one = await config("one", "5s");
    const two = await config("two", "5s");
    source.activate(one);
    const cache = new SnapshotCache(source, () => now);
    const pending: Promise<unknown>[] = [];
    const waitUntil = (p: Promise<unknown>) => void pending.push(p);
    expect((await cache.get(waitUntil))?.version).toBe(one.version);
    source.activate(two);
    now = 4999;
    expect((await cache.get(waitUntil))?.version).toBe(one.version);
    expect(pending).toHaveLength(0);
    now = 5000;
    // This request is still served with the old version; the new one loads behind it.
    expect((await cache.get(waitUntil))?.version).toBe(one.version);
    expect(pending).toHaveLength(1);
    await Promise.all(pending);
    expect((await cache.get(waitUntil))?.version).toBe(two.version);
  });

  it("keeps the last good version when a new one fails to load, and reports why", async () => {
    let now = 0;
    const source = new Source();
    const one = await config("one", "1s");
    source.activate(one);
    const cache = new SnapshotCache(source, () => now);
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      expect((await cache.get(() => {}))?.version).toBe(one.version);
      const failures: [string, (s: Source) => void, RegExp][] = [
        ["missing", (s) => s.data.set("active", JSON.stringify({ version: "ffffffffffff" })), /snapshot ffffffffffff is missing from the config store/],
        ["corrupt", (s) => (s.data.set("active", JSON.stringify({ version: "aaaaaaaaaaaa" })), s.data.set("snapshot:aaaaaaaaaaaa", "{not json")), /JSON/],
        ["mislabelled", (s) => (s.data.set("active", JSON.stringify({ version: "bbbbbbbbbbbb" })), s.data.set("snapshot:bbbbbbbbbbbb", JSON.stringify(one))), /snapshot stored as bbbbbbbbbbbb says it is /],
        ["newer format", (s) => (s.data.set("active", JSON.stringify({ version: "cccccccccccc" })), s.data.set("snapshot:cccccccccccc", JSON.stringify({ ...one, version: "cccccccccccc", format: 9 }))), /snapshot format 9 is not supported/],
        ["bad pointer", (s) => s.data.set("active", "{}"), /the active pointer has no version/],
      ];
      for (const [, breakIt, message] of failures) {
        breakIt(source);
        now += 1000;
        await cache.refresh();
        expect(cache.serving()?.version).toBe(one.version);
        expect(cache.status().lastError?.message).toMatch(message);
      }
      expect(errors).toHaveBeenCalled();
      // A good version clears the error.
      const two = await config("two", "1s");
      source.activate(two);
      await cache.refresh();
      expect(cache.status()).toMatchObject({ version: two.version });
      expect(cache.status().lastError).toBeUndefined();
    } finally {
      errors.mockRestore();
    }
  });
});
