/**
 * Reads the few things the CLI needs from wrangler.toml: the KV namespace
 * behind the CONFIG binding.
 */
import { existsSync, readFileSync } from "node:fs";
import { CliError } from "./files.ts";

export interface KvBinding {
  binding: string;
  id: string;
}

/** The `[[kv_namespaces]]` entry for `binding` in a wrangler.toml. */
export function kvBinding(configPath: string, binding: string): KvBinding {
  if (!existsSync(configPath)) throw new CliError(`${configPath}: not found (pass --config PATH to the wrangler.toml of the gateway)`);
  const text = readFileSync(configPath, "utf8");
  for (const block of text.split(/^\s*\[\[kv_namespaces\]\]\s*$/m).slice(1)) {
    const body = block.split(/^\s*\[/m)[0] ?? "";
    const name = /^\s*binding\s*=\s*"([^"]+)"/m.exec(body)?.[1];
    const id = /^\s*id\s*=\s*"([^"]+)"/m.exec(body)?.[1];
    if (name === binding && id) return { binding, id };
  }
  throw new CliError(`${configPath}: no [[kv_namespaces]] entry with binding = "${binding}" and an id`);
}
