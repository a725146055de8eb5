/**
 * Collects compile problems against the resource and field they concern.
 */
import { formatPath, type Problem, type Severity } from "../problems.ts";
import type { AnyResource } from "../validate.ts";

export type FieldPath = readonly (string | number)[];

/** Where compile steps report problems: the collector itself, or a view that re-attributes them (delegates.ts). */
export interface DiagnosticsSink {
  error(resource: AnyResource, path: FieldPath, message: string): void;
  warn(resource: AnyResource, path: FieldPath, message: string): void;
}

export class Diagnostics implements DiagnosticsSink {
  readonly problems: Problem[] = [];

  error(resource: AnyResource, path: FieldPath, message: string): void {
    this.add("error", resource, path, message);
  }

  warn(resource: AnyResource, path: FieldPath, message: string): void {
    this.add("warning", resource, path, message);
  }

  private add(severity: Severity, resource: AnyResource, path: FieldPath, message: string): void {
    this.problems.push({
      severity,
      file: resource.file,
      line: resource.lineOf(path),
      resource: resource.id,
      field: formatPath(path),
      message,
    });
  }
}
