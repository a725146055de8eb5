/**
 * The isolate's copy of the active Snapshot. The first request loads it;
 * after that, the active pointer is re-read every `configRefreshInterval`
 * in the background (ctx.waitUntil), and a new version is swapped in only
 * once it has loaded and hydrated. A version that fails to load leaves the
 * last good one serving; the failure is logged and kept for /status.
 *
 * Until a first version is served, every request that finds a load in
 * flight loads too, rather than waiting for another request's promise
 * (unsafe in workerd, docs/ARCHITECTURE.md): concurrent requests to a cold
 * isolate all get the configuration. Only once a load has found nothing (or
 * failed) does the isolate look again at most once a second.
 */
import { KEYS, type ActivePointer } from "../config/store.ts";
import type { StoredSnapshot } from "../config/snapshot-packing.ts";
import { hydrate, type HydrateOptions, type RuntimeSnapshot } from "../routing/hydrate.ts";

/** The read side of the config store (a KV namespace satisfies it). */
export interface SnapshotSource {
  get(key: string): Promise<string | null>;
}

export interface LoadError {
  version?: string;
  message: string;
  at: string;
}

/** How often an isolate with no configuration at all looks again. */
const EMPTY_RECHECK_MS = 1_000;

export class SnapshotCache {
  private current?: { runtime: RuntimeSnapshot; loadedAt: number };
  private checkedAt = -Infinity;
  private refreshing = false;
  /** Loads started and not yet finished. */
  private loading = 0;
  lastError?: LoadError;
  private readonly source: SnapshotSource;
  private readonly now: () => number;
  private readonly offers: HydrateOptions;

  /** `offers`: what this runtime offers besides the snapshot (see `hydrate`). */
  constructor(source: SnapshotSource, now: () => number = Date.now, offers: HydrateOptions = {}) {
    this.source = source;
    this.now = now;
    this.offers = offers;
  }

  /** The snapshot to serve this request with, or undefined when none was ever applied. */
  async get(waitUntil: (p: Promise<unknown>) => void): Promise<RuntimeSnapshot | undefined> {
    const now = this.now();
    if (!this.current) {
      if (this.loading > 0 || now - this.checkedAt >= EMPTY_RECHECK_MS) await this.refresh();
      return this.serving();
    }
    const interval = this.current.runtime.snapshot.settings.configRefreshMs;
    if (!this.refreshing && now - this.checkedAt >= interval) {
      this.refreshing = true;
      waitUntil(this.refresh().finally(() => (this.refreshing = false)));
    }
    return this.current.runtime;
  }

  /** The snapshot currently served, if any. */
  serving(): RuntimeSnapshot | undefined {
    return this.current?.runtime;
  }

  status(): { version?: string; loadedAt?: string; checkedAt?: string; lastError?: LoadError } {
    return {
      version: this.current?.runtime.version,
      loadedAt: this.current ? new Date(this.current.loadedAt).toISOString() : undefined,
      checkedAt: Number.isFinite(this.checkedAt) ? new Date(this.checkedAt).toISOString() : undefined,
      lastError: this.lastError,
    };
  }

  /** Reads the pointer and loads the version it names if it is new. Never throws. */
  async refresh(): Promise<void> {
    this.loading++;
    try {
      await this.load();
    } finally {
      this.loading--;
    }
  }

  private async load(): Promise<void> {
    this.checkedAt = this.now();
    let version: string | undefined;
    try {
      const raw = await this.source.get(KEYS.active);
      if (raw === null) return;
      const pointer = JSON.parse(raw) as ActivePointer;
      version = pointer.version;
      if (typeof version !== "string") throw new Error("the active pointer has no version");
      if (version === this.current?.runtime.version) return;
      const text = await this.source.get(KEYS.snapshot(version));
      if (text === null) throw new Error(`snapshot ${version} is missing from the config store`);
      const snapshot = JSON.parse(text) as StoredSnapshot;
      if (snapshot.version !== version) throw new Error(`snapshot stored as ${version} says it is ${String(snapshot.version)}`);
      const runtime = hydrate(snapshot, this.offers);
      this.current = { runtime, loadedAt: this.now() };
      this.lastError = undefined;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.lastError = { message, at: new Date(this.now()).toISOString(), ...(version ? { version } : {}) };
      console.error(
        JSON.stringify({
          message: "isthmus: failed to load configuration; still serving the last good version",
          failedVersion: version,
          serving: this.current?.runtime.version ?? null,
          error: message,
        }),
      );
    }
  }
}

/**
 * The body of the 503 a gateway answers while it serves no configuration:
 * none applied yet, or the active one failed to load (the reason is in the
 * Worker's logs and the admin status, not told to clients).
 *
 * @example
 * nothingServed(cache) // "isthmus: no configuration has been applied to this gateway yet. ..."
 */
export function nothingServed(cache: SnapshotCache): string {
  const error = cache.lastError;
  if (!error) {
    return "isthmus: no configuration has been applied to this gateway yet.\nApply one with `npx isthmus apply -f <files>` (add --remote for a deployed gateway).\n";
  }
  const which = error.version ? `the active configuration (${error.version})` : "the active configuration";
  return `isthmus: ${which} could not be loaded, so this gateway serves nothing yet; the Worker's logs and the admin status say why.\n`;
}
