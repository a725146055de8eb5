/**
 * Reads multi-document YAML or JSON (and `kind: List` wrappers, as printed by
 * `kubectl get -o yaml`) into plain documents that remember where each of
 * their fields came from. Reads what kubectl's go-yaml reads: merge keys
 * (`<<: *anchor`) and aliases, with go-yaml's limit on alias expansion.
 */
import { isAlias, isMap, isNode, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, type Alias, type Document, type Node, type Pair } from "yaml";
import { isKind, KINDS } from "./kinds.ts";
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
 * Parses every YAML (or JSON) document of a file. Empty documents are
 * skipped; List wrappers are unpacked into their items; YAML syntax errors,
 * bad aliases and merge keys, and excessive aliasing become problems with
 * their line.
 *
 * @example
 * const { documents, problems } = parseYaml({ path: "vs.yaml", text });
 * documents[0]?.lineOf(["spec", "http", 0, "route"]); // the line of that field in vs.yaml
 */
export function parseYaml(source: SourceFile): { documents: RawDocument[]; problems: Problem[] } {
  const lineCounter = new LineCounter();
  const problems: Problem[] = [];
  const documents: RawDocument[] = [];
  const docs = parseAllDocuments(source.text, { lineCounter, uniqueKeys: true, merge: true });
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
    const value = plainValue(doc, source.path, lineCounter, problems);
    if (value === null || value === undefined) continue;
    const lineOf = (path: readonly (string | number)[]) => locate(doc, path, lineCounter);
    documents.push(...unwrapList({ file: source.path, line: lineOf([]), value, lineOf }, problems));
  }
  return { documents, problems };
}

/** The document's value; undefined (with a problem) for bad aliases or merge keys. */
function plainValue(doc: Document, file: string, lines: LineCounter, problems: Problem[]): unknown {
  if (doc.contents === null) return undefined;
  try {
    return toPlain(doc.contents);
  } catch (err) {
    // An alias bomb, an alias to a missing anchor or a bad merge is bad input, not a crash.
    const offset = err instanceof YamlInputError ? err.offset : (doc.contents.range?.[0] ?? 0);
    const message = err instanceof Error ? err.message : String(err);
    problems.push({ severity: "error", file, line: lines.linePos(offset).line, message: `invalid YAML: ${message}` });
    return undefined;
  }
}

/** A List wrapper's items (each placed on its own lines), or the document itself. */
function unwrapList(doc: RawDocument, problems: Problem[]): RawDocument[] {
  const list = listKind(doc.value);
  if (list === undefined) return [doc];
  const items = (doc.value as Record<string, unknown>).items;
  if (!Array.isArray(items)) {
    problems.push({
      severity: "error",
      file: doc.file,
      line: doc.lineOf(["items"]),
      resource: list,
      field: "items",
      message: `expected a list of resources, got ${describeValue(items)}`,
    });
    return [];
  }
  return items.map((item: unknown, i) => {
    const prefix = ["items", i];
    return { file: doc.file, line: doc.lineOf(prefix), value: item, lineOf: (path) => doc.lineOf([...prefix, ...path]) };
  });
}

/** The first line of a yaml error without its trailing "at line L, column C:" (the line is in the prefix already). */
function yamlMessage(message: string): string {
  const first = message.split("\n")[0] ?? message;
  const m = / at line \d+, column (\d+):?$/.exec(first);
  return m ? `${first.slice(0, m.index)} (column ${m[1]})` : first;
}

/**
 * The kind of a list wrapper, if `value` is one: `kind: List` (what
 * `kubectl get -o yaml` prints), or a typed list such as
 * `VirtualServiceList` (what the API server returns) with apiVersion `v1`
 * or one of the item kind's group.
 */
function listKind(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const { kind, apiVersion } = value as Record<string, unknown>;
  if (kind === "List") return kind;
  if (typeof kind !== "string" || !kind.endsWith("List")) return undefined;
  const item = kind.slice(0, -"List".length);
  if (!isKind(item)) return undefined;
  return apiVersion === "v1" || (typeof apiVersion === "string" && apiVersion.startsWith(`${KINDS[item].group}/`)) ? kind : undefined;
}

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "object") return "a mapping";
  return JSON.stringify(value);
}

/** The line of the field at `path`; a field that came from a merge key (`<<: *anchor`) is placed on the `<<` line. */
function locate(doc: Document, path: readonly (string | number)[], lines: LineCounter): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && !isMergeKey(p) && String(p.key.value) === String(segment));
      if (!pair) {
        const merge = node.items.find(isMergeKey);
        if (merge && isScalar(merge.key) && merge.key.range) offset = merge.key.range[0];
        break;
      }
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

/** `<<` as a plain key, which the parser (with `merge: true`) reads as a merge key. */
function isMergeKey(pair: Pair): boolean {
  return isScalar(pair.key) && typeof pair.key.value === "symbol";
}

