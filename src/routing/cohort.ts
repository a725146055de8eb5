/**
 * Sticky A/B cohorts: a weighted pick drawn from a hash of a header or
 * cookie instead of a random number, so the same user lands on the same
 * destination for as long as the weights stay the same.
 */
import type { CohortDef } from "../config/snapshot.ts";

/** The draw in [0, 1) for a request, or undefined when it carries no cohort key. */
export function cohortDraw(cohort: CohortDef, headers: Headers): number | undefined {
  const value = cohort.header !== undefined ? headers.get(cohort.header) : cohort.cookie !== undefined ? cookie(headers.get("cookie"), cohort.cookie) : null;
  if (value === null || value === undefined || value === "") return undefined;
  return fnv1a(value) / 0x1_0000_0000;
}

/** The value of cookie `name` in a Cookie header. */
export function cookie(header: string | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * 32-bit FNV-1a over UTF-16 code units, with murmur3's finalizer so that
 * similar keys (user-1, user-2) spread evenly. Stable across isolates and
 * releases.
 */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
