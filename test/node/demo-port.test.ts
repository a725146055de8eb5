/**
 * `npm start -- --port N`: the demo's origins call back through the gateway
 * on the port the gateway serves, not on 8787.
 */
import { describe, expect, it } from "vitest";
import { demoPort } from "../../scripts/demo-port.ts";

describe("demoPort", () => {
  it("takes --port N or --port=N before PORT, and PORT before 8787", () => {
    expect(demoPort(["-f", "extra.yaml", "--port", "18787"], { PORT: "9000" })).toEqual({ port: "18787", given: true });
    expect(demoPort(["--port=18788"], {})).toEqual({ port: "18788", given: true });
    expect(demoPort(["-f", "extra.yaml"], { PORT: "9000" })).toEqual({ port: "9000", given: false });
    expect(demoPort([], {})).toEqual({ port: "8787", given: false });
  });
});
