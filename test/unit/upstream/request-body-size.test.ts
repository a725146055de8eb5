/**
 * The size telemetry reports for a request body sent without Content-Length
 * (chunked, or any HTTP/2 client): measured as the gateway reads it, whether
 * the body was buffered for retries or streamed to the origin; and a body
 * that fails while it is buffered.
 */
import { describe, expect, it } from "vitest";
import { runPipeline } from "../../../src/gateway/pipeline.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { UpstreamState } from "../../../src/upstream/state.ts";
import { pipelineDeps, serviceEntry, snapshotOf, virtualService } from "../support.ts";

/** A body of `parts` chunks of `size` bytes, with no declared length. */
const chunked = (parts: number, size: number) => {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent++ === parts) return controller.close();
      controller.enqueue(new Uint8Array(size).fill(0x61));
    },
  });
};

describe("a request body without Content-Length", () => {
  it("is counted as read: buffered for retries, streamed with attempts 0, and over maxRetryBodyBytes", async () => {
    const runtime = hydrate(
      await snapshotOf(
        serviceEntry("app", ["app.internal"], { endpoints: [{ address: "10.0.0.1" }], resolution: "STATIC", location: "MESH_INTERNAL" }),
        virtualService("app", ["app.test"], [
          { match: [{ uri: { prefix: "/stream" } }], route: [{ destination: { host: "app.internal" } }], retries: { attempts: 0 } },
          { route: [{ destination: { host: "app.internal" } }] },
        ]),
      ),
    );
    const received: number[] = [];
    const deps = pipelineDeps({
      fetch: async (url, init) => {
        received.push((await new Request(url, init).arrayBuffer()).byteLength);
        return new Response("ok");
      },
      upstreams: new UpstreamState({ log: () => {} }),
    });
    const size = async (path: string, body: ReadableStream<Uint8Array>) => {
      const r = await runPipeline(new Request(`http://app.test${path}`, { method: "POST", body, duplex: "half" } as RequestInit), runtime, deps);
      expect(r.response.status).toBe(200);
      return r.context?.facts.bodyLength;
    };
    expect(await size("/buffered", chunked(3, 1_000))).toBe(3_000);
    expect(await size("/stream", chunked(3, 1_000))).toBe(3_000);
    expect(await size("/large", chunked(5, 20_000))).toBe(100_000);
    expect(received).toEqual([3_000, 3_000, 100_000]);
  });
});

describe("a request body that fails while it is read", () => {
  it("is answered 400 bad request with flag DPE, not thrown to the catch-all, and the origin is not called", async () => {
    const runtime = hydrate(
      await snapshotOf(
        serviceEntry("app", ["app.internal"], { endpoints: [{ address: "10.0.0.1" }], resolution: "STATIC", location: "MESH_INTERNAL" }),
        virtualService("app", ["app.test"], [{ route: [{ destination: { host: "app.internal" } }] }]),
      ),
    );
    let called = 0;
    const deps = pipelineDeps({
      fetch: async () => {
        called++;
        return new Response("ok");
      },
      upstreams: new UpstreamState({ log: () => {} }),
    });
    // What workerd does for malformed chunk framing or a client that goes away mid-body.
    let sent = false;
    const failing = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) return controller.error(new Error("Network connection lost."));
        sent = true;
        controller.enqueue(new Uint8Array(10));
      },
    });
    const r = await runPipeline(new Request("http://app.test/upload", { method: "POST", body: failing, duplex: "half" } as RequestInit), runtime, deps);
    expect([r.response.status, await r.response.text(), r.record.flags]).toEqual([400, "bad request", ["DPE"]]);
    expect(called).toBe(0);
  });
});
