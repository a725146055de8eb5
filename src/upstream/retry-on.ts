/**
 * The vocabulary of retry policies shared by the compiler and the gateway:
 * Envoy's `retry_on` tokens as Istio accepts them, and Istio's built-in
 * default policy.
 */
import type { RetryDef } from "../config/snapshot.ts";

/** Every token Istio accepts in `retryOn` (pkg/config/validation supportedRetryOnPolicies). */
export const RETRY_ON_TOKENS = [
  "5xx",
  "gateway-error",
  "reset",
  "reset-before-request",
  "connect-failure",
  "retriable-4xx",
  "refused-stream",
  "retriable-status-codes",
  "retriable-headers",
  "envoy-ratelimited",
  "http3-post-connect-failure",
  "cancelled",
  "deadline-exceeded",
  "internal",
  "resource-exhausted",
  "unavailable",
] as const;

export type RetryOnToken = (typeof RETRY_ON_TOKENS)[number];

/** Envoy's default backoff base interval; the cap is ten times the base. */
export const DEFAULT_BACKOFF_BASE_MS = 25;

/**
 * Istio's policy when a route sets no `retries` and the mesh sets no
 * default (retry.DefaultPolicy, Istio >= 1.24: HTTP 503 is no longer retried).
 */
export const ISTIO_DEFAULT_RETRY: RetryDef = {
  attempts: 2,
  retryOn: ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"],
  backoffBaseMs: DEFAULT_BACKOFF_BASE_MS,
  backoffMaxMs: 10 * DEFAULT_BACKOFF_BASE_MS,
};

/** Status codes Go's http.StatusText knows: Istio treats only these integers in `retryOn` as status codes. */
export const KNOWN_STATUS_CODES = new Set([
  100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407,
  408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508,
  510, 511,
]);
