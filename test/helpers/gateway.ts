/**
 * Starts the real gateway for end-to-end tests: `isthmus dev` (wrangler dev
 * + workerd) or `isthmus serve` (bare workerd) on a free port with its own
 * state directory, exactly as a user runs it. One gateway per test file.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../bench/processes.ts";

export const ADMIN_TOKEN = "test-admin-token";

export interface Gateway {
  url: string;
  port: number;
  /** The `isthmus dev` / `isthmus serve` process. */
  pid: number;
  /** Directory holding the config file(s) the gateway watches. */
  configDir: string;
  stateDir: string;
  /** Everything `isthmus dev` / `isthmus serve` printed so far. */
  output: () => string;
  /**
   * Rewrites the config and waits until the gateway serves the new version;
   * `atomic` saves as vim and `sed -i` do (a new file renamed over the old).
   */
  reconfigure(yaml: string, options?: { atomic?: boolean }): Promise<string>;
  /** Rewrites the config and waits for `isthmus dev` to report errors. */
  reconfigureInvalid(yaml: string): Promise<string>;
  admin(path: string): Promise<Response>;
  /** Ctrl-C, then removes the directories (unless keepState). */
  stop(options?: { keepState?: boolean }): Promise<void>;
}

export interface StartOptions {
  /** `dev` (wrangler dev, the default) or `serve` (bare workerd). */
  command?: "dev" | "serve";
  /** Reuse a state directory (e.g. one kept by stop({ keepState: true })). */
  stateDir?: string;
  /** Extra CLI arguments (e.g. --config for a different wrangler.toml). */
  args?: string[];
  /** Extra environment variables (e.g. AWS_ENDPOINT_URL for a cluster's bucket). */
  env?: Record<string, string>;
  /** `-f` names the config file itself rather than its directory. */
  watchFile?: boolean;
}

/** A port free now and not handed out before in this process (the benchmark harness's, shared). */
export { freePort };

export async function startGateway(yaml: string, options: StartOptions = {}): Promise<Gateway> {
  const command = options.command ?? "dev";
  const configDir = mkdtempSync(join(tmpdir(), "isthmus-config-"));
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), "isthmus-state-"));
  const configFile = join(configDir, "config.yaml");
  writeFileSync(configFile, yaml);
  const stateFlag = command === "dev" ? "--persist-to" : "--state";
  let port = 0;
  let out = "";
  let child: ChildProcess | undefined;
  const waitFor = async (pattern: RegExp, from: number, timeoutMs: number): Promise<RegExpExecArray> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const m = pattern.exec(out.slice(from));
      if (m) return m;
      if (child?.exitCode !== null) throw new Error(`isthmus ${command} exited (${child?.exitCode}):\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${pattern}:\n${out}`);
  };

  // A free port can be taken by another process before the gateway binds it (test files start
  // gateways in parallel): then the gateway exits at once, and a new port is tried.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    out = "";
    const launched: ChildProcess = spawn(process.execPath, ["bin/isthmus.js", command, "-f", options.watchFile ? configFile : configDir, "--port", String(port), stateFlag, stateDir, ...(options.args ?? [])], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ISTHMUS_ADMIN_TOKEN: ADMIN_TOKEN, ...options.env },
    });
    child = launched;
    launched.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    launched.stderr?.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(/isthmus: ready on (\S+) \(config (\w+)\)/, 0, 120_000);
      break;
    } catch (error) {
      if (attempt >= 3 || launched.exitCode === null || !/Address already in use|EADDRINUSE/.test(out)) throw error;
    }
  }
  const running = child;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    port,
    pid: running.pid as number,
    configDir,
    stateDir,
    output: () => out,
    async reconfigure(next, saving = {}) {
      const from = out.length;
      if (saving.atomic) {
        writeFileSync(`${configFile}.tmp`, next);
        renameSync(`${configFile}.tmp`, configFile);
      } else {
        writeFileSync(configFile, next);
      }
      return (await waitFor(/isthmus: applied config (\w+)/, from, 60_000))[1] as string;
    },
    async reconfigureInvalid(next) {
      const from = out.length;
      writeFileSync(configFile, next);
      return (await waitFor(/isthmus: \d+ errors?; still serving config (\w+)/, from, 60_000))[1] as string;
    },
    admin: (path) => fetch(`${url}/__isthmus${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
    async stop(stopOptions = {}) {
      if (running.exitCode === null) {
        running.kill("SIGINT");
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            running.kill("SIGKILL");
            resolve();
          }, 10_000);
          running.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      rmSync(configDir, { recursive: true, force: true });
      if (!stopOptions.keepState) rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
