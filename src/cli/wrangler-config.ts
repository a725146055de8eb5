/**
 * Reads the few things the CLI needs from wrangler.toml: the KV namespace
 * behind the CONFIG binding, and what `isthmus serve` needs to run the Worker.
 */
import { existsSync, readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import { CliError } from "./files.ts";

export interface KvBinding {
  binding: string;
  id: string;
}

/**
 * The KV namespace bound as `binding` in a wrangler.toml, in either TOML
 * form (`[[kv_namespaces]]` blocks or `kv_namespaces = [{ ... }]`).
 */
export function kvBinding(configPath: string, binding: string): KvBinding {
  const doc = readToml(configPath);
  for (const entry of asArray(doc.kv_namespaces)) {
    const id = field(entry, "id");
    if (field(entry, "binding") === binding && typeof id === "string" && id !== "") return { binding, id };
  }
  throw new CliError(`${configPath}: no kv_namespaces entry with binding = "${binding}" and an id`);
}

function readToml(configPath: string): Record<string, unknown> {
  if (!existsSync(configPath)) throw new CliError(`${configPath}: not found (pass --config PATH to the wrangler.toml of the gateway)`);
  try {
    return parseToml(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new CliError(`${configPath}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** What `isthmus serve` takes from wrangler.toml to run the same Worker on bare workerd. */
export interface WorkerSettings {
  main: string;
  compatibilityDate: string;
  compatibilityFlags: string[];
  durableObjects: { binding: string; className: string; sql: boolean }[];
}

/**
 * Reads `main`, `compatibility_date`, `compatibility_flags`, the Durable
 * Object bindings (of this Worker's own classes) and which classes are
 * SQLite-backed (`new_sqlite_classes` in `[[migrations]]`, or
 * `storage = "sqlite"` in the `[exports.<Class>]` map).
 */
export function workerSettings(configPath: string): WorkerSettings {
  const doc = readToml(configPath);
  const main = doc.main;
  const date = doc.compatibility_date;
  if (typeof main !== "string") throw new CliError(`${configPath}: expected main = "<path of the Worker entry>"`);
  if (typeof date !== "string") throw new CliError(`${configPath}: expected compatibility_date = "YYYY-MM-DD"`);
  const flags = Array.isArray(doc.compatibility_flags) ? doc.compatibility_flags.filter((f): f is string => typeof f === "string") : [];
  const sqlClasses = new Set<string>();
  for (const migration of asArray(doc.migrations)) {
    for (const name of asArray(field(migration, "new_sqlite_classes"))) if (typeof name === "string") sqlClasses.add(name);
  }
  // The newer declarative form: [exports.Class] type = "durable-object", storage = "sqlite".
  if (typeof doc.exports === "object" && doc.exports !== null) {
    for (const [name, entry] of Object.entries(doc.exports as Record<string, unknown>)) {
      if (field(entry, "type") === "durable-object" && field(entry, "storage") === "sqlite") sqlClasses.add(name);
    }
  }
  const durableObjects: WorkerSettings["durableObjects"] = [];
  for (const b of asArray(field(doc.durable_objects, "bindings"))) {
    const binding = field(b, "name");
    const className = field(b, "class_name");
    if (typeof binding !== "string" || typeof className !== "string") throw new CliError(`${configPath}: every durable_objects.bindings entry needs name and class_name`);
    if (field(b, "script_name") !== undefined) throw new CliError(`${configPath}: durable_objects binding ${binding} names another Worker (script_name); isthmus serve runs only this Worker's classes`);
    durableObjects.push({ binding, className, sql: sqlClasses.has(className) });
  }
  return { main, compatibilityDate: date, compatibilityFlags: flags, durableObjects };
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function field(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}
