/**
 * Reads multi-document YAML (and `kind: List` wrappers, as printed by
 * `kubectl get -o yaml`) into plain documents that remember where each of
 * their fields came from.
 */
import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Document, type Node } from "yaml";
import type { Problem } from "./problems.ts";

export interface SourceFile {
  /** Path as the user gave it; used in every message. */
  path: string;
  text: string;
}

export interface RawDocument {
  file: string;
  /** Line of the document's first field. */
  line: number;
  value: unknown;
  /** Line of the field at `path` (or of its closest existing parent). */
  lineOf(path: readonly (string | number)[]): number;
}

/**
 * Parses every YAML document of a file. Empty documents are skipped; YAML
 * syntax errors become problems with their line.
 *
 * @example
 * const { documents, problems } = parseYaml({ path: "vs.yaml", text });
 */
export function parseYaml(source: SourceFile): { documents: RawDocument[]; problems: Problem[] } {
  const lineCounter = new LineCounter();
  const problems: Problem[] = [];
  const documents: RawDocument[] = [];
  const docs = parseAllDocuments(source.text, { lineCounter, uniqueKeys: true });
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        problems.push({
          severity: "error",
          file: source.path,
          line: err.linePos?.[0]?.line,
          message: `invalid YAML: ${yamlMessage(err.message)}`,
        });
      }
      continue;
    }
    if (doc.contents === null) continue;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      // An alias bomb (or an alias to a missing anchor) is bad input, not a crash.
      const offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
      problems.push({
        severity: "error",
        file: source.path,
        line: lineCounter.linePos(offset).line,
        message: `invalid YAML: ${err instanceof Error ? err.message : String(err)}`,
      });
      continue;
    }
    if (value === null || value === undefined) continue;
    const lineOf = (path: readonly (string | number)[]) => locate(doc, path, lineCounter);
    if (isList(value)) {
      value.items.forEach((item, i) => {
        const prefix = ["items", i];
        documents.push({
          file: source.path,
          line: lineOf(prefix),
          value: item,
          lineOf: (path) => lineOf([...prefix, ...path]),
        });
      });
    } else {
      documents.push({ file: source.path, line: lineOf([]), value, lineOf });
    }
  }
  return { documents, problems };
}

/** The first line of a yaml error without its trailing "at line L, column C:" (the line is in the prefix already). */
function yamlMessage(message: string): string {
  const first = message.split("\n")[0] ?? message;
  const m = / at line \d+, column (\d+):?$/.exec(first);
  return m ? `${first.slice(0, m.index)} (column ${m[1]})` : first;
}

function isList(value: unknown): value is { items: unknown[] } {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return v.kind === "List" && Array.isArray(v.items);
}

function locate(doc: Document, path: readonly (string | number)[], lines: LineCounter): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) break;
      if (isScalar(pair.key) && pair.key.range) offset = pair.key.range[0];
      node = pair.value;
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment] as Node | undefined;
      if (!item) break;
      if (item.range) offset = item.range[0];
      node = item;
    } else {
      break;
    }
  }
  return lines.linePos(offset).line;
}
