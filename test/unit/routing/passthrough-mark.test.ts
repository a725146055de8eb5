/**
 * The ALLOW_ANY passthrough's loop mark: a request that already carries this
 * isolate's mark, or more marks than any real chain of gateways, is a loop.
 */
import { describe, expect, it } from "vitest";
import { passthroughVia } from "../../../src/routing/passthrough-mark.ts";

describe("passthroughVia", () => {
  it("marks a request with this isolate's own value, the same every time", () => {
    const mark = passthroughVia(null);
    expect(mark).toMatch(/^[0-9a-f-]{36}$/);
    expect(passthroughVia("")).toBe(mark);
  });

  it("appends its mark to other gateways' marks", () => {
    const mark = passthroughVia(null) as string;
    expect(passthroughVia("gw-a")).toBe(`gw-a, ${mark}`);
    expect(passthroughVia("gw-a, gw-b")).toBe(`gw-a, gw-b, ${mark}`);
  });

  it("refuses a request that already carries its mark, wherever in the list", () => {
    const mark = passthroughVia(null) as string;
    expect(passthroughVia(mark)).toBeUndefined();
    expect(passthroughVia(`gw-a, ${mark}`)).toBeUndefined();
    expect(passthroughVia(`${mark},gw-b`)).toBeUndefined();
  });

  it("refuses a list longer than any real chain (8 marks)", () => {
    expect(passthroughVia(Array.from({ length: 7 }, (_, i) => `gw-${i}`).join(", "))).toMatch(/^gw-0, .*gw-6, /);
    expect(passthroughVia(Array.from({ length: 8 }, (_, i) => `gw-${i}`).join(", "))).toBeUndefined();
  });
});
