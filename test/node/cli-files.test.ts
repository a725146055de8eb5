/**
 * Reading `-f` paths as kubectl does: .json next to .yaml/.yml, each file
 * once however it is reached, and one-line errors (never a stack trace)
 * for files that cannot be read.
 */
import { symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CliError, decodeUtf8, expandPaths, readSources } from "../../src/cli/files.ts";
import { linesOf, project } from "./support.ts";

const GATEWAY = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n";
const SERVICE_ENTRY =
  "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: origin}\nspec: {hosts: [origin.example.com], location: MESH_EXTERNAL, resolution: DNS, ports: [{number: 80, name: http, protocol: HTTP}]}\n";

/** A VirtualService as `kubectl get -o json` prints it (indented JSON). */
function virtualServiceJson(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: "networking.istio.io/v1",
    kind: "VirtualService",
    metadata: { name },
    spec: { hosts: [`${name}.example.com`], gateways: ["gw"], http: [{ route: [{ destination: { host: "origin.example.com" } }], ...extra }] },
  };
}

describe("-f directories", () => {
  const p = project();
  afterAll(() => p.cleanup());

  it("reads .json files next to .yaml and .yml, as kubectl does", async () => {
    p.write("mixed/gw.yaml", GATEWAY);
    p.write("mixed/se.yml", SERVICE_ENTRY);
    p.write("mixed/vs.json", JSON.stringify(virtualServiceJson("a"), null, 4));
    p.write("mixed/notes.txt", "not read");
    const { code, stdout, stderr } = await p.run("validate", "-f", "mixed");
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toMatch(/^isthmus: 3 resources valid; config [0-9a-f]{12}\n$/);
  });

  it("reads a JSON kind: List, and names the file and line of a problem inside it", async () => {
    p.write("jlist/gw.yaml", GATEWAY + "---\n" + SERVICE_ENTRY);
    const list = { apiVersion: "v1", kind: "List", items: [virtualServiceJson("a"), virtualServiceJson("b", { timeoutt: "3s" })] };
    p.write("jlist/vs.json", JSON.stringify(list, null, 2));
    const text = JSON.stringify(list, null, 2).split("\n");
    const line = text.findIndex((l) => l.includes('"timeoutt"')) + 1;
    const { code, stderr } = await p.run("validate", "-f", "jlist");
    expect(code).toBe(1);
    expect(linesOf(stderr)).toEqual([
      `jlist/vs.json:${line}: error: VirtualService/default/b: spec.http[0].timeoutt: unknown field "timeoutt" (did you mean "timeout"?)`,
      "isthmus: 1 error; nothing applied",
    ]);
  });

  it("treats a JSON array as YAML treats a top-level sequence, and reports JSON syntax errors with their line", async () => {
    p.write("jarray/a.json", JSON.stringify([virtualServiceJson("a")], null, 2));
    p.write("jarray/b.json", '{\n  "apiVersion": "networking.istio.io/v1",\n  "kind": "VirtualService",\n  "metadata": {"name": "b"\n}\n');
    const { code, stderr } = await p.run("validate", "-f", "jarray");
    expect(code).toBe(1);
    const out = linesOf(stderr);
    expect(out[0]).toBe("jarray/a.json:1: error: expected a Kubernetes resource (a mapping with apiVersion, kind, metadata and spec)");
    expect(out.slice(1, -1).length).toBeGreaterThan(0);
    for (const l of out.slice(1, -1)) expect(l).toMatch(/^jarray\/b\.json:\d+: error: invalid YAML: [^\n]+$/);
  });

  it("reads a file once when two -f paths (or a symlink) reach it", async () => {
    p.write("once/gw.yaml", GATEWAY);
    p.write("once/se.yaml", SERVICE_ENTRY);
    symlinkSync("se.yaml", join(p.dir, "once", "se-link.yaml"));
    const { code, stdout, stderr } = await p.run("validate", "-f", "once", "-f", "once/gw.yaml", "-f", join(p.dir, "once/se.yaml"));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toMatch(/^isthmus: 2 resources valid; config [0-9a-f]{12}\n$/);
    expect(expandPaths([join(p.dir, "once"), join(p.dir, "once/gw.yaml")]).map((f) => f.slice(p.dir.length + 1))).toEqual(["once/gw.yaml", "once/se-link.yaml"]);
  });

  it("reports a dangling *.yaml symlink as one line naming it, not a stack trace", async () => {
    p.write("dangling/gw.yaml", GATEWAY);
    symlinkSync("/nonexistent/isthmus/x.yaml", join(p.dir, "dangling", "broken.yaml"));
    const { code, stdout, stderr } = await p.run("validate", "-f", "dangling");
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe("isthmus: dangling/broken.yaml: broken symlink to /nonexistent/isthmus/x.yaml\n");
  });

  it("throws a CliError naming a file that cannot be read (here a symlink loop)", () => {
    p.write("unreadable/a.yaml", GATEWAY);
    symlinkSync("a.yaml", join(p.dir, "unreadable", "loop.yaml"));
    symlinkSync("loop2.yaml", join(p.dir, "unreadable", "loop1.yaml"));
    symlinkSync("loop1.yaml", join(p.dir, "unreadable", "loop2.yaml"));
    expect(() => readSources([join(p.dir, "unreadable")])).toThrow(CliError);
    expect(() => readSources([join(p.dir, "unreadable")])).toThrow(/unreadable\/loop1\.yaml: too many symbolic links/);
  });

  it("refuses a file that is not UTF-8, naming its line, rather than turning the bytes into U+FFFD", async () => {
    p.write("latin1/gw.yaml", GATEWAY);
    // A Latin-1 "café" on line 2 of a direct response body.
    const body = Buffer.concat([Buffer.from("# menu\nbody: caf"), Buffer.from([0xe9]), Buffer.from("\n")]);
    writeFileSync(join(p.dir, "latin1", "body.yaml"), body);
    const { code, stdout, stderr } = await p.run("validate", "-f", "latin1");
    expect([code, stdout, stderr]).toEqual([1, "", "isthmus: latin1/body.yaml:2: not UTF-8 (byte 0xe9 at offset 16); save the file as UTF-8\n"]);
  });

  it("names UTF-16 as such, and reads UTF-8 with or without a byte order mark", () => {
    expect(() => decodeUtf8(Buffer.from("\ufeffkind: Gateway", "utf16le"), "w.yaml")).toThrow("w.yaml: the file is UTF-16; save it as UTF-8");
    expect(decodeUtf8(Buffer.from("\ufeffkind: Gatewäy", "utf8"), "u.yaml")).toBe("\ufeffkind: Gatewäy");
    // A sequence cut short at the end of the file is not UTF-8 either.
    expect(() => decodeUtf8(Buffer.from([0x61, 0x0a, 0xe2, 0x82]), "t.yaml")).toThrow("t.yaml:2: not UTF-8 (byte 0xe2 at offset 2); save the file as UTF-8");
  });
});
