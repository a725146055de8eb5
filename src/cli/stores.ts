/**
 * Config stores the CLI can write to:
 *
 * - LocalStore: the on-disk KV that `wrangler dev` reads (same directory,
 *   same namespace id), written through Miniflare as `wrangler kv --local` does.
 * - RemoteStore: the deployed Workers KV namespace, through `wrangler kv --remote`
 *   (uses your wrangler login or CLOUDFLARE_API_TOKEN).
 * - DirectoryStore: one file per key in a directory, the store `isthmus serve`
 *   reads (bare workerd has no file-backed KV).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { KeyValueStore } from "../config/store.ts";
import { keyToFileName } from "../config/store-files.ts";
import { CliError } from "./files.ts";

export interface ClosableStore extends KeyValueStore {
  /** Where the store lives, for messages. */
  readonly description: string;
  close(): Promise<void>;
}

interface MiniflareKv {
  get(key: string): Promise<string | null>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** Opens the local KV namespace `namespaceId` under `persistTo` (wrangler's --persist-to). */
export async function openLocalStore(persistTo: string, namespaceId: string): Promise<ClosableStore> {
  process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
  const { Miniflare, convertV4MiniflareOptions } = await import("miniflare");
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      script: 'addEventListener("fetch", (e) => e.respondWith(new Response(null, { status: 404 })))',
      resourcePersistencePath: join(resolve(persistTo), "v3"),
      kvNamespaces: { CONFIG: namespaceId },
    }),
  );
  const kv = (await mf.getKVNamespace("CONFIG")) as unknown as MiniflareKv;
  return {
    description: `local KV (${persistTo})`,
    get: (key) => kv.get(key),
    put: (key, value) => kv.put(key, value),
    delete: (key) => kv.delete(key),
    close: () => mf.dispose(),
  };
}

/** The deployed KV namespace behind `binding`, through wrangler. */
export function openRemoteStore(configPath: string, binding: string): ClosableStore {
  const run = (args: string[]) => {
    const result = spawnSync("npx", ["wrangler", "kv", "key", ...args, "--binding", binding, "--remote", "--config", configPath], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    return result;
  };
  return {
    description: `Workers KV (binding ${binding}, remote)`,
    async get(key) {
      const r = run(["get", key, "--text"]);
      if (r.status === 0) return r.stdout;
      if (/not found|404/i.test(r.stderr + r.stdout)) return null;
      throw new CliError(`wrangler kv key get ${key} failed: ${lastLine(r.stderr || r.stdout)}`);
    },
    async put(key, value) {
      const dir = mkdtempSync(join(tmpdir(), "isthmus-"));
      try {
        const file = join(dir, "value");
        writeFileSync(file, value);
        const r = run(["put", key, "--path", file]);
        if (r.status !== 0) throw new CliError(`wrangler kv key put ${key} failed: ${lastLine(r.stderr || r.stdout)}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    async delete(key) {
      const r = run(["delete", key]);
      if (r.status !== 0 && !/not found|404/i.test(r.stderr + r.stdout)) throw new CliError(`wrangler kv key delete ${key} failed: ${lastLine(r.stderr || r.stdout)}`);
    },
    close: async () => {},
  };
}

/**
 * The directory store under `dir`: each key is one file (named by
 * keyToFileName), written to a dotfile first and renamed into place, so a
 * reader (the gateway) sees either the old value or the new one, never
 * half a file. Dotfiles are never served by workerd's disk service.
 */
export function openDirectoryStore(dir: string): ClosableStore {
  const root = resolve(dir);
  mkdirSync(root, { recursive: true });
  const file = (key: string) => join(root, keyToFileName(key));
  return {
    description: `directory store (${dir})`,
    async get(key) {
      try {
        return readFileSync(file(key), "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw error;
      }
    },
    async put(key, value) {
      const temp = join(root, `.${keyToFileName(key)}.${randomUUID()}.tmp`);
      writeFileSync(temp, value);
      renameSync(temp, file(key));
    },
    async delete(key) {
      rmSync(file(key), { force: true });
    },
    close: async () => {},
  };
}

function lastLine(text: string): string {
  return text.trim().split("\n").filter(Boolean).pop() ?? "unknown error";
}
