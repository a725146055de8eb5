/**
 * watchedBody inside workerd: a timeout that still runs when the response
 * headers arrive covers the body too, as Envoy's route timeout covers the
 * whole response; and whoever holds something until the body ends (a
 * circuit-breaker slot) learns when it has.
 */
import { describe, expect, it } from "vitest";
import { watchedBody } from "../../../src/upstream/response-body.ts";

const encode = (s: string) => new TextEncoder().encode(s);

/** A body that sends `parts` `gapMs` apart, noting whether it was cancelled. */
function trickle(parts: string[], gapMs: number) {
  const state = { cancelled: false };
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i > 0) await new Promise((r) => setTimeout(r, gapMs));
      if (i < parts.length) controller.enqueue(encode(parts[i++] as string));
      else controller.close();
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { body, state };
}

async function readAll(body: ReadableStream<Uint8Array>): Promise<{ text: string; error?: string }> {
  const reader = body.getReader();
  let text = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { text };
      text += new TextDecoder().decode(value);
    }
  } catch (err) {
    return { text, error: String(err) };
  }
}

describe("watchedBody", () => {
  it("passes a body that ends in time unchanged, and never reports it expired", async () => {
    const { body, state } = trickle(["a", "b", "c"], 10);
    let expired = 0;
    const out = await readAll(watchedBody(body, undefined, { deadlineMs: 200, expired: () => expired++ }).body);
    expect(out).toEqual({ text: "abc" });
    await new Promise((r) => setTimeout(r, 250));
    expect([expired, state.cancelled]).toEqual([0, false]);
  });

  it("cuts off a body still arriving at the deadline: the client's stream errors and the upstream body is cancelled", async () => {
    const { body, state } = trickle(["a", "b", "c", "d"], 100);
    let expired = 0;
    const out = await readAll(watchedBody(body, undefined, { deadlineMs: 150, expired: () => expired++ }).body);
    expect(out.text.length).toBeLessThan(4);
    expect(out.error).toBeDefined();
    expect(expired).toBe(1);
    expect(state.cancelled).toBe(true);
  });

  it("keeps a declared length, and cuts a body of declared length too", async () => {
    const whole = watchedBody(trickle(["ab", "cd"], 5).body, 4, { deadlineMs: 200, expired: () => {} }).body;
    const response = new Response(whole);
    expect(await response.text()).toBe("abcd");
    const { body, state } = trickle(["ab", "cd", "ef"], 100);
    const out = await readAll(watchedBody(body, 6, { deadlineMs: 150, expired: () => {} }).body);
    expect(out.error).toBeDefined();
    expect(state.cancelled).toBe(true);
  });

  it("cuts at once when the deadline has already passed", async () => {
    const { body } = trickle(["a", "b"], 50);
    let expired = 0;
    const out = await readAll(watchedBody(body, undefined, { deadlineMs: 0, expired: () => expired++ }).body);
    expect(out.error).toBeDefined();
    expect(expired).toBe(1);
  });

  it("tells `ended` once when the body has been sent, cut off, or abandoned by the client, and not before", async () => {
    let ended = 0;
    const sent = trickle(["a", "b"], 30);
    const { body: whole, done } = watchedBody(sent.body, undefined, { ended: () => ended++ });
    await new Promise((r) => setTimeout(r, 10));
    expect(ended).toBe(0);
    expect(await readAll(whole)).toEqual({ text: "ab" });
    await done;
    expect(ended).toBe(1);

    const cutOff = watchedBody(trickle(["a", "b", "c"], 100).body, undefined, { deadlineMs: 50, expired: () => {}, ended: () => ended++ }).body;
    await readAll(cutOff);
    await new Promise((r) => setTimeout(r, 0));
    expect(ended).toBe(2);

    const abandoned = trickle(["a", "b", "c"], 100);
    const reader = watchedBody(abandoned.body, undefined, { ended: () => ended++ }).body.getReader();
    await reader.read();
    await reader.cancel("client went away");
    // The pipe learns it at its next write, when the upstream sends its next part.
    await expect.poll(() => ended, { timeout: 1_000 }).toBe(3);
    expect(abandoned.state.cancelled).toBe(true);
  });

  it("reports how the body ended: its length, the bytes counted when asked to count, or none; and whether it went through whole", async () => {
    const fixed = watchedBody(trickle(["ab", "cd"], 5).body, 4, {});
    await readAll(fixed.body);
    expect(await fixed.done).toEqual({ bytes: 4, completed: true });
    const counted = watchedBody(trickle(["abc", "de"], 5).body, undefined, { count: true });
    await readAll(counted.body);
    expect(await counted.done).toEqual({ bytes: 5, completed: true });
    const uncounted = watchedBody(trickle(["abc", "de"], 5).body, undefined, {});
    await readAll(uncounted.body);
    expect(await uncounted.done).toEqual({ bytes: undefined, completed: true });
    const cut = watchedBody(trickle(["a", "b", "c"], 100).body, undefined, { count: true, deadlineMs: 50, expired: () => {} });
    await readAll(cut.body);
    expect((await cut.done).completed).toBe(false);
  });
});
