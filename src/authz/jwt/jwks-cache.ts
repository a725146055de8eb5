/**
 * The isolate's JWKS cache: one entry per JWKS URL (or OIDC issuer),
 * holding plain data and CryptoKeys only (workers-platform §3: no
 * promises, streams or signals are shared across requests).
 *
 * - A request that finds fresh keys uses them.
 * - Keys older than `refreshMs` are still used, and one background
 *   refresh is started through that request's `waitUntil`; later requests
 *   see the result, they never await another request's fetch. A failed
 *   refresh is retried after a minute (Istio's retry interval).
 * - A token whose `kid` is not in the set triggers one synchronous refetch,
 *   at most once per `unknownKidCooldownMs` per URL.
 * - When the IdP is down the last good keys keep being used until they
 *   are `maxAgeMs` old; after that, and when no keys were ever fetched,
 *   tokens fail closed ("Jwks remote fetch is failed") and a new attempt
 *   is made at most once a second (Envoy's failed-fetch retry).
 * - Concurrent cold requests (no keys yet) each fetch: sharing one
 *   request's in-flight promise with another request is not safe in
 *   workerd, so single flight covers refreshes and unknown-kid refetches,
 *   not the very first fetch.
 */
import type { Fetch } from "../../routing/forward.ts";
import { concatBytes, readAtMost } from "../../gateway/bytes.ts";
import { KeySet, parseJwks } from "./keys.ts";

export interface JwksPolicy {
  refreshMs: number;
  maxAgeMs: number;
  unknownKidCooldownMs: number;
}

export type JwksSource = { uri: string } | { discovery: string };

export type KeySetResult = { ok: true; keys: KeySet } | { ok: false };

interface Entry {
  keys?: KeySet;
  /** When the current keys were fetched. */
  fetchedAt: number;
  /** When the last fetch (successful or not) started. */
  attemptAt: number;
  /** When the last fetch failed, if it did. */
  failedAt?: number;
  /** When a background refresh started (a timestamp, not a promise). */
  refreshingSince?: number;
}

const RETRY_AFTER_FAILED_REFRESH_MS = 60_000;
const RETRY_AFTER_FAILED_COLD_FETCH_MS = 1_000;
const MAX_JWKS_BYTES = 1 << 20;

export class JwksCache {
  private readonly entries = new Map<string, Entry>();
  private readonly fetchFn: Fetch;
  private readonly now: () => number;
  /** Told about every fetch (telemetry counts them); `source` is the JWKS URL or `oidc:<issuer>`. */
  onFetch?: (source: string, ok: boolean) => void;

  constructor(fetchFn: Fetch, now: () => number) {
    this.fetchFn = fetchFn;
    this.now = now;
  }

  /**
   * The keys for a source, fetching or refreshing as described above.
   * `kid` is the token's key id, when it has one.
   */
  async keys(source: JwksSource, kid: string | undefined, timeoutMs: number, policy: JwksPolicy, waitUntil: (p: Promise<unknown>) => void): Promise<KeySetResult> {
    const id = sourceId(source);
    let entry = this.entries.get(id);
    if (!entry) {
      entry = { fetchedAt: -Infinity, attemptAt: -Infinity };
      this.entries.set(id, entry);
    }
    const now = this.now();
    const usable = entry.keys !== undefined && now - entry.fetchedAt < policy.maxAgeMs;
    if (!usable) {
      if (entry.failedAt !== undefined && now - entry.failedAt < RETRY_AFTER_FAILED_COLD_FETCH_MS) return { ok: false };
      await this.fetchInto(entry, source, timeoutMs);
      const fresh = entry.keys !== undefined && this.now() - entry.fetchedAt < policy.maxAgeMs;
      return fresh ? { ok: true, keys: entry.keys as KeySet } : { ok: false };
    }
    // An empty kid names no key (it tries them all, as jwt_verify_lib does): no refetch for it.
    if (kid && !(entry.keys as KeySet).kids.has(kid) && now - entry.attemptAt >= policy.unknownKidCooldownMs) {
      await this.fetchInto(entry, source, timeoutMs);
      return { ok: true, keys: entry.keys as KeySet };
    }
    this.refreshIfStale(entry, source, now, timeoutMs, policy, waitUntil);
    return { ok: true, keys: entry.keys as KeySet };
  }

