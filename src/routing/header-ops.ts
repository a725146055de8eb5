/**
 * VirtualService header operations (`headers.request` / `headers.response`),
 * applied as Envoy does: removals first, then `set` (overwrite), then `add`
 * (append).
 */
import type { HeaderOpsDef, HeadersDef } from "../config/snapshot.ts";

export function applyHeaderOps(headers: Headers, ops: HeaderOpsDef | undefined): void {
  if (!ops) return;
  if (ops.remove) for (const name of ops.remove) headers.delete(name);
  if (ops.set) for (const [name, value] of ops.set) headers.set(name, value);
  if (ops.add) for (const [name, value] of ops.add) headers.append(name, value);
}

/**
 * The header operations of a route and its chosen destination in Envoy's
 * order: with a single destination its operations run after the route's
 * (destination wins); with weighted destinations they run before (route
 * wins), because Envoy evaluates weighted-cluster headers first.
 */
export function orderedOps(
  side: "request" | "response",
  route: HeadersDef | undefined,
  destination: HeadersDef | undefined,
  weighted: boolean,
): (HeaderOpsDef | undefined)[] {
  return weighted ? [destination?.[side], route?.[side]] : [route?.[side], destination?.[side]];
}
