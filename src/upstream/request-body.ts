/**
 * The request body as the attempts send it. A retry must resend the body,
 * and a stream can be read only once, so a body is buffered when it fits
 * `GatewayConfig.limits.maxRetryBodyBytes` (Envoy buffers up to its
 * request buffer limit for the same reason); a larger body is streamed and
 * the request gets one attempt.
 */
import { concatBytes, readAtMost, replay, type BodyHead } from "../gateway/bytes.ts";

export type UpstreamBody =
  | { type: "none" }
  /** Buffered: every attempt can send it. */
  | { type: "bytes"; bytes: Uint8Array }
  /** Streamed: only one attempt can send it; `length` is the client's Content-Length, when it declared one. */
  | { type: "stream"; stream: ReadableStream<Uint8Array>; length?: number | undefined };

/** What the attempts send for a request without a body (one object for all: nothing changes it). */
export const NO_UPSTREAM_BODY: UpstreamBody = Object.freeze({ type: "none" });

/** Methods whose body fetch() refuses to send. */
const NO_BODY = new Set(["GET", "HEAD"]);

/**
 * Whether a request with `method` goes anywhere without a body: fetch()
 * refuses one for GET and HEAD, so a body such a client sends reaches
 * neither the upstream, a mirror nor an external authorizer.
 */
export function sendsNoBody(method: string): boolean {
  return NO_BODY.has(method);
}

/**
 * What `replayableBody` gives for a body that failed while it was read:
 * malformed chunked framing, or a client that went away (or half-closed)
 * before the body's end. workerd rejects the read with the same error
 * ("Network connection lost") for both, so the two cannot be told apart.
 */
export interface UnreadableBody {
  type: "unreadable";
}

const UNREADABLE_BODY: UnreadableBody = Object.freeze({ type: "unreadable" });

/**
 * Buffers `body` when it is at most `cap` bytes. Without a Content-Length
 * it reads up to `cap`; if the body goes on, the bytes read so far are put
 * back in front of the rest and the result is a stream. A body that fails
 * while it is read gives `{ type: "unreadable" }` (the caller answers it; Envoy's
 * codec answers a malformed body 400 with flag DPE).
 *
 * @example
 * const body = await replayableBody(request.body, "POST", 12, 65_536); // { type: "bytes", ... }
 */
export async function replayableBody(body: ReadableStream<Uint8Array> | null, method: string, contentLength: number | undefined, cap: number): Promise<UpstreamBody | UnreadableBody> {
  if (body === null || NO_BODY.has(method)) return NO_UPSTREAM_BODY;
  if (contentLength !== undefined && contentLength > cap) return { type: "stream", stream: body, length: contentLength };
  const reader = body.getReader();
  let head: BodyHead;
  try {
    head = await readAtMost(reader, cap);
  } catch {
    return UNREADABLE_BODY;
  }
  return head.done ? { type: "bytes", bytes: concatBytes(head.chunks, head.size) } : { type: "stream", stream: replay(head.chunks, reader) };
}

/**
 * A streamed body as fetch() should send it: with the length the client
 * declared. workerd sends a stream of unknown length chunked and drops
 * Content-Length (an origin that needs one, as S3's PUT does, answers 411),
 * where Envoy forwards the client's Content-Length; a FixedLengthStream
 * sends it, and resets the upstream connection if the body ends short.
 *
 * @example
 * init.body = withDeclaredLength(limited, 70_000); // sent with Content-Length: 70000
 */
export function withDeclaredLength(stream: ReadableStream<Uint8Array>, length: number | undefined): ReadableStream<Uint8Array> {
  if (length === undefined) return stream;
  return stream.pipeThrough(new FixedLengthStream(length));
}
