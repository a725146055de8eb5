/**
 * Running a local gateway process (`isthmus dev` on wrangler, `isthmus serve`
 * on workerd): apply the files, wait until the gateway serves them, print
 * the ready line, re-apply on change, and stop the process on Ctrl-C.
 */
import type { ChildProcess } from "node:child_process";
import { buildConfig } from "../config/build.ts";
import { applySnapshot, KEYS, readActive, StoreFormatError } from "../config/store.ts";
import type { Snapshot } from "../config/snapshot.ts";
import { CliError, readSources } from "./files.ts";
import { openStore, stateConfigDir } from "./options.ts";
import { directoryStoreFile } from "./stores.ts";
import { plural, printProblems, summary } from "./output.ts";
import { watchConfigPath, type PathWatch } from "./watch.ts";

export interface Supervised {
  files: string[];
  storeOptions: Parameters<typeof openStore>[0];
  /** The first configuration, already applied. */
  first: Applied;
  gateway: ChildProcess;
  /** What the gateway is, for messages (`wrangler dev`, `workerd`). */
  name: string;
  /** Base URL the admin endpoint answers on. */
  base: string;
  token: string;
  readyTimeoutMs: number;
  /** Called with every configuration that builds, before it is applied (e.g. to warn about what the runtime lacks). */
  inspect?: (snapshot: Snapshot) => void;
}

/**
 * Waits for the gateway to serve the first configuration, prints
 * `isthmus: ready on <base> (config <version>)`, then re-applies the files
 * whenever they change until the gateway exits. Returns the exit code.
 */
export async function superviseGateway(s: Supervised): Promise<number> {
  const watchers: PathWatch[] = [];
  // `isthmus serve`: a load error names the file of the directory store it is about.
  const state = s.storeOptions.state;
  const storeFile = state !== undefined ? (key: string) => directoryStoreFile(stateConfigDir(state), key) : undefined;
  const stop = () => {
    for (const w of watchers) w.close();
    stopProcess(s.gateway);
  };
  // Ctrl-C or SIGTERM (Kubernetes) stops the gateway, which finishes the requests in flight, and exits
  // once it has: exiting first would end a container and cut them short. A second signal stops at once.
  let stopping = false;
  const shutdown = (code: number) => {
    if (stopping) {
      killProcess(s.gateway);
      process.exit(code);
    }
    stopping = true;
    stop();
    if (s.gateway.exitCode !== null || s.gateway.signalCode !== null) process.exit(code);
    s.gateway.once("exit", () => process.exit(code));
  };
  process.on("SIGINT", () => shutdown(130));
  process.on("SIGTERM", () => shutdown(143));
  // A closed terminal or ssh session: the gateway runs in its own session, so it would outlive this one.
  process.on("SIGHUP", () => shutdown(129));

  try {
    await waitForVersion(s.base, s.first.adminPrefix, s.token, s.first.version, s.gateway, s.readyTimeoutMs, s.name, storeFile);
  } catch (error) {
    stop();
    throw error;
  }
  console.log(`isthmus: ready on ${s.base} (config ${s.first.version})`);

  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = Promise.resolve();
  const onChange = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      running = running.then(async () => {
        try {
          const next = await applyFiles(s.files, s.storeOptions, s.inspect);
          if (!next?.changed) return;
          await waitForVersion(s.base, next.adminPrefix, s.token, next.version, s.gateway, 60_000, s.name, storeFile);
          console.log(`isthmus: applied config ${next.version}`);
        } catch (error) {
          console.error(`isthmus: ${error instanceof Error ? error.message : String(error)}`);
        }
      });
    }, 250);
  };
  for (const path of s.files) {
    try {
      watchers.push(watchConfigPath(path, onChange));
    } catch {
      console.error(`isthmus: cannot watch ${path}; changes to it will not be re-applied`);
    }
  }

  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) => s.gateway.once("exit", (c, sig) => done([c, sig])));
  for (const w of watchers) w.close();
  console.error(`isthmus: the gateway (${s.name}) ${signal !== null ? `was killed by ${signal}` : `exited with code ${code}`}`);
  return code === 0 ? 0 : 1;
}

