/**
 * Configuration lifecycle against the real gateway: hot swap with no
 * failed request, an invalid config that never replaces a good one, a
 * stored snapshot that fails to load, and the admin endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, startGateway, type Gateway } from "../helpers/gateway.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { send } from "../helpers/http.ts";
import { routedService } from "../helpers/istio-yaml.ts";
import { openLocalStore } from "../../src/cli/stores.ts";
import { KEYS, readActive, readSnapshot } from "../../src/config/store.ts";
import { PACKED_FORMAT } from "../../src/config/snapshot-packing.ts";
import { main } from "../../src/cli/main.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let gw: Gateway;
let blue: Origin;
let green: Origin;

const config = (origin: Origin, extra = "") => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  configRefreshInterval: 1s
---
${routedService({ hosts: "app.example.com", name: "app", namespace: "prod", endpoints: [origin.port] })}
${extra}`;

beforeAll(async () => {
  [blue, green] = await Promise.all([startOrigin("blue"), startOrigin("green")]);
  gw = await startGateway(config(blue));
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([blue?.close(), green?.close()]);
});

const origin = async () => (await send(gw.url, "/", { host: "app.example.com" })).headers["x-origin"];

describe("hot swap", () => {
  it("switches to a version applied with `isthmus apply` within the refresh interval, without failing a request", async () => {
    expect(await origin()).toBe("blue");
    const statuses: number[] = [];
    let switchedAt: number | undefined;
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        const res = await send(gw.url, "/", { host: "app.example.com" });
        statuses.push(res.status);
        if (res.headers["x-origin"] === "green" && switchedAt === undefined) switchedAt = Date.now();
      }
    })();
    const dir = mkdtempSync(join(tmpdir(), "isthmus-apply-"));
    writeFileSync(join(dir, "v2.yaml"), config(green));
    const code = await main(["apply", "-f", dir, "--persist-to", gw.stateDir]);
    const appliedAt = Date.now();
    const deadline = Date.now() + 10_000;
    while (switchedAt === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    stop = true;
    await traffic;
    rmSync(dir, { recursive: true, force: true });
    expect(code).toBe(0);
    expect(switchedAt).toBeDefined();
    // configRefreshInterval is 1s: the isolate re-reads the pointer at most 1s after its last check.
    expect((switchedAt as number) - appliedAt).toBeLessThan(1_000 + 500);
    expect(statuses.length).toBeGreaterThan(10);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(await origin()).toBe("green");
  });

  it("re-applies edited files under `isthmus dev`", async () => {
    await gw.reconfigure(config(blue));
    expect(await origin()).toBe("blue");
    await gw.reconfigure(config(green));
    expect(await origin()).toBe("green");
  });

  it("reports an invalid config and keeps serving the previous version", async () => {
    const serving = await gw.reconfigureInvalid(config(blue, "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad}\nspec:\n  hots: [x]\n"));
    expect(gw.output()).toMatch(/config\.yaml:\d+: error: VirtualService\/default\/bad: spec\.hots: unknown field "hots" \(did you mean "hosts"\?\)/);
    const status = (await (await gw.admin("/status")).json()) as { serving: string };
    expect(status.serving).toBe(serving);
    expect(await origin()).toBe("green");
  });
});

describe("a stored snapshot that fails to load", () => {
  it("keeps the last good version serving and reports the failure on /status", async () => {
    const before = (await (await gw.admin("/status")).json()) as { serving: string };
    const store = await openLocalStore(gw.stateDir, "isthmus-config");
    try {
      const active = await readActive(store);
      await store.put(KEYS.snapshot("deadbeef0000"), "{ not json");
      await store.put(KEYS.active, JSON.stringify({ version: "deadbeef0000", appliedAt: new Date().toISOString(), previous: active?.version }));
      let status: { serving: string; lastError: { version: string; message: string } | null } | undefined;
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        status = (await (await gw.admin("/status")).json()) as typeof status;
        if (status?.lastError) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(status?.lastError?.version).toBe("deadbeef0000");
      expect(status?.serving).toBe(before.serving);
      expect(await origin()).toBe("green");
    } finally {
      const active = await readActive(store);
      if (active?.previous) await store.put(KEYS.active, JSON.stringify({ version: active.previous, appliedAt: new Date().toISOString() }));
      await store.close();
    }
  });
});

describe("admin endpoint", () => {
  it("requires the bearer token", async () => {
    expect((await fetch(`${gw.url}/__isthmus/status`)).status).toBe(401);
    expect((await fetch(`${gw.url}/__isthmus/status`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    const ok = await fetch(`${gw.url}/__isthmus/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(ok.status).toBe(200);
  });

  it("shows the snapshot being served", async () => {
    const status = (await (await gw.admin("/status")).json()) as { serving: string; resources: string[] };
    const snapshot = (await (await gw.admin("/config")).json()) as { version: string; clusters: Record<string, unknown> };
    expect(snapshot.version).toBe(status.serving);
    expect(status.resources).toContain("VirtualService/prod/app");
    expect(Object.keys(snapshot.clusters)).toContain("outbound|80||app.prod.internal");
    // The compiled form, though the store holds it packed (virtual hosts as text of their own).
    const store = await openLocalStore(gw.stateDir, "isthmus-config");
    try {
      const stored = JSON.parse((await store.get(KEYS.snapshot(status.serving))) ?? "null") as { format: number };
      expect(stored.format).toBe(PACKED_FORMAT);
      expect(snapshot).toEqual(await readSnapshot(store, status.serving));
      const compiled = snapshot as unknown as { format: number; virtualHosts: { name: string; routes: unknown[] }[]; rules: { source: string }[] };
      expect(compiled.format).toBe(1);
      expect(compiled.virtualHosts.find((vh) => vh.name === "app.example.com")?.routes.length).toBeGreaterThan(0);
      expect(compiled.rules.map((r) => r.source)).toContain("VirtualService/prod/app");
    } finally {
      await store.close();
    }
  });
});
