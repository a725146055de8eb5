/**
 * `npm run bench:profile -- [realistic|realistic-lease|realistic-off|minimal] [--seconds N] [--out FILE]`:
 * a CPU profile of the gateway *inside workerd*, where the load runs measure
 * it (Node's profile of the pure core, `node --cpu-prof bench/micro.ts`,
 * misses workerd's own Request/Response/stream costs). Starts the
 * benchmark's upstream, JWKS server and OTLP sink, runs `isthmus serve
 * --inspector-addr` with the chosen config pinned to the SUT core, drives it
 * closed-loop from the generator core while the V8 sampling profiler runs
 * (Chrome DevTools Protocol over the inspector's WebSocket), then writes the
 * `.cpuprofile` (open it in Chrome DevTools) and prints the top functions by
 * self and by inclusive time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { minimal, realistic } from "./configs.ts";
import { startSideServers } from "./side-servers.ts";
import type { LoadOutput, LoadSpec } from "./load/main.ts";
import { freePort, runLoad, startPinned, stopProc, waitForOutput } from "./processes.ts";

const GEN_CPU = "0";
const SUT_CPU = "1";

const { values, positionals } = parseArgs({ options: { seconds: { type: "string" }, out: { type: "string" } }, allowPositionals: true });
const which = positionals[0] ?? "realistic";
if (!["realistic", "realistic-lease", "realistic-off", "minimal"].includes(which)) throw new Error(`expected realistic, realistic-lease, realistic-off or minimal, got ${which}`);
const seconds = Number(values.seconds ?? "10");
const out = values.out ?? join(tmpdir(), `isthmus-${which}.cpuprofile`);
const node = process.execPath;
const log = (s: string) => console.error(`profile: ${s}`);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** One CDP session over the inspector's WebSocket. */
async function cdp(url: string): Promise<{ call: (method: string, params?: object) => Promise<Record<string, unknown>>; close: () => void }> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true });
  });
  let next = 1;
  const pending = new Map<number, (result: Record<string, unknown>) => void>();
  ws.addEventListener("message", (event) => {
    const msg = JSON.parse(String(event.data)) as { id?: number; result?: Record<string, unknown> };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result ?? {});
  });
  return {
    call: (method, params = {}) =>
      new Promise((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

function generate(spec: LoadSpec): Promise<LoadOutput> {
  return runLoad(GEN_CPU, spec, which);
}

/** Self and inclusive time by function, in percent of the busy (non-idle) samples. */
function summarize(profile: Profile): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const time = new Map<number, number>();
  profile.samples.forEach((id, i) => time.set(id, (time.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const n of profile.nodes) {
    const t = time.get(n.id) ?? 0;
    if (t === 0 || n.callFrame.functionName === "(idle)") continue;
    busy += t;
    const file = n.callFrame.url.split("/").slice(-2).join("/");
    const key = `${n.callFrame.functionName || "(anonymous)"} ${file}:${n.callFrame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + t);
    // Inclusive time of named functions (the Worker is one bundle, so files say little).
    const seen = new Set<string>();
    for (let cur: number | undefined = n.id; cur !== undefined; cur = parent.get(cur)) {
      const name = (byId.get(cur) as ProfileNode).callFrame.functionName;
      if (name && !seen.has(name)) {
        seen.add(name);
        inclusive.set(name, (inclusive.get(name) ?? 0) + t);
      }
    }
  }
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${((v / busy) * 100).toFixed(1).padStart(5)}%  ${k}`)
      .join("\n");
  return `self time (of ${(busy / 1000).toFixed(0)} ms busy):\n${top(self, 30)}\ninclusive, by function name:\n${top(inclusive, 40)}`;
}

const side = await startSideServers(GEN_CPU);
const { upstreamPort, idp, otlpEndpoint } = side.env;
const dir = mkdtempSync(join(tmpdir(), "isthmus-profile-"));
const config =
  which === "minimal"
    ? minimal(upstreamPort)
    : realistic(upstreamPort, which === "realistic-off" ? { telemetry: false, jwt: idp } : { telemetry: true, jwt: idp, otlpEndpoint, ...(which === "realistic-lease" ? { lease: { size: 100 } } : {}) });
mkdirSync(join(dir, "config"));
writeFileSync(join(dir, "config", "gateway.yaml"), config.yaml);
const port = await freePort();
const inspectorPort = await freePort();
const gateway = startPinned(SUT_CPU, node, ["bin/isthmus.js", "serve", "-f", join(dir, "config"), "--port", String(port), "--state", join(dir, "state"), "--inspector-addr", `127.0.0.1:${inspectorPort}`]);
try {
  await waitForOutput(gateway, /isthmus: ready on/, 60_000);
  const spec: LoadSpec = { mode: "closed", connections: 32, port, requests: config.requests, durationMs: 3_000, warmupMs: 0 };
  log(`warming up ${which}`);
  await generate(spec);
  const session = await cdp(`ws://127.0.0.1:${inspectorPort}/isthmus`);
  await session.call("Profiler.enable");
  await session.call("Profiler.setSamplingInterval", { interval: 100 });
  await session.call("Profiler.start");
  log(`profiling ${seconds} s of closed-loop load`);
  const result = await generate({ ...spec, durationMs: seconds * 1000 });
  const { profile } = (await session.call("Profiler.stop")) as unknown as { profile: Profile };
  session.close();
  writeFileSync(out, JSON.stringify(profile));
  log(`${Math.round((result.completed * 1000) / result.elapsedMs)} req/s, ${result.failed + result.non200} errors; profile written to ${out}`);
  process.stdout.write(`${summarize(profile)}\n`);
} finally {
  await stopProc(gateway);
  await side.stop();
  rmSync(dir, { recursive: true, force: true });
}
