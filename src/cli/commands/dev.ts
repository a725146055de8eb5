import { spawn, type ChildProcess } from "node:child_process";
import { watch, type FSWatcher } from "node:fs";
import { randomUUID } from "node:crypto";
import { buildConfig } from "../../config/build.ts";
import { applySnapshot, readActive } from "../../config/store.ts";
import { CliError, readSources } from "../files.ts";
import { openStore } from "../options.ts";
import { wranglerBin } from "../stores.ts";
import { plural, printProblems, summary } from "../output.ts";

export const help = `isthmus dev -f PATH... [--port N] [--persist-to DIR] — run the gateway locally

Applies the configuration to the local KV, starts the gateway with
\`wrangler dev\`, and prints one line once it serves that configuration:

  isthmus: ready on http://127.0.0.1:8787 (config 3f9c2a1)

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
  const port = Number(opts.port ?? "8787");
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CliError(`--port: expected a port number, got ${opts.port}`, 2);
  const persistTo = opts["persist-to"] ?? ".wrangler/state";
  const config = opts.config ?? "wrangler.toml";
  const storeOptions = { local: true, "persist-to": persistTo, config };

  const first = await applyFiles(files, storeOptions);
  if (!first) return 1;

  // Tests pin the admin token through the environment; otherwise it is random per run.
  const token = process.env.ISTHMUS_ADMIN_TOKEN ?? randomUUID();
  const base = `http://127.0.0.1:${port}`;
  const gateway = startWrangler(config, port, persistTo, token, opts["env-file"]);
  const stop = () => {
    for (const w of watchers) w.close();
    stopProcess(gateway);
  };
  const watchers: FSWatcher[] = [];
  process.once("SIGINT", () => {
    stop();
    process.exit(130);
  });
  process.once("SIGTERM", () => {
    stop();
    process.exit(143);
  });

  try {
    await waitForVersion(base, first.adminPrefix, token, first.version, gateway, 90_000);
  } catch (error) {
    stop();
    throw error;
  }
  console.log(`isthmus: ready on ${base} (config ${first.version})`);

  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = Promise.resolve();
  const onChange = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      running = running.then(async () => {
        try {
          const next = await applyFiles(files, storeOptions);
          if (!next?.changed) return;
          await waitForVersion(base, next.adminPrefix, token, next.version, gateway, 60_000);
          console.log(`isthmus: applied config ${next.version}`);
        } catch (error) {
          console.error(`isthmus: ${error instanceof Error ? error.message : String(error)}`);
        }
      });
    }, 250);
  };
  for (const path of files) {
    try {
      watchers.push(watch(path, { recursive: true }, onChange));
    } catch {
      console.error(`isthmus: cannot watch ${path}; changes to it will not be re-applied`);
    }
  }

  const code = await new Promise<number>((resolve) => gateway.once("exit", (c) => resolve(c ?? 1)));
  for (const w of watchers) w.close();
  console.error(`isthmus: the gateway (wrangler dev) exited with code ${code}`);
  return code === 0 ? 0 : 1;
}

export interface Applied {
  version: string;
  adminPrefix: string;
  /** False when the store already had this version active. */
  changed: boolean;
}

/**
 * Validates and applies the files to the local store. On errors, reports
 * which version stays active (read from the store, which `isthmus apply`
 * may also have changed).
 */
export async function applyFiles(files: string[], storeOptions: Parameters<typeof openStore>[0]): Promise<Applied | undefined> {
  const result = await buildConfig(readSources(files));
  printProblems(result.problems);
  const { errors } = summary(result.problems);
  const store = await openStore(storeOptions);
  try {
    if (errors > 0 || !result.snapshot) {
      const active = await readActive(store);
      console.error(`isthmus: ${plural(errors, "error")}; ${active ? `still serving config ${active.version}` : "nothing applied"}`);
      return undefined;
    }
    const outcome = await applySnapshot(store, result.snapshot, result.sources, new Date());
    return { version: result.snapshot.version, adminPrefix: result.snapshot.settings.adminPathPrefix, changed: outcome.changed };
  } finally {
    await store.close();
  }
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

export function stopProcess(child: ChildProcess): void {
  if (child.exitCode !== null || child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    child.kill("SIGTERM");
  }
}

/** Polls the admin status endpoint until the gateway serves `version`. */
export async function waitForVersion(base: string, prefix: string, token: string, version: string, child: ChildProcess, timeoutMs: number, name = "wrangler dev"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new CliError(`the gateway (${name}) exited with code ${child.exitCode} before serving config ${version}`);
    try {
      const res = await fetch(`${base}${prefix}/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2_000) });
      if (res.ok) {
        const status = (await res.json()) as { serving: string | null; lastError: { message: string } | null };
        if (status.serving === version) return;
        last = status.lastError ? `load error: ${status.lastError.message}` : `serving ${status.serving ?? "nothing"}`;
      } else {
        last = `status ${res.status}`;
      }
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new CliError(`the gateway did not serve config ${version} within ${Math.round(timeoutMs / 1000)}s (${last})`);
}
