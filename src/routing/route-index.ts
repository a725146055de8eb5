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
 *
 * A list the index holds is never changed once filed, so a route alone
 * under its key shares one frozen `[i]` with every host's index (a Snapshot
 * of 10,000 routes has ~10,000 such keys), and the maps for ignore-case
 * matches exist only when a route asks for one.
 */
import type { MatchDef } from "../config/snapshot.ts";
import { literalPrefix } from "./regex.ts";

const SCAN_BELOW = 8;
const NONE: readonly number[] = Object.freeze([]);

export class RouteIndex {
  private readonly count: number;
  private readonly exact = new Map<string, readonly number[]>();
  private exactFolded?: Map<string, readonly number[]>;
  private readonly prefix = new Map<string, readonly number[]>();
  private prefixFolded?: Map<string, readonly number[]>;
  /** Lengths of case-sensitive prefixes not ending in `/`, ascending. */
  private readonly prefixLengths: number[] = [];
  /** Lengths of case-sensitive prefixes ending in `/` (and not in prefixLengths). */
  private readonly slashLengths = new Set<number>();
  private readonly maxSlashLength: number = 0;
  private readonly prefixFoldedLengths: number[] = [];
  private readonly always: number[] = [];
  /** Every position, for a host small enough to scan (empty otherwise). */
  private readonly all: readonly number[];

  constructor(matches: readonly MatchDef[]) {
    this.count = matches.length;
    this.all = this.count < SCAN_BELOW ? matches.map((_, i) => i) : NONE;
    const lengths = new Set<number>();
    const slashLengths = new Set<number>();
    const foldedLengths = new Set<number>();
    const addLength = (key: string) => (key.endsWith("/") ? slashLengths : lengths).add(key.length);
    matches.forEach((m, i) => {
      const uri = m.uri;
      if (uri?.type === "exact") {
        if (uri.ignoreCase) file((this.exactFolded ??= new Map()), uri.value.toLowerCase(), i);
        else file(this.exact, uri.value, i);
      } else if (uri?.type === "prefix") {
        const key = uri.ignoreCase ? uri.value.toLowerCase() : uri.value;
        file(uri.ignoreCase ? (this.prefixFolded ??= new Map()) : this.prefix, key, i);
        if (uri.ignoreCase) foldedLengths.add(key.length);
        else addLength(key);
      } else if (uri?.type === "regex" && literalPrefix(uri.value) !== "") {
        const key = literalPrefix(uri.value);
        file(this.prefix, key, i);
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
    if (this.exactFolded || this.prefixFolded) {
      const folded = path.toLowerCase();
      acc.add(this.exactFolded?.get(folded));
      for (const len of this.prefixFoldedLengths) {
        if (len > folded.length) break;
        acc.add(this.prefixFolded?.get(folded.slice(0, len)));
      }
    }
    return acc.result();
  }
}

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

/** `[i]` for each route position, frozen and shared by every index. */
const singles: (readonly number[])[] = [];

/** Files route position `value` under `key`: lists are replaced, never changed, since a lone `[i]` is shared. */
function file(map: Map<string, readonly number[]>, key: string, value: number): void {
  const list = map.get(key);
  map.set(key, list ? [...list, value] : (singles[value] ??= Object.freeze([value])));
}