/** Bad input found while turning YAML nodes into values; `offset` places it in the text. */
class YamlInputError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = "YamlInputError";
    this.offset = offset;
  }
}

/**
 * The share of a document's values that may be copies made by aliases, by
 * the document's expanded size: go-yaml's rule (the fix for
 * CVE-2019-11253), so Isthmus refuses what kubectl refuses. Small
 * documents may alias freely; a large one must be mostly written out,
 * which bounds the expansion to a multiple of the text.
 */
function allowedAliasShare(values: number): number {
  if (values <= 400_000) return 0.99;
  if (values >= 4_000_000) return 0.1;
  return 0.99 - 0.89 * ((values - 400_000) / 3_600_000);
}

interface Converted {
  value: unknown;
  /** How many values the node expands to, itself included. */
  size: number;
}

/**
 * Turns a document's nodes into plain values, as `doc.toJS()` does
 * (an alias shares its anchor's value; merge keys copy the keys a map does
 * not set itself), while counting what aliases expand to. Throws a
 * YamlInputError for an unknown or recursive alias, a bad merge source or
 * excessive aliasing. It resolves each alias in constant time; the yaml
 * library's own resolution is quadratic in the number of aliases.
 *
 * @example
 * toPlain(parseDocument("a: &x {b: 1}\nc: {<<: *x, d: 2}", { merge: true }).contents); // { a: { b: 1 }, c: { b: 1, d: 2 } }
 */
function toPlain(root: Node): unknown {
  const anchors = new Map<string, Node>();
  const done = new Map<Node, Converted>();
  let values = 0;
  let copies = 0;

  const convert = (node: unknown): Converted => {
    if (isAlias(node)) return alias(node);
    if (!isNode(node)) return { value: null, size: 0 };
    values += 1;
    if (node.anchor) anchors.set(node.anchor, node);
    let out: Converted;
    if (isMap(node)) out = map(node.items);
    else if (isSeq(node)) out = seq(node.items);
    else out = { value: isScalar(node) ? node.value : null, size: 1 };
    if (node.anchor) done.set(node, out);
    return out;
  };

  const alias = (node: Alias): Converted => {
    const offset = node.range?.[0] ?? 0;
    const target = anchors.get(node.source);
    if (!target) throw new YamlInputError(`unknown alias *${node.source} (its anchor &${node.source} must come before it, in the same document)`, offset);
    const source = done.get(target);
    if (!source) throw new YamlInputError(`alias *${node.source} is inside the value it refers to`, offset);
    values += 1 + source.size;
    copies += source.size;
    if (copies > 100 && values > 1000 && copies / values > allowedAliasShare(values)) {
      const share = Math.floor((copies / values) * 100);
      throw new YamlInputError(`excessive aliasing: *${node.source} brings the document to ${values} values, ${share}% of them alias copies (kubectl refuses it too)`, offset);
    }
    return { value: source.value, size: 1 + source.size };
  };

  const seq = (items: readonly unknown[]): Converted => {
    const value: unknown[] = [];
    let size = 1;
    for (const item of items) {
      const converted = isPair(item) ? map([item]) : convert(item);
      value.push(converted.value);
      size += converted.size;
    }
    return { value, size };
  };

  const map = (pairs: readonly Pair[]): Converted => {
    const value: Record<string, unknown> = {};
    let size = 1;
    for (const pair of pairs) {
      size += isMergeKey(pair) ? merge(value, pair) : entry(value, pair);
    }
    return { value, size };
  };

  const entry = (target: Record<string, unknown>, pair: Pair): number => {
    const key = convert(pair.key);
    if (typeof key.value === "object" && key.value !== null) {
      const offset = isNode(pair.key) ? (pair.key.range?.[0] ?? 0) : 0;
      throw new YamlInputError("a mapping key must be a string, a number or true/false, not a list or mapping", offset);
    }
    const value = convert(pair.value);
    setField(target, key.value === null ? "" : String(key.value), value.value);
    return key.size + value.size;
  };

  const merge = (target: Record<string, unknown>, pair: Pair): number => {
    const offset = isNode(pair.key) ? (pair.key.range?.[0] ?? 0) : 0;
    const sources = isSeq(pair.value) ? pair.value.items : [pair.value];
    let size = 1 + (isSeq(pair.value) ? 1 : 0);
    for (const source of sources) {
      const converted = convert(source);
      const node = isAlias(source) ? anchors.get(source.source) : source;
      if (!isMap(node)) throw new YamlInputError("merge key <<: expected a mapping, an alias to one, or a list of them", offset);
      size += converted.size;
      for (const [key, value] of Object.entries(converted.value as Record<string, unknown>)) {
        if (!Object.hasOwn(target, key)) setField(target, key, value);
      }
    }
    return size;
  };

  return convert(root).value;
}

/** Sets a field as the yaml library does: `__proto__` and other inherited names become own fields. */
function setField(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key in target) Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  else target[key] = value;
}
