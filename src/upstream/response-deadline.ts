/**
 * The part of a route's timeout that covers the response body. Envoy's
 * route timeout (and its per-try timeout) runs until the upstream response
 * is complete, not until its headers: when it passes while the body is
 * still arriving, the upstream request is reset and, the response having
 * started, so is the client's stream (it sees the body cut short). Envoy
 * logs the request with flag UT and the status already sent.
 */

/**
 * Returns the body to send the client in place of `body`: the same bytes,
 * piped natively, cut off `ms` from now unless it has ended by then, when
 * `expired` is called first and the upstream body is cancelled. A declared
 * `length` is kept (the client still gets a Content-Length).
 *
 * @example
 * const body = bodyWithDeadline(upstream.body, 1_500, contentLength, () => record.flags.push("UT"));
 * return new Response(body, upstream);
 */
export function bodyWithDeadline(body: ReadableStream<Uint8Array>, ms: number, length: number | undefined, expired: () => void): ReadableStream<Uint8Array> {
  const cut = new AbortController();
  const timer = setTimeout(() => {
    expired();
    cut.abort(new Error("upstream request timeout"));
  }, ms);
  const pipe = passThrough(length);
  const ended = () => clearTimeout(timer);
  // A pipe that fails (the deadline, or the client going away) cancels the upstream body, which resets its request.
  body.pipeTo(pipe.writable, { signal: cut.signal }).then(ended, ended);
  return pipe.readable;
}

function passThrough(length: number | undefined): ReadableWritablePair<Uint8Array, Uint8Array> {
  if (length !== undefined && typeof FixedLengthStream === "function") return new FixedLengthStream(length);
  if (typeof IdentityTransformStream === "function") return new IdentityTransformStream();
  return new TransformStream<Uint8Array, Uint8Array>();
}