export interface Applied {
  version: string;
  adminPrefix: string;
  /** False when the store already had this version active. */
  changed: boolean;
  /** The active pointer's previous version: the one this apply replaced, when changed. */
  previous?: string;
}

/**
 * Validates and applies the files to the local store. On errors, reports
 * which version stays active (read from the store, which `isthmus apply`
 * may also have changed), or, at a start (`starting`), that nothing was
 * started: no gateway serves anything yet.
 */
export async function applyFiles(
  files: string[],
  storeOptions: Parameters<typeof openStore>[0],
  inspect?: (snapshot: Snapshot) => void,
  starting = false,
): Promise<Applied | undefined> {
  const result = await buildConfig(readSources(files));
  printProblems(result.problems);
  const { errors } = summary(result.problems);
  const store = await openStore(storeOptions);
  try {
    return await applyTo(store, result, errors, inspect, starting);
  } catch (error) {
    // The active pointer or history does not parse (a hand edit, a copy cut short): name the file to look at.
    if (!(error instanceof StoreFormatError)) throw error;
    const file = store.fileOf?.(error.key);
    throw new CliError(`${error.message}${file !== undefined ? ` (the file ${file}: restore it, or delete it to start from the -f files)` : ""}`);
  } finally {
    await store.close();
  }
}

/** Applies a built configuration to `store`, or reports which version stays active when it has errors. */
async function applyTo(
  store: Awaited<ReturnType<typeof openStore>>,
  result: Awaited<ReturnType<typeof buildConfig>>,
  errors: number,
  inspect: ((snapshot: Snapshot) => void) | undefined,
  starting: boolean,
): Promise<Applied | undefined> {
  if (errors > 0 || !result.snapshot) {
    if (starting) {
      console.error(`isthmus: ${plural(errors, "error")}; not started (fix the files and start again)`);
      return undefined;
    }
    const active = await readActive(store);
    console.error(`isthmus: ${plural(errors, "error")}; ${active ? `still serving config ${active.version}` : "nothing applied"}`);
    return undefined;
  }
  inspect?.(result.snapshot);
  const outcome = await applySnapshot(store, result.snapshot, result.sources, new Date());
  return { version: result.snapshot.version, adminPrefix: result.snapshot.settings.adminPathPrefix, changed: outcome.changed, ...(outcome.previous !== undefined ? { previous: outcome.previous } : {}) };
}

export function stopProcess(child: ChildProcess): void {
  signalGroup(child, "SIGTERM");
}

/** Stops the child (and its process group) at once, without letting it finish anything. */
export function killProcess(child: ChildProcess): void {
  signalGroup(child, "SIGKILL");
}

/** Signals the child's process group (it was spawned detached), or the child alone. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.exitCode !== null || child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

/**
 * Polls the admin status endpoint until the gateway serves `version`.
 * `storeFile` (serve's directory store) names the file a load error is about.
 */
export async function waitForVersion(
  base: string,
  prefix: string,
  token: string,
  version: string,
  child: ChildProcess,
  timeoutMs: number,
  name = "wrangler dev",
  storeFile?: (key: string) => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    // A gateway killed by a signal (the OOM killer; serve refusing a deployment) has no exit code.
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new CliError(`the gateway (${name}) ${child.signalCode !== null ? `was killed by ${child.signalCode}` : `exited with code ${child.exitCode}`} before serving config ${version}`);
    }
    try {
      const res = await fetch(`${base}${prefix}/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2_000) });
      if (res.ok) {
        const status = (await res.json()) as { serving: string | null; lastError: { message: string; version?: string } | null };
        if (status.serving === version) return;
        last = status.lastError ? `load error: ${status.lastError.message}${loadErrorFile(status.lastError.version, storeFile)}` : `serving ${status.serving ?? "nothing"}`;
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

/** ` in FILE` for a load error: the snapshot of the version it names, else the active pointer (where it failed before reading one). */
function loadErrorFile(version: string | undefined, storeFile: ((key: string) => string) | undefined): string {
  if (!storeFile) return "";
  return ` in ${storeFile(version !== undefined ? KEYS.snapshot(version) : KEYS.active)}`;
}