  /**
   * The keys currently held for a source without waiting for any fetch
   * (undefined once they are older than `maxAgeMs`). Like `keys`, it
   * starts the background refresh when they are stale: requests served
   * from the verified-token cache must keep the key set current too.
   */
  current(source: JwksSource, timeoutMs: number, policy: JwksPolicy, waitUntil: (p: Promise<unknown>) => void): KeySet | undefined {
    const entry = this.entries.get(sourceId(source));
    const now = this.now();
    if (!entry?.keys || now - entry.fetchedAt >= policy.maxAgeMs) return undefined;
    this.refreshIfStale(entry, source, now, timeoutMs, policy, waitUntil);
    return entry.keys;
  }

  private refreshIfStale(entry: Entry, source: JwksSource, now: number, timeoutMs: number, policy: JwksPolicy, waitUntil: (p: Promise<unknown>) => void): void {
    const stale = now - entry.fetchedAt >= policy.refreshMs;
    const retryable = entry.failedAt === undefined || now - entry.failedAt >= RETRY_AFTER_FAILED_REFRESH_MS;
    const refreshing = entry.refreshingSince !== undefined && now - entry.refreshingSince < timeoutMs + 5_000;
    if (!stale || !retryable || refreshing) return;
    entry.refreshingSince = now;
    waitUntil(this.fetchInto(entry, source, timeoutMs).finally(() => delete entry.refreshingSince));
  }

  /** Fetches into the entry; on failure the previous keys stay. Never throws. */
  private async fetchInto(entry: Entry, source: JwksSource, timeoutMs: number): Promise<void> {
    entry.attemptAt = this.now();
    try {
      const url = "uri" in source ? source.uri : await this.discover(source.discovery, timeoutMs);
      const text = await this.getText(url, timeoutMs);
      if (entry.keys && entry.keys.text === text) {
        entry.fetchedAt = this.now();
      } else {
        const keys = parseJwks(text);
        if (!keys) throw new Error(`${url} did not return a JSON Web Key Set with a usable key`);
        entry.keys = keys;
        entry.fetchedAt = this.now();
      }
      delete entry.failedAt;
      this.onFetch?.("uri" in source ? source.uri : `oidc:${source.discovery}`, true);
    } catch (error) {
      entry.failedAt = this.now();
      this.onFetch?.("uri" in source ? source.uri : `oidc:${source.discovery}`, false);
      console.error(
        JSON.stringify({
          message: "isthmus: JWKS fetch failed",
          source: "uri" in source ? source.uri : `OIDC discovery for ${source.discovery}`,
          keepingKeys: entry.keys !== undefined,
          error: error instanceof Error ? error.message : String(error),
        }),
      );
    }
  }

  /** OIDC discovery: the `jwks_uri` of `<issuer>/.well-known/openid-configuration`. */
  private async discover(issuer: string, timeoutMs: number): Promise<string> {
    const url = `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
    const doc = JSON.parse(await this.getText(url, timeoutMs)) as { jwks_uri?: unknown };
    const jwksUri = doc.jwks_uri;
    if (typeof jwksUri !== "string" || !/^https?:\/\//.test(jwksUri)) throw new Error(`${url} has no http(s) jwks_uri`);
    return jwksUri;
  }

  private async getText(url: string, timeoutMs: number): Promise<string> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const res = await this.fetchFn(url, { headers: { accept: "application/json" }, signal: controller.signal });
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`${url} answered ${res.status}`);
      }
      // Read no further than the cap: a document that goes on is refused once it passes it, not buffered whole.
      const reader = res.body?.getReader();
      if (!reader) return "";
      const head = await readAtMost(reader, MAX_JWKS_BYTES);
      if (!head.done) {
        await reader.cancel();
        throw new Error(`${url} returned more than ${MAX_JWKS_BYTES} bytes`);
      }
      return new TextDecoder().decode(concatBytes(head.chunks, head.size));
    } finally {
      clearTimeout(timer);
    }
  }
}

function sourceId(source: JwksSource): string {
  return "uri" in source ? `uri:${source.uri}` : `oidc:${source.discovery}`;
}
