/**
 * Circuit breaking for one cluster in one isolate (DestinationRule
 * `connectionPool.http` and `retryBudget`), as Envoy's circuit breakers
 * work for one cluster in one proxy:
 *
 * - `http2MaxRequests`: requests in flight to the cluster. A request over
 *   the limit waits in a queue of at most `http1MaxPendingRequests`
 *   (the edge has no connection pool to wait for, so the request slots
 *   play that part); with no room there it overflows: 503, flag UO.
 * - `maxRetries`: retries in flight; a retry over the limit is not made
 *   (the last response is returned, flag UO).
 * - `retryBudget`: replaces maxRetries with max(minRetryConcurrency,
 *   percent% of the requests in flight and waiting).
 */
import type { ConnectionPoolDef, RetryBudgetDef } from "../config/snapshot.ts";

export type Admission = "ok" | "overflow" | "timeout";

export interface LimitsSnapshot {
  active: number;
  pending: number;
  retries: number;
}

export class ClusterLimits {
  private active = 0;
  private retries = 0;
  private readonly waiting: { admit: () => void }[] = [];

  /**
   * Takes a request slot. Resolves "ok" (call `release` when the request
   * ends), "overflow" when neither a slot nor a place in the queue is free,
   * or "timeout" when `signal` aborts while waiting.
   */
  acquire(pool: ConnectionPoolDef | undefined, signal?: AbortSignal): Promise<Admission> | Admission {
    const max = pool?.maxRequests;
    if (max === undefined || this.active < max) {
      this.active++;
      return "ok";
    }
    if (this.waiting.length >= (pool?.maxPendingRequests ?? 0)) return "overflow";
    if (signal?.aborted) return "timeout";
    return new Promise<Admission>((resolve) => {
      const waiter = {
        admit: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve("ok");
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve("timeout");
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Ends a request: its slot goes to the first waiting request, if any. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next.admit();
    else this.active = Math.max(0, this.active - 1);
  }

  /** Takes a retry slot; false means the retry must not be made. Call `endRetry` when it ends. */
  tryRetry(pool: ConnectionPoolDef | undefined, budget: RetryBudgetDef | undefined): boolean {
    const max = budget
      ? Math.max(budget.minRetryConcurrency, Math.floor((budget.percent * (this.active + this.waiting.length)) / 100))
      : pool?.maxRetries;
    if (max !== undefined && this.retries >= max) return false;
    this.retries++;
    return true;
  }

  endRetry(): void {
    this.retries = Math.max(0, this.retries - 1);
  }

  snapshot(): LimitsSnapshot {
    return { active: this.active, pending: this.waiting.length, retries: this.retries };
  }
}
