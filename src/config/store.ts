/**
 * The KV layout that distributes configuration, and the operations on it
 * (apply, rollback, list). The store is an interface so the same code runs
 * against Workers KV, the local KV that `wrangler dev` reads, a directory
 * (for `isthmus serve`) or memory.
 *
 * Layout:
 *   snapshot:<version>  compiled Snapshot JSON, virtual hosts packed (immutable; see snapshot-packing.ts)
 *   source:<version>    the resources it was compiled from (for diff)
 *   active              {version, appliedAt, previous} — flipping it activates a version
 *   history             newest-first list of applied versions (the last 20 are kept)
 */
import type { CanonicalResource } from "./canonical.ts";
import type { Snapshot } from "./snapshot.ts";
import { packSnapshot, unpackSnapshot, type StoredSnapshot } from "./snapshot-packing.ts";

export interface KeyValueStore {
  get(key: string): Promise<string | null>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

export const KEEP_VERSIONS = 20;

export const KEYS = {
  active: "active",
  history: "history",
  snapshot: (version: string) => `snapshot:${version}`,
  source: (version: string) => `source:${version}`,
} as const;

export interface ActivePointer {
  version: string;
  appliedAt: string;
  previous?: string;
}

export interface HistoryEntry {
  version: string;
  appliedAt: string;
  action: "apply" | "rollback";
  resources: number;
}

export async function readActive(store: KeyValueStore): Promise<ActivePointer | undefined> {
  const raw = await store.get(KEYS.active);
  return raw ? (JSON.parse(raw) as ActivePointer) : undefined;
}

export async function readHistory(store: KeyValueStore): Promise<HistoryEntry[]> {
  const raw = await store.get(KEYS.history);
  return raw ? (JSON.parse(raw) as HistoryEntry[]) : [];
}

export async function readSources(store: KeyValueStore, version: string): Promise<CanonicalResource[] | undefined> {
  const raw = await store.get(KEYS.source(version));
  return raw ? (JSON.parse(raw) as CanonicalResource[]) : undefined;
}

export async function readSnapshot(store: KeyValueStore, version: string): Promise<Snapshot | undefined> {
  const raw = await store.get(KEYS.snapshot(version));
  return raw ? unpackSnapshot(JSON.parse(raw) as StoredSnapshot) : undefined;
}

export interface ApplyOutcome {
  version: string;
  /** False when this version was already active (nothing was written). */
  changed: boolean;
  previous?: string;
}

/**
 * Activates a snapshot: writes it (and its sources) first, then flips the
 * pointer, so a reader never sees a pointer to a missing snapshot. Older
 * versions beyond the last 20 are deleted.
 */
export async function applySnapshot(store: KeyValueStore, snapshot: Snapshot, sources: CanonicalResource[], now: Date): Promise<ApplyOutcome> {
  const active = await readActive(store);
  if (active?.version === snapshot.version) return { version: snapshot.version, changed: false, previous: active.previous };
  await store.put(KEYS.snapshot(snapshot.version), JSON.stringify(packSnapshot(snapshot)));
  await store.put(KEYS.source(snapshot.version), JSON.stringify(sources));
  const pointer: ActivePointer = { version: snapshot.version, appliedAt: now.toISOString() };
  if (active) pointer.previous = active.version;
  await store.put(KEYS.active, JSON.stringify(pointer));
  await recordHistory(store, { version: snapshot.version, appliedAt: pointer.appliedAt, action: "apply", resources: sources.length }, snapshot.version);
  return pointer.previous ? { version: snapshot.version, changed: true, previous: pointer.previous } : { version: snapshot.version, changed: true };
}

/**
 * Re-activates an earlier version (the previous one by default), given
 * in full or by a unique prefix. Fails when that version's snapshot is no
 * longer stored or the prefix is ambiguous.
 */
export async function rollback(store: KeyValueStore, now: Date, to?: string): Promise<ApplyOutcome> {
  const active = await readActive(store);
  if (!active) throw new Error("no configuration is active, so there is nothing to roll back");
  const target = to ?? active.previous;
  if (!target) throw new Error(`version ${active.version} has no previous version; pass --to VERSION (see isthmus versions)`);
  const history = await readHistory(store);
  const exact = history.find((h) => h.version === target);
  const matches = exact ? [exact] : history.filter((h) => h.version.startsWith(target));
  if (matches.length > 1) {
    throw new Error(`"${target}" matches several versions (${matches.map((h) => h.version).join(", ")}); give more characters (see isthmus versions)`);
  }
  const entry = matches[0];
  const version = entry?.version ?? target;
  if (version === active.version) return { version, changed: false };
  if (!(await store.get(KEYS.snapshot(version)))) {
    throw new Error(`version ${target} is not stored (only the last ${KEEP_VERSIONS} versions are kept); see isthmus versions`);
  }
  const pointer: ActivePointer = { version, appliedAt: now.toISOString(), previous: active.version };
  await store.put(KEYS.active, JSON.stringify(pointer));
  await recordHistory(store, { version, appliedAt: pointer.appliedAt, action: "rollback", resources: entry?.resources ?? 0 }, version);
  return { version, changed: true, previous: active.version };
}

async function recordHistory(store: KeyValueStore, entry: HistoryEntry, active: string): Promise<void> {
  const history = [entry, ...(await readHistory(store)).filter((h) => h.version !== entry.version)];
  const kept = history.slice(0, KEEP_VERSIONS);
  await store.put(KEYS.history, JSON.stringify(kept));
  for (const old of history.slice(KEEP_VERSIONS)) {
    if (old.version === active) continue;
    await store.delete(KEYS.snapshot(old.version));
    await store.delete(KEYS.source(old.version));
  }
}
