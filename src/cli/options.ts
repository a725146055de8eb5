/**
 * Options shared by the commands that reach a config store.
 */
import { kvBinding } from "./wrangler-config.ts";
import { openApiStore, openLocalStore, openRemoteStore, type ClosableStore } from "./stores.ts";
import { CliError } from "./files.ts";

export interface StoreOptions {
  local?: boolean;
  remote?: boolean;
  "persist-to"?: string;
  config?: string;
  binding?: string;
}

export const STORE_OPTIONS = {
  local: { type: "boolean" },
  remote: { type: "boolean" },
  "persist-to": { type: "string" },
  config: { type: "string" },
  binding: { type: "string" },
} as const;

export const STORE_HELP = `
Where the configuration goes:
  --local              the KV that \`wrangler dev\` / \`isthmus dev\` read (default)
  --remote             the deployed Workers KV namespace: through the Cloudflare API when
                       CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID are set, else through
                       \`wrangler kv --remote\` (your \`wrangler login\`)
  --persist-to DIR     local state directory (default .wrangler/state, like wrangler)
  --config FILE        the gateway's wrangler.toml (default ./wrangler.toml)
  --binding NAME       the KV binding holding the configuration (default CONFIG)`;

export async function openStore(opts: StoreOptions): Promise<ClosableStore> {
  if (opts.local && opts.remote) throw new CliError("expected only one of --local and --remote", 2);
  const config = opts.config ?? "wrangler.toml";
  const binding = opts.binding ?? "CONFIG";
  if (opts.remote) {
    const { id } = kvBinding(config, binding);
    const token = process.env.CLOUDFLARE_API_TOKEN;
    const account = process.env.CLOUDFLARE_ACCOUNT_ID;
    if (token && account) return openApiStore(id, account, token);
    return openRemoteStore(config, binding);
  }
  const { id } = kvBinding(config, binding);
  return openLocalStore(opts["persist-to"] ?? ".wrangler/state", id);
}
