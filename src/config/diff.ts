/**
 * Per-resource differences between two configurations, as `isthmus diff`
 * prints them: added, removed, or changed with a line diff of the YAML.
 */
import { stringify } from "yaml";
import type { CanonicalResource } from "./canonical.ts";

export type ResourceChange =
  | { type: "added" | "removed"; id: string; where: string }
  | { type: "changed"; id: string; where: string; lines: string[] };

function body(r: CanonicalResource): string {
  return stringify({ apiVersion: r.apiVersion, kind: r.kind, metadata: r.metadata, spec: r.spec }, { sortMapEntries: true });
}

export function diffResources(before: readonly CanonicalResource[], after: readonly CanonicalResource[]): ResourceChange[] {
  const old = new Map(before.map((r) => [r.id, r]));
  const now = new Map(after.map((r) => [r.id, r]));
  const changes: ResourceChange[] = [];
  for (const r of after) {
    const prev = old.get(r.id);
    const where = `${r.file}:${r.line}`;
    if (!prev) changes.push({ type: "added", id: r.id, where });
    else {
      const a = body(prev);
      const b = body(r);
      if (a !== b) changes.push({ type: "changed", id: r.id, where, lines: lineDiff(a.split("\n"), b.split("\n")) });
    }
  }
  for (const r of before) if (!now.has(r.id)) changes.push({ type: "removed", id: r.id, where: `${r.file}:${r.line}` });
  return changes;
}

/**
 * Above this many cells (lines before × lines after, once the lines they
 * share at the start or end are set aside), lineDiff does not build the
 * LCS table (4 bytes a cell) but runs Myers' O(ND) algorithm.
 */
const TABLE_CELLS = 1_000_000;

/** Above this many differing lines (deleted plus inserted) in one hunk, lineDiff summarises it in one line. */
const MAX_EDITS = 1_000;

type Op = { op: " " | "-" | "+" | "~"; text: string };

/**
 * A minimal unified-style diff: changed lines with one line of context,
 * the rest elided as "...". Linear in the common start and end, so a
 * one-line change in a resource of 40,000 lines costs little; a middle
 * with more than 1,000 differing lines is one "~ N lines replaced by M"
 * line instead of a listing.
 *
 * @example
 * lineDiff(["a", "b", "c", "d", "e"], ["a", "b", "C", "d", "e"]);
 * // ["  ...", "  b", "- c", "+ C", "  d", "  ..."]
 */
export function lineDiff(a: string[], b: string[]): string[] {
  return render(editScript(a, b));
}

/**
 * The edits that turn `a` into `b`. Up to TABLE_CELLS this is exactly the
 * LCS-table walk lineDiff always made (so small diffs print as they did):
 * the walk matches equal heads, so skipping the common start first changes
 * nothing. Past it, the common end is set aside too (which can align a
 * repeated line differently, equally minimal), and the middle goes to the
 * table if it is small enough now, else to Myers.
 */
function editScript(a: string[], b: string[]): Op[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  const same = (from: number, to: number): Op[] => a.slice(from, to).map((text) => ({ op: " ", text }));
  if ((a.length - head) * (b.length - head) <= TABLE_CELLS) return [...same(0, head), ...tableScript(a.slice(head), b.slice(head))];
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const before = a.slice(head, a.length - tail);
  const after = b.slice(head, b.length - tail);
  const middle = before.length * after.length <= TABLE_CELLS ? tableScript(before, after) : (myersScript(before, after, MAX_EDITS) ?? [summaryOp(before.length, after.length)]);
  return [...same(0, head), ...middle, ...same(a.length - tail, a.length)];
}

function summaryOp(removed: number, added: number): Op {
  return { op: "~", text: `${removed} lines replaced by ${added} (too many differences to list line by line)` };
}

/** The edit script read off a longest-common-subsequence table; deletions come first where both are as good. */
function tableScript(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const width = m + 1;
  // lcs[i * width + j]: the length of the LCS of a[i..] and b[j..].
  const lcs = new Int32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j] ? (lcs[(i + 1) * width + j + 1] as number) + 1 : Math.max(lcs[(i + 1) * width + j] as number, lcs[i * width + j + 1] as number);
    }
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ op: " ", text: a[i] as string });
      i++;
      j++;
    } else if ((lcs[(i + 1) * width + j] as number) >= (lcs[i * width + j + 1] as number)) {
      ops.push({ op: "-", text: a[i++] as string });
    } else {
      ops.push({ op: "+", text: b[j++] as string });
    }
  }
  while (i < n) ops.push({ op: "-", text: a[i++] as string });
  while (j < m) ops.push({ op: "+", text: b[j++] as string });
  return ops;
}

