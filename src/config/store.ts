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
import { diffResources } from "./diff.ts";
import type { Snapshot } from "./snapshot.ts";
import { packSnapshot, unpackSnapshot, type StoredSnapshot } from "./snapshot-packing.ts";

export interface KeyValueStore {
  get(key: string): Promise<string | null>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
  /** Where the store lives, for error messages ("the config store" when absent). */
  readonly description?: string;
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

/**
 * A store key whose value is not what Isthmus writes there: not JSON (a hand
 * edit, a half-copied state directory) or JSON of the wrong shape. The
 * message names the store and the key.
 */
export class StoreFormatError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(message);
    this.name = "StoreFormatError";
    this.key = key;
  }
}

/**
 * The active pointer, or undefined when nothing was ever applied.
 * Throws a StoreFormatError naming the store and key when it does not parse.
 *
 * @example
 * await readActive(store); // { version: "3f9c2a1b0c4d", appliedAt: "2025-01-01T00:00:00.000Z", previous: "0d6388dcf39b" }
 * // corrupt: Error "directory store (st/config): key active is not valid JSON: Unexpected token 'g', ..."
 */
export async function readActive(store: KeyValueStore): Promise<ActivePointer | undefined> {
  return readJson(store, KEYS.active, "an active pointer", '{"version": "...", "appliedAt": "..."}', isActivePointer);
}

/**
 * The history, newest first ([] when nothing was ever applied). Throws a
 * StoreFormatError naming the store and key when it does not parse.
 *
 * @example
 * await readHistory(store); // [{ version: "3f9c2a1b0c4d", appliedAt: "...", action: "apply", resources: 3 }]
 */
export async function readHistory(store: KeyValueStore): Promise<HistoryEntry[]> {
  return (await readJson(store, KEYS.history, "a version history", 'a list of {"version": "...", ...}', isHistory)) ?? [];
}

async function readJson<T>(store: KeyValueStore, key: string, what: string, expected: string, valid: (value: unknown) => value is T): Promise<T | undefined> {
  const raw = await store.get(key);
  if (!raw) return undefined;
  const where = `${store.description ?? "the config store"}: key ${key}`;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    // V8 quotes the start of the text, line breaks and all: keep the message on one line.
    const reason = (error instanceof Error ? error.message : String(error)).replace(/\r?\n/g, "\\n").replace(/\t/g, "\\t");
    throw new StoreFormatError(key, `${where} is not valid JSON: ${reason}`);
  }
  if (!valid(value)) throw new StoreFormatError(key, `${where} is not ${what}: expected ${expected}, got ${clip(JSON.stringify(value))}`);
  return value;
}

const clip = (text: string) => (text.length > 80 ? `${text.slice(0, 80)}...` : text);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isActivePointer(value: unknown): value is ActivePointer {
  return isObject(value) && typeof value.version === "string" && typeof value.appliedAt === "string" && (value.previous === undefined || typeof value.previous === "string");
}

function isHistory(value: unknown): value is HistoryEntry[] {
  return (
    Array.isArray(value) &&
    value.every((h) => isObject(h) && typeof h.version === "string" && typeof h.appliedAt === "string" && (h.action === "apply" || h.action === "rollback") && typeof h.resources === "number")
  );
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
  /** False when this version was already active (the pointer and history were not written). */
  changed: boolean;
  previous?: string;
  /**
   * True when the version was already active but the resources differed in
   * what does not change the snapshot (labels, annotations, fields Isthmus
   * ignores), so only `source:<version>` was rewritten, for diff.
   */
  sourcesUpdated?: boolean;
}

/**
 * Activates a snapshot: writes it (and its sources) first, then flips the
 * pointer, so a reader never sees a pointer to a missing snapshot. Older
 * versions beyond the last 20 are deleted. When the version is already
 * active, only its sources are rewritten, and only if they differ, and its
 * snapshot, only if the stored one is broken (`warn` hears about it).
 * `warn` hears about a history that was unreadable and started afresh.
 *
 * @example
 * await applySnapshot(store, result.snapshot, result.sources, new Date());
 * // { version: "3f9c2a1b0c4d", changed: true, previous: "0d6388dcf39b" }
 */
