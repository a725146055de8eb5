/**
 * Turns parsed YAML documents into typed resources: checks apiVersion and
 * kind, validates every field against the kind's schema, flags fields the
 * edge cannot honour, and rejects duplicate resources.
 */
import type { z } from "zod";
import { resource as envelope, type ObjectMeta } from "./schema/common.ts";
import { IGNORED_ISTIO_KINDS, isKind, KINDS, type Kind } from "./kinds.ts";
import { fieldNotes } from "./field-notes.ts";
import type { RawDocument } from "./parse.ts";
import { formatPath, type Problem } from "./problems.ts";

export type SpecOf<K extends Kind> = z.infer<(typeof KINDS)[K]["spec"]>;

/** A validated resource with the place it came from. */
export interface Resource<K extends Kind = Kind> {
  kind: K;
  apiVersion: string;
  name: string;
  namespace: string;
  /** `Kind/namespace/name`, the identity used in messages and diffs. */
  id: string;
  metadata: ObjectMeta;
  spec: SpecOf<K>;
  file: string;
  line: number;
  lineOf(path: readonly (string | number)[]): number;
}

export type AnyResource = { [K in Kind]: Resource<K> }[Kind];

const DEFAULT_NAMESPACE = "default";

/**
 * Validates documents and returns the usable resources plus every problem.
 * Resources with errors are left out of `resources`.
 *
 * @example
 * const { resources, problems } = validateDocuments(documents);
 */
export function validateDocuments(documents: readonly RawDocument[]): { resources: AnyResource[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const resources: AnyResource[] = [];
  const seen = new Map<string, AnyResource>();

  for (const doc of documents) {
    const result = validateDocument(doc, problems);
    if (!result) continue;
    const previous = seen.get(result.id);
    if (previous) {
      problems.push({
        severity: "error",
        file: result.file,
        line: result.line,
        resource: result.id,
        message: `duplicate resource: ${result.id} is also defined at ${previous.file}:${previous.line}`,
      });
      continue;
    }
    seen.set(result.id, result);
    resources.push(result);
  }
  return { resources, problems };
}

function validateDocument(doc: RawDocument, problems: Problem[]): AnyResource | undefined {
  const at = (path: readonly (string | number)[]) => ({ file: doc.file, line: doc.lineOf(path) });
  const value = doc.value;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push({ severity: "error", ...at([]), message: "expected a Kubernetes resource (a mapping with apiVersion, kind, metadata and spec)" });
    return undefined;
  }
  const raw = value as Record<string, unknown>;
  const kind = raw.kind;
  if (typeof kind !== "string" || kind === "") {
    problems.push({ severity: "error", ...at(["kind"]), field: "kind", message: `expected a kind (one of ${Object.keys(KINDS).join(", ")})` });
    return undefined;
  }
  const meta = (typeof raw.metadata === "object" && raw.metadata !== null ? raw.metadata : {}) as Record<string, unknown>;
  const namespace = typeof meta.namespace === "string" && meta.namespace ? meta.namespace : DEFAULT_NAMESPACE;
  const name = typeof meta.name === "string" ? meta.name : "?";
  const id = `${kind}/${namespace}/${name}`;

  const gatewayApi = gatewayApiVersion(raw.apiVersion);
  if (gatewayApi) {
    problems.push({
      severity: "error",
      ...at(["apiVersion"]),
      resource: id,
      field: "apiVersion",
      message: `Kubernetes Gateway API resources are not supported; use Istio's networking.istio.io Gateway with VirtualServices, got ${JSON.stringify(gatewayApi)}`,
    });
    return undefined;
  }

  if (!isKind(kind)) {
    const ignored = IGNORED_ISTIO_KINDS[kind];
    if (ignored) {
      problems.push({ severity: "warning", ...at(["kind"]), resource: id, message: `ignored: ${ignored}` });
    } else {
      problems.push({
        severity: "error",
        ...at(["kind"]),
        resource: id,
        field: "kind",
        message: `unknown kind "${kind}": expected one of ${Object.keys(KINDS).join(", ")}`,
      });
    }
    return undefined;
  }

  const info = KINDS[kind];
  const apiVersion = raw.apiVersion;
  const allowed = info.versions.map((v) => `${info.group}/${v}`);
  if (typeof apiVersion !== "string" || !allowed.includes(apiVersion)) {
    problems.push({
      severity: "error",
      ...at(["apiVersion"]),
      resource: id,
      field: "apiVersion",
      message: `expected ${allowed.join(" or ")}, got ${apiVersion === undefined ? "nothing" : JSON.stringify(apiVersion)}`,
    });
    return undefined;
  }

  const schema = envelope(info.spec);
  const parsed = schema.safeParse({ ...raw, spec: raw.spec ?? {} });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(...issueToProblems(issue, doc, id, schema));
    }
    return undefined;
  }

  const resource = {
    kind,
    apiVersion,
    name,
    namespace,
    id,
    metadata: parsed.data.metadata,
    spec: parsed.data.spec,
    file: doc.file,
    line: doc.line,
    lineOf: doc.lineOf,
  } as AnyResource;

  for (const note of fieldNotes(resource)) {
    problems.push({
      severity: note.severity,
      file: doc.file,
      line: doc.lineOf(note.path),
      resource: id,
      field: formatPath(note.path),
      message: note.message,
    });
  }
  return resource;
}

