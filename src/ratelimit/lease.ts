/**
 * Leases for hot keys: instead of one Durable Object call per request, an
 * isolate takes a batch of tokens (`lease.size`) from the object and
 * spends them itself, for at most `lease.ttl`. Tokens still unspent when
 * their lease expires are given back to the object with the isolate's next
 * call for that key (if the key goes quiet in this isolate, they stay out
 * until the bucket refills: never an over-admission).
 *
 * Every admitted request spends a token the object granted, so over any
 * long run the count is exact. What leases change is *when* tokens are
 * spent: a token may be spent up to `ttl` after the object handed it out.
 * In any window, admissions exceed the bucket's own bound (burst + rate ×
 * window) by at most min(isolates × size, rate × ttl). Tokens held by one
 * isolate are not available to another, so a key may also be refused
 * while up to isolates × size tokens sit in other isolates' leases (until
 * they are spent or expire).
 */
import type { Grant } from "./bucket-set.ts";

export const LEASES_CAPACITY = 10_000;

interface Lease {
  tokens: number;
  expiresAt: number;
  /** What the object reported when it granted the lease, for response headers. */
  grant: Grant;
}

export interface LeaseTake {
  /** A token was taken from an unexpired lease. */
  taken: boolean;
  /** The lease the token came from: its grant, and the tokens it still holds. */
  lease?: { grant: Grant; tokens: number };
}

export class Leases {
  private readonly pools = new Map<string, Lease[]>();
  /** Unspent tokens of expired leases, and grants that arrived after their decision gave up (decide.ts), waiting for the next call to the key's object. */
  private readonly returns = new Map<string, number>();
  private readonly capacity: number;

  constructor(capacity = LEASES_CAPACITY) {
    this.capacity = capacity;
  }

  /** Spends one token of the oldest unexpired lease for `name`; expired leases' tokens are set aside to give back. */
  take(name: string, now: number): LeaseTake {
    const pool = this.pools.get(name);
    if (!pool) return { taken: false };
    let expired = 0;
    while (pool.length > 0) {
      const first = pool[0] as Lease;
      if (first.expiresAt > now && first.tokens > 0) break;
      if (first.expiresAt <= now) expired += first.tokens;
      pool.shift();
    }
    if (expired > 0) this.giveBackLater(name, expired);
    if (pool.length === 0) {
      this.pools.delete(name);
      return { taken: false };
    }
    const lease = pool[0] as Lease;
    lease.tokens -= 1;
    return { taken: true, lease: { grant: lease.grant, tokens: pool.reduce((n, l) => n + l.tokens, 0) } };
  }

  /** The tokens to give back with the next call for `name` (and forgets them: put them back if the call fails). */
  takeReturns(name: string): number {
    if (this.returns.size === 0) return 0;
    const n = this.returns.get(name) ?? 0;
    this.returns.delete(name);
    return n;
  }

  /** True when tokens wait to be given back with the next call for `name`. */
  returning(name: string): boolean {
    return this.returns.size > 0 && this.returns.has(name);
  }

  giveBackLater(name: string, tokens: number): void {
    if (tokens <= 0) return;
    this.returns.set(name, (this.returns.get(name) ?? 0) + tokens);
    if (this.returns.size > this.capacity) {
      const oldest = this.returns.keys().next().value;
      if (oldest !== undefined) this.returns.delete(oldest);
    }
  }

  /** Keeps `tokens` granted by the object until `expiresAt`. */
  add(name: string, tokens: number, expiresAt: number, grant: Grant): void {
    if (tokens <= 0) return;
    let pool = this.pools.get(name);
    if (pool) this.pools.delete(name);
    else pool = [];
    pool.push({ tokens, expiresAt, grant });
    this.pools.set(name, pool);
    if (this.pools.size > this.capacity) {
      const oldest = this.pools.keys().next().value;
      if (oldest !== undefined) this.pools.delete(oldest);
    }
  }

  /** Tokens held for `name` (spendable or not). */
  held(name: string): number {
    return (this.pools.get(name) ?? []).reduce((n, l) => n + l.tokens, 0);
  }
}
