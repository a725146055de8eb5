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

/** A minimal unified-style diff: changed lines with one line of context. */
export function lineDiff(a: string[], b: string[]): string[] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const row = lcs[i] as number[];
      row[j] = a[i] === b[j] ? ((lcs[i + 1] as number[])[j + 1] as number) + 1 : Math.max((lcs[i + 1] as number[])[j] as number, row[j + 1] as number);
    }
  }
  const ops: { op: " " | "-" | "+"; text: string }[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ op: " ", text: a[i] as string });
      i++;
      j++;
    } else if (((lcs[i + 1] as number[])[j] as number) >= ((lcs[i] as number[])[j + 1] as number)) {
      ops.push({ op: "-", text: a[i++] as string });
    } else {
      ops.push({ op: "+", text: b[j++] as string });
    }
  }
  while (i < n) ops.push({ op: "-", text: a[i++] as string });
  while (j < m) ops.push({ op: "+", text: b[j++] as string });
  const keep = ops.map((o, k) => o.op !== " " || ops[k - 1]?.op === "-" || ops[k - 1]?.op === "+" || ops[k + 1]?.op === "-" || ops[k + 1]?.op === "+");
  const out: string[] = [];
  ops.forEach((o, k) => {
    if (keep[k]) out.push(`${o.op} ${o.text}`);
    else if (k === 0 || keep[k - 1]) out.push("  ...");
  });
  return out.filter((line) => line.trim() !== "" && line !== "  " );
}
