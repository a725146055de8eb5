/**
 * Where the Worker reads its configuration from. On Cloudflare (and under
 * `wrangler dev`) it is the Workers KV namespace bound as CONFIG. Under
 * `isthmus serve` (bare workerd, which has no file-backed KV) it is a
 * directory on local disk, exposed to the Worker as the read-only workerd
 * `disk` service bound as CONFIG_STORE: a GET of a key's file name (see
 * config/store-files.ts) returns the value, 404 when it is absent.
 */
import type { Env } from "../env.ts";
import { keyToFileName } from "../config/store-files.ts";
import type { SnapshotSource } from "./snapshot-cache.ts";

/**
 * The config store bound to this Worker, or undefined when there is none.
 * KV wins when both are bound.
 *
 * @example
 * const source = configSource(env);
 * if (source) cache = new SnapshotCache(source);
 */
export function configSource(env: Env): SnapshotSource | undefined {
  if (env.CONFIG) return env.CONFIG;
  if (env.CONFIG_STORE) return directorySource(env.CONFIG_STORE);
  return undefined;
}

/**
 * A SnapshotSource over a workerd `disk` service (any Fetcher that answers
 * GET /<file name> with the file, 404 when it does not exist).
 *
 * @example
 * const source = directorySource(env.CONFIG_STORE);
 * const active = await source.get("active");
 */
export function directorySource(service: Fetcher): SnapshotSource {
  return {
    async get(key: string): Promise<string | null> {
      const response = await service.fetch(`http://config-store/${keyToFileName(key)}`);
      if (response.status === 404) {
        await response.body?.cancel();
        return null;
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`the config store answered ${response.status} for ${key}`);
      }
      return response.text();
    },
  };
}
