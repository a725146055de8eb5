import { readActive, readHistory } from "../../config/store.ts";
import { CliError } from "../files.ts";
import { openStore, STORE_HELP, type StoreOptions } from "../options.ts";

export const help = `isthmus versions [--local | --remote] — list the stored configuration versions

Newest first; the active one is marked with *.
${STORE_HELP}

Example:
  isthmus versions --remote`;

export async function versions(opts: StoreOptions): Promise<number> {
  const store = await openStore(opts);
  try {
    const [active, history] = await Promise.all([readActive(store), readHistory(store)]);
    if (history.length === 0) {
      console.log(`isthmus: no configuration has been applied to ${store.description}`);
      return 0;
    }
    console.log("  VERSION       APPLIED AT                 ACTION    RESOURCES");
    for (const h of history) {
      const mark = h.version === active?.version ? "*" : " ";
      console.log(`${mark} ${h.version.padEnd(13)} ${h.appliedAt.padEnd(26)} ${h.action.padEnd(9)} ${h.resources}`);
    }
    return 0;
  } catch (error) {
    // A store whose active or history key does not parse: one line naming the store and key, not a stack.
    throw error instanceof CliError ? error : new CliError(error instanceof Error ? error.message : String(error));
  } finally {
    await store.close();
  }
}
