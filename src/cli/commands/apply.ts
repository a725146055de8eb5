import { buildConfig } from "../../config/build.ts";
import { applySnapshot } from "../../config/store.ts";
import { readSources, CliError } from "../files.ts";
import { openStore, STORE_HELP, type StoreOptions } from "../options.ts";
import { plural, printProblems, summary } from "../output.ts";

export const help = `isthmus apply -f PATH... [--local | --remote] [--persist-to DIR] — validate, compile and activate

Validates and compiles the configuration, stores the snapshot, then flips
the active pointer to it. Gateways pick it up within their
configRefreshInterval. Nothing is written when there is an error.
${STORE_HELP}

Examples:
  isthmus apply -f examples/bookinfo
  isthmus apply -f mesh/ --remote`;

export async function apply(files: string[], opts: StoreOptions): Promise<number> {
  const result = await buildConfig(readSources(files));
  printProblems(result.problems);
  const { errors } = summary(result.problems);
  if (errors > 0 || !result.snapshot) {
    console.error(`isthmus: ${plural(errors, "error")}; nothing applied`);
    return 1;
  }
  const store = await openStore(opts);
  try {
    const outcome = await applySnapshot(store, result.snapshot, result.sources, new Date());
    if (!outcome.changed) console.log(`isthmus: config ${outcome.version} is already active in ${store.description}${outcome.sourcesUpdated ? "; sources updated (labels, annotations or other fields that do not change the compiled config)" : ""}`);
    else console.log(`isthmus: applied config ${outcome.version} (${plural(result.resources.length, "resource")}) to ${store.description}${outcome.previous ? `; previous ${outcome.previous}` : ""}`);
    return 0;
  } catch (error) {
    throw error instanceof CliError ? error : new CliError(`apply failed: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await store.close();
  }
}
