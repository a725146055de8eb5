/**
 * Watching an upstream response's body on its way to the client, for what
 * Envoy ties to the end of the response rather than to its headers:
 *
 * - The route timeout runs until the response is complete: when it passes
 *   while the body is still arriving, the upstream request is reset and,
 *   the response having started, so is the client's stream (it sees the
 *   body cut short). Envoy logs the request with flag UT and the status
 *   already sent. (A per-try timeout does not: once the response has
 *   started, Envoy lets it continue up to the route timeout.)
 * - A circuit breaker's request slot (`http2MaxRequests`) is held until the
 *   stream ends, so a slow download or an event stream counts against it.
 *
 * The body is piped once, natively where it can be: workerd cannot pipe
 * one TransformStream's readable into another's writable, so telemetry
 * takes its size from here (`BodyEnd`) instead of piping it again.
 */

export interface BodyWatch {
  /** Cut the body off this many ms from now unless it has ended by then (`expired` is called first). */
  deadlineMs?: number;
  expired?: () => void;
  /** Called once when the body has been sent, cut off, or abandoned by the client. */
  ended?: () => void;
  /** Count the bytes of a body without a usable length (for telemetry); a JavaScript stream then carries it. */
  count?: boolean;
}

/**
 * How a watched body ended: its size when known (the length when it was
 * sent whole, the bytes counted), and whether it was sent whole (false:
 * cut off by the deadline, or the client went away).
 */
export interface BodyEnd {
  bytes: number | undefined;
  completed: boolean;
}

/**
 * Returns the body to send the client in place of `body`: the same bytes,
 * piped once, watched as `watch` asks, and `done`, which settles once the
 * body has ended: keep the request alive until then (waitUntil), or the
 * runtime drops what was to run after the response was sent. `length` is
 * the declared length of the bytes `body` yields (undefined for an encoded
 * response, whose Content-Length counts the compressed bytes while fetch
 * hands over decoded ones): it is kept, so the client still gets a
 * Content-Length. A cut-off cancels the upstream body, which resets its
 * request. The runtime tells a pipe that the client went away only at its
 * next write, so an idle stream is noticed when the upstream next sends.
 *
 * @example
 * const { body, done } = watchedBody(upstream.body, 4096, { deadlineMs: 1_500, expired: () => record.flags.push("UT") });
 * ctx.waitUntil(done);
 * return new Response(body, upstream);
 */
export function watchedBody(body: ReadableStream<Uint8Array>, length: number | undefined, watch: BodyWatch): { body: ReadableStream<Uint8Array>; done: Promise<BodyEnd> } {
  const cut = watch.deadlineMs !== undefined ? new AbortController() : undefined;
  const timer =
    cut &&
    setTimeout(() => {
      watch.expired?.();
      cut.abort(new Error("upstream request timeout"));
    }, watch.deadlineMs);
  const pipe = passThrough(length, watch.count === true);
  const ended = (completed: boolean): BodyEnd => {
    if (timer !== undefined) clearTimeout(timer);
    watch.ended?.();
    return { bytes: pipe.bytes(completed), completed };
  };
  const done = body.pipeTo(pipe.writable, cut ? { signal: cut.signal } : {}).then(
    () => ended(pipe.complete()),
    () => ended(false),
  );
  return { body: pipe.readable, done };
}

export interface PassThrough extends ReadableWritablePair<Uint8Array, Uint8Array> {
  /** The body's size once it has ended, when known. */
  bytes(completed: boolean): number | undefined;
  /** Whether the whole body went through (a pipe may end without an error when the client cut it short). */
  complete(): boolean;
}

function passThrough(length: number | undefined, count: boolean): PassThrough {
  if (length !== undefined && typeof FixedLengthStream === "function") {
    const fixed = new FixedLengthStream(length);
    return { readable: fixed.readable, writable: fixed.writable, bytes: (completed) => (completed ? length : 0), complete: () => true };
  }
  if (!count && typeof IdentityTransformStream === "function") {
    const identity = new IdentityTransformStream();
    return { readable: identity.readable, writable: identity.writable, bytes: () => length, complete: () => true };
  }
  return countingStream();
}

/**
 * A JavaScript pass-through that counts the bytes going through it.
 * `complete()` is true once its flush ran: a pipe that ends without it was
 * cut short by the client (workerd may then end the pipe without an error).
 *
 * @example
 * const counter = countingStream();
 * await body.pipeTo(counter.writable); // counter.bytes(), counter.complete()
 */
export function countingStream(): PassThrough {
  let bytes = 0;
  let flushed = false;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      bytes += chunk.byteLength;
      controller.enqueue(chunk);
    },
    flush() {
      flushed = true;
    },
  });
  return { readable: counter.readable, writable: counter.writable, bytes: () => bytes, complete: () => flushed };
}
