import { buildConfig } from "../../config/build.ts";
import { diffResources } from "../../config/diff.ts";
import { readActive, readSources as readStoredSources } from "../../config/store.ts";
import { CliError, readSources } from "../files.ts";
import { openStore, STORE_HELP, type StoreOptions } from "../options.ts";
import { plural, printProblems, summary } from "../output.ts";

export const help = `isthmus diff -f PATH... [--local | --remote] — what applying would change

Compares the resources in PATH with those of the active version, resource
by resource. Exits 0 when nothing would change, 1 when something would
(like kubectl diff), 2 on an error.
${STORE_HELP}

Example:
  isthmus diff -f examples/bookinfo`;

/**
 * Prints what applying `files` would change and returns the exit code:
 * 0 nothing, 1 something, 2 an error. Every error (a missing file or
 * wrangler.toml, a store that cannot be read) ends in one line and exit 2,
 * since 1 would tell a script that changes are pending.
 *
 * @example
 * await diff(["examples/bookinfo"], { state: ".isthmus" }); // 0, 1 or 2
 */
export async function diff(files: string[], opts: StoreOptions): Promise<number> {
  try {
    return await diffAgainstStore(files, opts);
  } catch (error) {
    throw new CliError(error instanceof Error ? error.message : String(error), 2);
  }
}

async function diffAgainstStore(files: string[], opts: StoreOptions): Promise<number> {
  const result = await buildConfig(readSources(files));
  printProblems(result.problems);
  if (summary(result.problems).errors > 0) {
    console.error("isthmus: the new configuration has errors (see above); it could not be applied");
    return 2;
  }
  const store = await openStore(opts);
  try {
    const active = await readActive(store);
    const before = active ? ((await readStoredSources(store, active.version)) ?? []) : [];
    const changes = diffResources(before, result.sources);
    if (changes.length === 0) {
      console.log(`isthmus: no changes against ${active ? `config ${active.version}` : "an empty store"}`);
      return 0;
    }
    for (const c of changes) {
      const mark = c.type === "added" ? "+" : c.type === "removed" ? "-" : "~";
      console.log(`${mark} ${c.id} (${c.where})`);
      if (c.type === "changed") for (const line of c.lines) console.log(`    ${line}`);
    }
    const count = (t: string) => changes.filter((c) => c.type === t).length;
    console.log(`isthmus: ${count("added")} added, ${count("changed")} changed, ${count("removed")} removed against ${active ? `config ${active.version}` : "an empty store"}; new config ${result.snapshot?.version}`);
    return 1;
  } finally {
    await store.close();
  }
}
