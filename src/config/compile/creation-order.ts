/**
 * Istio's order for resources that merge or shadow one another
 * (sortConfigByCreationTime in pilot/pkg/model/push_context.go): oldest
 * first, then by name, then by namespace. Kubernetes timestamps have
 * one-second resolution, so ties are common and the name decides, not the
 * order the files list the resources in.
 */
import type { AnyResource } from "../validate.ts";

/**
 * Milliseconds since the epoch of `metadata.creationTimestamp`; a missing or
 * unreadable one counts as the oldest possible, as Istio's zero time does.
 *
 * @example
 * creationTime({ metadata: { name: "a", creationTimestamp: "2024-01-01T00:00:00Z" } }) // 1704067200000
 */
export function creationTime(resource: Pick<AnyResource, "metadata">): number {
  const at = resource.metadata.creationTimestamp;
  const ms = at ? Date.parse(at) : Number.NaN;
  return Number.isNaN(ms) ? Number.NEGATIVE_INFINITY : ms;
}

/**
 * Sort comparator: creation time, then name, then namespace (byte order, as Go compares strings).
 *
 * @example
 * [...virtualServices].sort(byCreationTime)
 */
export function byCreationTime(a: Pick<AnyResource, "metadata" | "name" | "namespace">, b: Pick<AnyResource, "metadata" | "name" | "namespace">): number {
  const ta = creationTime(a);
  const tb = creationTime(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return compareStrings(a.name, b.name) || compareStrings(a.namespace, b.namespace);
}

function compareStrings(a: string, b: string): number {
  return a === b ? 0 : a < b ? -1 : 1;
}
