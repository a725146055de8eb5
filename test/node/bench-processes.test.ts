/**
 * The benchmark harnesses start their side servers and gateways in process
 * groups of their own: a harness stopped with Ctrl-C or SIGTERM must not
 * leave them running.
 */
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";

/** Whether a process with this pid still exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

describe.each(["SIGTERM", "SIGINT"] as const)("a harness stopped by %s", (signal) => {
  it("kills the children startPinned started before it exits", async () => {
    // A stand-in harness: starts a long sleep pinned to core 0, prints its pid, and waits.
    const script = `import { startPinned } from "./bench/processes.ts";
const proc = startPinned("0", "sleep", ["120"]);
console.log(proc.child.pid);
setInterval(() => {}, 1000);`;
    const harness = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const pid = await new Promise<number>((resolve, reject) => {
      harness.stdout.once("data", (d: Buffer) => resolve(Number(String(d).trim())));
      harness.once("exit", (code) => reject(new Error(`the harness exited (${code}) before starting its child`)));
    });
    expect(alive(pid)).toBe(true);
    const exited = new Promise<number | null>((resolve) => harness.once("exit", (code) => resolve(code)));
    harness.kill(signal);
    expect(await exited).toBe(signal === "SIGTERM" ? 143 : 130);
    // taskset execs the command, so the pid is the sleep's; it is gone once the harness is.
    expect(await until(() => !alive(pid), 2_000)).toBe(true);
  });
});
