/**
 * Per-resource differences between two configurations (`isthmus diff`).
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import type { CanonicalResource } from "../../../src/config/canonical.ts";
import { diffResources, lineDiff } from "../../../src/config/diff.ts";
import { serviceEntry, toYaml, virtualService, type Doc } from "../support.ts";

const sourcesOf = async (docs: Doc[], path = "mesh.yaml") => (await buildConfig([{ path, text: toYaml(docs) }])).sources;
const se = (host = "a.example.com") => serviceEntry("a", [host]);
const vs = (prefix = "/a") => virtualService("v", ["app.example.com"], [{ match: [{ uri: { prefix } }], route: [{ destination: { host: "a.example.com" } }] }]);

describe("diffResources", () => {
  it("finds nothing between identical configurations, wherever the files are", async () => {
    expect(diffResources(await sourcesOf([se(), vs()]), await sourcesOf([vs(), se()], "moved/elsewhere.yaml"))).toEqual([]);
  });

  it("ignores Kubernetes bookkeeping (last-applied annotation, uid, resourceVersion)", async () => {
    const noisy = se();
    noisy.metadata = { ...noisy.metadata, uid: "u-1", resourceVersion: "9", annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" } };
    expect(diffResources(await sourcesOf([se()]), await sourcesOf([noisy]))).toEqual([]);
  });

  it("reports added, removed and changed resources with where they are", async () => {
    const before = await sourcesOf([se(), vs("/a")]);
    const after = await sourcesOf([vs("/b"), virtualService("w", ["w.example.com"], [{ directResponse: { status: 204 } }])], "new.yaml");
    const changes = diffResources(before, after);
    expect(changes.map((c) => [c.type, c.id, c.where])).toEqual([
      ["changed", "VirtualService/default/v", "new.yaml:1"],
      ["added", "VirtualService/default/w", expect.stringMatching(/^new\.yaml:\d+$/)],
      ["removed", "ServiceEntry/default/a", "mesh.yaml:1"],
    ]);
    const changed = changes[0];
    expect(changed?.type === "changed" && changed.lines).toEqual(expect.arrayContaining(["-             prefix: /a", "+             prefix: /b"]));
  });

  it("sees a label or annotation change as a change", async () => {
    const labelled = se();
    labelled.metadata = { ...labelled.metadata, labels: { team: "x" } };
    const changes = diffResources(await sourcesOf([se()]), await sourcesOf([labelled]));
    expect(changes).toHaveLength(1);
    expect(changes[0]?.type === "changed" && changes[0].lines.some((l) => l.startsWith("+") && l.includes("team: x"))).toBe(true);
  });
});

describe("lineDiff", () => {
  it("shows changed lines with one line of context and elides the rest", () => {
    const a = ["a", "b", "c", "d", "e", "f", "g"];
    const b = ["a", "b", "c", "D", "e", "f", "g"];
    expect(lineDiff(a, b)).toEqual(["  ...", "  c", "- d", "+ D", "  e", "  ..."]);
  });

  it("handles insertions and deletions at the ends", () => {
    expect(lineDiff(["x"], ["x", "y"])).toEqual(["  x", "+ y"]);
    expect(lineDiff(["w", "x"], ["x"])).toEqual(["- w", "  x"]);
    expect(lineDiff([], ["new"])).toEqual(["+ new"]);
  });
});

/** The LCS-table lineDiff as it was before large inputs were handled: the reference for small diffs. */
function referenceLineDiff(a: string[], b: string[]): string[] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const row = lcs[i] as number[];
      row[j] = a[i] === b[j] ? ((lcs[i + 1] as number[])[j + 1] as number) + 1 : Math.max((lcs[i + 1] as number[])[j] as number, row[j + 1] as number);
    }
  }
  const ops: { op: string; text: string }[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ op: " ", text: a[i++] as string });
      j++;
    } else if (((lcs[i + 1] as number[])[j] as number) >= ((lcs[i] as number[])[j + 1] as number)) {
      ops.push({ op: "-", text: a[i++] as string });
    } else ops.push({ op: "+", text: b[j++] as string });
  }
  while (i < n) ops.push({ op: "-", text: a[i++] as string });
  while (j < m) ops.push({ op: "+", text: b[j++] as string });
  const keep = ops.map((o, k) => o.op !== " " || ops[k - 1]?.op === "-" || ops[k - 1]?.op === "+" || ops[k + 1]?.op === "-" || ops[k + 1]?.op === "+");
  const out: string[] = [];
  ops.forEach((o, k) => {
    if (keep[k]) out.push(`${o.op} ${o.text}`);
    else if (k === 0 || keep[k - 1]) out.push("  ...");
  });
  return out.filter((line) => line.trim() !== "" && line !== "  ");
}

