/**
 * `isthmus serve` (and `isthmus dev`, the same supervisor) keeps following a
 * `-f` directory that is replaced rather than edited: a git-sync style
 * symlink swap (`ln -sfn wt2 current.tmp && mv -T current.tmp current`) and
 * a directory renamed over (`mv live live.old && mv live.new live`), after
 * which edits in the new directory are re-applied too. The watchers are on
 * the directory the path named when they started; src/cli/watch.ts re-binds
 * them when the path names another one.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { send } from "../helpers/http.ts";
import { BIN, NODE } from "./support.ts";

const ROOT = join(import.meta.dirname, "../..");
let dir = "";
let child: ChildProcess | undefined;

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child?.once("exit", r));
    child.kill("SIGINT");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A port in 25000-25999 that nothing listens on now. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 25000 + Math.floor(Math.random() * 1000);
    const free = await new Promise<boolean>((done) => {
      const server = createServer();
      server.once("error", () => done(false));
      server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
    });
    if (free) return port;
  }
}

const gatewayConfig = `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  configRefreshInterval: 1s
`;

/** A VirtualService answering every request for `host` with `body`. */
const answer = (name: string, host: string, body: string) => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: prod}
spec:
  hosts: [${host}]
  http:
  - directResponse: {status: 200, body: {string: "${body}"}}
`;

describe("isthmus serve -f DIR, when DIR is replaced", () => {
  it("follows a symlink swapped to another directory, and a directory renamed over, then edited", async () => {
    dir = mkdtempSync(join(tmpdir(), "isthmus-watch-"));
    const write = (path: string, text: string) => {
      mkdirSync(join(dir, path, ".."), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    // git-sync: gs/current is a link to a worktree.
    write("gs/wt1/gw.yaml", gatewayConfig + "---" + answer("gs", "gs.example.com", "from wt1"));
    write("gs/wt2/gw.yaml", gatewayConfig + "---" + answer("gs", "gs.example.com", "from wt2"));
    symlinkSync("wt1", join(dir, "gs/current"));
    // A directory a deploy script replaces whole.
    write("live/vs.yaml", answer("live", "live.example.com", "live 1"));
    write("live.new/vs.yaml", answer("live", "live.example.com", "live 2"));

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    let out = "";
    child = spawn(NODE, [BIN, "serve", "-f", join(dir, "gs/current"), "-f", join(dir, "live"), "--port", String(port), "--state", join(dir, "state")], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", NO_COLOR: "1", ISTHMUS_ADMIN_TOKEN: "test-admin-token" },
    });
    child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
    const until = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 8_000) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (await check()) return;
        if (child?.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${what}: not in time; isthmus serve printed:\n${out}`);
    };
    const body = async (host: string) => {
      try {
        return (await send(base, "/", { host })).body;
      } catch {
        return "";
      }
    };
    /** How many configurations serve reported applied (it does once its own poll sees the gateway serve one). */
    const applied = () => out.match(/isthmus: applied config \w+/g)?.length ?? 0;
    await until("ready", () => /isthmus: ready on /.test(out), 30_000);
    expect(await body("gs.example.com")).toBe("from wt1");
    expect(await body("live.example.com")).toBe("live 1");

    // ln -sfn wt2 current.tmp && mv -T current.tmp current
    symlinkSync("wt2", join(dir, "gs/current.tmp"));
    renameSync(join(dir, "gs/current.tmp"), join(dir, "gs/current"));
    await until("the symlink swap served", async () => (await body("gs.example.com")) === "from wt2");
    await until("the symlink swap logged", () => applied() === 1);

    // mv live live.old && mv live.new live, then an edit in the new live.
    renameSync(join(dir, "live"), join(dir, "live.old"));
    renameSync(join(dir, "live.new"), join(dir, "live"));
    await until("the renamed directory served", async () => (await body("live.example.com")) === "live 2");
    await until("the rename logged", () => applied() === 2);
    write("live/vs.yaml", answer("live", "live.example.com", "live 3"));
    await until("the edit in the new directory served", async () => (await body("live.example.com")) === "live 3");
    await until("the edit logged", () => applied() === 3);

    // The old directory is no longer watched: an edit there re-applies nothing.
    const settled = out.length;
    write("live.old/vs.yaml", answer("live", "live.example.com", "stale"));
    await new Promise((r) => setTimeout(r, 1_500));
    expect(out.slice(settled)).toBe("");
    expect(await body("live.example.com")).toBe("live 3");
  }, 60_000);
});
