/**
 * The verified-token cache of one JWT rule: token hash → the parsed token
 * and the key set that verified it. A hit skips base64, JSON and the
 * signature, leaving only the time and audience checks, so a repeated
 * token costs microseconds (bench/jwt.bench.ts). Entries are bounded in
 * number (least recently used evicted first) and in time (the token's
 * `exp` plus the clock skew, and at most `MAX_TTL_MS` so a token without
 * `exp` is re-verified now and then), and a hit only counts while the key
 * set that verified the token is still the one in use (a rotated JWKS
 * invalidates it).
 */
import { createHash } from "node:crypto";
import type { KeySet } from "./keys.ts";
import type { ParsedJwt } from "./parse.ts";

export interface CachedToken {
  jwt: ParsedJwt;
  keys: KeySet;
  /** Epoch ms after which the entry is ignored. */
  expiresAt: number;
}

const MAX_ENTRIES = 1_000;
const MAX_TTL_MS = 10 * 60_000;

/** SHA-256 of the token (base64url): the cache key, so a cache never holds tokens themselves. */
export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

export class VerifiedTokens {
  private readonly entries = new Map<string, CachedToken>();
  private readonly max: number;

  constructor(max = MAX_ENTRIES) {
    this.max = max;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The entry for a hash, if it is still valid for `keys` at `now`. */
  get(hash: string, keys: KeySet | undefined, now: number): CachedToken | undefined {
    const entry = this.entries.get(hash);
    if (!entry) return undefined;
    if (entry.expiresAt <= now || entry.keys !== keys) {
      this.entries.delete(hash);
      return undefined;
    }
    // Most recently used last.
    this.entries.delete(hash);
    this.entries.set(hash, entry);
    return entry;
  }

  set(hash: string, jwt: ParsedJwt, keys: KeySet, now: number, skewMs: number): void {
    const expiresAt = Math.min(jwt.exp !== undefined ? jwt.exp * 1000 + skewMs : Infinity, now + MAX_TTL_MS);
    if (expiresAt <= now) return;
    this.entries.delete(hash);
    this.entries.set(hash, { jwt, keys, expiresAt });
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }
}
