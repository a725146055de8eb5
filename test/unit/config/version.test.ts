/**
 * Snapshot versions are content hashes: the same configuration always gets
 * the same version, and any change that reaches the snapshot a new one.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import { contentVersion } from "../../../src/config/compile/version.ts";
import { snapshotOf, serviceEntry, toYaml, virtualService } from "../support.ts";

const base = () => [
  serviceEntry("a", ["a.example.com"], { location: "MESH_INTERNAL", resolution: "STATIC", endpoints: [{ address: "10.0.0.1" }] }),
  virtualService("v", ["app.example.com"], [{ match: [{ uri: { prefix: "/a" } }], route: [{ destination: { host: "a.example.com" } }] }]),
];

describe("content versions", () => {
  it("are 12 hex characters and stable for the same input", async () => {
    const one = await snapshotOf(...base());
    const two = await snapshotOf(...base());
    expect(one.version).toMatch(/^[0-9a-f]{12}$/);
    expect(two.version).toBe(one.version);
    expect(await contentVersion({ a: 1 })).toBe(await contentVersion({ a: 1 }));
  });

  it("ignore comments, formatting, file names and the Kubernetes bookkeeping", async () => {
    const plain = await buildConfig([{ path: "a.yaml", text: toYaml(base()) }]);
    const decorated = await buildConfig([
      {
        path: "elsewhere/b.yml",
        text: `# a comment\n\n${toYaml(base())
          .replace("name: v\n", "name: v\n  resourceVersion: \"42\"\n  uid: abc\n")
          .replace(/^---$/m, "---\n# between documents")}\n`,
      },
    ]);
    expect(decorated.problems).toEqual([]);
    expect(decorated.snapshot?.version).toBe(plain.snapshot?.version);
  });

  it("change with any change that reaches the snapshot", async () => {
    const original = (await snapshotOf(...base())).version;
    const variants = [
      () => {
        const [se, vs] = base();
        (vs!.spec as { http: { match: { uri: { prefix: string } }[] }[] }).http[0]!.match[0]!.uri.prefix = "/b";
        return [se!, vs!];
      },
      () => {
        const [se, vs] = base();
        (se!.spec as { endpoints: { address: string }[] }).endpoints[0]!.address = "10.0.0.2";
        return [se!, vs!];
      },
      () => {
        const [se, vs] = base();
        (vs!.spec as { hosts: string[] }).hosts.push("www.example.com");
        return [se!, vs!];
      },
      () => [...base(), virtualService("w", ["other.example.com"], [{ directResponse: { status: 204 } }])],
    ];
    const versions = new Set([original]);
    for (const variant of variants) versions.add((await snapshotOf(...variant())).version);
    expect(versions.size).toBe(variants.length + 1);
  });
});