/**
 * The apiVersion if it belongs to the Kubernetes Gateway API (Gateway,
 * HTTPRoute, ...; `gateway.networking.k8s.io` or its experimental
 * `gateway.networking.x-k8s.io`), which Isthmus does not read.
 *
 * @example
 * gatewayApiVersion("gateway.networking.k8s.io/v1"); // "gateway.networking.k8s.io/v1"
 * gatewayApiVersion("networking.istio.io/v1"); // undefined
 */
function gatewayApiVersion(apiVersion: unknown): string | undefined {
  return typeof apiVersion === "string" && /^gateway\.networking\.(x-)?k8s\.io\//.test(apiVersion) ? apiVersion : undefined;
}

function issueToProblems(issue: z.core.$ZodIssue, doc: RawDocument, id: string, schema: z.ZodType): Problem[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  const base = { severity: "error" as const, file: doc.file, resource: id };
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(schema, path);
    return issue.keys.map((key) => {
      const suggestion = closest(key, known);
      return {
        ...base,
        line: doc.lineOf([...path, key]),
        field: formatPath([...path, key]),
        message: `unknown field "${key}"${suggestion ? ` (did you mean "${suggestion}"?)` : ""}`,
      };
    });
  }
  return [{ ...base, line: doc.lineOf(path), field: formatPath(path), message: describeIssue(issue, doc.value, path) }];
}

function describeIssue(issue: z.core.$ZodIssue, root: unknown, path: (string | number)[]): string {
  switch (issue.code) {
    case "invalid_type": {
      const actual = valueAt(root, path);
      if (actual === undefined) return `required field is missing (expected ${article(issue.expected)})`;
      return `expected ${article(issue.expected)}, got ${describeValue(actual)}`;
    }
    case "invalid_value":
      return `expected one of ${issue.values.map((v) => String(v)).join(", ")}, got ${describeValue(valueAt(root, path))}`;
    case "invalid_union":
      return `expected ${issue.errors
        .map((branch) => branch[0])
        .filter((i): i is z.core.$ZodIssueInvalidType => i?.code === "invalid_type")
        .map((i) => article(i.expected))
        .join(" or ") || "a different value"}, got ${describeValue(valueAt(root, path))}`;
    case "too_small":
    case "too_big":
      return issue.message.startsWith("Too ") ? describeBound(issue, valueAt(root, path)) : issue.message;
    default:
      return issue.message;
  }
}

/** zod's default "Too small: expected string to have >=1 characters", said as the other messages say things. */
function describeBound(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig, actual: unknown): string {
  const small = issue.code === "too_small";
  const limit = Number(small ? issue.minimum : issue.maximum);
  const bound = `${small ? ">" : "<"}${issue.inclusive === false ? "" : "="} ${limit}`;
  const got = describeValue(actual);
  switch (issue.origin) {
    case "string":
      return small && limit === 1 ? `expected a non-empty string, got ${got}` : `expected a string of ${small ? "at least" : "at most"} ${limit} characters, got ${got}`;
    case "array":
    case "set":
      return small && limit === 1 ? "expected at least one entry, got none" : `expected ${small ? "at least" : "at most"} ${limit} entries`;
    default:
      return `expected a number ${bound}, got ${got}`;
  }
}

function article(expected: string): string {
  const names: Record<string, string> = {
    string: "a string",
    number: "a number",
    int: "a whole number",
    boolean: "true or false",
    object: "a mapping",
    array: "a list",
    record: "a mapping",
    null: "null",
  };
  return names[expected] ?? expected;
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return JSON.stringify(value);
  return String(value);
}

function valueAt(root: unknown, path: readonly (string | number)[]): unknown {
  let node = root;
  for (const segment of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string | number, unknown>)[segment];
  }
  return node;
}

/** The field names a strict object schema accepts at `path`, for "did you mean". */
function knownKeys(schema: z.ZodType, path: readonly (string | number)[]): string[] {
  let node: z.core.$ZodType | undefined = unwrap(schema as unknown as z.core.$ZodType);
  for (const segment of path) {
    if (!node) return [];
    const def = node._zod.def as unknown as Record<string, unknown> & { type: string };
    if (def.type === "object") node = (def.shape as Record<string, z.core.$ZodType>)[String(segment)];
    else if (def.type === "array") node = def.element as z.core.$ZodType;
    else if (def.type === "record") node = def.valueType as z.core.$ZodType;
    else return [];
    node = node ? unwrap(node) : undefined;
  }
  const def = node?._zod.def as unknown as { type: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === "object" && def.shape ? Object.keys(def.shape) : [];
}

function unwrap(node: z.core.$ZodType): z.core.$ZodType {
  let current = node;
  for (;;) {
    const def = current._zod.def as unknown as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if ((def.type === "optional" || def.type === "nullable" || def.type === "default") && def.innerType) current = def.innerType;
    else if (def.type === "pipe" && def.in) current = def.in;
    else return current;
  }
}

/** The closest known key within edit distance 2, if any. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] ?? 0;
      row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length] ?? 0;
}
