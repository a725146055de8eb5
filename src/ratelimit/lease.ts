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
 *
 * That bound needs an isolate to hold at most one lease of a key, though it
 * serves many requests at once: when the pool is empty, one request asks
 * the object for a lease (`lead`) and the others that find it empty wait
 * for that call (`waitFor`), then take from the refilled pool, or follow
 * the rule's failureMode with the call's error when it failed; a lease that
 * would still overfill the pool (a call that outlived a takeover) gives its
 * excess back (`add`). Nothing is shared between requests but plain data
 * and functions (workers-platform §3: no promise, stream or signal crosses
 * requests): a waiting request awaits a promise of its own, which the
 * asking request resolves when its call ends (workerd settles it in the
 * waiting request's own context), and a timer of its own, which bounds the
 * wait by the decision timeout and keeps the runtime from taking the
 * waiting request for hung. So it never depends on the other request
 * finishing: a cancelled request never settles its call, and after the
 * rule's decision timeout another request takes over.
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

/** The lease call in flight for a key (see `Leases.lead`). */
interface Pending {
  /** The asking request's turn: a request that takes over from a stale call has a new one. */
  turn: number;
  /** When the asking request started its call. */
  since: number;
  /** How to wake the requests waiting for the call: each resolves a promise of the waiting request's own. */
  waiters: ((failure: string | undefined) => void)[];
}

export class Leases {
  private readonly pools = new Map<string, Lease[]>();
  private readonly pending = new Map<string, Pending>();
  private turns = 0;
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

  /**
   * Keeps `tokens` granted by the object until `expiresAt`; what would take
   * the pool above `cap` tokens is given back with the next call instead.
   */
  add(name: string, tokens: number, expiresAt: number, grant: Grant, cap: number = Number.POSITIVE_INFINITY): void {
    const excess = this.held(name) + tokens - cap;
    if (excess > 0) {
      this.giveBackLater(name, Math.min(excess, tokens));
      tokens -= excess;
    }
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

  /**
   * Makes the caller the request that asks the object for a lease of
   * `name`: its turn (give it to `settle` when the call ends), or 0 when
   * another request of this isolate is asking (`waitFor` it). A call that
   * started `staleMs` ago or more (the rule's decision timeout, after which
   * its request has given up, or was cancelled and never settles) is taken
   * over.
   */
  lead(name: string, now: number, staleMs: number): number {
    const pending = this.pending.get(name);
    if (pending && now - pending.since < staleMs) return 0;
    const turn = ++this.turns;
    if (pending) {
      pending.turn = turn;
      pending.since = now;
      return turn;
    }
    this.pending.set(name, { turn, since: now, waiters: [] });
    if (this.pending.size > this.capacity) {
      // Its waiters wake on their own timers.
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
    }
    return turn;
  }

  /** Ends turn `turn`'s call for `name` and wakes the requests waiting for it, with `failure` when the call failed. */
  settle(name: string, turn: number, failure?: string): void {
    const pending = this.pending.get(name);
    if (!pending || pending.turn !== turn) return;
    this.pending.delete(name);
    for (const wake of pending.waiters) wake(failure);
  }

  /**
   * Waits, at most `ms`, for the lease call in flight for `name` to end:
   * the call's failure, or undefined when it succeeded, there is none, or
   * `ms` passed (look at the pool again). The promise awaited is this
   * request's own, and so is the timer.
   */
  async waitFor(name: string, ms: number): Promise<string | undefined> {
    const pending = this.pending.get(name);
    if (!pending) return undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake: ((failure: string | undefined) => void) | undefined;
    const woken = new Promise<string | undefined>((resolve) => {
      wake = resolve;
      timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
    });
    if (wake) pending.waiters.push(wake);
    const failure = await woken;
    clearTimeout(timer);
    const mine = wake ? pending.waiters.indexOf(wake) : -1;
    if (mine >= 0) pending.waiters.splice(mine, 1);
    return failure;
  }
}
