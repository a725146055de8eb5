import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { wranglerBin } from "../stores.ts";
import { applyFiles, superviseGateway } from "../supervise.ts";
import { portOption } from "../options.ts";

export const help = `isthmus dev -f PATH... [--port N] [--persist-to DIR] — run the gateway locally

Applies the configuration to the local KV, starts the gateway with
\`wrangler dev\`, and prints one line once it serves that configuration:

  isthmus: ready on http://127.0.0.1:8787 (config 3f9c2a1b0c4d)

Edits to the files are validated and re-applied; a configuration with
errors is reported and the previous one keeps serving. Ctrl-C stops the
gateway.

Options:
  --port N           port to listen on (default 8787)
  --persist-to DIR   local state directory (default .wrangler/state)
  --config FILE      the gateway's wrangler.toml (default ./wrangler.toml)
  --env-file FILE    secrets and variables for the Worker (KEY=VALUE lines), such as
                     the OTLP exporter header secrets; passed to wrangler dev
                     (which otherwise reads .dev.vars beside the wrangler.toml)

Example:
  isthmus dev -f examples/bookinfo --port 8787`;

export interface DevOptions {
  port?: string;
  "persist-to"?: string;
  config?: string;
  "env-file"?: string;
}

export async function dev(files: string[], opts: DevOptions): Promise<number> {
  const port = portOption("--port", opts.port ?? "8787", {});
  const persistTo = opts["persist-to"] ?? ".wrangler/state";
  const config = opts.config ?? "wrangler.toml";
  const storeOptions = { local: true, "persist-to": persistTo, config };

  const first = await applyFiles(files, storeOptions, undefined, true);
  if (!first) return 1;

  // Tests pin the admin token through the environment; otherwise it is random per run.
  const token = process.env.ISTHMUS_ADMIN_TOKEN ?? randomUUID();
  const gateway = startWrangler(config, port, persistTo, token, opts["env-file"]);
  return superviseGateway({ files, storeOptions, first, gateway, name: "wrangler dev", base: `http://127.0.0.1:${port}`, token, readyTimeoutMs: 90_000 });
}

function startWrangler(config: string, port: number, persistTo: string, token: string, envFile: string | undefined): ChildProcess {
  const args = [
    wranglerBin(),
    "dev",
    "--config",
    config,
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--persist-to",
    persistTo,
    "--var",
    `ADMIN_TOKEN:${token}`,
    "--show-interactive-dev-session=false",
    "--log-level",
    "warn",
    ...(envFile ? ["--env-file", envFile] : []),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
  });
  return child;
}
