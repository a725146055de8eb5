import { buildConfig } from "../../config/build.ts";
import { readSources } from "../files.ts";
import { plural, printProblems, summary } from "../output.ts";

export const help = `isthmus validate -f PATH... — check configuration without applying it

Reads every .yaml/.yml/.json file under the given paths (multi-document
files, \`kind: List\` and merge keys are fine), validates each resource and the
references between them, and compiles them. Prints one line per problem;
exits 1 on any error.

Example:
  isthmus validate -f examples/bookinfo`;

export async function validate(files: string[]): Promise<number> {
  const result = await buildConfig(readSources(files));
  printProblems(result.problems);
  const { errors, warnings } = summary(result.problems);
  if (errors > 0) {
    console.error(`isthmus: ${plural(errors, "error")}${warnings ? `, ${plural(warnings, "warning")}` : ""}; nothing applied`);
    return 1;
  }
  console.log(`isthmus: ${plural(result.resources.length, "resource")} valid${warnings ? ` (${plural(warnings, "warning")})` : ""}; config ${result.snapshot?.version}`);
  return 0;
}
