/**
 * Sending a request to a cluster: circuit breaker admission, then attempts
 * (each to an endpoint chosen for it) until one gives a response the retry
 * policy accepts, retries run out, or the route timeout passes.
 *
 * - The route timeout bounds everything: admission, every attempt and the
 *   backoff between them (504 `upstream request timeout`, flag UT), and
 *   then the response body, as Envoy's covers the whole response: a body
 *   still arriving when it passes is cut off (`bodyExpired`). Like Envoy's,
 *   it runs from the end of the downstream request: a streamed body's
 *   upload time does not count against it.
 * - `perTryTimeout` bounds each attempt, from the same point, until its
 *   response headers (Envoy ignores it once the response has started).
 * - A request slot of `http2MaxRequests` is held until the response body
 *   has been sent, as Envoy holds it until the stream ends.
 * - Every attempt carries `x-envoy-attempt-count`, and its result feeds
 *   the cluster's outlier detector.
 * - A retry goes to an endpoint not tried yet when one is available
 *   (previous hosts; not for consistent-hash clusters unless
 *   `retryIgnorePreviousHosts` says so), and with `retryRemoteLocalities`
 *   to other priority levels (Envoy's previous_priorities).
 * - When retries run out the last response (or local reply) is returned
 *   with flag URX; a retry refused by the circuit breaker returns it with UO.
 * - The response bodies of abandoned attempts are cancelled at once: the
 *   Workers runtime allows six open connections per request.
 */
import type { ClusterDef, EndpointDef, RetryDef } from "../config/snapshot.ts";
import { limitBody } from "../gateway/hygiene.ts";
import { badRequest, REPLIES, type LocalReply, type ResponseFlag } from "../gateway/local-reply.ts";
import type { Balancer } from "../routing/balancer.ts";
import type { Fetch } from "../routing/forward.ts";
import type { Ejection, Observation } from "./outlier.ts";
import { pickEndpoint } from "./picker.ts";
import { withDeclaredLength, type UpstreamBody } from "./request-body.ts";
import { watchedBody, type BodyEnd, type BodyWatch } from "./response-body.ts";
import { isEncoded, parseLength } from "../gateway/content-length.ts";
import { backoffMs, excludedLevels, retriable, type AttemptOutcome } from "./retry-policy.ts";
import type { UpstreamState } from "./state.ts";

export interface AttemptsInput {
  cluster: ClusterDef;
  policy: RetryDef;
  /** Retry non-idempotent methods after any retriable failure. */
  retryAnyMethod: boolean;
  method: string;
  /**
   * Upstream request headers. Each attempt sets its attempt count (and the
   * observer its trace context) on them just before its Request is built,
   * which copies them: no attempt sees another's values, and no extra copy
   * is made (a header copy costs ~15 µs of workerd CPU per request).
   */
  headers: Headers;
  body: UpstreamBody;
  url: (endpoint: EndpointDef) => string;
  /** Route timeout in ms (absent: none). */
  timeoutMs?: number;
  /** Cap on a streamed body (a buffered one was measured already). */
  maxBodyBytes: number;
  /** Told a streamed body's size once it has been read to its end. */
  bodyRead?: (size: number) => void;
  /** The request's locality and the gateway's labels, for locality load balancing. */
  client: string | undefined;
  gatewayLabels: Record<string, string> | undefined;
  /** Consistent-hash key of the request, when the cluster hashes. */
  hash?: number;
  fetch: Fetch;
  state: UpstreamState;
  balancer: Balancer;
  random: () => number;
  sleep: (ms: number) => Promise<void>;
  waitUntil: (promise: Promise<unknown>) => void;
  /** Snapshot version, for ejection reports. */
  version: string;
  /** Told about each attempt (telemetry: timings, trace context headers); absent costs nothing. */
  observer?: AttemptObserver;
  /** Called when the route timeout passes while the response body is still arriving (the body is then cut off). */
  bodyExpired?: () => void;
  /** A watched body's bytes are counted (telemetry reports them); else only a declared length is known. */
  countBody?: boolean;
}

/** What one attempt ended with. */
export type AttemptEnd = { status: number } | { failure: "connect-failure" | "per-try-timeout" | "route-timeout" | "body-too-large" | "body-unreadable" };

