/**
 * meterBody inside workerd: the body reaches the client unchanged, and
 * telemetry learns when it has been sent, how big it was, and whether the
 * client went away first.
 */
import { describe, expect, it } from "vitest";
import { meterBody, SMALL_BODY_BYTES } from "../../../src/telemetry/telemetry.ts";

const streamOf = (chunks: string[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(new TextEncoder().encode(c));
      controller.close();
    },
  });

describe("meterBody", () => {
  it("leaves a small body of declared length untouched and reports its declared size", async () => {
    const upstream = new Response(streamOf(["hello ", "world"]), { status: 201, headers: { "content-length": "11", "x-a": "1" } });
    const { response, done } = meterBody(upstream);
    expect(response).toBe(upstream);
    expect(await done).toEqual({ bytes: 11, disconnected: false });
    expect(await response.text()).toBe("hello world");
  });

  it("passes a large encoded body whole: fetch() decodes it, so it is longer than its Content-Length (the encoded size, which is reported)", async () => {
    const decoded = "y".repeat(SMALL_BODY_BYTES * 2);
    const declared = String(SMALL_BODY_BYTES + 100);
    const upstream = new Response(streamOf([decoded]), { headers: { "content-length": declared, "content-encoding": "gzip" } });
    const { response, done } = meterBody(upstream);
    expect((await response.text()).length).toBe(decoded.length);
    expect(await done).toEqual({ bytes: Number(declared), disconnected: false });
  });

  it("passes a large body of declared length through natively, keeping its Content-Length", async () => {
    const chunk = "x".repeat(SMALL_BODY_BYTES);
    const upstream = new Response(streamOf([chunk, "tail"]), { status: 201, headers: { "content-length": String(SMALL_BODY_BYTES + 4), "x-a": "1" } });
    const { response, done } = meterBody(upstream);
    expect(response).not.toBe(upstream);
    expect(response.status).toBe(201);
    expect(response.headers.get("content-length")).toBe(String(SMALL_BODY_BYTES + 4));
    expect(response.headers.get("x-a")).toBe("1");
    expect((await response.text()).length).toBe(SMALL_BODY_BYTES + 4);
    expect(await done).toEqual({ bytes: SMALL_BODY_BYTES + 4, disconnected: false });
  });

  it("counts a body without a declared length as it streams", async () => {
    const { response, done } = meterBody(new Response(streamOf(["abc", "defg"])));
    expect(await response.text()).toBe("abcdefg");
    expect(await done).toEqual({ bytes: 7, disconnected: false });
  });

  it("reports a client that goes away before the end", async () => {
    for (const headers of [{ "content-length": String(SMALL_BODY_BYTES + 9) }, {}] as Record<string, string>[]) {
      let pull = 0;
      const slow = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pull++ < 2) controller.enqueue(new TextEncoder().encode("abc"));
          else return new Promise(() => {});
        },
      });
      const { response, done } = meterBody(new Response(slow, { headers }));
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      await reader.cancel("client went away");
      expect({ headers, ...(await done) }).toMatchObject({ headers, disconnected: true });
    }
  });

  it("settles at once for a response without a body", async () => {
    const { done } = meterBody(new Response(null, { status: 204 }));
    expect(await done).toEqual({ bytes: 0, disconnected: false });
  });
});
