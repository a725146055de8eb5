/**
 * The request body as the attempts send it. A retry must resend the body,
 * and a stream can be read only once, so a body is buffered when it fits
 * `GatewayConfig.limits.maxRetryBodyBytes` (Envoy buffers up to its
 * request buffer limit for the same reason); a larger body is streamed and
 * the request gets one attempt.
 */
import { concatBytes } from "../gateway/bytes.ts";

export type UpstreamBody =
  | { type: "none" }
  /** Buffered: every attempt can send it. */
  | { type: "bytes"; bytes: Uint8Array }
  /** Streamed: only one attempt can send it. */
  | { type: "stream"; stream: ReadableStream<Uint8Array> };

/** What the attempts send for a request without a body (one object for all: nothing changes it). */
export const NO_UPSTREAM_BODY: UpstreamBody = Object.freeze({ type: "none" });

/** Methods whose body fetch() refuses to send. */
const NO_BODY = new Set(["GET", "HEAD"]);

/**
 * Buffers `body` when it is at most `cap` bytes. Without a Content-Length
 * it reads up to `cap`; if the body goes on, the bytes read so far are put
 * back in front of the rest and the result is a stream.
 *
 * @example
 * const body = await replayableBody(request.body, "POST", 12, 65_536); // { type: "bytes", ... }
 */
export async function replayableBody(body: ReadableStream<Uint8Array> | null, method: string, contentLength: number | undefined, cap: number): Promise<UpstreamBody> {
  if (body === null || NO_BODY.has(method)) return NO_UPSTREAM_BODY;
  if (contentLength !== undefined && contentLength > cap) return { type: "stream", stream: body };
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size > cap) return { type: "stream", stream: resume(chunks, reader) };
  }
  return { type: "bytes", bytes: concatBytes(chunks, size) };
}

/** A stream of `head` followed by whatever `reader` still has. */
function resume(head: Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i < head.length) {
        controller.enqueue(head[i++] as Uint8Array);
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
