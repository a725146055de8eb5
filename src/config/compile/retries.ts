/**
 * VirtualService `retries` (and GatewayConfig `defaultHttpRetryPolicy`) →
 * RetryDef, as Istio's retry.ConvertPolicy translates HTTPRetry for Envoy,
 * with Istio's validation.
 */
import type { z } from "zod";
import { durationMs } from "../duration.ts";
import type { HTTPRetry } from "../schema/networking.ts";
import type { RetryDef } from "../snapshot.ts";
import { DEFAULT_BACKOFF_BASE_MS, ISTIO_DEFAULT_RETRY, KNOWN_STATUS_CODES, RETRY_ON_TOKENS } from "../../upstream/retry-on.ts";
import type { FieldPath } from "./diagnostics.ts";

type Fail = (path: FieldPath, message: string) => void;

const TOKENS = new Set<string>(RETRY_ON_TOKENS);

/** Tokens Istio accepts whose condition a Worker never sees. */
const UNOBSERVABLE: Record<string, string> = {
  "refused-stream": "HTTP/2 stream refusals do not surface through fetch()",
  "http3-post-connect-failure": "HTTP/3 connection failures do not surface through fetch()",
  "retriable-headers": "Istio's API has no header list for it",
};

/**
 * Compiles one HTTPRetry. `attempts: 0` (or absent) disables retries; the
 * other fields then must be absent, as Istio's validation requires.
 *
 * @example
 * compileRetry({ attempts: 3, retryOn: "5xx,409" }, ["spec", "http", 0, "retries"], fail)
 * // → { attempts: 3, retryOn: ["5xx", "retriable-status-codes"], statusCodes: [409], ... }
 */
export function compileRetry(retry: z.infer<typeof HTTPRetry>, path: FieldPath, fail: Fail, warn: Fail = () => {}): RetryDef {
  const attempts = retry.attempts ?? 0;
  if (attempts === 0) {
    if (retry.perTryTimeout !== undefined || retry.retryOn !== undefined || retry.retryRemoteLocalities !== undefined) {
      fail([...path, "attempts"], "expected attempts > 0: a retry policy is configured but attempts is 0 (retries disabled)");
    }
    return { ...ISTIO_DEFAULT_RETRY, attempts: 0 };
  }
  const out: RetryDef = { ...ISTIO_DEFAULT_RETRY, retryOn: [...ISTIO_DEFAULT_RETRY.retryOn], attempts };
  if (retry.retryOn !== undefined && retry.retryOn.trim() !== "") {
    const tokens: string[] = [];
    const codes: number[] = [];
    for (const raw of retry.retryOn.split(",")) {
      const part = raw.trim();
      if (part === "") continue;
      const code = /^\d+$/.test(part) ? Number(part) : NaN;
      if (KNOWN_STATUS_CODES.has(code)) {
        if (!codes.includes(code)) codes.push(code);
      } else if (TOKENS.has(part)) {
        if (!tokens.includes(part)) tokens.push(part);
        const why = UNOBSERVABLE[part];
        if (why) warn([...path, "retryOn"], `"${part}" never matches at the edge: ${why}`);
      } else {
        fail([...path, "retryOn"], `"${part}" is not a valid retryOn value; expected HTTP status codes or ${RETRY_ON_TOKENS.join(", ")}`);
      }
    }
    if (codes.length > 0 && !tokens.includes("retriable-status-codes")) tokens.push("retriable-status-codes");
    out.retryOn = tokens;
    if (codes.length > 0) out.statusCodes = codes;
  }
  if (retry.perTryTimeout !== undefined) {
    // At least 1ms, whole milliseconds: the schema (ProxyDuration) refuses anything else.
    out.perTryTimeoutMs = durationMs(retry.perTryTimeout);
  }
  if (retry.backoff !== undefined) {
    const ms = durationMs(retry.backoff);
    if (ms < 1) fail([...path, "backoff"], "expected a duration of at least 1ms");
    else {
      out.backoffBaseMs = ms;
      out.backoffMaxMs = 10 * ms;
    }
  } else {
    out.backoffBaseMs = DEFAULT_BACKOFF_BASE_MS;
    out.backoffMaxMs = 10 * DEFAULT_BACKOFF_BASE_MS;
  }
  if (retry.retryRemoteLocalities) out.retryRemoteLocalities = true;
  if (retry.retryIgnorePreviousHosts !== undefined) out.previousHosts = retry.retryIgnorePreviousHosts;
  return out;
}
