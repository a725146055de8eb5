/**
 * Merges a root VirtualService rule with the rules of the VirtualService it
 * delegates to, as Istio does (mergeHTTPRoute, mergeHTTPMatchRequests and
 * hasConflict in pilot/pkg/model/virtualservice.go):
 *
 * - Each delegate match block must fall inside one of the root rule's
 *   blocks; it is merged with every root block it does not conflict with
 *   (the delegate's fields win, maps are joined). A delegate rule with a
 *   block that fits no root block is dropped whole.
 * - The root rule lends the delegate rule the fields it leaves unset:
 *   rewrite, timeout, retries, fault, mirroring, corsPolicy and headers
 *   (not rewrite or corsPolicy to a redirect or direct response).
 * - Names join as `root-delegate`.
 *
 * Gateway names in both rules must already be resolved to `namespace/name`
 * (each in its own VirtualService's namespace), as Istio resolves them before
 * merging.
 */
import type { HTTPRoute } from "../schema/networking.ts";
import type { StringMatch } from "../schema/common.ts";

export type HTTPMatch = NonNullable<HTTPRoute["match"]>[number];

/** Which root and delegate match blocks a merged block came from (either may be absent). */
export interface MatchOrigin {
  root?: number;
  delegate?: number;
}

export interface MergedRoute {
  route: HTTPRoute;
  /** One entry per block of `route.match`. */
  matchOrigins: MatchOrigin[];
  /** Top-level fields of `route` taken from the root rule. */
  inherited: ReadonlySet<keyof HTTPRoute>;
}

/** Fields the root rule lends a delegate rule that leaves them unset (Istio's list). */
const LENT = ["rewrite", "timeout", "retries", "fault", "corsPolicy", "headers"] as const;

/**
 * The delegate rule as it applies under the root rule, or undefined when
 * one of its match blocks fits none of the root's (Istio drops the rule).
 *
 * @example
 * mergeRoute({ match: [{ uri: { prefix: "/shop" } }], timeout: "5s" }, { match: [{ uri: { prefix: "/shop/cart" } }], route })
 * // → { route: { match: [{ uri: { prefix: "/shop/cart" } }], route, timeout: "5s" }, ... }
 */
export function mergeRoute(root: HTTPRoute, delegate: HTTPRoute): MergedRoute | undefined {
  const matches = mergeMatches(root.match ?? [], delegate.match ?? []);
  if (!matches) return undefined;
  const route: HTTPRoute = { ...delegate };
  delete route.match;
  if (matches.merged.length > 0) route.match = matches.merged;
  const inherited = new Set<keyof HTTPRoute>();
  const lend = <K extends keyof HTTPRoute>(key: K) => {
    if (route[key] !== undefined || root[key] === undefined) return;
    route[key] = root[key];
    inherited.add(key);
  };
  const name = joinNames(root.name, delegate.name);
  if (name !== undefined) route.name = name;
  // A redirect or direct response has no upstream request to rewrite, and Envoy's CORS filter skips such
  // routes: they are lent no rewrite or corsPolicy. A fault is lent to them, as Istio lends it: it is per
  // route, and Envoy's fault filter runs before the router answers.
  const local = delegate.redirect !== undefined || delegate.directResponse !== undefined;
  for (const key of LENT) {
    if (!(local && (key === "rewrite" || key === "corsPolicy"))) lend(key);
  }
  // Mirroring. Istio lends mirror, mirrorPercent and mirrorPercentage one by one (not mirrors, which its
  // merge predates); Isthmus lends the root's mirroring whole when the delegate rule mirrors nothing, so
  // a root's `mirrors` apply too, and never mixes `mirror` with `mirrors`.
  if (delegate.mirror === undefined && delegate.mirrors === undefined) {
    for (const key of ["mirror", "mirrorPercent", "mirrorPercentage", "mirrors"] as const) lend(key);
  } else if (delegate.mirror !== undefined && delegate.mirrorPercent === undefined && delegate.mirrorPercentage === undefined) {
    for (const key of ["mirrorPercent", "mirrorPercentage"] as const) lend(key);
  }
  return { route, matchOrigins: matches.origins, inherited };
}

function joinNames(root: string | undefined, delegate: string | undefined): string | undefined {
  if (!delegate) return root || undefined;
  return root ? `${root}-${delegate}` : delegate;
}

