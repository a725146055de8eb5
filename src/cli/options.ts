/**
 * Options shared by the commands that reach a config store.
 */
import { kvBinding } from "./wrangler-config.ts";
import { join } from "node:path";
import { openApiStore, openDirectoryStore, openLocalStore, openRemoteStore, type ClosableStore } from "./stores.ts";
import { CliError } from "./files.ts";

export interface StoreOptions {
  local?: boolean;
  remote?: boolean;
  "persist-to"?: string;
  config?: string;
  binding?: string;
  state?: string;
}

export const STORE_OPTIONS = {
  local: { type: "boolean" },
  remote: { type: "boolean" },
  "persist-to": { type: "string" },
  config: { type: "string" },
  binding: { type: "string" },
  state: { type: "string" },
} as const;

export const STORE_HELP = `
Where the configuration goes:
  --local              the KV that \`wrangler dev\` / \`isthmus dev\` read (default)
  --remote             the deployed Workers KV namespace: through the Cloudflare API when
                       CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID are set, else through
                       \`wrangler kv --remote\` (your \`wrangler login\`)
  --persist-to DIR     local state directory (default .wrangler/state, like wrangler)
  --config FILE        the gateway's wrangler.toml (default ./wrangler.toml)
  --binding NAME       the KV binding holding the configuration (default CONFIG)
  --state DIR          the state directory of \`isthmus serve --state DIR\` (self-hosted workerd)`;

export async function openStore(opts: StoreOptions): Promise<ClosableStore> {
  if ([opts.local, opts.remote, opts.state !== undefined].filter(Boolean).length > 1) throw new CliError("expected only one of --local, --remote and --state", 2);
  if (opts.state !== undefined) return openDirectoryStore(stateConfigDir(opts.state));
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

/** Where `isthmus serve --state DIR` keeps its configuration store. */
export function stateConfigDir(state: string): string {
  return join(state, "config");
}

/**
 * A port option (`--port`, `--https-port`, ...) as a number, which must
 * differ from the ports other options took (option → port).
 *
 * @example
 * portOption("--https-port", "8443", { "--port": 8787 }); // 8443
 */
export function portOption(option: string, value: string, others: Record<string, number | undefined>): number {
  const port = Number(value);
  const taken = Object.entries(others).filter(([, p]) => p !== undefined);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || taken.some(([, p]) => p === port)) {
    const besides = taken.length > 0 ? ` other than ${taken.map(([name]) => name).join(" and ")}` : "";
    throw new CliError(`${option}: expected a port number${besides}, got ${value}`, 2);
  }
  return port;
}

/**
 * An address option (`--inspector-addr`, `--cluster-addr`, ...): `host:port`,
 * the host a name, an IPv4 address or a bracketed IPv6 address.
 *
 * @example
 * hostPortOption("--cluster-addr", "[fd00::7]:7000"); // "[fd00::7]:7000"
 */
export function hostPortOption(option: string, value: string): string {
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(value)) throw new CliError(`${option}: expected host:port, got ${value}`, 2);
  return value;
}
