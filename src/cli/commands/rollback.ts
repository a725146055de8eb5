import { rollback as rollbackStore } from "../../config/store.ts";
import { CliError } from "../files.ts";
import { openStore, STORE_HELP, type StoreOptions } from "../options.ts";

export const help = `isthmus rollback [--to VERSION] [--local | --remote] — re-activate an earlier version

Without --to, goes back to the version active before the current one.
VERSION may be a unique prefix (see isthmus versions).
${STORE_HELP}

Examples:
  isthmus rollback
  isthmus rollback --to 3f9c2a1b0c4d --remote`;

export async function rollback(opts: StoreOptions & { to?: string }): Promise<number> {
  const store = await openStore(opts);
  try {
    const outcome = await rollbackStore(store, new Date(), opts.to);
    if (!outcome.changed) console.log(`isthmus: config ${outcome.version} is already active`);
    else console.log(`isthmus: rolled back to config ${outcome.version} (was ${outcome.previous}) in ${store.description}`);
    return 0;
  } catch (error) {
    throw error instanceof CliError ? error : new CliError(error instanceof Error ? error.message : String(error));
  } finally {
    await store.close();
  }
}
