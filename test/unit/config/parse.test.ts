/**
 * Reading YAML: multi-document files, `kind: List`, syntax errors with
 * their line, and where each field came from.
 */
import { describe, expect, it } from "vitest";
import { parseYaml } from "../../../src/config/parse.ts";
import { formatProblem } from "../../../src/config/problems.ts";
import { build, lines } from "../support.ts";

const parse = (text: string) => parseYaml({ path: "mesh.yaml", text });

describe("parseYaml", () => {
  it("reads every document of a multi-document file, skipping empty ones", () => {
    const text = [
      "---",
      "# only a comment",
      "---",
      "kind: A",
      "---",
      "",
      "---",
      "kind: B",
      "...",
      "---",
      "kind: C",
      "",
    ].join("\n");
    const { documents, problems } = parse(text);
    expect(problems).toEqual([]);
    expect(documents.map((d) => (d.value as { kind: string }).kind)).toEqual(["A", "B", "C"]);
    expect(documents.map((d) => d.line)).toEqual([4, 8, 11]);
    expect(documents.every((d) => d.file === "mesh.yaml")).toBe(true);
  });

  it("returns nothing for an empty file", () => {
    expect(parse("")).toEqual({ documents: [], problems: [] });
    expect(parse("\n# nothing here\n")).toEqual({ documents: [], problems: [] });
  });

  it("unwraps `kind: List` (kubectl get -o yaml) into its items, with their own lines", () => {
    const text = [
      "apiVersion: v1",
      "kind: List",
      "items:",
      "- apiVersion: networking.istio.io/v1",
      "  kind: ServiceEntry",
      "  metadata:",
      "    name: a",
      "- apiVersion: networking.istio.io/v1",
      "  kind: ServiceEntry",
      "  metadata:",
      "    name: b",
      "metadata:",
      "  resourceVersion: \"\"",
      "",
    ].join("\n");
    const { documents } = parse(text);
    expect(documents.map((d) => (d.value as { metadata: { name: string } }).metadata.name)).toEqual(["a", "b"]);
    expect(documents.map((d) => d.line)).toEqual([4, 8]);
    expect(documents[1]?.lineOf(["metadata", "name"])).toBe(11);
  });

  it("knows the line of any field, falling back to the closest parent that exists", () => {
    const text = ["kind: VirtualService", "spec:", "  http:", "  - route:", "    - destination:", "        host: a", "  - route: []", ""].join("\n");
    const [d] = parse(text).documents;
    expect(d?.lineOf(["spec", "http", 0, "route", 0, "destination", "host"])).toBe(6);
    expect(d?.lineOf(["spec", "http", 1, "route"])).toBe(7);
    expect(d?.lineOf(["spec", "http", 1, "route", 0, "weight"])).toBe(7);
    expect(d?.lineOf(["spec", "tcp"])).toBe(2);
    expect(d?.lineOf([])).toBe(1);
  });

  it("reports a YAML syntax error with its line and keeps the other documents", () => {
    const text = ["kind: A", "---", "kind: B", "metadata:", "  name: [unclosed", "---", "kind: C", ""].join("\n");
    const { documents, problems } = parse(text);
    expect(documents.map((d) => (d.value as { kind: string }).kind)).toEqual(["A", "C"]);
    expect(problems.length).toBeGreaterThan(0);
    for (const p of problems) {
      expect(p).toMatchObject({ severity: "error", file: "mesh.yaml" });
      expect(p.message).toMatch(/^invalid YAML: /);
    }
    expect(problems[0]?.line).toBeGreaterThanOrEqual(5);
  });

  it("reports a bad indentation on its own line as one clear line", () => {
    const text = ["kind: A", "metadata:", "  name: a", "   bad: [", ""].join("\n");
    const [first] = parse(text).problems;
    expect(first?.line).toBe(3);
    // One line per problem: the location is in the prefix, not repeated or left dangling.
    expect(formatProblem(first!)).toMatch(/^mesh\.yaml:3: error: invalid YAML: [^\n]*[^:\n]$/);
    expect(formatProblem(first!)).not.toMatch(/at line \d+/);
  });

  it("rejects duplicate keys, naming the line of the second one", () => {
    const text = ["apiVersion: networking.istio.io/v1", "kind: ServiceEntry", "metadata:", "  name: a", "  name: b", ""].join("\n");
    const { documents, problems } = parse(text);
    expect(documents).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ severity: "error", file: "mesh.yaml", line: 5 });
    expect(problems[0]?.message).toMatch(/unique/);
  });

  it("turns an alias bomb into an error instead of expanding it or crashing", () => {
    const text = [
      "a: &a [x, x, x, x, x, x, x, x, x, x]",
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
      "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]",
      "",
    ].join("\n");
    const { documents, problems } = parse(text);
    expect(documents).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ severity: "error", file: "mesh.yaml", line: 1 });
    expect(problems[0]?.message).toMatch(/^invalid YAML: .*alias/i);
  });

  it("still resolves ordinary anchors and aliases", () => {
    const text = ["defaults: &d {a: 1}", "copy: *d", ""].join("\n");
    const [d] = parse(text).documents;
    expect(d?.value).toEqual({ defaults: { a: 1 }, copy: { a: 1 } });
  });
});

describe("buildConfig over several files", () => {
  it("names the file each problem comes from and sorts problems by file and line", async () => {
    const { buildConfig } = await import("../../../src/config/build.ts");
    const result = await buildConfig([
      { path: "b.yaml", text: "kind: Nope\nmetadata: {name: x}\n" },
      { path: "a.yaml", text: "a: [\n" },
    ]);
    const out = result.problems.map(formatProblem);
    expect(out[0]).toMatch(/^a\.yaml:\d+: error: invalid YAML/);
    expect(out.at(-1)).toMatch(/^b\.yaml:1: error: Nope\/default\/x: kind: unknown kind "Nope"/);
    expect(result.snapshot).toBeUndefined();
  });

  it("treats a file of only comments and separators as no resources, which is an error: applied, it would replace the active config", async () => {
    const result = await build("# nothing\n---\n");
    expect(lines(result)).toEqual([
      "error: no resources to apply (read config.yaml): an empty configuration would replace the active one and every host would answer 404",
    ]);
    expect(result.resources).toEqual([]);
    expect(result.snapshot).toBeUndefined();
  });
});
