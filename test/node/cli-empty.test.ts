/**
 * An input with no resources never replaces the active configuration:
 * applying it would leave every host answering 404 (kubectl refuses it
 * too: "no objects passed to apply").
 */
import { afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { project } from "./support.ts";

const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: prod}
spec:
  hosts: [app.example.com]
  http:
  - directResponse: {status: 200}
`;

describe("an input with no resources", () => {
  const p = project();
  afterAll(() => p.cleanup());
  // The file store of \`isthmus serve\` (quicker than the local KV, the same apply path).
  const store = ["--state", join(p.dir, "state")];

  it("is an error for validate and apply, and the active version stays", async () => {
    p.write("good.yaml", vs);
    const first = await p.run("apply", "-f", "good.yaml", ...store);
    expect(first.code).toBe(0);
    const version = /applied config ([0-9a-f]{12})/.exec(first.stdout)?.[1];
    expect(version).toMatch(/^[0-9a-f]{12}$/);

    const empties: [string, string][] = [
      ["empty.yaml", ""],
      ["dashes.yaml", "---\n---\n"],
      ["list.yaml", "apiVersion: v1\nkind: List\nitems: []\n"],
      ["ignored/sidecar.yaml", "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec: {}\n"],
    ];
    for (const [file, text] of empties) {
      p.write(file, text);
      const path = file.includes("/") ? file.split("/")[0]! : file;
      for (const command of ["validate", "apply"]) {
        const { code, stderr } = await p.run(command, "-f", path, ...(command === "apply" ? p.store : []));
        expect([file, command, code]).toEqual([file, command, 1]);
        expect(stderr).toMatch(/^error: no resources to apply \(read .+\): an empty configuration would replace the active one and every host would answer 404$/m);
      }
    }
    const versions = await p.run("versions", ...store);
    expect(versions.stdout).toMatch(new RegExp(`^\\* ${version}`, "m"));
    expect(versions.stdout.match(/^[* ] [0-9a-f]{12}/gm)).toHaveLength(1);
  });
});
