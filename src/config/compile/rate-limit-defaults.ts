/**
 * RateLimitPolicy defaults and units, documented in docs/CONFIG.md.
 */

export const UNIT_MS = { second: 1_000, minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;

export const RATE_LIMIT_DEFAULTS = {
  /** Envoy's global rate limit filter waits 20 ms for a service in the same cluster; a Durable Object may be in another region. */
  decisionTimeoutMs: 250,
  leaseSize: 10,
  leaseTtlMs: 1_000,
} as const;