export async function applySnapshot(store: KeyValueStore, snapshot: Snapshot, sources: CanonicalResource[], now: Date, warn: (message: string) => void = defaultWarn): Promise<ApplyOutcome> {
  // An active pointer that does not parse stops the apply (readActive throws, naming the store and
  // key) rather than being overwritten: it is what every gateway reads, so a person should look at
  // it (it may be a newer CLI's format, or a hand edit in progress), and without it the new pointer
  // would have no `previous` to roll back to. The history only lists versions, so see readHistoryToExtend.
  const active = await readActive(store);
  if (active?.version === snapshot.version) {
    await repairSnapshot(store, snapshot, warn);
    return refreshSources(store, active, sources);
  }
  const history = await readHistoryToExtend(store, warn);
  await store.put(KEYS.snapshot(snapshot.version), JSON.stringify(packSnapshot(snapshot)));
  await store.put(KEYS.source(snapshot.version), JSON.stringify(sources));
  const pointer: ActivePointer = { version: snapshot.version, appliedAt: now.toISOString() };
  if (active) pointer.previous = active.version;
  await store.put(KEYS.active, JSON.stringify(pointer));
  await recordHistory(store, history, { version: snapshot.version, appliedAt: pointer.appliedAt, action: "apply", resources: sources.length }, snapshot.version);
  return pointer.previous ? { version: snapshot.version, changed: true, previous: pointer.previous } : { version: snapshot.version, changed: true };
}

function defaultWarn(message: string): void {
  console.warn(`isthmus: warning: ${message}`);
}

/**
 * The history an apply extends. One that does not parse is replaced by a
 * new one (with a warning): it only lists versions for `versions` and
 * `rollback --to`, and refusing would block every apply until someone
 * deleted the key by hand. Versions it listed are then neither listed nor
 * pruned. A failed read (a network error) still fails the apply.
 */
async function readHistoryToExtend(store: KeyValueStore, warn: (message: string) => void): Promise<HistoryEntry[]> {
  try {
    return await readHistory(store);
  } catch (error) {
    if (!(error instanceof StoreFormatError)) throw error;
    warn(`${error.message}; starting a new history (versions applied before are no longer listed or pruned)`);
    return [];
  }
}

/**
 * The active snapshot applied again: rewrites `snapshot:<version>` when the
 * stored one does not parse or names another version, as the gateway would
 * find on loading it. Without this, a snapshot truncated by a crash stays
 * broken: every re-apply finds its version active and skips it, and the
 * gateway never serves it. A stored one in another packing (another CLI
 * version) is left alone: the deployed Worker may read only that one.
 */
async function repairSnapshot(store: KeyValueStore, snapshot: Snapshot, warn: (message: string) => void): Promise<void> {
  const key = KEYS.snapshot(snapshot.version);
  const stored = await store.get(key);
  const problem = stored === null ? "is missing" : snapshotProblem(stored, snapshot.version);
  if (problem === undefined) return;
  await store.put(key, JSON.stringify(packSnapshot(snapshot)));
  warn(`${store.description ?? "the config store"}: key ${key} ${problem}; wrote it again from the files`);
}

/** Why a stored snapshot cannot be the one of `version`, or undefined when it can. */
function snapshotProblem(stored: string, version: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(stored);
  } catch (error) {
    return `is not valid JSON (${(error instanceof Error ? error.message : String(error)).replace(/\r?\n/g, "\\n")})`;
  }
  if (!isObject(value) || value.version !== version) return `is not the snapshot of ${version}`;
  return undefined;
}

/**
 * The same snapshot applied again: rewrites `source:<version>` when the
 * resources differ from the stored ones as diff compares them (ignoring
 * file, line and key order), so diff does not report the change forever.
 */
async function refreshSources(store: KeyValueStore, active: ActivePointer, sources: CanonicalResource[]): Promise<ApplyOutcome> {
  const unchanged: ApplyOutcome = active.previous ? { version: active.version, changed: false, previous: active.previous } : { version: active.version, changed: false };
  const stored = await store.get(KEYS.source(active.version));
  if (stored !== null && sameResources(stored, sources)) return unchanged;
  await store.put(KEYS.source(active.version), JSON.stringify(sources));
  return { ...unchanged, sourcesUpdated: true };
}

/** Whether the stored sources (JSON) hold what `isthmus diff` sees as `sources`; false when they do not parse. */
function sameResources(stored: string, sources: CanonicalResource[]): boolean {
  let before: unknown;
  try {
    before = JSON.parse(stored);
  } catch {
    return false;
  }
  return Array.isArray(before) && diffResources(before as CanonicalResource[], sources).length === 0;
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
  await recordHistory(store, history, { version, appliedAt: pointer.appliedAt, action: "rollback", resources: entry?.resources ?? 0 }, version);
  return { version, changed: true, previous: active.version };
}

/** Puts `entry` first in `previous` (the stored history) and deletes the versions that fall off, except `active`. */
async function recordHistory(store: KeyValueStore, previous: HistoryEntry[], entry: HistoryEntry, active: string): Promise<void> {
  const history = [entry, ...previous.filter((h) => h.version !== entry.version)];
  const kept = history.slice(0, KEEP_VERSIONS);
  await store.put(KEYS.history, JSON.stringify(kept));
  for (const old of history.slice(KEEP_VERSIONS)) {
    if (old.version === active) continue;
    await store.delete(KEYS.snapshot(old.version));
    await store.delete(KEYS.source(old.version));
  }
}
