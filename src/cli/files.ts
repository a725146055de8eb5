/**
 * Expands `-f PATH...` arguments (files or directories) into YAML sources.
 * Like kubectl, a directory contributes its `.yaml`, `.yml` and `.json`
 * files (JSON is YAML, so one parser reads both).
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import type { SourceFile } from "../config/parse.ts";

const CONFIG_FILE = /\.(ya?ml|json)$/i;

/**
 * Every `.yaml`/`.yml`/`.json` file under the given paths (files given
 * directly are taken whatever their name), in a stable order. A file reached
 * twice (through two arguments or a symlink) is listed once, where it is
 * first reached.
 *
 * @example
 * expandPaths(["config", "config/gateway.yaml"]); // ["config/gateway.yaml", "config/routes.json"]
 */
export function expandPaths(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const path of paths) {
    let stat;
    try {
      stat = statSync(path);
    } catch (err) {
      throw fileError(path, path, err);
    }
    if (stat.isDirectory()) walk(path, out);
    else out.push(path);
  }
  return onePerFile(out);
}

/** Appends the config files under `dir`, depth first, in name order; dot files and directories are skipped. */
function walk(dir: string, out: string[]): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw fileError(displayPath(dir), dir, err);
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith(".")) continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) walk(full, out);
    else if (CONFIG_FILE.test(entry.name)) out.push(full);
  }
}

/** The paths without the ones that name a file listed before (same real path). */
function onePerFile(paths: readonly string[]): string[] {
  const seen = new Set<string>();
  return paths.filter((path) => {
    const key = realPath(path);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    // Unreadable (a broken symlink, a file just removed): readSources reports it.
    return resolve(path);
  }
}

/**
 * Reads every config file under the paths. A file that cannot be read
 * ends the command with one line naming it.
 *
 * @example
 * readSources(["config"]); // [{ path: "config/gateway.yaml", text: "apiVersion: ..." }, ...]
 * readSources(["config"]); // throws CliError "config/broken.yaml: broken symlink to ../x.yaml"
 */
export function readSources(paths: readonly string[]): SourceFile[] {
  const files = expandPaths(paths);
  if (files.length === 0) throw new CliError(`no .yaml, .yml or .json files found in ${paths.join(", ")}`);
  return files.map((file) => {
    const path = displayPath(file);
    try {
      return { path, text: readFileSync(file, "utf8") };
    } catch (err) {
      throw fileError(path, file, err);
    }
  });
}

/** `<shown>: <reason>` for a file system error on `path`, e.g. `config/a.yaml: permission denied`. */
function fileError(shown: string, path: string, err: unknown): CliError {
  const code = err instanceof Error && "code" in err ? err.code : undefined;
  if (code === "ENOENT" && isSymlink(path)) return new CliError(`${shown}: broken symlink to ${readlinkSync(path)}`);
  const message = err instanceof Error ? err.message : String(err);
  // Node's "ENOENT: no such file or directory, open 'x'" without the code and the call.
  const reason = /^[A-Z0-9]+: ([^,]+)/.exec(message)?.[1] ?? message;
  return new CliError(`${shown}: ${reason}`);
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith("..") ? rel : path;
}

/** An error that ends the command with a one-line message and exit code. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}
