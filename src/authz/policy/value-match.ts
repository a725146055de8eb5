/**
 * Istio's string value forms, used by every AuthorizationPolicy field and
 * condition: exact `abc`, prefix `abc*`, suffix `*abc`, and `*`, which
 * matches any non-empty value (Envoy regex `.+`).
 */

export type ValueMatcher = (value: string) => boolean;

/**
 * Builds the matcher for one Istio value.
 *
 * @example
 * istioValue("/api/*")("/api/users") // true
 * istioValue("*")("")                // false: `*` means present and non-empty
 */
export function istioValue(pattern: string, ignoreCase = false): ValueMatcher {
  const p = ignoreCase ? pattern.toLowerCase() : pattern;
  const norm = ignoreCase ? lowerCase : (v: string) => v;
  if (p === "*") return (v) => v.length > 0;
  if (p.startsWith("*")) {
    const suffix = p.slice(1);
    return (v) => norm(v).endsWith(suffix);
  }
  if (p.endsWith("*")) {
    const prefix = p.slice(0, -1);
    return (v) => norm(v).startsWith(prefix);
  }
  return (v) => norm(v) === p;
}

/** The last value `lowerCase` was asked for, and its lower case. */
let lastValue = "";
let lastLower = "";

/**
 * `v.toLowerCase()`, remembered for the last value: a request's host is
 * matched against every host pattern of every policy in turn (~15 times a
 * request in the benchmark's config, ~8k instructions in workerd), and it is
 * the same string each time, so only the first call lowers it.
 */
function lowerCase(v: string): string {
  if (v !== lastValue) {
    lastValue = v;
    lastLower = v.toLowerCase();
  }
  return lastLower;
}

/**
 * The matcher for a list of Istio values: true when any of them matches.
 * Exact values are looked up in one set (a policy's hosts, methods or
 * principals are mostly exact), the others are tried in turn.
 *
 * @example
 * anyValue(["GET", "HEAD"])("HEAD")   // true
 * anyValue(["/api/*", "/health"])("/api/x") // true
 */
export function anyValue(patterns: readonly string[], ignoreCase = false): ValueMatcher {
  const exact = new Set<string>();
  const others: ValueMatcher[] = [];
  for (const pattern of patterns) {
    if (pattern.startsWith("*") || pattern.endsWith("*")) others.push(istioValue(pattern, ignoreCase));
    else exact.add(ignoreCase ? pattern.toLowerCase() : pattern);
  }
  const rest = others.length === 0 ? undefined : anyOf(others);
  if (exact.size === 0) return rest ?? (() => false);
  if (exact.size === 1 && rest === undefined) {
    const [only] = exact;
    return istioValue(only as string, ignoreCase);
  }
  const has: ValueMatcher = ignoreCase ? (v) => exact.has(lowerCase(v)) : (v) => exact.has(v);
  if (rest === undefined) return has;
  return (v) => has(v) || rest(v);
}

/** True when any of the matchers accepts the value. */
export function anyOf(matchers: readonly ValueMatcher[]): ValueMatcher {
  if (matchers.length === 1) return matchers[0] as ValueMatcher;
  return (v) => {
    for (const m of matchers) if (m(v)) return true;
    return false;
  };
}
