/**
 * `npm start`, as a newcomer runs it: the bookinfo origins plus the gateway
 * on 127.0.0.1:8787, the ready line, the README's curl tour, and Ctrl-C
 * stopping everything it started.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send } from "../helpers/http.ts";

let demo: ChildProcess;
let output = "";
const GATEWAY = "http://127.0.0.1:8787";
const PORTS = [8787, 9080, 9081, 9082, 9083, 9084, 9085];

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

beforeAll(async () => {
  for (const port of PORTS) {
    if (await listening(port)) throw new Error(`port ${port} is already in use; the demo test needs 8787 and 9080-9085`);
  }
  // Its own process group, so the test can send the Ctrl-C a terminal would send to the whole group.
  demo = spawn("npm", ["start"], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  demo.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  demo.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 120_000;
  while (!/isthmus: ready on http:\/\/127\.0\.0\.1:8787 \(config [0-9a-f]{12}\)/.test(output)) {
    if (demo.exitCode !== null) throw new Error(`npm start exited early:\n${output}`);
    if (Date.now() > deadline) throw new Error(`npm start did not get ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 150_000);

afterAll(async () => {
  if (demo?.pid && demo.exitCode === null) {
    try {
      process.kill(-demo.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

describe("npm start", () => {
  it("prints the ready line the README shows", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const shown = /isthmus: ready on http:\/\/127\.0\.0\.1:8787 \(config [0-9a-f]{12}\)/.exec(readme)?.[0];
    expect(output).toContain(shown);
  });

  it("serves the product page through the gateway, composed from details and reviews", async () => {
    const res = await send(GATEWAY, "/productpage", { host: "bookinfo.local" });
    expect(res.status).toBe(200);
    const page = JSON.parse(res.body) as { details: { author: string }; reviews: { podname: string } };
    expect(page.details.author).toBe("William Shakespeare");
    expect(page.reviews.podname).toBe("reviews-v1");
  });

  it("routes end-user: jason to reviews v2 with ratings", async () => {
    const res = await send(GATEWAY, "/reviews/0", { host: "bookinfo.local", headers: { "end-user": "jason" } });
    const body = JSON.parse(res.body) as { podname: string; reviews: { rating?: { stars: number } }[] };
    expect(body.podname).toBe("reviews-v2");
    expect(body.reviews[0]?.rating?.stars).toBe(5);
  });

  it("answers the README's other tour requests as documented", async () => {
    const home = await send(GATEWAY, "/", { host: "bookinfo.local" });
    expect(home.status).toBe(302);
    expect(home.headers.location).toBe("http://bookinfo.local/productpage");
    expect((await send(GATEWAY, "/", { host: "nope.local" })).status).toBe(404);
    expect((await send(GATEWAY, "//static/../productpage", { host: "bookinfo.local" })).status).toBe(200);
    expect((await send(GATEWAY, "/productpage", { host: "BOOKINFO.local." })).status).toBe(200);
  });

  it("protects the product API with a JWT and a per-user rate limit, as the README tour shows", async () => {
    // A fresh user: the demo keeps Durable Object state in .wrangler/state between runs.
    const token = execFileSync("npm", ["run", "-s", "demo:token", "--", `tour-${Date.now()}`], { encoding: "utf8" }).trim();
    expect((await send(GATEWAY, "/api/v1/products", { host: "bookinfo.local" })).status).toBe(403);
    expect((await send(GATEWAY, "/api/v1/products", { host: "bookinfo.local", headers: { authorization: `Bearer ${token}x` } })).status).toBe(401);
    // The README's order: one call, then a loop of five.
    expect((await send(GATEWAY, "/api/v1/products", { host: "bookinfo.local", headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 5; i++) {
      last = await send(GATEWAY, "/api/v1/products", { host: "bookinfo.local", headers: { authorization: `Bearer ${token}` } });
      statuses.push(last.status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
    expect(last?.headers["retry-after"]).toMatch(/^\d+$/);
    expect(last?.headers["ratelimit-policy"]).toBe('"api-per-user";q=5;w=60');
  });

  it("stops everything it started on Ctrl-C", async () => {
    const exited = new Promise<number | null>((resolve) => demo.once("exit", (code) => resolve(code)));
    process.kill(-(demo.pid as number), "SIGINT");
    await exited;
    const deadline = Date.now() + 15_000;
    let open = PORTS;
    while (Date.now() < deadline) {
      open = [];
      for (const port of PORTS) if (await listening(port)) open.push(port);
      if (open.length === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(open).toEqual([]);
  });
});