function mergeMatches(root: HTTPMatch[], delegate: HTTPMatch[]): { merged: HTTPMatch[]; origins: MatchOrigin[] } | undefined {
  if (root.length === 0) return { merged: delegate, origins: delegate.map((_, i) => ({ delegate: i })) };
  if (delegate.length === 0) return { merged: root, origins: root.map((_, i) => ({ root: i })) };
  const merged: HTTPMatch[] = [];
  const origins: MatchOrigin[] = [];
  for (let d = 0; d < delegate.length; d++) {
    const leaf = delegate[d] as HTTPMatch;
    let found = false;
    for (let r = 0; r < root.length; r++) {
      const parent = root[r] as HTTPMatch;
      if (matchConflict(parent, leaf)) continue;
      merged.push(mergeMatch(parent, leaf));
      origins.push({ root: r, delegate: d });
      found = true;
    }
    if (!found) return undefined;
  }
  return { merged, origins };
}

/** A delegate block merged into a root block: the delegate's fields, the root's where the delegate has none, maps joined. */
export function mergeMatch(root: HTTPMatch, leaf: HTTPMatch): HTTPMatch {
  const out: HTTPMatch = { ...leaf };
  const name = joinNames(root.name, leaf.name);
  if (name !== undefined) out.name = name;
  for (const key of ["uri", "scheme", "method", "authority", "sourceNamespace"] as const) {
    if (out[key] === undefined && root[key] !== undefined) out[key] = root[key] as never;
  }
  if (!out.port && root.port) out.port = root.port;
  for (const key of ["headers", "withoutHeaders", "queryParams", "sourceLabels"] as const) {
    if (root[key] || leaf[key]) out[key] = { ...root[key], ...leaf[key] } as never;
  }
  if (!leaf.gateways?.length && root.gateways?.length) out.gateways = root.gateways;
  return out;
}

/** True when the delegate block cannot fall inside the root block (Istio's hasConflict). */
export function matchConflict(root: HTTPMatch, leaf: HTTPMatch): boolean {
  for (const key of ["uri", "scheme", "method", "authority"] as const) {
    if (stringMatchConflict(root[key], leaf[key])) return true;
  }
  for (const key of ["headers", "queryParams"] as const) {
    for (const [name, value] of Object.entries(leaf[key] ?? {})) {
      if (stringMatchConflict(root[key]?.[name], value)) return true;
    }
  }
  // A withoutHeaders condition excludes requests: a narrower value excludes fewer, so a delegate that
  // restates one of the root's differently would let through what the root keeps out (Istio's hasConflict
  // applies the narrowing test here too; Isthmus requires the same condition).
  for (const [name, value] of Object.entries(leaf.withoutHeaders ?? {})) {
    const parent = root.withoutHeaders?.[name];
    if (parent !== undefined && !sameStringMatch(parent, value)) return true;
  }
  if ((root.ignoreUriCase ?? false) !== (leaf.ignoreUriCase ?? false)) return true;
  if (root.port && leaf.port && root.port !== leaf.port) return true;
  if (root.sourceNamespace && leaf.sourceNamespace !== root.sourceNamespace) return true;
  for (const [key, value] of Object.entries(leaf.sourceLabels ?? {})) {
    const parent = root.sourceLabels?.[key];
    if (parent !== undefined && parent !== value) return true;
  }
  if (root.gateways?.length && leaf.gateways?.length) {
    const parents = new Set(root.gateways);
    if (leaf.gateways.some((g) => !parents.has(g))) return true;
  }
  return false;
}

function sameStringMatch(a: StringMatch, b: StringMatch): boolean {
  return a.exact === b.exact && a.prefix === b.prefix && a.regex === b.regex;
}

/**
 * Istio's stringMatchConflict: no conflict when either side is unset; a
 * regex on either side conflicts with anything on the other; an exact root
 * takes only the same exact value; a prefix root takes a longer prefix or an
 * exact value under it. Anything else conflicts (Go's `!= ""` tests: an
 * empty string counts as not set).
 */
export function stringMatchConflict(root: StringMatch | undefined, leaf: StringMatch | undefined): boolean {
  if (!root || !leaf) return false;
  if (root.regex || leaf.regex) return true;
  if (root.exact) return Boolean(leaf.prefix) || leaf.exact !== root.exact;
  if (root.prefix) {
    if (leaf.prefix) return !leaf.prefix.startsWith(root.prefix);
    if (leaf.exact) return !leaf.exact.startsWith(root.prefix);
  }
  return true;
}