export interface AttemptObserver {
  /** Just before an attempt is sent; may add headers to it (trace context). */
  sending(attempt: number, endpoint: EndpointDef, url: string, headers: Headers): void;
  /** When it has ended, with the ejection it caused, if any. */
  ended(attempt: number, end: AttemptEnd, ejection: Ejection | undefined): void;
}

export type AttemptsResult =
  | {
      ok: true;
      response: Response;
      endpoint: EndpointDef;
      attempts: number;
      flags: ResponseFlag[];
      /**
       * The body to send in place of `response.body` when it is watched to
       * its end (watchedBody: a timeout still runs over it, or a circuit
       * breaker slot is held until it ends); absent: `response.body` as it is.
       */
      body?: ReadableStream<Uint8Array>;
      /** Settles when `body` has ended, with its size when known (telemetry waits for it instead of piping the body again). */
      bodyDone?: Promise<BodyEnd>;
    }
  | { ok: false; reply: LocalReply; endpoint?: EndpointDef; attempts: number; flags: ResponseFlag[] };

type Sent =
  | { kind: "attempt"; outcome: AttemptOutcome; response?: Response }
  | { kind: "route-timeout" }
  | { kind: "body-too-large" }
  /** The client's streamed body failed mid-way (malformed framing, or the client left): not the endpoint's fault. */
  | { kind: "body-unreadable" };

export async function sendWithRetries(input: AttemptsInput): Promise<AttemptsResult> {
  // Abort signals cost workerd real work per fetch, so they exist only when something can abort:
  // a route timeout here, a per-try timeout or a streamed body per attempt (sendOnce).
  const timeoutMs = input.timeoutMs;
  const route = timeoutMs !== undefined ? new AbortController() : undefined;
  let current: AbortController | undefined;
  let routeTimer: ReturnType<typeof setTimeout> | undefined;
  let routeDeadline: number | undefined;
  let settled = false;
  // Envoy starts the route timeout at the end of the downstream request. A buffered body was read
  // whole before this point, so its clock starts now; a streamed one is still arriving, so its clock
  // starts again once the attempt has read it to its end (the wait for admission is bounded too).
  const startClock =
    timeoutMs !== undefined
      ? () => {
          if (settled) return;
          if (routeTimer !== undefined) clearTimeout(routeTimer);
          routeDeadline = Date.now() + timeoutMs;
          routeTimer = setTimeout(() => {
            route?.abort();
            current?.abort();
          }, timeoutMs);
        }
      : undefined;
  startClock?.();
  const routeSignal = route?.signal;
  const limits = input.state.limits(input.cluster.name);
  try {
    const admission = await limits.acquire(input.cluster.connectionPool, routeSignal);
    if (admission === "overflow") return { ok: false, reply: REPLIES.overflow, attempts: 0, flags: [] };
    if (admission === "timeout") return { ok: false, reply: REPLIES.timeout, attempts: 0, flags: [] };
    if (input.body.type === "stream" && routeTimer !== undefined) {
      clearTimeout(routeTimer);
      routeTimer = undefined;
      routeDeadline = undefined;
    }
    // The request slot is held until the response body ends when a request limit counts it.
    let handedOver = false;
    try {
      const result = await attempts(input, routeSignal, (c) => (current = c), startClock);
      const holdSlot = input.cluster.connectionPool?.maxRequests !== undefined;
      if (result.ok && (holdSlot || routeDeadline !== undefined)) {
        handedOver = watchBody(result, routeDeadline, input, holdSlot ? () => limits.release() : undefined);
      }
      return result;
    } finally {
      if (!handedOver) limits.release();
    }
  } finally {
    settled = true;
    if (routeTimer !== undefined) clearTimeout(routeTimer);
  }
}

/**
 * Sets `result.body` to the response body watched to its end: the route
 * deadline runs over it, and `release` (the circuit breaker's request slot)
 * is called when it ends. Returns whether `release` was handed over. A
 * response without a body and a WebSocket's 101 are not watched: Envoy
 * starts its timeouts at the end of the downstream request, which an
 * upgraded connection never has. The last attempt's per-try timeout is
 * over once the response has started (Envoy lets it continue up to the
 * route timeout).
 */
