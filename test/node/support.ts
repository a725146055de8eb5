/**
 * Runs the `isthmus` CLI as a user does: `bin/isthmus.js` on Node 22 in a
 * project directory of its own (config files, a wrangler.toml, and a
 * local state directory, which is the KV that `wrangler dev` reads).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
export const BIN = join(ROOT, "bin", "isthmus.js");

/** Node 22 (the project's devDependency when the runner itself is older). */
export const NODE = Number(process.versions.node.split(".")[0]) >= 22 ? process.execPath : join(ROOT, "node_modules", "node", "bin", "node");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `isthmus ...args` in `cwd` and waits for it to exit. */
export function isthmus(args: string[], cwd = ROOT): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(NODE, [BIN, ...args], {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", fail);
    child.once("close", (code) => done({ code, stdout, stderr }));
  });
}

export interface Project {
  dir: string;
  /** Writes a file relative to the project directory. */
  write(path: string, text: string): void;
  remove(path: string): void;
  /** `isthmus ...args` run in the project directory. */
  run(...args: string[]): Promise<CliResult>;
  /** Store options pointing at the project's temporary state directory. */
  store: string[];
  cleanup(): void;
}

/** A temporary project directory with a copy of the gateway's wrangler.toml. */
export function project(): Project {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-cli-"));
  writeFileSync(join(dir, "wrangler.toml"), readFileSync(join(ROOT, "wrangler.toml"), "utf8"));
  const state = join(dir, "state");
  return {
    dir,
    write(path, text) {
      const full = join(dir, path);
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, text);
    },
    remove(path) {
      rmSync(join(dir, path), { force: true, recursive: true });
    },
    run: (...args) => isthmus(args, dir),
    store: ["--persist-to", state],
    cleanup() {
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Non-empty lines of an output. */
export const linesOf = (text: string) => text.split("\n").filter((l) => l.trim() !== "");
