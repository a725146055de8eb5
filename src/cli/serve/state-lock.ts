/**
 * One `isthmus serve` per state directory: two processes over one
 * directory would each run their own copy of every Durable Object over the
 * same SQLite files (a GLOBAL limit of 4 admitted 5) and rewrite each
 * other's workerd config. The lock is `DIR/run/serve.pid`, created
 * exclusively: the serve's pid on its first line and, once started, its
 * workerd's on the second. One left by a serve that is gone is taken over,
 * unless the workerd it names still runs this directory's configuration:
 * workerd has a process group of its own, so a SIGKILL to serve (the OOM
 * killer, `kill -9`) leaves it serving.
 */
import { closeSync, openSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { CliError } from "../files.ts";

/** What the lock asks about other processes; tests pass their own. */
export interface ProcessTable {
  alive(pid: number): boolean;
  /** The process's arguments, or undefined where that cannot be known (not Linux, no /proc, not readable). */
  cmdline(pid: number): string[] | undefined;
  /** The process's working directory, or undefined where that cannot be known. */
  cwd(pid: number): string | undefined;
}

/** Processes on this host: `kill(pid, 0)`, and /proc on Linux. */
export const LOCAL_PROCESSES: ProcessTable = {
  alive: isAlive,
  cmdline(pid) {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
    } catch {
      return undefined;
    }
  },
  cwd(pid) {
    try {
      return readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      return undefined;
    }
  },
};

/**
 * Takes the state directory's lock for this process, or throws a CliError
 * naming the process that holds it (and the file to delete when that is
 * wrong). Returns the release function.
 *
 * @example
 * const release = lockStateDir("/var/lib/isthmus/run"); // … later: release()
 */
export function lockStateDir(runDir: string, pid: number = process.pid, processes: ProcessTable = LOCAL_PROCESSES): () => void {
  const file = join(runDir, "serve.pid");
  const state = resolve(runDir, "..");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return () => {
        if (readLock(file).serve === pid) rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw new CliError(`${file}: ${(error as Error).message}`);
      const other = readLock(file);
      if (other.serve !== undefined && other.serve !== pid && processes.alive(other.serve) && isServeOf(processes, other.serve, state)) {
        throw new CliError(
          `the state directory ${state} is in use by isthmus serve (pid ${other.serve}); one state directory serves one process (give each replica its own --state). ` +
            `If no serve runs on it (the pid is another program's now), delete ${file}`,
        );
      }
      if (other.workerd !== undefined && processes.alive(other.workerd) && isWorkerdOf(processes, other.workerd, runDir)) {
        // Not stopped here: it still answers requests, and whoever runs it (a shell, a supervisor) decides when they may be cut short.
        throw new CliError(
          `the state directory ${state} is still served by workerd (pid ${other.workerd}), left running by an isthmus serve that was killed; ` +
            `two would share its Durable Objects. Stop it first (kill ${other.workerd}: it finishes the requests in flight and exits), then start serve again (or, if that pid is another program's now, delete ${file})`,
        );
      }
      // Left by a process that is gone: take it over.
      rmSync(file, { force: true });
    }
  }
  throw new CliError(`${file}: could not take the state directory's lock`);
}

/**
 * Adds the workerd this process started to its lock, so that a serve
 * started after this one was killed finds it. Written to a dotfile and
 * renamed over the lock, so a reader never sees half of it.
 *
 * @example
 * recordWorkerd("/var/lib/isthmus/run", gateway.pid);
 */
export function recordWorkerd(runDir: string, workerdPid: number, pid: number = process.pid): void {
  const file = join(runDir, "serve.pid");
  const temp = join(runDir, `.serve.pid.${pid}.tmp`);
  writeFileSync(temp, `${pid}\n${workerdPid}\n`, { mode: 0o600 });
  renameSync(temp, file);
}

function readLock(file: string): { serve?: number; workerd?: number } {
  let lines: string[];
  try {
    lines = readFileSync(file, "utf8").split("\n");
  } catch {
    return {};
  }
  const serve = positive(lines[0]);
  const workerd = positive(lines[1]);
  return { ...(serve !== undefined ? { serve } : {}), ...(workerd !== undefined ? { workerd } : {}) };
}

function positive(text: string | undefined): number | undefined {
  const n = Number(text?.trim());
  return text?.trim() && Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * Whether `pid` is an `isthmus serve` of `state`: its arguments hold `serve`
 * and a `--state` (default `.isthmus`, relative to its working directory)
 * that is `state`. A pid left in a stale lock is often another program's
 * after a reboot or a container restart (pids start again from 1). Where
 * the arguments cannot be read, any live process counts, as before.
 */
function isServeOf(processes: ProcessTable, pid: number, state: string): boolean {
  const args = processes.cmdline(pid);
  if (args === undefined) return true;
  if (!args.includes("serve")) return false;
  let given = ".isthmus";
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--state" && args[i + 1] !== undefined) given = args[i + 1] as string;
    else if (arg.startsWith("--state=")) given = arg.slice("--state=".length);
  }
  if (given.startsWith("/")) return resolve(given) === state;
  const cwd = processes.cwd(pid);
  // A relative --state with an unknown working directory: it may be this one.
  return cwd === undefined || resolve(cwd, given) === state;
}

/** Whether `pid` is a workerd running `runDir`'s isthmus.capnp (serve passes its absolute path); true where that cannot be read. */
function isWorkerdOf(processes: ProcessTable, pid: number, runDir: string): boolean {
  const args = processes.cmdline(pid);
  if (args === undefined) return true;
  return basename(args[0] ?? "").includes("workerd") && args.includes(join(resolve(runDir), "isthmus.capnp"));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, owned by another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
