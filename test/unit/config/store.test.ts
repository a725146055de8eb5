/**
 * The KV layout and its operations (apply, rollback, history), against an
 * in-memory KeyValueStore and against the real KV binding in workerd.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { CanonicalResource } from "../../../src/config/canonical.ts";
import type { Snapshot } from "../../../src/config/snapshot.ts";
import { PACKED_FORMAT, unpackSnapshot, type StoredSnapshot } from "../../../src/config/snapshot-packing.ts";
import { applySnapshot, KEEP_VERSIONS, readActive, readHistory, readSnapshot, readSources, rollback, type KeyValueStore } from "../../../src/config/store.ts";
import { build } from "../support.ts";

/** A KeyValueStore in memory that records every write, in order. */
class MemoryStore implements KeyValueStore {
  readonly data = new Map<string, string>();
  readonly log: string[] = [];
  async get(key: string) {
    return this.data.get(key) ?? null;
  }
  async put(key: string, value: string) {
    this.log.push(`put ${key}`);
    this.data.set(key, value);
  }
  async delete(key: string) {
    this.log.push(`delete ${key}`);
    this.data.delete(key);
  }
}

/** A distinct snapshot per number (the version is what the store cares about). */
async function config(n: number): Promise<{ snapshot: Snapshot; sources: CanonicalResource[] }> {
  const result = await build(`apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [app.example.com], http: [{directResponse: {status: 200, body: {string: "${n}"}}}]}\n`);
  return { snapshot: result.snapshot!, sources: result.sources };
}

const at = (minute: number) => new Date(Date.UTC(2025, 0, 1, 0, minute));