function watchBody(result: AttemptsResult & { ok: true }, routeDeadline: number | undefined, input: AttemptsInput, release: (() => void) | undefined): boolean {
  const { response } = result;
  const body = response.body;
  if (!body || response.status === 101) return false;
  const headers = response.headers;
  // fetch() hands over an encoded body decoded, while its Content-Length counts the encoded bytes.
  const length = isEncoded(headers.get("content-encoding")) ? undefined : parseLength(headers.get("content-length"));
  const watch: BodyWatch = { ended: release, count: input.countBody === true };
  if (routeDeadline !== undefined) {
    watch.deadlineMs = Math.max(0, routeDeadline - Date.now());
    watch.expired = input.bodyExpired;
  }
  const watched = watchedBody(body, length, watch);
  // Without it the runtime may end the request with the last byte, before `ended` runs: a slot would leak.
  input.waitUntil(watched.done);
  result.body = watched.body;
  result.bodyDone = watched.done;
  return release !== undefined;
}

async function attempts(
  input: AttemptsInput,
  routeSignal: AbortSignal | undefined,
  track: (c: AbortController) => void,
  startRouteClock: (() => void) | undefined,
): Promise<AttemptsResult> {
  const { cluster, policy, state } = input;
  const limits = state.limits(cluster.name);
  const previousHosts = policy.previousHosts ?? !cluster.consistentHash;
  const tried = new Set<number>();
  const levels: number[] = [];
  const flags: ResponseFlag[] = [];
  let last: { response?: Response; reply?: LocalReply; endpoint: EndpointDef } | undefined;
  let holdingRetry = false;

  const finish = (extra?: ResponseFlag): AttemptsResult => {
    if (holdingRetry) limits.endRetry();
    if (extra) flags.push(extra);
    const made = levels.length;
    if (last?.response) return { ok: true, response: last.response, endpoint: last.endpoint, attempts: made, flags };
    return { ok: false, reply: last?.reply ?? REPLIES.noHealthyUpstream, endpoint: last?.endpoint, attempts: made, flags };
  };
  const replace = async (next: { response?: Response; reply?: LocalReply; endpoint: EndpointDef }) => {
    await discard(last?.response);
    last = next;
  };

  for (let attempt = 1; ; attempt++) {
    const pick = pickEndpoint({
      cluster,
      client: input.client,
      gatewayLabels: input.gatewayLabels,
      healthy: (i) => state.healthy(cluster, cluster.endpoints[i] as EndpointDef),
      // Every field written, present or not: a conditional spread gives the object a shape of its own per combination.
      hash: input.hash,
      exclude: previousHosts ? tried : undefined,
      excludeLevels: policy.retryRemoteLocalities ? excludedLevels(levels, attempt) : undefined,
      balancer: input.balancer,
      random: input.random,
    });
    if (!pick) return finish();
    tried.add(pick.index);
    levels.push(pick.level);
    const endpoint = pick.endpoint;

    const abortable = routeSignal !== undefined || perTryTimeoutOf(input.policy) !== undefined || input.body.type === "stream";
    const controller = abortable ? new AbortController() : undefined;
    if (controller) {
      track(controller);
      if (routeSignal?.aborted) controller.abort();
    }
    const done = input.balancer.begin(cluster, endpoint);
    let sent: Sent;
    try {
      sent = await sendOnce(input, endpoint, attempt, controller, routeSignal, startRouteClock);
    } finally {
      done();
      if (holdingRetry) limits.endRetry();
      holdingRetry = false;
    }

    if (sent.kind === "route-timeout") {
      const ejection = state.observe(cluster, endpoint, { type: "timeout" }, input.waitUntil, input.version);
      input.observer?.ended(attempt, { failure: "route-timeout" }, ejection);
      await replace({ reply: REPLIES.timeout, endpoint });
      return finish();
    }
    if (sent.kind === "body-too-large") {
      input.observer?.ended(attempt, { failure: "body-too-large" }, undefined);
      await replace({ reply: badRequest(413, "payload too large"), endpoint });
      return finish();
    }
    if (sent.kind === "body-unreadable") {
      // As a buffered body that fails (replayableBody): 400, and no mark against the endpoint's health.
      input.observer?.ended(attempt, { failure: "body-unreadable" }, undefined);
      await replace({ reply: badRequest(400, "bad request"), endpoint });
      return finish();
    }
    const outcome = sent.outcome;
    const ejection = state.observe(cluster, endpoint, observationOf(outcome), input.waitUntil, input.version);
    input.observer?.ended(attempt, outcome.type === "response" ? { status: outcome.status } : { failure: outcome.type }, ejection);
    if (sent.response) await replace({ response: sent.response, endpoint });
    else await replace({ reply: outcome.type === "per-try-timeout" ? REPLIES.perTryTimeout : attempt > 1 ? REPLIES.retriedConnectFailure : REPLIES.connectFailure, endpoint });

    if (!retriable(policy, outcome, input.method, input.retryAnyMethod)) return finish();
    if (attempt > policy.attempts) return finish("URX");
    // A streamed body was consumed by this attempt and cannot be sent again.
    if (input.body.type === "stream") return finish();
    if (!limits.tryRetry(cluster.connectionPool, cluster.retryBudget)) return finish("UO");
    holdingRetry = true;
    const wait = backoffMs(policy, attempt, input.random);
    if (wait > 0) await sleepUnlessAborted(input.sleep, wait, routeSignal);
    if (routeSignal?.aborted) {
      await replace({ reply: REPLIES.timeout, endpoint });
      return finish();
    }
  }
}

