/**
 * The whole configuration path in one call: YAML text in, Snapshot out.
 * Runs the same in Node (the CLI) and in workerd (tests).
 *
 * @example
 * const result = await buildConfig([{ path: "bookinfo.yaml", text }]);
 * if (result.snapshot) console.log(result.snapshot.version);
 */
import { compile } from "./compile/index.ts";
import { parseYaml, type SourceFile } from "./parse.ts";
import { hasErrors, type Problem } from "./problems.ts";
import type { Snapshot } from "./snapshot.ts";
import { validateDocuments, type AnyResource } from "./validate.ts";
import { canonicalResource, type CanonicalResource } from "./canonical.ts";

export interface BuildResult {
  resources: AnyResource[];
  /** The resources as they will be stored for `isthmus diff`. */
  sources: CanonicalResource[];
  /** Present only when there is no error. */
  snapshot?: Snapshot;
  problems: Problem[];
}

export async function buildConfig(files: readonly SourceFile[]): Promise<BuildResult> {
  const problems: Problem[] = [];
  const documents = files.flatMap((file) => {
    const parsed = parseYaml(file);
    problems.push(...parsed.problems);
    return parsed.documents;
  });
  const { resources, problems: validation } = validateDocuments(documents);
  problems.push(...validation);
  if (resources.length === 0 && !hasErrors(problems)) problems.push(nothingToApply(files));
  const sources = resources.map(canonicalResource);
  if (hasErrors(problems)) return { resources, sources, problems: sortProblems(problems) };
  const compiled = await compile(resources);
  problems.push(...compiled.problems);
  const result: BuildResult = { resources, sources, problems: sortProblems(problems) };
  if (compiled.snapshot && !hasErrors(problems)) result.snapshot = compiled.snapshot;
  return result;
}

/**
 * Applying a configuration replaces the whole active one, so an input with no
 * resource Isthmus reads (an empty file, a `kind: List` with no items, a
 * directory of ignored kinds or the wrong files) would leave every host
 * answering 404. kubectl refuses it too ("no objects passed to apply").
 */
function nothingToApply(files: readonly SourceFile[]): Problem {
  const where = files.length === 0 ? "no file was read" : `read ${files.length === 1 ? (files[0] as SourceFile).path : `${files.length} files`}`;
  return { severity: "error", message: `no resources to apply (${where}): an empty configuration would replace the active one and every host would answer 404` };
}

function sortProblems(problems: Problem[]): Problem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.file ?? "").localeCompare(b.p.file ?? "") || (a.p.line ?? 0) - (b.p.line ?? 0) || a.i - b.i)
    .map(({ p }) => p);
}
