/**
 * Expands `-f PATH...` arguments (files or directories) into YAML sources.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { SourceFile } from "../config/parse.ts";

const YAML = /\.(ya?ml)$/i;

/** Every `.yaml`/`.yml` file under the given paths, in a stable order. */
export function expandPaths(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const path of paths) {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      throw new CliError(`${path}: no such file or directory`);
    }
    if (stat.isDirectory()) {
      const walk = (dir: string) => {
        for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
          if (entry.name.startsWith(".")) continue;
          const full = join(dir, entry.name);
          if (entry.isDirectory()) walk(full);
          else if (YAML.test(entry.name)) out.push(full);
        }
      };
      walk(path);
    } else {
      out.push(path);
    }
  }
  return [...new Set(out)];
}

export function readSources(paths: readonly string[]): SourceFile[] {
  const files = expandPaths(paths);
  if (files.length === 0) throw new CliError(`no .yaml or .yml files found in ${paths.join(", ")}`);
  return files.map((path) => ({ path: displayPath(path), text: readFileSync(path, "utf8") }));
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
