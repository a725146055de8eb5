/**
 * `isthmus diff` and the store commands at their edges: a change that
 * compiles to the same snapshot (labels), a VirtualService of thousands of
 * routes, every error exit of diff, and a store whose `active` or
 * `history` key does not parse. Each test has a state directory of its own
 * (`--state`, the directory store of `isthmus serve`).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { linesOf, project } from "./support.ts";

const p = project();
afterAll(() => p.cleanup());

let stores = 0;
/** A fresh state directory: its --state arguments and the directory store's description. */
function freshStore() {
  const state = `st${++stores}`;
  return { args: ["--state", state], description: `directory store (${join(state, "config")})`, key: (name: string) => join(state, "config", name) };
}

const MESH = (labels = "", timeout = "3s") =>
  [
    "apiVersion: networking.istio.io/v1",
    "kind: ServiceEntry",
    "metadata: {name: origin}",
    "spec: {hosts: [origin.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}",
    "---",
    "apiVersion: networking.istio.io/v1",
    "kind: VirtualService",
    `metadata: {name: vs${labels}}`,
    "spec:",
    "  hosts: [a.example.com]",
    "  http:",
    `  - timeout: ${timeout}`,
    "    route: [{destination: {host: origin.example.com}}]",
    "",
  ].join("\n");

/** One VirtualService with `n` routes; route `slow` (if any) has a 9s timeout, the others 3s. */
function bigMesh(n: number, slow = -1): string {
  const rules = Array.from({ length: n }, (_, i) => `  - name: r${i}\n    match: [{uri: {prefix: /r${i}}}]\n    timeout: ${i === slow ? "9s" : "3s"}\n    route: [{destination: {host: origin.example.com}}]`);
  return MESH().replace(/ {2}http:\n[\s\S]*$/, `  http:\n${rules.join("\n")}\n`);
}

const VERSION = /config ([0-9a-f]{12})/;

describe("a change that compiles to the same snapshot (labels)", () => {
  it("is stored by apply, so diff then finds nothing", async () => {
    const s = freshStore();
    p.write("labels/mesh.yaml", MESH());
    const first = await p.run("apply", "-f", "labels", ...s.args);
    expect(first.code).toBe(0);
    const version = VERSION.exec(first.stdout)?.[1];
    p.write("labels/mesh.yaml", MESH(", labels: {team: web}"));
    const pending = await p.run("diff", "-f", "labels", ...s.args);
    expect(pending.code).toBe(1);
    expect(linesOf(pending.stdout)).toContain("    +   labels:");
    const second = await p.run("apply", "-f", "labels", ...s.args);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(new RegExp(`^isthmus: config ${version} is already active in .+; sources updated \\(labels, annotations or other fields that do not change the compiled config\\)\n$`));
    expect(readFileSync(join(p.dir, s.key(`source_3a${version}`)), "utf8")).toContain('"team":"web"');
    const after = await p.run("diff", "-f", "labels", ...s.args);
    expect([after.code, after.stdout]).toEqual([0, `isthmus: no changes against config ${version}\n`]);
  });
});

describe("diff of a VirtualService with 5000 routes", () => {
  it("shows the one changed line, in context", async () => {
    const s = freshStore();
    p.write("big/mesh.yaml", bigMesh(5000));
    expect((await p.run("apply", "-f", "big", ...s.args)).code).toBe(0);
    p.write("big/mesh.yaml", bigMesh(5000, 2500));
    const { code, stdout, stderr } = await p.run("diff", "-f", "big", ...s.args);
    expect(stderr).toBe("");
    expect(code).toBe(1);
    const out = linesOf(stdout);
    expect(out.slice(0, -1)).toEqual([
      "~ VirtualService/default/vs (big/mesh.yaml:6)",
      "      ...",
      "                  host: origin.example.com",
      "    -       timeout: 3s",
      "    +       timeout: 9s",
      "          - match:",
      "      ...",
    ]);
    expect(out.at(-1)).toMatch(/^isthmus: 0 added, 1 changed, 0 removed against config [0-9a-f]{12}; new config [0-9a-f]{12}$/);
    // Compiling 5000 routes twice takes seconds on a busy machine; the LCS table this replaced ran out of memory here.
  }, 120_000);
});

