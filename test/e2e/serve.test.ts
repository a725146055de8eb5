/**
 * `isthmus serve`: the gateway on bare workerd with its state in a local
 * directory, in front of real Node origins. Routing, the stripping of edge
 * headers a client could forge, the client IP from the socket's peer, configuration changes (file edits and
 * `isthmus apply --state`), an invalid configuration, state that survives
 * a restart, Ctrl-C, and Durable Objects on local disk.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startGateway, type Gateway } from "../helpers/gateway.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { send, sendRaw } from "../helpers/http.ts";
import { serviceEntry } from "../helpers/istio-yaml.ts";
import { startIdp } from "../helpers/idp.ts";
import { main } from "../../src/cli/main.ts";
import { openDirectoryStore } from "../../src/cli/stores.ts";
import { readActive, readHistory } from "../../src/config/store.ts";

let blue: Origin;
let green: Origin;

const config = (origin: Origin, extra = "") => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  configRefreshInterval: 1s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: prod}
spec:
  hosts: [app.example.com]
  http:
  - match: [{uri: {prefix: /hello}}]
    directResponse: {status: 200, body: {string: "hello from ${origin.name}"}}
  - route:
    - destination: {host: app.prod.internal}
      headers: {request: {set: {x-served-by: isthmus}}}
---
${serviceEntry({ name: "app", namespace: "prod", endpoints: [origin.port] })}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admin-not-from-loopback, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from: [{source: {remoteIpBlocks: [127.0.0.0/8]}}]
    to: [{operation: {paths: [/admin/*]}}]
${extra}`;

beforeAll(async () => {
  [blue, green] = await Promise.all([startOrigin("blue"), startOrigin("green")]);
});

afterAll(async () => {
  await Promise.all([blue?.close(), green?.close()]);
});

const originOf = async (gw: Gateway) => (await send(gw.url, "/api", { host: "app.example.com" })).headers["x-origin"];

async function until(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("condition not met in time");
}

describe("isthmus serve", () => {
  let gw: Gateway;
  let stateDir: string;
  let inspectorPort: number;
  let healthPort: number;

  beforeAll(async () => {
    inspectorPort = await freePort();
    healthPort = await freePort();
    gw = await startGateway(config(blue), { command: "serve", args: ["--inspector-addr", `127.0.0.1:${inspectorPort}`, "--health-port", String(healthPort)] });
    stateDir = gw.stateDir;
  }, 120_000);

  afterAll(async () => {
    await gw?.stop();
  });

  it("routes to the origin, applies header operations and answers unknown hosts with 404 NR", async () => {
    const res = await send(gw.url, "/api/items?x=1", { host: "app.example.com" });
    expect(res.status).toBe(200);
    expect(res.headers["x-origin"]).toBe("blue");
    const seen = blue.received.at(-1);
    expect(seen?.url).toBe("/api/items?x=1");
    expect(seen?.headers["x-served-by"]).toBe("isthmus");
    expect(seen?.headers["x-forwarded-host"]).toBe("app.example.com");

    const direct = await send(gw.url, "/hello", { host: "app.example.com" });
    expect(direct.body).toBe("hello from blue");

    const unknown = await send(gw.url, "/", { host: "nobody.example.com" });
    expect(unknown.status).toBe(404);
  });

  it("answers readiness probes on --health-port with the version it serves; the same path on the gateway port is routed as usual", async () => {
    const active = await readActive(openDirectoryStore(join(stateDir, "config")));
    const ready = await send(`http://127.0.0.1:${healthPort}`, "/healthz/ready");
    expect({ status: ready.status, body: ready.body }).toEqual({ status: 200, body: `ready: config ${active?.version}\n` });
    expect((await send(`http://127.0.0.1:${healthPort}`, "/api", { host: "app.example.com" })).status).toBe(404);
    const routed = await send(gw.url, "/healthz/ready", { host: "app.example.com" });
    expect(routed.headers["x-origin"]).toBe("blue");
  });

  it("runs workerd and nothing else: the bundler's service process is gone once the Worker is bundled", () => {
    const children = readFileSync(`/proc/${gw.pid}/task/${gw.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    const names = children.map((pid) => readFileSync(`/proc/${pid}/comm`, "utf8").trim());
    expect(names).toEqual(["workerd"]);
  });

  it("strips client-sent Cloudflare edge headers, so a client cannot forge its IP: x-forwarded-for is the socket's peer", async () => {
    const before = blue.received.length;
    await send(gw.url, "/api", { host: "app.example.com", headers: { "cf-connecting-ip": "203.0.113.9", "cf-ipcountry": "XX", "true-client-ip": "203.0.113.9", "x-forwarded-for": "203.0.113.9" } });
    const seen = blue.received[before];
    expect(seen?.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen?.headers["cf-connecting-ip"]).toBeUndefined();
    expect(seen?.headers["cf-ipcountry"]).toBeUndefined();
    expect(seen?.headers["true-client-ip"]).toBeUndefined();
  });

  it("authorizes by the peer's address (remoteIpBlocks), which a client cannot forge with a header", async () => {
    expect((await send(gw.url, "/admin/users", { host: "app.example.com" })).status).toBe(403);
    expect((await send(gw.url, "/admin/users", { host: "app.example.com", headers: { "cf-connecting-ip": "203.0.113.9", "x-forwarded-for": "203.0.113.9" } })).status).toBe(403);
    expect((await send(gw.url, "/api/users", { host: "app.example.com" })).status).toBe(200);
  });

  it("closes a CONNECT at once: nothing tunnelled, no 500 and no uncaught-exception log per request", async () => {
    const before = blue.received.length;
    const started = Date.now();
    // workerd answers 200 itself before the Worker's connect() runs (it offers no way to refuse with a status).
    const out = await sendRaw(gw.url, "CONNECT app.example.com:80 HTTP/1.1\r\nHost: app.example.com:80\r\n\r\nGET /api HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(out.match(/^HTTP\/1\.1 \d{3}/gm)).toEqual(["HTTP/1.1 200"]);
    expect(blue.received.length).toBe(before);
    // Still serving, and the CONNECT left nothing in the log.
    expect((await send(gw.url, "/api", { host: "app.example.com" })).status).toBe(200);
    expect(gw.output()).not.toMatch(/connect\(\)|Uncaught/);
  });

  it("answers OPTIONS * with Envoy's 404 instead of forwarding it as a request for /", async () => {
    const before = blue.received.length;
    const out = await sendRaw(gw.url, "OPTIONS * HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n");
    expect(out).toMatch(/^HTTP\/1\.1 404 /);
    expect(blue.received.length).toBe(before);
  });

  it("counts each line of a repeated header against the 60 KiB header limit (workerd joins them into one entry)", async () => {
    const before = blue.received.length;
    const out = await sendRaw(gw.url, `GET /api HTTP/1.1\r\nHost: app.example.com\r\n${"X-A: b\r\n".repeat(12_000)}Connection: close\r\n\r\n`);
    // The gateway's own 431 (Node's origin would answer one too, past its 16 KiB, had the gateway sent the lines on).
    expect(out).toMatch(/^HTTP\/1\.1 431 [^]*\r\n\r\nrequest headers too large$/);
    expect(blue.received.length).toBe(before);
  });

  it("re-applies an edited file, and keeps serving when the edit is invalid", async () => {
    const version = await gw.reconfigure(config(green));
    expect(await originOf(gw)).toBe("green");
    const active = await readActive(openDirectoryStore(join(stateDir, "config")));
    expect(active?.version).toBe(version);

    const kept = await gw.reconfigureInvalid(config(green).replace("kind: ServiceEntry", "kind: ServiceEntryy"));
    expect(kept).toBe(version);
    expect(await originOf(gw)).toBe("green");
  });

  it("refuses a second serve on the same state directory, before it writes anything there", async () => {
    const errors: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void errors.push(args.join(" ")));
    try {
      expect(await main(["serve", "-f", gw.configDir, "--port", String(gw.port + 1), "--state", stateDir])).toBe(1);
    } finally {
      spy.mockRestore();
    }
    expect(errors).toEqual([expect.stringMatching(/^isthmus: the state directory .+ is in use by isthmus serve \(pid \d+\)/)]);
  });

  it("serves a version written by `isthmus apply --state DIR` within the refresh interval", async () => {
    const dir = mkdtempSync(join(tmpdir(), "isthmus-apply-"));
    try {
      writeFileSync(join(dir, "blue.yaml"), config(blue));
      expect(await main(["apply", "-f", dir, "--state", stateDir])).toBe(0);
      await until(async () => (await originOf(gw)) === "blue");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("opens workerd's V8 inspector on --inspector-addr, for DevTools and CPU profiles", async () => {
    const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json()) as { id: string; webSocketDebuggerUrl: string }[];
    expect(targets).toEqual([expect.objectContaining({ id: "isthmus", webSocketDebuggerUrl: expect.stringContaining(`:${inspectorPort}/isthmus`) })]);
    expect(await main(["serve", "-f", "examples/bookinfo/config", "--inspector-addr", "nonsense"])).toBe(2);
  });

  it("keeps its configuration store across a restart, and Ctrl-C stops workerd", async () => {
    const store = openDirectoryStore(join(stateDir, "config"));
    const history = await readHistory(store);
    // Newest first: blue (applied again with apply --state), green (the file edit).
    expect(history.map((h) => h.action)).toEqual(["apply", "apply"]);
    const greenVersion = history[1]?.version as string;

    const oldUrl = gw.url;
    await gw.stop({ keepState: true });
    await expect(send(oldUrl, "/api", { host: "app.example.com" })).rejects.toThrow();

    // Restart on the same state directory with the file that is already active: nothing new is applied.
    gw = await startGateway(config(blue), { command: "serve", stateDir });
    expect(await originOf(gw)).toBe("blue");
    expect((await readHistory(store)).map((h) => h.version)).toEqual(history.map((h) => h.version));

    // Versions stored before the restart can still be rolled back to.
    expect(await main(["rollback", "--to", greenVersion, "--state", stateDir])).toBe(0);
    await until(async () => (await originOf(gw)) === "green");
  });

  it("behind a trusted proxy (gatewayTopology.numTrustedProxies), takes the client from its X-Forwarded-For; ipBlocks still see the peer", async () => {
    const behindProxy = config(blue, `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: partners, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from: [{source: {remoteIpBlocks: [198.51.100.0/24]}}]
    to: [{operation: {paths: [/partner/*]}}]
  - from: [{source: {ipBlocks: [198.51.100.0/24]}}]
    to: [{operation: {paths: [/peer/*]}}]
`).replace("configRefreshInterval: 1s", "configRefreshInterval: 1s\n  gatewayTopology: {numTrustedProxies: 1}");
    await gw.reconfigure(behindProxy);
    const from = (path: string, xff: string) => send(gw.url, path, { host: "app.example.com", headers: { "x-forwarded-for": xff } });
    expect((await from("/partner/orders", "198.51.100.7")).status).toBe(403);
    // One trusted proxy: only the last address is its report; what the client wrote before it is not believed.
    const before = blue.received.length;
    expect((await from("/partner/orders", "198.51.100.7, 203.0.113.9")).status).toBe(200);
    expect(blue.received[before]?.headers["x-forwarded-for"]).toBe("198.51.100.7, 203.0.113.9, 127.0.0.1");
    // ipBlocks is the direct peer (127.0.0.1 here), whatever X-Forwarded-For says.
    expect((await from("/peer/orders", "198.51.100.7")).status).toBe(200);
  });

  it("never passes a spelling with _ of a header it sets or strips (x_user_id next to the claim header x-user-id); headersWithUnderscoresAction drops or refuses the others, as Envoy's", async () => {
    const idp = await startIdp();
    try {
      const withJwt = (action?: string) =>
        config(blue, `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: edge-jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: ${idp.issuer}
    jwksUri: ${idp.jwksUri}
    outputClaimToHeaders: [{header: x-user-id, claim: sub}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
`).replace("configRefreshInterval: 1s", `configRefreshInterval: 1s${action ? `\n  headersWithUnderscoresAction: ${action}` : ""}`);
      const token = await idp.sign({}, { subject: "alice" });
      const spoofed = { x_user_id: "admin", X_Forwarded_For: "203.0.113.9", X_Request_Id: "mine", "X-Envoy_Retry_On": "5xx", X_Isthmus_Mirror: "1", cf_connecting_ip: "203.0.113.9" };
      const call = async (path: string, headers: Record<string, string>) => {
        const before = blue.received.length;
        const res = await send(gw.url, path, { host: "app.example.com", headers: { ...headers, authorization: `Bearer ${token}` } });
        return { status: res.status, seen: blue.received.length > before ? blue.received[before]?.headers : undefined };
      };
      const underscored = (headers: object | undefined) => Object.keys(headers ?? {}).filter((n) => n.includes("_"));

      // ALLOW (Istio's default): only the header the gateway vouches for arrives, the client's spellings of it never.
      await gw.reconfigure(withJwt());
      const allowed = await call("/api/underscores", { ...spoofed, x_custom: "kept" });
      expect(allowed.status).toBe(200);
      expect(allowed.seen?.["x-user-id"]).toBe("alice");
      expect(allowed.seen?.["x-forwarded-for"]).toBe("127.0.0.1");
      expect(allowed.seen?.["x-request-id"]).not.toBe("mine");
      expect(underscored(allowed.seen)).toEqual(["x_custom"]);

      // DROP_HEADER: no name with _ reaches the origin.
      await gw.reconfigure(withJwt("DROP_HEADER"));
      const dropped = await call("/api/underscores", { ...spoofed, x_custom: "kept" });
      expect([dropped.status, dropped.seen?.["x-user-id"], underscored(dropped.seen)]).toEqual([200, "alice", []]);

      // REJECT_REQUEST: 400, never forwarded, logged with the details Envoy's HTTP/1 codec gives.
      await gw.reconfigure(withJwt("REJECT_REQUEST"));
      const refused = await call("/api/refused", { x_custom: "v" });
      expect([refused.status, refused.seen]).toEqual([400, undefined]);
      const line = () => gw.output().split("\n").find((l) => l.startsWith("{") && l.includes('"/api/refused"'));
      await until(async () => line() !== undefined);
      expect(JSON.parse(line() as string)).toMatchObject({ response_code: 400, response_flags: "DPE", response_code_details: "http1.unexpected_underscore" });
      expect((await call("/api/plain", {})).status).toBe(200);
    } finally {
      await idp.close();
    }
  });
});

describe("isthmus serve with a Durable Object class", () => {
  it("stores Durable Objects on local disk (SQLite-backed), so they survive a restart", async () => {
    const args = ["--config", "test/fixtures/serve-durable-object/wrangler.toml"];
    let gw = await startGateway(config(blue), { command: "serve", args });
    const stateDir = gw.stateDir;
    try {
      const counts: string[] = [];
      for (let i = 0; i < 3; i++) counts.push((await send(gw.url, "/__counter")).body);
      expect(counts).toEqual(["1", "2", "3"]);
      expect(await originOf(gw)).toBe("blue");
      await gw.stop({ keepState: true });
      gw = await startGateway(config(blue), { command: "serve", args, stateDir });
      expect((await send(gw.url, "/__counter")).body).toBe("4");
    } finally {
      await gw.stop();
    }
  }, 120_000);
});

describe("isthmus serve -f FILE", () => {
  it("keeps re-applying the file after saves that replace it (vim, sed -i: a new file renamed over the old)", async () => {
    const gw = await startGateway(config(blue), { command: "serve", watchFile: true });
    try {
      await gw.reconfigure(config(green), { atomic: true });
      expect(await originOf(gw)).toBe("green");
      // The watcher on the replaced file's inode would see nothing from here on.
      await gw.reconfigure(config(blue), { atomic: true });
      expect(await originOf(gw)).toBe("blue");
      await gw.reconfigure(config(green));
      expect(await originOf(gw)).toBe("green");
    } finally {
      await gw.stop();
    }
  }, 120_000);
});

describe("isthmus serve with a mounted ConfigMap", () => {
  it("re-applies when the ..data link is swapped to a new version of the files (Kubernetes, git-sync)", async () => {
    const gw = await startGateway(config(blue), { command: "serve" });
    try {
      // Lay the watched directory out as the kubelet does: files are links through ..data into a versioned directory.
      const write = (version: string, yaml: string) => {
        mkdirSync(join(gw.configDir, version));
        writeFileSync(join(gw.configDir, version, "config.yaml"), yaml);
      };
      const swap = (version: string) => {
        symlinkSync(version, join(gw.configDir, "..data_tmp"));
        renameSync(join(gw.configDir, "..data_tmp"), join(gw.configDir, "..data"));
      };
      write("..v1", config(blue));
      swap("..v1");
      rmSync(join(gw.configDir, "config.yaml"));
      symlinkSync("..data/config.yaml", join(gw.configDir, "config.yaml"));
      // The next version is written well before the link moves to it (git-sync prepares a worktree first).
      write("..v2", config(green));
      await new Promise((r) => setTimeout(r, 1500));
      expect(await originOf(gw)).toBe("blue");
      const before = gw.output().length;
      swap("..v2");
      await until(async () => (await originOf(gw)) === "green");
      // serve logs "applied" once its own poll sees the gateway serve the version, which can be after this test's request did.
      await until(async () => /isthmus: applied config \w+/.test(gw.output().slice(before)));
    } finally {
      await gw.stop();
    }
  }, 60_000);
});

describe("isthmus serve on SIGTERM (as Kubernetes stops a pod)", () => {
  it("finishes the requests in flight, refuses new connections, and exits only once workerd has", async () => {
    const slow = await startOrigin("slow");
    slow.respond((_req, res) => setTimeout(() => res.end("slow done"), 1500));
    const gw = await startGateway(config(slow), { command: "serve" });
    try {
      const inFlight = send(gw.url, "/api/slow", { host: "app.example.com" });
      await until(async () => slow.received.length > 0);
      process.kill(gw.pid, "SIGTERM");
      await new Promise((r) => setTimeout(r, 300));
      await expect(send(gw.url, "/api/after", { host: "app.example.com" })).rejects.toThrow(/ECONNREFUSED|ECONNRESET/);
      const alive = () => {
        try {
          process.kill(gw.pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      // The CLI is still there while the request is in flight, and leaves after it.
      expect(alive()).toBe(true);
      const res = await inFlight;
      expect({ status: res.status, body: res.body }).toEqual({ status: 200, body: "slow done" });
      await until(async () => !alive(), 10_000);
    } finally {
      await gw.stop();
      await slow.close();
    }
  }, 60_000);
});
