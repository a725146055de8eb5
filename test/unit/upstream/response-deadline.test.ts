/**
 * bodyWithDeadline inside workerd: a timeout that still runs when the
 * response headers arrive covers the body too, as Envoy's route timeout
 * covers the whole response.
 */
import { describe, expect, it } from "vitest";
import { bodyWithDeadline } from "../../../src/upstream/response-deadline.ts";

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

describe("bodyWithDeadline", () => {
  it("passes a body that ends in time unchanged, and never reports it expired", async () => {
    const { body, state } = trickle(["a", "b", "c"], 10);
    let expired = 0;
    const out = await readAll(bodyWithDeadline(body, 200, undefined, () => expired++));
    expect(out).toEqual({ text: "abc" });
    await new Promise((r) => setTimeout(r, 250));
    expect([expired, state.cancelled]).toEqual([0, false]);
  });

  it("cuts off a body still arriving at the deadline: the client's stream errors and the upstream body is cancelled", async () => {
    const { body, state } = trickle(["a", "b", "c", "d"], 100);
    let expired = 0;
    const out = await readAll(bodyWithDeadline(body, 150, undefined, () => expired++));
    expect(out.text.length).toBeLessThan(4);
    expect(out.error).toBeDefined();
    expect(expired).toBe(1);
    expect(state.cancelled).toBe(true);
  });

  it("keeps a declared length, and cuts a body of declared length too", async () => {
    const whole = bodyWithDeadline(trickle(["ab", "cd"], 5).body, 200, 4, () => {});
    const response = new Response(whole);
    expect(await response.text()).toBe("abcd");
    const { body, state } = trickle(["ab", "cd", "ef"], 100);
    const out = await readAll(bodyWithDeadline(body, 150, 6, () => {}));
    expect(out.error).toBeDefined();
    expect(state.cancelled).toBe(true);
  });

  it("cuts at once when the deadline has already passed", async () => {
    const { body } = trickle(["a", "b"], 50);
    let expired = 0;
    const out = await readAll(bodyWithDeadline(body, 0, undefined, () => expired++));
    expect(out.error).toBeDefined();
    expect(expired).toBe(1);
  });
});
