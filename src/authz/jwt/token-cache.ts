/**
 * The verified-token cache of one JWT rule: token → the parsed token and
 * the key set that verified it. A hit skips base64, JSON and the
 * signature, leaving only the time and audience checks, so a repeated
 * token costs microseconds (bench/jwt.bench.ts). Entries are bounded in
 * number (least recently used evicted first, approximately) and in time (the token's
 * `exp` plus the clock skew, and at most `MAX_TTL_MS` so a token without
 * `exp` is re-verified now and then), and a hit only counts while the key
 * set that verified the token is still the one in use (a rotated JWKS
 * invalidates it).
 *
 * A hit is the token text itself, as in Envoy's jwt_authn cache
 * (`JwtCache::lookup(token)`): hashing it with SHA-256 first cost more
 * than the rest of a hit (~4% of the gateway's busy time in a workerd
 * profile), and the isolate holds the token anyway while the request is
 * served. The map is keyed by the token's last 43 characters (the end of
 * its signature) and an entry matches only when the whole token is equal:
 * hashing a 700-character string for the map costs ~1 µs, comparing it
 * a fraction of that. Two tokens sharing a tail just replace each other.
 * Memory stays bounded: 1,000 entries of tokens the extraction already
 * capped at `maxJwtBytes`.
 */
import type { KeySet } from "./keys.ts";
import type { ParsedJwt } from "./parse.ts";

export interface CachedToken {
  token: string;
  jwt: ParsedJwt;
  keys: KeySet;
  /** Epoch ms after which the entry is ignored. */
  expiresAt: number;
  /** Hit since the eviction sweep last passed it. */
  used: boolean;
}

const MAX_ENTRIES = 1_000;
const MAX_TTL_MS = 10 * 60_000;
/** Characters of the token's end that key the map (32 bytes of signature in base64url). */
const KEY_CHARS = 43;

function keyOf(token: string): string {
  return token.length <= KEY_CHARS ? token : token.slice(-KEY_CHARS);
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

  /** Whether `token` is (still) an entry, valid or not: it was verified, so it is a whole token. */
  has(token: string): boolean {
    return this.entries.get(keyOf(token))?.token === token;
  }

  /** The entry for a token, if it is still valid for `keys` at `now`. */
  get(token: string, keys: KeySet | undefined, now: number): CachedToken | undefined {
    const key = keyOf(token);
    const entry = this.entries.get(key);
    if (!entry || entry.token !== token) return undefined;
    if (entry.expiresAt <= now || entry.keys !== keys) {
      this.entries.delete(key);
      return undefined;
    }
    entry.used = true;
    return entry;
  }

  set(token: string, jwt: ParsedJwt, keys: KeySet, now: number, skewMs: number): void {
    // `exp: 0` means no expiry (jwt_verify_lib), like an absent exp.
    const expiresAt = Math.min(jwt.exp ? jwt.exp * 1000 + skewMs : Infinity, now + MAX_TTL_MS);
    if (expiresAt <= now) return;
    const key = keyOf(token);
    this.entries.delete(key);
    this.entries.set(key, { token, jwt, keys, expiresAt, used: false });
    // Second chance (CLOCK), an approximation of least-recently-used that
    // keeps a hit to one map lookup: the oldest entry goes, unless it was
    // used since it last came round, in which case it moves to the back.
    while (this.entries.size > this.max) {
      const [oldest, candidate] = this.entries.entries().next().value as [string, CachedToken];
      this.entries.delete(oldest);
      if (candidate.used) {
        candidate.used = false;
        this.entries.set(oldest, candidate);
      }
    }
  }
}
