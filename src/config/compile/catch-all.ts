/**
 * Istio's catch-all routes (IsCatchAllRoute), with the ports and gateways
 * Istio resolves before it asks. Istio builds one Envoy route table per
 * gateway and port: a match block's `port` and `gateways` decide which
 * tables it enters and are not conditions of the Envoy route, so a block
 * with only `port: 80` is a catch-all in port 80's table. There Istio
 * stops emitting the VirtualService's later blocks, and when several
 * VirtualServices merge it moves catch-alls to the end (SortVHostRoutes).
 * Isthmus keeps one table for every port: a later block without a port
 * remembers the ports an earlier catch-all took (`exceptPorts`).
 */
import type { MatchDef } from "../snapshot.ts";
import type { CompiledRoute, CompiledRule } from "./rules.ts";

/**
 * A match block that takes every request on the ports it applies to: no
 * condition besides `port`, or only a uri of prefix `/` or regex `.*`.
 *
 * @example
 * matchesEveryRequest({ port: 80 }) // true
 * matchesEveryRequest({ uri: { type: "prefix", value: "/api" } }) // false
 */
export function matchesEveryRequest(m: MatchDef): boolean {
  let conditions = 0;
  for (const key in m) if (key !== "port" && key !== "exceptPorts") conditions++;
  if (conditions === 0) return true;
  if (conditions !== 1 || !m.uri) return false;
  // Case-insensitive `/` still matches every path (Envoy's IsCatchAllRoute ignores case_sensitive).
  return (m.uri.type === "prefix" && m.uri.value === "/") || (m.uri.type === "regex" && (m.uri.value === ".*" || m.uri.value === "*"));
}

/** A block that takes every request on every port, through every gateway: nothing after it is ever reached. */
export function takesEverything(route: CompiledRoute): boolean {
  return route.gateways === undefined && route.match.port === undefined && matchesEveryRequest(route.match);
}

/**
 * The blocks of one VirtualService's rules (already narrowed to one
 * gateway binding) that Istio would emit: after a catch-all, nothing; after
 * a catch-all on port P, no block for P, and blocks without a port skip P.
 *
 * @example
 * // rule 0: match [{ port: 80 }] (redirect); rule 1: match [{ uri: prefix /shop }]
 * reachableRules(rules) // rule 1's block gets exceptPorts [80]
 */
export function reachableRules(rules: readonly CompiledRule[]): CompiledRule[] {
  const out: CompiledRule[] = [];
  const taken: number[] = [];
  for (const compiled of rules) {
    const routes: CompiledRoute[] = [];
    let everything = false;
    for (const route of compiled.routes) {
      const port = route.match.port;
      if (port !== undefined && taken.includes(port)) continue;
      routes.push(port === undefined && taken.length > 0 ? { ...route, match: { ...route.match, exceptPorts: [...taken] } } : route);
      if (!matchesEveryRequest(route.match)) continue;
      if (port === undefined) {
        everything = true;
        break;
      }
      taken.push(port);
    }
    if (routes.length === 0) continue;
    out.push(routes.length === compiled.routes.length && routes.every((r, i) => r === compiled.routes[i]) ? compiled : { ...compiled, routes });
    if (everything) break;
  }
  return out;
}
