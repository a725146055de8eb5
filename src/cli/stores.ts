/**
 * Config stores the CLI can write to:
 *
 * - LocalStore: the on-disk KV that `wrangler dev` reads (same directory,
 *   same namespace id), written through Miniflare as `wrangler kv --local` does.
 * - Remote stores: the deployed Workers KV namespace. With CLOUDFLARE_API_TOKEN and
 *   CLOUDFLARE_ACCOUNT_ID set (CI/CD), Isthmus calls the Cloudflare API directly;
 *   otherwise it runs `wrangler kv key ... --remote`, which uses your `wrangler login`.
 *   CLOUDFLARE_API_BASE_URL overrides the API address for both, as it does for wrangler.
 * - DirectoryStore: one file per key in a directory, the store `isthmus serve`
 *   reads (bare workerd has no file-backed KV).
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import type { KeyValueStore } from "../config/store.ts";
import { keyToFileName } from "../config/store-files.ts";
import { CliError } from "./files.ts";

export interface ClosableStore extends KeyValueStore {
  /** Where the store lives, for messages. */
  readonly description: string;
  /** The file that holds `key`, for messages (directory stores only). */
  fileOf?(key: string): string;
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

const DEFAULT_API = "https://api.cloudflare.com/client/v4";

/** The deployed KV namespace `namespaceId`, through the Cloudflare REST API. */
export function openApiStore(namespaceId: string, accountId: string, token: string, base = process.env.CLOUDFLARE_API_BASE_URL ?? DEFAULT_API): ClosableStore {
  const url = (key: string) => `${base}/accounts/${encodeURIComponent(accountId)}/storage/kv/namespaces/${encodeURIComponent(namespaceId)}/values/${encodeURIComponent(key)}`;
  const call = async (method: string, key: string, body?: string) => {
    const res = await fetch(url(key), { method, headers: { authorization: `Bearer ${token}` }, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(30_000) });
    if (res.status === 404 && method !== "PUT") return null;
    if (!res.ok) throw new CliError(`Cloudflare API ${method} ${key}: ${res.status} ${apiError(await res.text())}`);
    return res;
  };
  return {
    description: `Workers KV (namespace ${namespaceId}, remote)`,
    get: async (key) => {
      const res = await call("GET", key);
      return res ? res.text() : null;
    },
    put: async (key, value) => {
      await call("PUT", key, value);
    },
    delete: async (key) => {
      await call("DELETE", key);
    },
    close: async () => {},
  };
}

function apiError(text: string): string {
  try {
    const body = JSON.parse(text) as { errors?: { message?: string }[] };
    return body.errors?.map((e) => e.message).join("; ") || text;
  } catch {
    return text.slice(0, 200);
  }
}

/** The deployed KV namespace behind `binding`, through `wrangler kv --remote`. */
export function openRemoteStore(configPath: string, binding: string): ClosableStore {
  const run = (args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
      execFile(
        process.execPath,
        [wranglerBin(), "kv", "key", ...args, "--binding", binding, "--remote", "--config", configPath],
        { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
        (error, stdout, stderr) => done({ status: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr }),
      );
    });
  return {
    description: `Workers KV (binding ${binding}, remote)`,
    async get(key) {
      const r = await run(["get", key, "--text"]);
      // wrangler prints the value followed by a newline.
      if (r.status === 0) return r.stdout.endsWith("\n") ? r.stdout.slice(0, -1) : r.stdout;
      if (/not found|404/i.test(r.stderr + r.stdout)) return null;
      throw new CliError(`wrangler kv key get ${key} failed: ${wranglerError(r.stderr || r.stdout)}`);
    },
    async put(key, value) {
      const dir = mkdtempSync(join(tmpdir(), "isthmus-"));
      try {
        const file = join(dir, "value");
        writeFileSync(file, value);
        const r = await run(["put", key, "--path", file]);
        if (r.status !== 0) throw new CliError(`wrangler kv key put ${key} failed: ${wranglerError(r.stderr || r.stdout)}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    async delete(key) {
      const r = await run(["delete", key]);
      if (r.status !== 0 && !/not found|404/i.test(r.stderr + r.stdout)) throw new CliError(`wrangler kv key delete ${key} failed: ${wranglerError(r.stderr || r.stdout)}`);
    },
    close: async () => {},
  };
}

/** The wrangler CLI of this project, run with the current (Node 22) executable. */
export function wranglerBin(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("wrangler/package.json")), "bin", "wrangler.js");
}

/**
 * The directory store under `dir`: each key is one file (named by
 * keyToFileName), written to a dotfile first and renamed into place, so a
 * reader (the gateway) sees either the old value or the new one, never
 * half a file. Dotfiles are never served by workerd's disk service.
 */
export function openDirectoryStore(dir: string): ClosableStore {
  const root = resolve(dir);
  // A configuration can hold secrets (an inline HMAC JWKS key): only its owner reads the store.
  makePrivateDir(root);
  const file = (key: string) => directoryStoreFile(root, key);
  return {
    description: `directory store (${dir})`,
    fileOf: file,
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
      writeFileSync(temp, value, { mode: 0o600 });
      renameSync(temp, file(key));
    },
    async delete(key) {
      rmSync(file(key), { force: true });
    },
    close: async () => {},
  };
}

/**
 * The file of the directory store under `dir` that holds `key`.
 *
 * @example
 * directoryStoreFile("/var/lib/isthmus/config", "snapshot:3f9c2a1b0c4d") // "/var/lib/isthmus/config/snapshot_3a3f9c2a1b0c4d"
 */
export function directoryStoreFile(dir: string, key: string): string {
  return join(dir, keyToFileName(key));
}

/**
 * Creates `dir` (and missing parents) readable by its owner only, and
 * makes an existing one so (0700; one made by an older version was 0755).
 * Where it cannot (another user's directory), warns and goes on.
 *
 * @example
 * makePrivateDir("/var/lib/isthmus/config");
 */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    chmodSync(dir, 0o700);
  } catch (error) {
    console.error(`isthmus: warning: ${dir}: cannot make it readable by its owner only (${(error as Error).message}); it may hold secrets`);
  }
}

/**
 * What wrangler said went wrong: its `✘ [ERROR]` line when there is one,
 * else its last line that is not the "Logs were written to" pointer.
 * Colour codes are removed (wrangler colours its output even into a pipe).
 *
 * @example
 * wranglerError("✘ [ERROR] set CLOUDFLARE_API_TOKEN\n\n🪵  Logs were written to …") // "set CLOUDFLARE_API_TOKEN"
 */
export function wranglerError(text: string): string {
  const lines = text.replace(/\x1b\[[0-9;]*m/g, "").split("\n").map((l) => l.trim()).filter(Boolean);
  const error = lines.find((l) => l.includes("[ERROR]"));
  if (error) return error.slice(error.indexOf("[ERROR]") + "[ERROR]".length).trim();
  return lines.filter((l) => !l.includes("Logs were written to")).pop() ?? "unknown error";
}
