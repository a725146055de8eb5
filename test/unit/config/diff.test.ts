/**
 * Per-resource differences between two configurations (`isthmus diff`).
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
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