/**
 * Myers' O(ND) shortest edit script (E. Myers, "An O(ND) Difference
 * Algorithm and Its Variations", 1986), or undefined when it needs more
 * than `maxEdits` deletions and insertions. Memory is O(D²): each round's
 * frontier (diagonals -d..d) is kept for the walk back.
 */
function myersScript(a: string[], b: string[], maxEdits: number): Op[] | undefined {
  const n = a.length;
  const m = b.length;
  const snake = (x: number, k: number) => {
    while (x < n && x - k < m && a[x] === b[x - k]) x++;
    return x;
  };
  // frontiers[d][k + d]: the furthest x reached on diagonal k = x - y with d edits (-1: none).
  const frontiers: Int32Array[] = [Int32Array.of(snake(0, 0))];
  for (let d = 1; d <= maxEdits && !reachedEnd(frontiers, n, m); d++) {
    const previous = frontiers[d - 1] as Int32Array;
    const current = new Int32Array(2 * d + 1);
    for (let k = -d; k <= d; k += 2) {
      const edit = editFrom(previous, d, k, n, m);
      current[k + d] = edit ? snake(edit.x, k) : -1;
    }
    frontiers.push(current);
  }
  return reachedEnd(frontiers, n, m) ? walkBack(a, b, frontiers) : undefined;
}

/** Whether the last round reached the end of both inputs (on diagonal n - m). */
function reachedEnd(frontiers: Int32Array[], n: number, m: number): boolean {
  const d = frontiers.length - 1;
  const k = n - m;
  return Math.abs(k) <= d && (d - k) % 2 === 0 && (frontiers[d] as Int32Array)[k + d] === n;
}

/**
 * Round d's edit onto diagonal k: an insertion from diagonal k + 1 ("from
 * below") or a deletion from k - 1, whichever got further in round d - 1
 * (the deletion on a tie); x is where it lands, before following equal
 * lines. Only moves inside the n × m grid count, so a frontier never runs
 * past the end of either input.
 */
function editFrom(previous: Int32Array, d: number, k: number, n: number, m: number): { fromBelow: boolean; x: number } | undefined {
  const reached = (diagonal: number) => (Math.abs(diagonal) <= d - 1 ? (previous[diagonal + d - 1] as number) : -1);
  const below = reached(k + 1);
  const left = reached(k - 1);
  const canInsert = below >= 0 && below - k <= m;
  const canDelete = left >= 0 && left + 1 <= n;
  if (!canInsert && !canDelete) return undefined;
  const fromBelow = canInsert && (!canDelete || left < below);
  return { fromBelow, x: fromBelow ? below : left + 1 };
}

/** The edit script along the path myersScript found, read backwards from its frontiers. */
function walkBack(a: string[], b: string[], frontiers: Int32Array[]): Op[] {
  const ops: Op[] = [];
  let x = a.length;
  let y = b.length;
  const equalTo = (stopX: number) => {
    while (x > stopX) {
      ops.push({ op: " ", text: a[--x] as string });
      y--;
    }
  };
  for (let d = frontiers.length - 1; d > 0; d--) {
    const edit = editFrom(frontiers[d - 1] as Int32Array, d, x - y, a.length, b.length);
    if (!edit) throw new Error(`lineDiff: no edit leads to diagonal ${x - y} in round ${d}`);
    equalTo(edit.x);
    if (edit.fromBelow) ops.push({ op: "+", text: b[--y] as string });
    else ops.push({ op: "-", text: a[--x] as string });
  }
  equalTo(0);
  return ops.reverse();
}

/** Changed lines with one line of context on each side; each run of other lines is one "  ...". */
function render(ops: Op[]): string[] {
  const changed = (o: Op | undefined) => o !== undefined && o.op !== " ";
  const keep = ops.map((o, k) => changed(o) || changed(ops[k - 1]) || changed(ops[k + 1]));
  const out: string[] = [];
  ops.forEach((o, k) => {
    if (keep[k]) out.push(`${o.op} ${o.text}`);
    else if (k === 0 || keep[k - 1]) out.push("  ...");
  });
  return out.filter((line) => line.trim() !== "" && line !== "  ");
}
