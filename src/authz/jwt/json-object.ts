/**
 * JSON objects from untrusted tokens. JSON.parse keeps the last of
 * duplicate member names, which lets a token mean one thing to Isthmus and
 * another to an upstream parser that keeps the first; RFC 7515 §5.2 and
 * RFC 7519 §4 allow a parser to reject duplicates instead, and Isthmus
 * does: a header or payload with a repeated member name (at any depth) is
 * invalid JSON.
 */

export type JsonObject = Record<string, unknown>;

/** Parses a JSON object; undefined for invalid JSON, a non-object, or duplicate member names. */
export function parseJsonObject(text: string): JsonObject | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  return hasDuplicateMembers(text) ? undefined : (value as JsonObject);
}

/**
 * Scans JSON text that JSON.parse accepted and reports whether any object
 * repeats a member name (compared after unescaping). Linear time.
 */
export function hasDuplicateMembers(text: string): boolean {
  // One entry per open container: the member names seen (objects) or undefined (arrays).
  const stack: (Set<string> | undefined)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      stack.push(undefined);
      expectKey = false;
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      expectKey = stack[stack.length - 1] !== undefined;
    } else if (c === ":") {
      expectKey = false;
    } else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (expectKey) {
        const raw = text.slice(i + 1, j);
        const name = raw.includes("\\") ? (JSON.parse(`"${raw}"`) as string) : raw;
        const seen = stack[stack.length - 1] as Set<string>;
        if (seen.has(name)) return true;
        seen.add(name);
        expectKey = false;
      }
      i = j;
    }
  }
  return false;
}
