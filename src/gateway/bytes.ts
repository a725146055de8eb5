/**
 * Bodies read into memory: up to a cap, joined into one array, or put back
 * in front of what the stream still has.
 */

/** What `readAtMost` read: the chunks in order, their size in all, and whether the stream ended. */
export interface BodyHead {
  chunks: Uint8Array[];
  size: number;
  done: boolean;
}

/**
 * Reads `reader` until the stream ends or more than `cap` bytes have come
 * (the chunk that crosses the cap is kept, so `size > cap` says the body is
 * longer than the cap). The reader is left open: cancel it, or hand it to
 * `replay`.
 *
 * @example
 * const reader = body.getReader();
 * const head = await readAtMost(reader, 65_536);
 * const whole = head.done ? concatBytes(head.chunks, head.size) : replay(head.chunks, reader);
 */
export async function readAtMost(reader: ReadableStreamDefaultReader<Uint8Array>, cap: number): Promise<BodyHead> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size <= cap) {
    const { done, value } = await reader.read();
    if (done) return { chunks, size, done: true };
    chunks.push(value);
    size += value.byteLength;
  }
  return { chunks, size, done: false };
}

/** A stream of `head` followed by whatever `reader` still has; cancelling it cancels the reader. */
export function replay(head: readonly Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
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

/** Concatenates `chunks` (`size` bytes in all) into one array; a single chunk is returned as is. */
export function concatBytes(chunks: readonly Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1 && chunks[0]?.byteLength === size) return chunks[0];
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}
