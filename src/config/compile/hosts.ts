/**
 * Host name patterns as Istio writes them: exact (`api.example.com`),
 * suffix wildcard (`*.example.com`), prefix wildcard (`api.*`) and `*`.
 */

/** Lower-cases a host and drops a trailing dot. */
export function canonicalHost(host: string): string {
  const lower = host.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/**
 * Expands an Istio short name (`reviews`) to its cluster FQDN
 * (`reviews.<namespace>.svc.cluster.local`), as Istio does for hosts
 * without a dot. Wildcards and names with dots are returned unchanged.
 */
export function expandShortName(host: string, namespace: string): string {
  const h = canonicalHost(host);
  if (h === "*" || h.includes(".")) return h;
  return `${h}.${namespace}.svc.cluster.local`;
}

/** True when the concrete or pattern host `name` is covered by `pattern`. */
export function hostMatches(pattern: string, name: string): boolean {
  if (pattern === "*") return true;
  if (pattern === name) return true;
  if (pattern.startsWith("*.")) {
    const suffix = pattern.slice(1);
    if (name.startsWith("*.")) return name.slice(1).endsWith(suffix) && name.length >= pattern.length;
    return name.endsWith(suffix) && name.length > suffix.length;
  }
  if (pattern.endsWith(".*")) {
    const prefix = pattern.slice(0, -1);
    return !name.endsWith(".*") && name.startsWith(prefix) && name.length > prefix.length;
  }
  return false;
}

/**
 * The hosts both patterns serve, as Istio computes it when binding a
 * VirtualService to a Gateway server: the more specific of the two when one
 * covers the other, nothing otherwise.
 */
export function intersectHosts(a: string, b: string): string | undefined {
  if (hostMatches(a, b)) return b;
  if (hostMatches(b, a)) return a;
  return undefined;
}

/** Orders host patterns from most to least specific, as Envoy picks virtual hosts. */
export function specificity(host: string): number {
  if (host === "*") return 0;
  if (host.startsWith("*.") || host.endsWith(".*")) return host.length;
  return 1_000_000 + host.length;
}
