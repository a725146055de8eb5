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
      return { path, text: decodeUtf8(readFileSync(file), path) };
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw fileError(path, file, err);
    }
  });
}

// ignoreBOM keeps a byte order mark in the text, as readFileSync(…, "utf8") did (the YAML parser skips it).
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A config file's text. Bytes that are not UTF-8 are an error naming the
 * line, as kubectl's YAML decoder refuses them: decoding them leniently
 * would put U+FFFD into the configuration without a word (a Latin-1 `é` in
 * a direct response body).
 *
 * @example
 * decodeUtf8(Buffer.from([0x61, 0x3a, 0x20, 0xe9, 0x0a]), "a.yaml") // throws CliError "a.yaml:1: not UTF-8 ..."
 */
export function decodeUtf8(bytes: Uint8Array, shown: string): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
      throw new CliError(`${shown}: the file is UTF-16; save it as UTF-8`);
    }
    const at = firstInvalidUtf8(bytes);
    let line = 1;
    for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
    const byte = (bytes[at] ?? 0).toString(16).padStart(2, "0");
    throw new CliError(`${shown}:${line}: not UTF-8 (byte 0x${byte} at offset ${at}); save the file as UTF-8`);
  }
}

/** The offset of the first byte that does not start or continue a valid UTF-8 sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    const length = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (length === 0) return i;
    if (length > 1) {
      try {
        UTF8.decode(bytes.subarray(i, i + length));
      } catch {
        return i;
      }
    }
    i += length;
  }
  return bytes.length;
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
