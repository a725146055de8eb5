/**
 * One `isthmus serve` per state directory: two processes over one
 * directory would each run their own copy of every Durable Object over the
 * same SQLite files (a GLOBAL limit of 4 admitted 5) and rewrite each
 * other's workerd config. The lock is `DIR/run/serve.pid`, created
 * exclusively; one left by a process that is gone is taken over.
 */
import { openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { CliError } from "../files.ts";

/**
 * Takes the state directory's lock for this process, or throws a CliError
 * naming the process that holds it. Returns the release function.
 *
 * @example
 * const release = lockStateDir("/var/lib/isthmus/run"); // … later: release()
 */
export function lockStateDir(runDir: string, pid: number = process.pid, alive: (pid: number) => boolean = isAlive): () => void {
  const file = join(runDir, "serve.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return () => {
        if (holder(file) === pid) rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw new CliError(`${file}: ${(error as Error).message}`);
      const other = holder(file);
      if (other !== undefined && other !== pid && alive(other)) {
        throw new CliError(`the state directory ${join(runDir, "..")} is in use by isthmus serve (pid ${other}); one state directory serves one process (give each replica its own --state)`);
      }
      // Left by a process that is gone: take it over.
      rmSync(file, { force: true });
    }
  }
  throw new CliError(`${file}: could not take the state directory's lock`);
}

function holder(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
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
