/**
 * Watching an upstream response's body on its way to the client, for what
 * Envoy ties to the end of the response rather than to its headers:
 *
 * - The route timeout (and the per-try timeout) runs until the response is
 *   complete: when it passes while the body is still arriving, the
 *   upstream request is reset and, the response having started, so is the
 *   client's stream (it sees the body cut short). Envoy logs the request
 *   with flag UT and the status already sent.
 * - A circuit breaker's request slot (`http2MaxRequests`) is held until the
 *   stream ends, so a slow download or an event stream counts against it.
 */

export interface BodyWatch {
  /** Cut the body off this many ms from now unless it has ended by then (`expired` is called first). */
  deadlineMs?: number;
  expired?: () => void;
  /** Called once when the body has been sent, cut off, or abandoned by the client. */
  ended?: () => void;
}

/**
 * Returns the body to send the client in place of `body`: the same bytes,
 * piped natively, watched as `watch` asks, and `done`, which settles once
 * the body has ended: keep the request alive until then (waitUntil), or
 * the runtime drops what was to run after the response was sent. A
 * declared `length` is kept (the client still gets a Content-Length). A
 * cut-off cancels the upstream body, which resets its request.
 *
 * @example
 * const { body, done } = watchedBody(upstream.body, 4096, { deadlineMs: 1_500, expired: () => record.flags.push("UT") });
 * ctx.waitUntil(done);
 * return new Response(body, upstream);
 */
export function watchedBody(body: ReadableStream<Uint8Array>, length: number | undefined, watch: BodyWatch): { body: ReadableStream<Uint8Array>; done: Promise<void> } {
  const cut = watch.deadlineMs !== undefined ? new AbortController() : undefined;
  const timer =
    cut &&
    setTimeout(() => {
      watch.expired?.();
      cut.abort(new Error("upstream request timeout"));
    }, watch.deadlineMs);
  const ended = () => {
    if (timer !== undefined) clearTimeout(timer);
    watch.ended?.();
  };
  const pipe = passThrough(length);
  const done = body.pipeTo(pipe.writable, cut ? { signal: cut.signal } : {}).then(ended, ended);
  return { body: pipe.readable, done };
}

function passThrough(length: number | undefined): ReadableWritablePair<Uint8Array, Uint8Array> {
  if (length !== undefined && typeof FixedLengthStream === "function") return new FixedLengthStream(length);
  if (typeof IdentityTransformStream === "function") return new IdentityTransformStream();
  return new TransformStream<Uint8Array, Uint8Array>();
}
