/**
 * Bodies read into memory up to a cap (src/gateway/bytes.ts), and two places
 * that do it: the retry buffer (upstream/request-body.ts) and the body sent
 * to an external authorizer (authz/ext-authz/client.ts). Streams come in
 * several chunks, so the caps fall inside and between them.
 */
import { describe, expect, it } from "vitest";
import { concatBytes, readAtMost, replay } from "../../../src/gateway/bytes.ts";
import { replayableBody } from "../../../src/upstream/request-body.ts";
import { bufferBody } from "../../../src/authz/ext-authz/client.ts";

const utf8 = new TextEncoder();

/** A stream of `parts` as separate chunks; `cancelled()` says whether (and why) its consumer cancelled it. */
function chunked(...parts: string[]): { stream: ReadableStream<Uint8Array>; cancelled: () => unknown } {
  let reason: unknown = "not cancelled";
  let i = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < parts.length) controller.enqueue(utf8.encode(parts[i++] as string));
      else controller.close();
    },
    cancel(why) {
      reason = why ?? "cancelled";
    },
  });
  return { stream, cancelled: () => reason };
}

const text = (stream: ReadableStream<Uint8Array> | null) => new Response(stream).text();

describe("readAtMost", () => {
  it("reads until the stream ends when it stays within the cap", async () => {
    const head = await readAtMost(chunked("abc", "def", "ghi").stream.getReader(), 9);
    expect([head.done, head.size, new TextDecoder().decode(concatBytes(head.chunks, head.size))]).toEqual([true, 9, "abcdefghi"]);
  });

  it("stops at the chunk that crosses the cap and leaves the rest unread", async () => {
    const { stream } = chunked("abc", "def", "ghi");
    const reader = stream.getReader();
    const head = await readAtMost(reader, 4);
    expect([head.done, head.size, head.chunks.length]).toEqual([false, 6, 2]);
    expect(await text(replay(head.chunks, reader))).toBe("abcdefghi");
  });

  it("reads an empty stream with a cap of 0 as ended", async () => {
    expect(await readAtMost(chunked().stream.getReader(), 0)).toEqual({ chunks: [], size: 0, done: true });
  });
});

describe("replay", () => {
  it("cancels the source when its reader is cancelled", async () => {
    const { stream, cancelled } = chunked("abc", "def", "ghi");
    const reader = stream.getReader();
    const head = await readAtMost(reader, 2);
    await replay(head.chunks, reader).cancel("client gone");
    expect(cancelled()).toBe("client gone");
  });
});

describe("the retry buffer", () => {
  it("buffers a body within maxRetryBodyBytes and streams a longer one whole", async () => {
    const small = await replayableBody(chunked("order", "=1").stream, "POST", undefined, 7);
    expect(small.type === "bytes" && new TextDecoder().decode(small.bytes)).toBe("order=1");
    const large = await replayableBody(chunked("order", "=1", "&more").stream, "POST", undefined, 7);
    expect(large.type).toBe("stream");
    expect(large.type === "stream" && (await text(large.stream))).toBe("order=1&more");
  });
});

describe("the body sent to an external authorizer", () => {
  it("sends the first maxRequestBytes when partial messages are allowed, and forwards the whole body", async () => {
    const buffered = await bufferBody(chunked("hello", " ", "world").stream, 7, true);
    if (!buffered.ok) throw new Error("refused");
    expect(new TextDecoder().decode(buffered.check)).toBe("hello w");
    expect(await text(buffered.replay)).toBe("hello world");
  });

  it("refuses a longer body when they are not, and cancels it", async () => {
    const { stream, cancelled } = chunked("hello", " ", "world", "!");
    expect(await bufferBody(stream, 7, false)).toEqual({ ok: false, tooLarge: true });
    expect(cancelled()).not.toBe("not cancelled");
  });

  it("reports a body that fails while it is read (malformed framing, a client gone) instead of throwing", async () => {
    let sent = false;
    const failing = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (!sent) {
          sent = true;
          controller.enqueue(new TextEncoder().encode("he"));
        } else controller.error(new Error("Network connection lost."));
      },
    });
    expect(await bufferBody(failing, 1_024, false)).toEqual({ ok: false, unreadable: true });
  });

  it("takes a body of exactly maxRequestBytes whole", async () => {
    const buffered = await bufferBody(chunked("hello", " w").stream, 7, false);
    if (!buffered.ok) throw new Error("refused");
    expect([new TextDecoder().decode(buffered.check), await text(buffered.replay)]).toEqual(["hello w", "hello w"]);
  });
});
