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
    // The line of the alias that crosses go-yaml's limit on alias copies.
    expect(problems[0]).toMatchObject({ severity: "error", file: "mesh.yaml", line: 4 });
    expect(problems[0]?.message).toMatch(/^invalid YAML: excessive aliasing: \*c brings the document to \d+ values, 99% of them alias copies/);
  });

  it("still resolves ordinary anchors and aliases", () => {
    const text = ["defaults: &d {a: 1}", "copy: *d", ""].join("\n");
    const [d] = parse(text).documents;
    expect(d?.value).toEqual({ defaults: { a: 1 }, copy: { a: 1 } });
  });
});

describe("parseYaml: merge keys, aliases and List wrappers as kubectl reads them", () => {
  it("merges `<<: *anchor` keys (go-yaml does), explicit keys winning, and places merged fields on the `<<` line", () => {
    const text = [
      "spec:", // 1
      "  base: &retry", // 2
      "    attempts: 3", // 3
      "    perTryTimeout: 2s", // 4
      "  copy:", // 5
      "    <<: *retry", // 6
      "    attempts: 1", // 7
      "  early:", // 8
      "    attempts: 5", // 9
      "    <<: [*retry, {retryOn: 5xx}]", // 10
      "",
    ].join("\n");
    const { documents, problems } = parse(text);
    expect(problems).toEqual([]);
    const [d] = documents;
    expect(d?.value).toEqual({
      spec: {
        base: { attempts: 3, perTryTimeout: "2s" },
        copy: { attempts: 1, perTryTimeout: "2s" },
        early: { attempts: 5, perTryTimeout: "2s", retryOn: "5xx" },
      },
    });
    expect(d?.lineOf(["spec", "copy", "attempts"])).toBe(7);
    expect(d?.lineOf(["spec", "copy", "perTryTimeout"])).toBe(6);
    expect(d?.lineOf(["spec", "early", "retryOn"])).toBe(10);
  });

  it("validates a VirtualService whose retries come from a merge key", async () => {
    const text = [
      "apiVersion: networking.istio.io/v1",
      "kind: ServiceEntry",
      "metadata: {name: origin}",
      "spec: {hosts: [origin.example.com], location: MESH_EXTERNAL, resolution: DNS, ports: [{number: 80, name: http, protocol: HTTP}]}",
      "---",
      "apiVersion: networking.istio.io/v1", // 1
      "kind: VirtualService", // 2
      "metadata: {name: vs}", // 3
      "spec:", // 4
      "  hosts: [a.example.com]", // 5
      "  http:", // 6
      "  - route: [{destination: {host: origin.example.com}}]", // 7
      "    retries: &retry {attempts: 3, perTryTimeout: 2s}", // 8
      "  - route: [{destination: {host: origin.example.com}}]", // 9
      "    retries:", // 10
      "      <<: *retry", // 11
      "      attempts: 1", // 12
      "      retryOnn: 5xx", // 13
      "",
    ].join("\n");
    expect(lines(await build(text))).toEqual([
      'config.yaml:18: error: VirtualService/default/vs: spec.http[1].retries.retryOnn: unknown field "retryOnn" (did you mean "retryOn"?)',
    ]);
  });

  it("refuses a merge source that is not a mapping, on the line of its `<<`", () => {
    const { documents, problems } = parse(["a: 1", "b:", "  <<: 5", ""].join("\n"));
    expect(documents).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(formatProblem(problems[0]!)).toMatch(/^mesh\.yaml:3: error: invalid YAML: merge key <<: expected a mapping/);
  });

  it("accepts an anchor reused more than 100 times (a generated VirtualService)", () => {
    const rules = Array.from({ length: 120 }, (_, i) =>
      i === 0
        ? ["- name: r0", "  retries: &retries {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}", "  route: &route [{destination: {host: origin.example.com}}]"]
        : [`- name: r${i}`, "  retries: *retries", "  route: *route"],
    ).flat();
    const { documents, problems } = parse(["spec:", "  http:", ...rules.map((l) => `  ${l}`), ""].join("\n"));
    expect(problems).toEqual([]);
    const http = (documents[0]?.value as { spec: { http: { retries: unknown }[] } }).spec.http;
    expect(http).toHaveLength(120);
    expect(http[119]?.retries).toEqual({ attempts: 3, perTryTimeout: "2s", retryOn: "5xx" });
  });

  it("refuses a deeper alias bomb quickly, with one line naming the file and the alias", () => {
    const text = [
      'a: &a ["x","x","x","x","x","x","x","x","x"]',
      "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
      "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
      "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
      "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
      "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
      "",
    ].join("\n");
    const started = Date.now();
    const { documents, problems } = parse(text);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(documents).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(formatProblem(problems[0]!)).toMatch(/^mesh\.yaml:\d: error: invalid YAML: excessive aliasing: \*[a-f] [^\n]*$/);
  });

  it("refuses an alias inside the value it refers to instead of building a cycle", () => {
    const { documents, problems } = parse(["spec: &s", "  hosts: [a]", "  again: *s", ""].join("\n"));
    expect(documents).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ severity: "error", file: "mesh.yaml", line: 3 });
    expect(problems[0]?.message).toMatch(/^invalid YAML: .*\*s/);
  });

  it("names the line of an alias without an anchor", () => {
    const { problems } = parse(["a: 1", "b: *nope", ""].join("\n"));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ severity: "error", file: "mesh.yaml", line: 2 });
    expect(problems[0]?.message).toMatch(/^invalid YAML: .*\*nope/);
  });

  it("says a List's items must be a list of resources when they are null, a mapping or missing", () => {
    for (const [items, got] of [["items:", "null"], ["items: {}", "a mapping"], ["items: hello", '"hello"']] as const) {
      const { documents, problems } = parse(["apiVersion: v1", "kind: List", items, ""].join("\n"));
      expect(documents).toEqual([]);
      expect(problems.map(formatProblem)).toEqual([`mesh.yaml:3: error: List: items: expected a list of resources, got ${got}`]);
    }
    const missing = parse("apiVersion: v1\nkind: List\n");
    expect(missing.problems.map(formatProblem)).toEqual(["mesh.yaml:1: error: List: items: expected a list of resources, got nothing"]);
  });

  it("reads a typed list (VirtualServiceList, as the API server returns it) like a List", () => {
    for (const apiVersion of ["networking.istio.io/v1", "v1"]) {
      const text = [
        `apiVersion: ${apiVersion}`,
        "kind: VirtualServiceList",
        "metadata: {resourceVersion: \"12\"}",
        "items:",
        "- apiVersion: networking.istio.io/v1",
        "  kind: VirtualService",
        "  metadata: {name: a}",
        "",
      ].join("\n");
      const { documents, problems } = parse(text);
      expect(problems).toEqual([]);
      expect(documents.map((d) => [(d.value as { kind: string }).kind, d.line])).toEqual([["VirtualService", 5]]);
    }
    const bad = parse("apiVersion: networking.istio.io/v1\nkind: ServiceEntryList\nitems: {}\n");
    expect(bad.problems.map(formatProblem)).toEqual(["mesh.yaml:3: error: ServiceEntryList: items: expected a list of resources, got a mapping"]);
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