describe("applySnapshot", () => {
  it("writes the snapshot and its sources before flipping the active pointer", async () => {
    const store = new MemoryStore();
    const { snapshot, sources } = await config(1);
    const outcome = await applySnapshot(store, snapshot, sources, at(0));
    const v = snapshot.version;
    expect(outcome).toEqual({ version: v, changed: true });
    expect(store.log).toEqual([`put snapshot:${v}`, `put source:${v}`, "put active", "put history"]);
    expect(await readActive(store)).toEqual({ version: v, appliedAt: "2025-01-01T00:00:00.000Z" });
    expect(await readSnapshot(store, v)).toEqual(snapshot);
    expect(await readSources(store, v)).toEqual(sources);
    expect(await readHistory(store)).toEqual([{ version: v, appliedAt: "2025-01-01T00:00:00.000Z", action: "apply", resources: 1 }]);
  });

  it("records the previous version, newest first in history", async () => {
    const store = new MemoryStore();
    const one = await config(1);
    const two = await config(2);
    await applySnapshot(store, one.snapshot, one.sources, at(0));
    const outcome = await applySnapshot(store, two.snapshot, two.sources, at(1));
    expect(outcome).toEqual({ version: two.snapshot.version, changed: true, previous: one.snapshot.version });
    expect(await readActive(store)).toEqual({ version: two.snapshot.version, appliedAt: at(1).toISOString(), previous: one.snapshot.version });
    expect((await readHistory(store)).map((h) => h.version)).toEqual([two.snapshot.version, one.snapshot.version]);
  });

  it("writes nothing when the version is already active", async () => {
    const store = new MemoryStore();
    const one = await config(1);
    const two = await config(2);
    await applySnapshot(store, one.snapshot, one.sources, at(0));
    await applySnapshot(store, two.snapshot, two.sources, at(1));
    store.log.length = 0;
    const outcome = await applySnapshot(store, two.snapshot, two.sources, at(2));
    expect(outcome).toEqual({ version: two.snapshot.version, changed: false, previous: one.snapshot.version });
    expect(store.log).toEqual([]);
  });

  it("writes the active version's snapshot again when the stored one is truncated, names another version or is gone", async () => {
    const store = new MemoryStore();
    const one = await config(1);
    const v = one.snapshot.version;
    await applySnapshot(store, one.snapshot, one.sources, at(0));
    const good = store.data.get(`snapshot:${v}`);
    const pointer = await readActive(store);
    for (const broken of ["", good!.slice(0, 40), JSON.stringify({ version: "0123456789ab" }), null]) {
      if (broken === null) store.data.delete(`snapshot:${v}`);
      else store.data.set(`snapshot:${v}`, broken);
      store.log.length = 0;
      const warnings: string[] = [];
      expect(await applySnapshot(store, one.snapshot, one.sources, at(1), (m) => warnings.push(m))).toEqual({ version: v, changed: false });
      expect(store.log).toEqual([`put snapshot:${v}`]);
      expect(store.data.get(`snapshot:${v}`)).toBe(good);
      expect(warnings).toEqual([expect.stringMatching(new RegExp(`^the config store: key snapshot:${v} (is not valid JSON \\(.+\\)|is not the snapshot of ${v}|is missing); wrote it again from the files$`))]);
    }
    expect(await readActive(store)).toEqual(pointer);
  });

  it("rewrites the sources, and only them, when the version is already active but the resources differ (a label)", async () => {
    const store = new MemoryStore();
    const one = await config(1);
    await applySnapshot(store, one.snapshot, one.sources, at(0));
    const labelled = (await build(`apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, labels: {team: web}}\nspec: {hosts: [app.example.com], http: [{directResponse: {status: 200, body: {string: "1"}}}]}\n`)).sources;
    expect(labelled).not.toEqual(one.sources);
    const pointer = await readActive(store);
    const history = await readHistory(store);
    store.log.length = 0;
    const v = one.snapshot.version;
    expect(await applySnapshot(store, one.snapshot, labelled, at(5))).toEqual({ version: v, changed: false, sourcesUpdated: true });
    expect(store.log).toEqual([`put source:${v}`]);
    expect(await readSources(store, v)).toEqual(labelled);
    expect(await readActive(store)).toEqual(pointer);
    expect(await readHistory(store)).toEqual(history);
  });

  it("does not rewrite the sources when only where the resources are (file, line) or their key order differs", async () => {
    const store = new MemoryStore();
    const one = await config(1);
    await applySnapshot(store, one.snapshot, one.sources, at(0));
    const moved = one.sources.map((r) => ({ ...r, file: "elsewhere/mesh.yaml", line: 7, spec: Object.fromEntries(Object.entries(r.spec as object).reverse()) }));
    store.log.length = 0;
    expect(await applySnapshot(store, one.snapshot, moved, at(5))).toEqual({ version: one.snapshot.version, changed: false });
    expect(store.log).toEqual([]);
  });

  it("stops with the store and key named when the active pointer is not valid JSON, writing nothing", async () => {
    const store = Object.assign(new MemoryStore(), { description: "directory store (st)" });
    await store.put("active", "garbage{\n");
    store.log.length = 0;
    const one = await config(1);
    await expect(readActive(store)).rejects.toThrow(/^directory store \(st\): key active is not valid JSON: Unexpected token 'g', "garbage\{\\n" is not valid JSON$/);
    await expect(applySnapshot(store, one.snapshot, one.sources, at(0))).rejects.toThrow(/^directory store \(st\): key active is not valid JSON: /);
    expect(store.log).toEqual([]);
    await expect(rollback(store, at(0))).rejects.toThrow(/key active is not valid JSON/);
  });

  it("names the store (or says 'the config store') and the key when active or history hold the wrong shape", async () => {
    const store = new MemoryStore();
    await store.put("active", JSON.stringify({ appliedAt: "x" }));
    await expect(readActive(store)).rejects.toThrow('the config store: key active is not an active pointer: expected {"version": "...", "appliedAt": "..."}, got {"appliedAt":"x"}');
    await store.put("history", JSON.stringify({ version: "x" }));
    await expect(readHistory(store)).rejects.toThrow('the config store: key history is not a version history: expected a list of {"version": "...", ...}, got {"version":"x"}');
  });

  it("applies over a history that is not valid JSON, starting it afresh with a warning", async () => {
    const store = Object.assign(new MemoryStore(), { description: "directory store (st)" });
    const one = await config(1);
    const two = await config(2);
    await applySnapshot(store, one.snapshot, one.sources, at(0));
    await store.put("history", "[{oops");
    await expect(readHistory(store)).rejects.toThrow(/^directory store \(st\): key history is not valid JSON: .+/);
    const warnings: string[] = [];
    const outcome = await applySnapshot(store, two.snapshot, two.sources, at(1), (w) => warnings.push(w));
    expect(outcome).toEqual({ version: two.snapshot.version, changed: true, previous: one.snapshot.version });
    expect(warnings).toEqual([expect.stringMatching(/^directory store \(st\): key history is not valid JSON: .+; starting a new history \(versions applied before are no longer listed or pruned\)$/)]);
    expect(await readHistory(store)).toEqual([{ version: two.snapshot.version, appliedAt: at(1).toISOString(), action: "apply", resources: 1 }]);
  });

  it("keeps only the last 20 versions and deletes the snapshots and sources of older ones", async () => {
    const store = new MemoryStore();
    const versions: string[] = [];
    for (let i = 0; i < KEEP_VERSIONS + 3; i++) {
      const { snapshot, sources } = await config(i);
      versions.push(snapshot.version);
      await applySnapshot(store, snapshot, sources, at(i));
    }
    expect(KEEP_VERSIONS).toBe(20);
    const history = await readHistory(store);
    expect(history.map((h) => h.version)).toEqual(versions.slice(-KEEP_VERSIONS).reverse());
    for (const old of versions.slice(0, 3)) {
      expect(store.data.has(`snapshot:${old}`)).toBe(false);
      expect(store.data.has(`source:${old}`)).toBe(false);
    }
    for (const kept of versions.slice(3)) expect(store.data.has(`snapshot:${kept}`)).toBe(true);
    expect([...store.data.keys()].filter((k) => k.startsWith("snapshot:"))).toHaveLength(KEEP_VERSIONS);
  });

  it("never deletes the active snapshot, even when it falls out of the history", async () => {
    const store = new MemoryStore();
    const first = await config(100);
    await applySnapshot(store, first.snapshot, first.sources, at(0));
    // Re-apply the first version after 20 others: it becomes newest again and must survive.
    for (let i = 0; i < KEEP_VERSIONS; i++) {
      const { snapshot, sources } = await config(i);
      await applySnapshot(store, snapshot, sources, at(i + 1));
    }
    await applySnapshot(store, first.snapshot, first.sources, at(30));
    expect((await readActive(store))?.version).toBe(first.snapshot.version);
    expect(await readSnapshot(store, first.snapshot.version)).toEqual(first.snapshot);
    expect(await readHistory(store)).toHaveLength(KEEP_VERSIONS);
  });
});

