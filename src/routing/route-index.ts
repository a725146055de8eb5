/**
 * An index over a virtual host's ordered routes, so that finding the first
 * matching route does not cost a scan of every route. Routes whose uri is
 * an exact or prefix match are filed by that string; the others are always
 * candidates. A lookup gathers the candidates for a path and evaluates them
 * in route order, which keeps Istio's first-match semantics exactly.
 */
import type { MatchDef } from "../config/snapshot.ts";

const SCAN_BELOW = 8;

export class RouteIndex {
  private readonly count: number;
  private readonly exact = new Map<string, number[]>();
  private readonly exactFolded = new Map<string, number[]>();
  private readonly prefix = new Map<string, number[]>();
  private readonly prefixFolded = new Map<string, number[]>();
  private readonly prefixLengths: number[] = [];
  private readonly prefixFoldedLengths: number[] = [];
  private readonly always: number[] = [];
  private readonly all: number[];

  constructor(matches: readonly MatchDef[]) {
    this.count = matches.length;
    this.all = matches.map((_, i) => i);
    const lengths = new Set<number>();
    const foldedLengths = new Set<number>();
    matches.forEach((m, i) => {
      const uri = m.uri;
      if (uri?.type === "exact") push(uri.ignoreCase ? this.exactFolded : this.exact, uri.ignoreCase ? uri.value.toLowerCase() : uri.value, i);
      else if (uri?.type === "prefix") {
        const key = uri.ignoreCase ? uri.value.toLowerCase() : uri.value;
        push(uri.ignoreCase ? this.prefixFolded : this.prefix, key, i);
        (uri.ignoreCase ? foldedLengths : lengths).add(key.length);
      } else this.always.push(i);
    });
    this.prefixLengths = [...lengths].sort((a, b) => a - b);
    this.prefixFoldedLengths = [...foldedLengths].sort((a, b) => a - b);
  }

  /** Route positions that may match `path`, in route order. */
  candidates(path: string): readonly number[] {
    if (this.count < SCAN_BELOW) return this.all;
    const out: number[] = this.always.slice();
    append(out, this.exact.get(path));
    for (const len of this.prefixLengths) {
      if (len > path.length) break;
      append(out, this.prefix.get(path.slice(0, len)));
    }
    if (this.exactFolded.size > 0 || this.prefixFoldedLengths.length > 0) {
      const folded = path.toLowerCase();
      append(out, this.exactFolded.get(folded));
      for (const len of this.prefixFoldedLengths) {
        if (len > folded.length) break;
        append(out, this.prefixFolded.get(folded.slice(0, len)));
      }
    }
    if (out.length > 1) out.sort((a, b) => a - b);
    return out;
  }
}

function push(map: Map<string, number[]>, key: string, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function append(out: number[], values: readonly number[] | undefined): void {
  if (values) for (const v of values) out.push(v);
}
