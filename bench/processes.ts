/**
 * Small process helpers for the harness: start a child pinned to a core,
 * wait for a line or a port, read a process's CPU time, stop it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import type { LoadOutput, LoadSpec } from "./load/main.ts";

export interface Proc {
  child: ChildProcess;
  output: () => string;
}

/** Children started by startPinned that have not exited yet. */
const running = new Set<ChildProcess>();

/** Kills the process group of every child still running (synchronously: it also runs on `exit`). */
function killRunning(): void {
  for (const child of running) {
    try {
      process.kill(-(child.pid as number), "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }
  running.clear();
}

let handlersInstalled = false;

/**
 * The children live in process groups of their own (so that a stop reaches
 * their whole tree), which a signal to the harness does not reach: a harness
 * stopped with Ctrl-C or SIGTERM kills them before it exits, instead of
 * leaving the upstream, the sink or a gateway running.
 */
function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", killRunning);
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.once(signal, () => {
      killRunning();
      process.exit(code);
    });
  }
}

/** Spawns `command args` pinned to `cpus` (taskset -c) in its own process group, killed if the harness is stopped. */
export function startPinned(cpus: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Proc {
  installHandlers();
  let out = "";
  const child = spawn("taskset", ["-c", cpus, command, ...args], { stdio: ["ignore", "pipe", "pipe"], detached: true, env });
  running.add(child);
  child.once("exit", () => running.delete(child));
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

export async function waitForOutput(proc: Proc, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = pattern.exec(proc.output());
    if (m) return m;
    if (proc.child.exitCode !== null) throw new Error(`process exited (${proc.child.exitCode}):\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${pattern}:\n${proc.output()}`);
}

export async function waitForPort(port: number, timeoutMs: number, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && proc.child.exitCode !== null) throw new Error(`process exited (${proc.child.exitCode}):\n${proc.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms${proc ? `:\n${proc.output()}` : ""}`);
}

/** Stops the process group and waits for the leader to exit. */
export async function stopProc(proc: Proc): Promise<void> {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-child.pid, "SIGINT");
  } catch {
    child.kill("SIGINT");
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-(child.pid as number), "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

/** User + system CPU time of a process and its descendants, in ms (from /proc). */
export function cpuTimeMs(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    const stat = readProc(`/proc/${p}/stat`);
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    total += Number(fields[11]) + Number(fields[12]); // utime, stime in clock ticks
  }
  return (total * 1000) / 100; // USER_HZ is 100 on Linux
}

/** Every descendant pid of `pid`. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const children = readProc(`/proc/${pid}/task/${pid}/children`);
  for (const c of children?.trim().split(/\s+/).filter(Boolean) ?? []) {
    out.push(Number(c), ...descendants(Number(c)));
  }
  return out;
}

function readProc(path: string): string | undefined {
  try {
    return existsSync(path) ? readFileSync(path, "utf8") : undefined;
  } catch {
    return undefined;
  }
}

/** Ports handed out by freePort in this process: each is closed when returned, so the OS may offer it again. */
const handedOut = new Set<number>();

/**
 * A port free now and not handed out before in this process: two calls in a
 * row (a side server's, then a contender's) never collide. The end-to-end
 * tests use it too (test/helpers/gateway.ts).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        const bound = typeof address === "object" && address ? address.port : 0;
        server.close(() => resolve(bound));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/**
 * Runs the load generator (bench/load/main.ts) pinned to `cpu` with `spec`
 * on stdin; async, so the contenders' output pipes keep draining.
 */
export async function runLoad(cpu: string, spec: LoadSpec, label: string): Promise<LoadOutput> {
  const child = spawn("taskset", ["-c", cpu, process.execPath, "bench/load/main.ts"], { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.end(JSON.stringify(spec));
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  if (code !== 0) throw new Error(`load generator failed for ${label}: ${stderr}`);
  return JSON.parse(stdout) as LoadOutput;
}