/**
 * One attempt. Its per-try timeout, like Envoy's, runs from the end of the
 * downstream request: at once for a buffered body, and for a streamed one
 * from when the attempt has read it to its end (which also starts the
 * route's clock again, `bodyEnded`).
 */
async function sendOnce(
  input: AttemptsInput,
  endpoint: EndpointDef,
  attempt: number,
  controller: AbortController | undefined,
  routeSignal: AbortSignal | undefined,
  bodyEnded: (() => void) | undefined,
): Promise<Sent> {
  let perTryTimedOut = false;
  let tooLarge = false;
  let unreadable = false;
  let over = false;
  const perTryMs = perTryTimeoutOf(input.policy);
  let perTry: ReturnType<typeof setTimeout> | undefined;
  const startPerTry =
    perTryMs === undefined
      ? undefined
      : () => {
          perTry = setTimeout(() => {
            perTryTimedOut = true;
            controller?.abort();
          }, perTryMs);
        };
  const headers = input.headers;
  headers.set("x-envoy-attempt-count", String(attempt));
  const url = input.url(endpoint);
  input.observer?.sending(attempt, endpoint, url, headers);
  let body: BodyInit | null = null;
  if (input.body.type === "bytes") body = input.body.bytes.slice();
  if (input.body.type === "stream") {
    const limited = limitBody(input.body.stream, {
      max: input.maxBodyBytes,
      onExceeded: () => {
        tooLarge = true;
        controller?.abort();
      },
      onEnd: (size) => {
        if (!over) startPerTry?.();
        bodyEnded?.();
        input.bodyRead?.(size);
      },
      // The client went away mid-upload (or its framing broke): reset the upstream request rather than let it look complete.
      onFailed: () => {
        unreadable = true;
        controller?.abort();
      },
    });
    body = withDeclaredLength(limited, input.body.length);
  } else startPerTry?.();
  try {
    const init: RequestInit = { method: input.method, headers, body, redirect: "manual" };
    if (controller) init.signal = controller.signal;
    const response = await input.fetch(url, init);
    if (tooLarge) {
      await discard(response);
      return { kind: "body-too-large" };
    }
    return { kind: "attempt", outcome: { type: "response", status: response.status, headers: response.headers }, response };
  } catch {
    if (tooLarge) return { kind: "body-too-large" };
    if (unreadable) return { kind: "body-unreadable" };
    if (routeSignal?.aborted) return { kind: "route-timeout" };
    if (perTryTimedOut) return { kind: "attempt", outcome: { type: "per-try-timeout" } };
    return { kind: "attempt", outcome: { type: "connect-failure" } };
  } finally {
    over = true;
    if (perTry !== undefined) clearTimeout(perTry);
  }
}

function observationOf(outcome: AttemptOutcome): Observation {
  switch (outcome.type) {
    case "response":
      return { type: "status", status: outcome.status };
    case "connect-failure":
      return { type: "connect-failure" };
    case "per-try-timeout":
      return { type: "timeout" };
  }
}

async function discard(response: Response | undefined): Promise<void> {
  try {
    await response?.body?.cancel();
  } catch {
    // Already closed or errored: nothing to free.
  }
}

/** The per-try timeout in effect: `perTryTimeout` applies only while the route retries (`attempts > 0`). */
function perTryTimeoutOf(policy: RetryDef): number | undefined {
  return policy.attempts > 0 ? policy.perTryTimeoutMs : undefined;
}

function sleepUnlessAborted(sleep: (ms: number) => Promise<void>, ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return sleep(ms);
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const onAbort = () => resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    void sleep(ms).then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}
