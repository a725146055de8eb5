/**
 * AuthorizationPolicy path templates: `{*}` matches exactly one path
 * segment, `{**}` zero or more characters including `/` and must be the
 * last operator. They are Envoy URI templates (uri_template_internal.cc):
 * `*` is `[pchar]+` and `**` is `[pchar/]*` over RFC 3986 pchar. Parsing
 * and validation follow Istio's rules: no `*`, `{` or `}` outside an
 * operator, and nothing else in a segment that holds one.
 */

/** Envoy's `kLiteral`: RFC 3986 pchar without `*`. */
const PCHAR = "a-zA-Z0-9\\-._~%!$&'()+,;:@=";

/** True when the path uses `{*}` or `{**}` (Istio's ContainsPathTemplate). */
export function isPathTemplate(path: string): boolean {
  return path.includes("{*}") || path.includes("{**}");
}

/** Why a template is invalid, or undefined when it is valid. */
export function pathTemplateProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return "a path template must start with /";
  const segments = path.slice(1).split("/");
  let seenGlob = false;
  for (const segment of segments) {
    const operator = segment === "{*}" || segment === "{**}";
    if (!operator && /[*{}]/.test(segment)) return `"${segment}": *, { and } are only allowed as a whole {*} or {**} segment`;
    if (operator && seenGlob) return "{**} must be the last operator in a path template";
    if (segment === "{**}") seenGlob = true;
  }
  return undefined;
}

/**
 * Compiles a valid template into a full-match RegExp (linear: character
 * classes only, no nested quantifiers).
 *
 * @example
 * pathTemplateRegex("/foo/{*}/bar").test("/foo/x/bar") // true
 */
export function pathTemplateRegex(path: string): RegExp {
  const segments = path.slice(1).split("/");
  const parts = segments.map((s) => {
    if (s === "{*}") return `[${PCHAR}]+`;
    if (s === "{**}") return `[${PCHAR}/]*`;
    return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  });
  return new RegExp(`^/${parts.join("/")}$`);
}
