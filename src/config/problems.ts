/**
 * Problems found while reading, validating or compiling configuration.
 * Each one renders as a single line that names the file, the line, the
 * resource, the field and what was expected.
 */

export type Severity = "error" | "warning";

export interface Problem {
  severity: Severity;
  file?: string;
  line?: number;
  /** `Kind/namespace/name` */
  resource?: string;
  /** Dotted field path, e.g. `spec.http[0].route[0].destination.host`. */
  field?: string;
  message: string;
}

/** Formats a field path such as `["spec", "http", 0, "match"]` as `spec.http[0].match`. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(segment)) out += out ? `.${segment}` : segment;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/**
 * Renders a problem as one line:
 * `file.yaml:12: error: VirtualService/default/reviews: spec.hosts: expected at least one host`.
 */
export function formatProblem(p: Problem): string {
  const where = p.file ? `${p.file}${p.line ? `:${p.line}` : ""}: ` : "";
  const what = [p.resource, p.field].filter(Boolean).join(": ");
  return `${where}${p.severity}: ${what ? `${what}: ` : ""}${p.message}`;
}

export function hasErrors(problems: readonly Problem[]): boolean {
  return problems.some((p) => p.severity === "error");
}

/** Thrown when configuration cannot be used; carries every problem found. */
export class ConfigError extends Error {
  readonly problems: Problem[];
  constructor(problems: Problem[]) {
    super(problems.filter((p) => p.severity === "error").map(formatProblem).join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}