describe("rollback", () => {
  async function storeWith(n: number) {
    const store = new MemoryStore();
    const versions: string[] = [];
    for (let i = 0; i < n; i++) {
      const { snapshot, sources } = await config(i);
      versions.push(snapshot.version);
      await applySnapshot(store, snapshot, sources, at(i));
    }
    return { store, versions };
  }

  it("re-activates the previous version by default, only flipping the pointer", async () => {
    const { store, versions } = await storeWith(3);
    store.log.length = 0;
    const outcome = await rollback(store, at(10));
    expect(outcome).toEqual({ version: versions[1], changed: true, previous: versions[2] });
    expect(store.log).toEqual(["put active", "put history"]);
    expect(await readActive(store)).toEqual({ version: versions[1], appliedAt: at(10).toISOString(), previous: versions[2] });
    expect((await readHistory(store))[0]).toEqual({ version: versions[1], appliedAt: at(10).toISOString(), action: "rollback", resources: 1 });
  });

  it("goes to a version given by a unique prefix", async () => {
    const { store, versions } = await storeWith(3);
    const outcome = await rollback(store, at(10), versions[0]!.slice(0, 7));
    expect(outcome).toEqual({ version: versions[0], changed: true, previous: versions[2] });
    expect((await readActive(store))?.version).toBe(versions[0]);
  });

  it("does nothing when asked for the active version, even by prefix", async () => {
    const { store, versions } = await storeWith(2);
    store.log.length = 0;
    expect(await rollback(store, at(10), versions[1])).toEqual({ version: versions[1], changed: false });
    expect(await rollback(store, at(10), versions[1]!.slice(0, 6))).toEqual({ version: versions[1], changed: false });
    expect(store.log).toEqual([]);
    expect((await readActive(store))?.previous).toBe(versions[0]);
  });

  it("refuses a prefix that names several stored versions", async () => {
    const { store } = await storeWith(1);
    // Two hand-made entries sharing a prefix (content hashes rarely do).
    for (const version of ["abc111111111", "abc222222222"]) {
      await store.put(`snapshot:${version}`, "{}");
    }
    const history = await readHistory(store);
    await store.put("history", JSON.stringify([...history, { version: "abc111111111", appliedAt: at(1).toISOString(), action: "apply", resources: 0 }, { version: "abc222222222", appliedAt: at(2).toISOString(), action: "apply", resources: 0 }]));
    const before = await readActive(store);
    await expect(rollback(store, at(10), "abc")).rejects.toThrow(/"abc" matches several versions \(abc111111111, abc222222222\); give more characters/);
    expect(await readActive(store)).toEqual(before);
  });

  it("fails clearly with nothing active, no previous version, or an unknown version", async () => {
    await expect(rollback(new MemoryStore(), at(0))).rejects.toThrow("no configuration is active, so there is nothing to roll back");
    const { store, versions } = await storeWith(1);
    await expect(rollback(store, at(1))).rejects.toThrow(`version ${versions[0]} has no previous version; pass --to VERSION (see isthmus versions)`);
    await expect(rollback(store, at(1), "ffffffffffff")).rejects.toThrow("version ffffffffffff is not stored (only the last 20 versions are kept); see isthmus versions");
  });

  it("cannot go back to a version whose snapshot was deleted", async () => {
    const { store, versions } = await storeWith(KEEP_VERSIONS + 1);
    await expect(rollback(store, at(99), versions[0])).rejects.toThrow(/is not stored \(only the last 20 versions are kept\)/);
  });
});

describe("against the real KV binding", () => {
  it("applies and rolls back through Workers KV", async () => {
    const kv: KeyValueStore = {
      get: (key) => env.CONFIG.get(key),
      put: (key, value) => env.CONFIG.put(key, value),
      delete: (key) => env.CONFIG.delete(key),
    };
    const one = await config(1);
    const two = await config(2);
    await applySnapshot(kv, one.snapshot, one.sources, at(0));
    await applySnapshot(kv, two.snapshot, two.sources, at(1));
    expect(await env.CONFIG.get("active", "json")).toMatchObject({ version: two.snapshot.version, previous: one.snapshot.version });
    await rollback(kv, at(2));
    expect(await env.CONFIG.get("active", "json")).toMatchObject({ version: one.snapshot.version, previous: two.snapshot.version });
    const stored = await env.CONFIG.get<StoredSnapshot>(`snapshot:${one.snapshot.version}`, "json");
    expect(stored?.format).toBe(PACKED_FORMAT);
    expect(unpackSnapshot(stored!)).toEqual(one.snapshot);
  });
});
