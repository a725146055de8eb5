/**
 * One `isthmus serve` per state directory (src/cli/serve/state-lock.ts):
 * two over one directory would each run every Durable Object over the same
 * SQLite files, so a GLOBAL limit would admit more than its limit.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { lockStateDir, recordWorkerd, type ProcessTable } from "../../src/cli/serve/state-lock.ts";

let dir = "";

/** A process table of the live pids given, each with its arguments (undefined: not readable, as off Linux) and working directory /. */
function table(live: Record<number, string[] | undefined>): ProcessTable {
  return { alive: (pid) => pid in live, cmdline: (pid) => live[pid], cwd: () => "/" };
}
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("lockStateDir", () => {
  it("refuses a directory another live serve holds, takes over one a dead process left, and releases its own", () => {
    dir = mkdtempSync(join(tmpdir(), "isthmus-lock-"));
    const file = join(dir, "serve.pid");
    writeFileSync(file, "4242\n");
    expect(() => lockStateDir(dir, 7, table({ 4242: undefined }))).toThrow(/is in use by isthmus serve \(pid 4242\); one state directory serves one process/);
    const release = lockStateDir(dir, 7, table({}));
    expect(readFileSync(file, "utf8")).toBe("7\n");
    // Held by this process now: a second serve is refused.
    expect(() => lockStateDir(dir, 8, table({ 7: undefined }))).toThrow(/pid 7/);
    release();
    expect(existsSync(file)).toBe(false);
  });

  it("refuses while the workerd a killed serve left runs this directory's configuration, and names it", () => {
    dir = mkdtempSync(join(tmpdir(), "isthmus-lock-"));
    const run = join(dir, "run");
    mkdirSync(run);
    const release = lockStateDir(run, 7, table({}));
    recordWorkerd(run, 99, 7);
    expect(readFileSync(join(run, "serve.pid"), "utf8")).toBe("7\n99\n");
    const workerd = ["/opt/node_modules/@cloudflare/workerd-linux-64/bin/workerd", "serve", "--experimental", join(run, "isthmus.capnp")];
    // Serve 7 was SIGKILLed; its workerd (own process group) still serves.
    expect(() => lockStateDir(run, 8, table({ 99: workerd }))).toThrow(/still served by workerd \(pid 99\), left running by an isthmus serve that was killed.*kill 99/);
    // Where the arguments cannot be read, a live workerd pid is taken at its word.
    expect(() => lockStateDir(run, 8, table({ 99: undefined }))).toThrow(/pid 99/);
    // Pid 99 is now a workerd of another state directory, or another program: taken over.
    const other = ["/usr/bin/workerd", "serve", "--experimental", "/elsewhere/run/isthmus.capnp"];
    lockStateDir(run, 8, table({ 99: other }))();
    recordWorkerd(run, 99, 7);
    lockStateDir(run, 8, table({ 99: ["sleep", "100"] }));
    expect(readFileSync(join(run, "serve.pid"), "utf8")).toBe("8\n");
    release();
  });

  it("takes over a lock whose pid is now another program, and names the file when it refuses", () => {
    dir = mkdtempSync(join(tmpdir(), "isthmus-lock-"));
    const run = join(dir, "run");
    mkdirSync(run);
    const file = join(run, "serve.pid");
    const serveOf = (state: string) => ["/usr/bin/node", "/app/bin/isthmus.js", "serve", "-f", "/etc/isthmus", "--state", state];
    // A container restarted with the volume: the old pid is now the shell that starts serve.
    writeFileSync(file, "1\n");
    lockStateDir(run, 7, table({ 1: ["/bin/sh", "-c", `exec isthmus serve --state ${dir}`] }))();
    // An isthmus serve of another state directory (absolute, relative to its cwd, the default): not this one.
    for (const args of [serveOf("/var/lib/other"), serveOf("other"), ["node", "isthmus.js", "serve", "-f", "x"]]) {
      writeFileSync(file, "1\n");
      lockStateDir(run, 7, table({ 1: args }))();
    }
    // An isthmus serve of this directory, spelled absolute, relative or --state=: refused, naming the file.
    for (const args of [serveOf(dir), serveOf(dir.slice(1)), ["node", "isthmus.js", "serve", `--state=${dir}`]]) {
      writeFileSync(file, "1\n");
      expect(() => lockStateDir(run, 7, table({ 1: args }))).toThrow(`is in use by isthmus serve (pid 1); one state directory serves one process (give each replica its own --state). If no serve runs on it (the pid is another program's now), delete ${file}`);
    }
  });
});
