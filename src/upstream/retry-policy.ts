/**
 * Retry decisions, pure: whether an attempt's outcome is retriable under
 * a policy's `retryOn` tokens (Envoy's router retry state), and how long
 * to back off before the next attempt.
 *
 * What a Worker can observe of an attempt is narrower than what Envoy
 * sees on its own sockets:
 * - fetch() rejects with the same error ("Network connection lost") for a
 *   refused connection, a reset before the request was sent and a reset
 *   after it; Isthmus treats every rejection as a connection failure
 *   (`connect-failure`, `reset`, `reset-before-request`, `5xx`,
 *   `gateway-error` all match), and for that reason retries it for
 *   non-idempotent methods only when the route opts in.
 * - Cloudflare's 521/522/523/525/526 answers (server: cloudflare) mean
 *   Cloudflare could not connect to the origin: the request never reached
 *   it, so they count as connect failures that are safe for any method.
 * - HTTP/2 REFUSED_STREAM (`refused-stream`) and HTTP/3 failures
 *   (`http3-post-connect-failure`) never surface through fetch(), and
 *   `retriable-headers` has no header list in Istio's API: these tokens
 *   are accepted and never match.
 */
import type { RetryDef } from "../config/snapshot.ts";

/** How one attempt ended, as far as the Worker can tell. */
export type AttemptOutcome =
  | { type: "response"; status: number; headers: Headers }
  /** fetch() rejected before response headers (refused, reset, TLS or DNS failure). */
  | { type: "connect-failure" }
  /** The per-try timeout passed before response headers. */
  | { type: "per-try-timeout" };

/** RFC 9110 §9.2.2 idempotent methods. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** Cloudflare's "could not reach the origin" statuses: connection refused, timed out, unreachable, TLS failures. */
const CLOUDFLARE_CONNECT_ERRORS = new Set([521, 522, 523, 525, 526]);

/** gRPC statuses in response headers (a trailers-only response) and their retryOn tokens. */
const GRPC_TOKENS: Record<string, string> = { "1": "cancelled", "4": "deadline-exceeded", "8": "resource-exhausted", "13": "internal", "14": "unavailable" };

const tokenSets = new WeakMap<RetryDef, ReadonlySet<string>>();

function tokens(policy: RetryDef): ReadonlySet<string> {
  let set = tokenSets.get(policy);
  if (!set) {
    set = new Set(policy.retryOn);
    tokenSets.set(policy, set);
  }
  return set;
}

/** True when the outcome shows the request never reached the origin. */
export function beforeOrigin(outcome: AttemptOutcome): boolean {
  return outcome.type === "response" && isCloudflareConnectError(outcome.status, outcome.headers);
}

function isCloudflareConnectError(status: number, headers: Headers): boolean {
  return CLOUDFLARE_CONNECT_ERRORS.has(status) && headers.get("server")?.toLowerCase() === "cloudflare";
}

/**
 * Whether `outcome` may be retried under `policy` for a request with
 * `method`. Non-idempotent methods are only retried when the request
 * never reached the origin, unless `anyMethod` is set.
 *
 * @example
 * retriable(ISTIO_DEFAULT_RETRY, { type: "connect-failure" }, "GET", false) // true
 * retriable(ISTIO_DEFAULT_RETRY, { type: "connect-failure" }, "POST", false) // false
 */
export function retriable(policy: RetryDef, outcome: AttemptOutcome, method: string, anyMethod: boolean): boolean {
  if (policy.attempts <= 0) return false;
  if (!anyMethod && !IDEMPOTENT.has(method) && !beforeOrigin(outcome)) return false;
  const on = tokens(policy);
  switch (outcome.type) {
    case "connect-failure":
      return on.has("connect-failure") || on.has("reset") || on.has("reset-before-request") || on.has("5xx") || on.has("gateway-error");
    case "per-try-timeout":
      // Envoy resets the attempt and asks wouldRetryFromReset (LocalReset): only reset, 5xx and gateway-error match,
      // not a listed 504, which is a status the origin sends.
      return on.has("5xx") || on.has("gateway-error") || on.has("reset");
    case "response":
      // A response an upstream Envoy rate-limited is retried only under envoy-ratelimited, whatever its status
      // (Envoy's RetryStateImpl::wouldRetryFromHeaders): retrying it under 5xx would press a limiter that said stop.
      // The header is looked at only when it can change the answer, not on every response.
      if (on.has("envoy-ratelimited") && outcome.headers.has("x-envoy-ratelimited")) return true;
      return retriableResponse(policy, on, outcome.status, outcome.headers) && !outcome.headers.has("x-envoy-ratelimited");
  }
}

/** Whether a response's status or gRPC status is retriable under `on` (x-envoy-ratelimited aside). */
function retriableResponse(policy: RetryDef, on: ReadonlySet<string>, status: number, headers: Headers): boolean {
  if (isCloudflareConnectError(status, headers) && (on.has("connect-failure") || on.has("reset-before-request"))) return true;
  if (on.has("5xx") && status >= 500) return true;
  if (on.has("gateway-error") && (status === 502 || status === 503 || status === 504)) return true;
  if (on.has("retriable-4xx") && status === 409) return true;
  if (on.has("retriable-status-codes") && policy.statusCodes?.includes(status)) return true;
  const grpc = headers.get("grpc-status");
  const token = grpc !== null ? GRPC_TOKENS[grpc.trim()] : undefined;
  return token !== undefined && on.has(token);
}

/**
 * Envoy's fully jittered exponential backoff before retry `retry` (1 for
 * the first retry): uniform in [0, (2^retry − 1) × base), capped at the
 * maximum (10 × base unless configured).
 *
 * @example
 * backoffMs(policy, 1, Math.random) // in [0, 25) with the default 25 ms base
 */
export function backoffMs(policy: RetryDef, retry: number, random: () => number): number {
  const bound = (2 ** Math.min(retry, 30) - 1) * policy.backoffBaseMs;
  return Math.min(Math.floor(random() * bound), policy.backoffMaxMs);
}

/**
 * Envoy's previous_priorities with update frequency 2: attempts 1–2 use
 * every priority; attempts 3–4 leave out the priorities attempts 1–2
 * went to; attempt 5 leaves out those of attempts 1–4; and so on.
 *
 * @param levels the priority level each earlier attempt went to, in order
 */
export function excludedLevels(levels: readonly number[], attempt: number): Set<number> {
  const upTo = Math.floor((attempt - 1) / 2) * 2;
  return new Set(levels.slice(0, upTo));
}
