/**
 * An index over a virtual host's ordered routes, so that finding the first
 * matching route does not cost a scan of every route. Routes whose uri is
 * an exact or prefix match are filed by that string; a regex uri with a
 * literal prefix (`/api/v[0-9]+/.*` → `/api/v`) is filed under that prefix,
 * since a full match must start with it; the others are always candidates.
 * A lookup gathers the candidates for a path and evaluates them in route
 * order, which keeps Istio's first-match semantics exactly.
 *
 * Prefixes ending in `/` (the common `/api/v1/` shape) are only looked up
 * at the path's own `/` positions, so a lookup costs one map probe per path
 * segment however many prefix lengths the routes use; other prefixes are
 * looked up at each distinct length.
 */
import type { MatchDef } from "../config/snapshot.ts";
import { literalPrefix } from "./regex.ts";

const SCAN_BELOW = 8;

export class RouteIndex {
  private readonly count: number;
  private readonly exact = new Map<string, number[]>();
  private readonly exactFolded = new Map<string, number[]>();
  private readonly prefix = new Map<string, number[]>();
  private readonly prefixFolded = new Map<string, number[]>();
  /** Lengths of case-sensitive prefixes not ending in `/`, ascending. */
  private readonly prefixLengths: number[] = [];
  /** Lengths of case-sensitive prefixes ending in `/` (and not in prefixLengths). */
  private readonly slashLengths = new Set<number>();
  private readonly maxSlashLength: number = 0;
  private readonly prefixFoldedLengths: number[] = [];
  private readonly always: number[] = [];
  private readonly all: number[];

  constructor(matches: readonly MatchDef[]) {
    this.count = matches.length;
    this.all = matches.map((_, i) => i);
    const lengths = new Set<number>();
    const slashLengths = new Set<number>();
    const foldedLengths = new Set<number>();
    const addLength = (key: string) => (key.endsWith("/") ? slashLengths : lengths).add(key.length);
    matches.forEach((m, i) => {
      const uri = m.uri;
      if (uri?.type === "exact") push(uri.ignoreCase ? this.exactFolded : this.exact, uri.ignoreCase ? uri.value.toLowerCase() : uri.value, i);
      else if (uri?.type === "prefix") {
        const key = uri.ignoreCase ? uri.value.toLowerCase() : uri.value;
        push(uri.ignoreCase ? this.prefixFolded : this.prefix, key, i);
        if (uri.ignoreCase) foldedLengths.add(key.length);
        else addLength(key);
      } else if (uri?.type === "regex" && literalPrefix(uri.value) !== "") {
        const key = literalPrefix(uri.value);
        push(this.prefix, key, i);
        addLength(key);
      } else this.always.push(i);
    });
    this.prefixLengths = [...lengths].sort((a, b) => a - b);
    // A length probed for the other prefixes already finds the `/`-terminated ones of that length.
    for (const len of slashLengths) if (!lengths.has(len)) this.slashLengths.add(len);
    this.maxSlashLength = Math.max(0, ...this.slashLengths);
    this.prefixFoldedLengths = [...foldedLengths].sort((a, b) => a - b);
  }

  /** Route positions that may match `path`, in route order. Read-only: it may be one of the index's own lists. */
  candidates(path: string): readonly number[] {
    if (this.count < SCAN_BELOW) return this.all;
    const acc = new Candidates(this.always);
    acc.add(this.exact.get(path));
    for (const len of this.prefixLengths) {
      if (len > path.length) break;
      acc.add(this.prefix.get(path.slice(0, len)));
    }
    if (this.slashLengths.size > 0) {
      const max = Math.min(path.length, this.maxSlashLength);
      for (let i = path.indexOf("/"); i >= 0 && i < max; i = path.indexOf("/", i + 1)) {
        if (this.slashLengths.has(i + 1)) acc.add(this.prefix.get(path.slice(0, i + 1)));
      }
    }
    if (this.exactFolded.size > 0 || this.prefixFoldedLengths.length > 0) {
      const folded = path.toLowerCase();
      acc.add(this.exactFolded.get(folded));
      for (const len of this.prefixFoldedLengths) {
        if (len > folded.length) break;
        acc.add(this.prefixFolded.get(folded.slice(0, len)));
      }
    }
    return acc.result();
  }
}

const NONE: readonly number[] = [];

/** Gathers candidate lists; copies and sorts only when more than one list was hit. */
class Candidates {
  private single: readonly number[] | undefined;
  private merged: number[] | undefined;

  constructor(always: readonly number[]) {
    if (always.length > 0) this.single = always;
  }

  add(list: readonly number[] | undefined): void {
    if (!list) return;
    if (this.merged) for (const v of list) this.merged.push(v);
    else if (this.single) {
      this.merged = this.single.slice();
      for (const v of list) this.merged.push(v);
    } else this.single = list;
  }

  result(): readonly number[] {
    if (this.merged) return this.merged.sort((a, b) => a - b);
    return this.single ?? NONE;
  }
}

function push(map: Map<string, number[]>, key: string, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
