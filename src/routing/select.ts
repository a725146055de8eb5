/**
 * Route selection, pure: host → virtual host (exact, then the longest
 * suffix wildcard, then the longest prefix wildcard, then `*`), then the
 * first route whose match holds, then the weighted destination.
 */
import type { DestinationDef } from "../config/snapshot.ts";
import type { RequestFacts } from "../gateway/facts.ts";
import type { HostIndex, Route, Rule, RuntimeSnapshot, VirtualHost } from "./hydrate.ts";

/** Finds the virtual host serving `host` (lower case, no port). */
export function findVirtualHost(snapshot: RuntimeSnapshot, host: string): VirtualHost | undefined {
  const index = lookupHost(snapshot.hosts, host);
  return index === undefined ? undefined : snapshot.virtualHosts[index];
}

/**
 * Envoy's virtual host choice. Wildcards are found by trying the host's own
 * suffixes (or prefixes) longest first, so the cost depends on the number
 * of labels in the host, not on the number of configured hosts.
 */
export function lookupHost(index: HostIndex, host: string): number | undefined {
  const exact = index.exact.get(host);
  if (exact !== undefined) return exact;
  if (index.suffix.size > 0) {
    for (let dot = host.indexOf("."); dot > 0; dot = host.indexOf(".", dot + 1)) {
      const hit = index.suffix.get(host.slice(dot));
      if (hit !== undefined) return hit;
    }
  }
  if (index.prefix.size > 0) {
    for (let dot = host.lastIndexOf("."); dot > 0 && dot < host.length - 1; dot = host.lastIndexOf(".", dot - 1)) {
      const hit = index.prefix.get(host.slice(0, dot + 1));
      if (hit !== undefined) return hit;
    }
  }
  return index.any;
}

/** The first route of the virtual host whose match holds for the request. */
export function selectRoute(vhost: VirtualHost, facts: RequestFacts): Route | undefined {
  for (const i of vhost.index.candidates(facts.path)) {
    const route = vhost.routes[i] as Route;
    if (route.matches(facts)) return route;
  }
  return undefined;
}

/**
 * Picks a destination by weight. `draw` is a number in [0, 1); Istio draws
 * independently per request.
 */
export function pickDestination(rule: Rule, draw: number): DestinationDef | undefined {
  const destinations = rule.destinations;
  if (destinations.length === 1) return destinations[0];
  const target = draw * rule.totalWeight;
  let upTo = 0;
  for (const d of destinations) {
    upTo += d.weight;
    if (target < upTo) return d;
  }
  return destinations[destinations.length - 1];
}