describe("lineDiff on large inputs", () => {
  /** A deterministic pseudo-random sequence (so a failure can be replayed). */
  function random(seed: number): () => number {
    let s = seed;
    return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  }

  it("gives the same output as the LCS table for small inputs, repeated lines and all", () => {
    const next = random(7);
    for (let round = 0; round < 400; round++) {
      const line = () => ["a", "b", "c", "  - x", "  ", ""][Math.floor(next() * 6)] as string;
      const a = Array.from({ length: Math.floor(next() * 14) }, line);
      const b = next() < 0.5 ? a.map((l) => (next() < 0.25 ? line() : l)) : Array.from({ length: Math.floor(next() * 14) }, line);
      expect(lineDiff(a, b), JSON.stringify([a, b])).toEqual(referenceLineDiff(a, b));
    }
  });

  it("diffs a VirtualService of 5000 routes with one changed line, showing that line in context", () => {
    // Built directly (as buildConfig stores it), since compiling 5000 routes twice takes seconds.
    const big = (slow: number): CanonicalResource => ({
      id: "VirtualService/default/big",
      file: "mesh.yaml",
      line: 1,
      apiVersion: "networking.istio.io/v1",
      kind: "VirtualService",
      metadata: { name: "big", namespace: "default" },
      spec: {
        hosts: ["app.example.com"],
        http: Array.from({ length: 5000 }, (_, i) => ({ name: `r${i}`, match: [{ uri: { prefix: `/r${i}` } }], route: [{ destination: { host: "a.example.com" } }], timeout: i === slow ? "9s" : "3s" })),
      },
    });
    const changes = diffResources([big(-1)], [big(2500)]);
    expect(changes).toEqual([
      { type: "changed", id: "VirtualService/default/big", where: "mesh.yaml:1", lines: ["  ...", "              host: a.example.com", "-       timeout: 3s", "+       timeout: 9s", "      - match:", "  ..."] },
    ]);
  });

  it("lists many scattered changes in a long file line by line", () => {
    const a = Array.from({ length: 40_000 }, (_, i) => `line ${i}`);
    const b = a.map((l, i) => (i % 100 === 50 ? `${l} changed` : l));
    const out = lineDiff(a, b);
    expect(out.filter((l) => l.startsWith("- "))).toHaveLength(400);
    expect(out.filter((l) => l.startsWith("+ "))).toHaveLength(400);
    expect(out.slice(0, 5)).toEqual(["  ...", "  line 49", "- line 50", "+ line 50 changed", "  line 51"]);
  });

  it("finds a shortest edit script past the table's size, as the table does", () => {
    for (const seed of [1, 2, 3]) {
      const next = random(seed);
      const a = Array.from({ length: 1100 }, (_, i) => (next() < 0.2 ? "  - route:" : `line ${i}`));
      const b: string[] = [];
      for (const line of a) {
        const r = next();
        if (r < 0.03) continue;
        b.push(r < 0.06 ? `${line} changed` : line);
        if (r > 0.97) b.push("  - route:");
      }
      b[0] = "first";
      b.push("last");
      const out = lineDiff(a, b);
      const reference = referenceLineDiff(a, b);
      const count = (lines: string[], mark: string) => lines.filter((l) => l.startsWith(mark)).length;
      expect([count(out, "- "), count(out, "+ ")]).toEqual([count(reference, "- "), count(reference, "+ ")]);
      const isSubsequence = (part: string[], whole: string[]) => part.every(((i) => (l: string) => (i = whole.indexOf(l, i) + 1) > 0)(0));
      expect(isSubsequence(out.filter((l) => l.startsWith("- ")).map((l) => l.slice(2)), a)).toBe(true);
      expect(isSubsequence(out.filter((l) => l.startsWith("+ ")).map((l) => l.slice(2)), b)).toBe(true);
    }
  });

  it("summarises two long, wholly different files in one line instead of listing them", () => {
    const a = Array.from({ length: 30_000 }, (_, i) => `old ${i}`);
    const b = Array.from({ length: 30_001 }, (_, i) => `new ${i}`);
    expect(lineDiff(["head", ...a, "tail"], ["head", ...b, "tail"])).toEqual(["  head", "~ 30000 lines replaced by 30001 (too many differences to list line by line)", "  tail"]);
  });
});
