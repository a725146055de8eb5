/**
 * Collects compile problems against the resource and field they concern.
 */
import { formatPath, type Problem, type Severity } from "../problems.ts";
import type { AnyResource } from "../validate.ts";

export type FieldPath = readonly (string | number)[];

export class Diagnostics {
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
