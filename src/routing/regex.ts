/**
 * RE2 regular expressions (re2js): linear-time matching, so no pattern in a
 * config can make a request backtrack catastrophically. Istio and Envoy use
 * RE2 too, so the accepted syntax is the same: no lookaround, no
 * backreferences.
 */
import { RE2JS } from "re2js";

export interface Regex {
  /** True when the pattern matches the whole input (Envoy's safe_regex semantics). */
  fullMatch(input: string): boolean;
  /** Replaces every match, expanding `\1`…`\9` in `template` to capture groups (Envoy's regex_rewrite). */
  replaceAll(input: string, template: string): string;
  /** Capture groups of a full match, or undefined when it does not match. */
  groups(input: string): string[] | undefined;
}

/**
 * Compiles an RE2 pattern.
 * @throws Error with RE2's message when the pattern is not valid RE2 syntax.
 * @example
 * compileRegex("/api/v[0-9]+/.*").fullMatch("/api/v2/users") // true
 */
export function compileRegex(pattern: string): Regex {
  return wrap(RE2JS.compile(pattern));
}

/**
 * A regex compiled on its first use and kept. Patterns in a Snapshot were
 * checked by the CLI; should one still fail to compile (a Snapshot written
 * by something else), it matches nothing and the failure is logged once.
 */
export function lazyRegex(pattern: string): Regex {
  return new LazyRegex(pattern);
}

/** One object per pattern, not one closure per method: a Snapshot can hold thousands. */
class LazyRegex implements Regex {
  private readonly pattern: string;
  private compiled?: Regex;

  constructor(pattern: string) {
    this.pattern = pattern;
  }

  fullMatch(input: string): boolean {
    return this.get().fullMatch(input);
  }

  replaceAll(input: string, template: string): string {
    return this.get().replaceAll(input, template);
  }

  groups(input: string): string[] | undefined {
    return this.get().groups(input);
  }

  private get(): Regex {
    if (this.compiled) return this.compiled;
    try {
      this.compiled = compileRegex(this.pattern);
    } catch (error) {
      console.error(JSON.stringify({ message: "isthmus: invalid regex in the snapshot; it matches nothing", pattern: this.pattern, error: error instanceof Error ? error.message : String(error) }));
      this.compiled = { fullMatch: () => false, replaceAll: (input) => input, groups: () => undefined };
    }
    return this.compiled;
  }
}

function wrap(re: RE2JS): Regex {
  return {
    fullMatch: (input) => re.matches(input),
    replaceAll: (input, template) => {
      const parts = parseTemplate(template);
      // RE2's GlobalReplace refuses a group the pattern lacks and Envoy keeps the path (the
      // CLI refuses such a config; this is for a Snapshot written by something else).
      if (highestGroup(parts) > re.groupCount()) return input;
      return re.matcher(input).replaceAll((...args: unknown[]) => {
        let out = "";
        for (const part of parts) out += typeof part === "string" ? part : String(args[part] ?? "");
        return out;
      });
    },
    groups: (input) => {
      const m = re.matcher(input);
      if (!m.matches()) return undefined;
      const out: string[] = [];
      for (let i = 0; i <= m.groupCount(); i++) out.push(m.group(i) ?? "");
      return out;
    },
  };
}

/**
 * The literal text every full match of an RE2 pattern starts with ("" when
 * there is none to be sure of). Conservative: a pattern with `|` anywhere,
 * or starting with a group, class, anchor or escape, has none; a literal
 * followed by `*`, `?` or `{` is dropped, since it may occur zero times.
 *
 * @example
 * literalPrefix("/api/v[0-9]+/.*") // "/api/v"
 * literalPrefix("/items?")         // "/item"
 * literalPrefix("/a|/b")           // ""
 */
export function literalPrefix(pattern: string): string {
  if (pattern.includes("|")) return "";
  let end = 0;
  while (end < pattern.length && !META.has(pattern[end] as string)) end++;
  const next = pattern[end];
  if (next === "*" || next === "?" || next === "{") end = Math.max(0, end - 1);
  // Keep whole UTF-16 code points: never end between the halves of a surrogate pair.
  const last = pattern.charCodeAt(end - 1);
  if (end > 0 && last >= 0xd800 && last <= 0xdbff) end--;
  return pattern.slice(0, end);
}

const META = new Set(["\\", ".", "[", "]", "(", ")", "{", "}", "*", "+", "?", "^", "$", "|"]);

/** Returns RE2's complaint about a pattern, or undefined when it is valid. */
export function regexError(pattern: string): string | undefined {
  try {
    RE2JS.compile(pattern);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/**
 * Why an Envoy regex substitution cannot be used with a pattern, or undefined
 * when it can: a `\N` beyond the pattern's capture groups (RE2's Rewrite
 * check; Envoy would leave every path unchanged). Assumes a valid pattern.
 *
 * @example
 * substitutionError("^/g/([^/]+)$", "/new/\\2") // "\\2 names capture group 2, but the pattern has 1"
 * substitutionError("^/g/([^/]+)$", "/new/\\1") // undefined
 */
export function substitutionError(pattern: string, template: string): string | undefined {
  const highest = highestGroup(parseTemplate(template));
  const groups = RE2JS.compile(pattern).groupCount();
  if (highest <= groups) return undefined;
  return `\\${highest} names capture group ${highest}, but the pattern has ${groups === 0 ? "none" : groups}`;
}

function highestGroup(parts: readonly (string | number)[]): number {
  let highest = 0;
  for (const part of parts) if (typeof part === "number" && part > highest) highest = part;
  return highest;
}

/** Splits an Envoy substitution (`/v2/\1`) into literals and group numbers. */
function parseTemplate(template: string): (string | number)[] {
  const parts: (string | number)[] = [];
  let literal = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    const next = template[i + 1];
    if (c === "\\" && next !== undefined && next >= "0" && next <= "9") {
      if (literal) parts.push(literal);
      literal = "";
      parts.push(Number(next));
      i++;
    } else if (c === "\\" && next === "\\") {
      literal += "\\";
      i++;
    } else {
      literal += c;
    }
  }
  if (literal) parts.push(literal);
  return parts;
}