describe("diff exits 2, with one line, on every error", () => {
  it("a file that does not exist", async () => {
    const { code, stdout, stderr } = await p.run("diff", "-f", "nope.yaml", ...freshStore().args);
    expect([code, stdout, stderr]).toEqual([2, "", "isthmus: nope.yaml: no such file or directory\n"]);
  });

  it("a missing wrangler.toml", async () => {
    p.write("ok/mesh.yaml", MESH());
    const { code, stdout, stderr } = await p.run("diff", "-f", "ok", "--config", "nowhere/wrangler.toml");
    expect([code, stdout, stderr]).toEqual([2, "", "isthmus: nowhere/wrangler.toml: not found (pass --config PATH to the wrangler.toml of the gateway)\n"]);
  });

  it("a store whose active pointer is not valid JSON", async () => {
    const s = freshStore();
    p.write("ok/mesh.yaml", MESH());
    expect((await p.run("apply", "-f", "ok", ...s.args)).code).toBe(0);
    p.write(s.key("active"), "garbage{\n");
    const { code, stdout, stderr } = await p.run("diff", "-f", "ok", ...s.args);
    expect([code, stdout]).toEqual([2, ""]);
    expect(linesOf(stderr)).toEqual([expect.stringMatching(new RegExp(`^isthmus: ${escape(s.description)}: key active is not valid JSON: .+$`))]);
  });
});

describe("a store whose active or history key does not parse", () => {
  it("versions names the store and the key in one line", async () => {
    const s = freshStore();
    p.write("ok/mesh.yaml", MESH());
    expect((await p.run("apply", "-f", "ok", ...s.args)).code).toBe(0);
    p.write(s.key("history"), "[{oops\n");
    const { code, stdout, stderr } = await p.run("versions", ...s.args);
    expect([code, stdout]).toEqual([1, ""]);
    expect(linesOf(stderr)).toEqual([expect.stringMatching(new RegExp(`^isthmus: ${escape(s.description)}: key history is not valid JSON: .+$`))]);
  });

  it("apply starts a new history with a warning, and versions lists it", async () => {
    const s = freshStore();
    p.write("ok/mesh.yaml", MESH());
    expect((await p.run("apply", "-f", "ok", ...s.args)).code).toBe(0);
    p.write(s.key("history"), "[{oops\n");
    p.write("ok2/mesh.yaml", MESH("", "4s"));
    const { code, stdout, stderr } = await p.run("apply", "-f", "ok2", ...s.args);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^isthmus: applied config [0-9a-f]{12} \(2 resources\) to .+; previous [0-9a-f]{12}\n$/);
    expect(linesOf(stderr)).toEqual([expect.stringMatching(new RegExp(`^isthmus: warning: ${escape(s.description)}: key history is not valid JSON: .+; starting a new history`))]);
    const rows = linesOf((await p.run("versions", ...s.args)).stdout);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatch(/^\* [0-9a-f]{12} +\S+ +apply +2$/);
  });

  it("apply and rollback stop with the store and key named, and leave the pointer alone", async () => {
    const s = freshStore();
    p.write("ok/mesh.yaml", MESH());
    expect((await p.run("apply", "-f", "ok", ...s.args)).code).toBe(0);
    p.write(s.key("active"), "garbage{\n");
    p.write("ok2/mesh.yaml", MESH("", "4s"));
    for (const args of [["apply", "-f", "ok2"], ["rollback"]]) {
      const { code, stdout, stderr } = await p.run(...args, ...s.args);
      expect([code, stdout]).toEqual([1, ""]);
      expect(linesOf(stderr)).toEqual([expect.stringMatching(new RegExp(`^isthmus: (apply failed: )?${escape(s.description)}: key active is not valid JSON: .+$`))]);
    }
    expect(readFileSync(join(p.dir, s.key("active")), "utf8")).toBe("garbage{\n");
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
