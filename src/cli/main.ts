/**
 * The `isthmus` command.
 */
import { parseArgs } from "node:util";
import { CliError } from "./files.ts";
import { StoreFormatError } from "../config/store.ts";
import { STORE_OPTIONS } from "./options.ts";
import * as validateCmd from "./commands/validate.ts";
import * as applyCmd from "./commands/apply.ts";
import * as devCmd from "./commands/dev.ts";
import * as versionsCmd from "./commands/versions.ts";
import * as diffCmd from "./commands/diff.ts";
import * as rollbackCmd from "./commands/rollback.ts";
import * as serveCmd from "./commands/serve.ts";

const USAGE = `isthmus — an Istio-compatible edge gateway on Cloudflare Workers

Usage: isthmus <command> [options]

Commands:
  validate -f PATH...   check configuration (exit 1 on errors)
  apply -f PATH...      validate, compile and activate a configuration
  dev -f PATH...        run the gateway locally with a configuration, re-applying on change
  serve -f PATH...      run the gateway on bare workerd (self-hosted), state on local disk
  diff -f PATH...       show what apply would change, resource by resource
  versions              list stored configuration versions
  rollback [--to V]     re-activate an earlier version

Run \`isthmus <command> --help\` for a command's options and an example.

Example:
  isthmus dev -f examples/bookinfo`;

const COMMANDS: Record<string, { help: string; options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }>; needsFiles: boolean; run: (files: string[], values: Record<string, unknown>) => Promise<number> }> = {
  validate: { help: validateCmd.help, options: {}, needsFiles: true, run: (f) => validateCmd.validate(f) },
  apply: { help: applyCmd.help, options: STORE_OPTIONS, needsFiles: true, run: (f, v) => applyCmd.apply(f, v) },
  dev: {
    help: devCmd.help,
    options: { port: { type: "string" }, "persist-to": { type: "string" }, config: { type: "string" }, "env-file": { type: "string" } },
    needsFiles: true,
    run: (f, v) => devCmd.dev(f, v),
  },
  serve: {
    help: serveCmd.help,
    options: { port: { type: "string" }, ip: { type: "string" }, state: { type: "string" }, config: { type: "string" }, "env-file": { type: "string" }, "inspector-addr": { type: "string" }, credentials: { type: "string" }, "https-port": { type: "string" }, tls: { type: "string" }, "health-port": { type: "string" }, "metrics-port": { type: "string" }, "trusted-ca": { type: "string" }, "cluster-bucket": { type: "string" }, "cluster-addr": { type: "string" }, "cluster-advertise": { type: "string" }, "cluster-key-file": { type: "string" }, "cluster-stop-timeout": { type: "string" }, "cluster-allow-deployments": { type: "boolean" } },
    needsFiles: true,
    run: (f, v) => serveCmd.serve(f, v),
  },
  diff: { help: diffCmd.help, options: STORE_OPTIONS, needsFiles: true, run: (f, v) => diffCmd.diff(f, v) },
  versions: { help: versionsCmd.help, options: STORE_OPTIONS, needsFiles: false, run: (_f, v) => versionsCmd.versions(v) },
  rollback: { help: rollbackCmd.help, options: { ...STORE_OPTIONS, to: { type: "string" } }, needsFiles: false, run: (_f, v) => rollbackCmd.rollback(v) },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`isthmus: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        ...command.options,
        ...(command.needsFiles ? { filename: { type: "string", short: "f", multiple: true } } : {}),
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
      strict: true,
    });
  } catch (error) {
    console.error(`isthmus ${name}: ${error instanceof Error ? error.message : String(error)}\n\n${command.help}`);
    return 2;
  }
  const values = parsed.values as Record<string, unknown>;
  if (values.help) {
    console.log(command.help);
    return 0;
  }
  const files = (values.filename as string[] | undefined) ?? [];
  if (command.needsFiles && files.length === 0) {
    console.error(`isthmus ${name}: expected at least one -f PATH\n\n${command.help}`);
    return 2;
  }
  try {
    return await command.run(files, values);
  } catch (error) {
    if (error instanceof CliError) {
      console.error(`isthmus: ${error.message}`);
      return error.exitCode;
    }
    // A store key that does not parse: its message names the store and key; a stack trace would add nothing.
    if (error instanceof StoreFormatError) {
      console.error(`isthmus: ${error.message}`);
      return 1;
    }
    throw error;
  }
}
