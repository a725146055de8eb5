/**
 * The `isthmus` CLI as a user runs it: help, usage errors and `validate`.
 */
import { afterAll, describe, expect, it } from "vitest";
import { isthmus, linesOf, project } from "./support.ts";

const COMMANDS = ["validate", "apply", "dev", "diff", "versions", "rollback"];

describe("help", () => {
  it("prints the usage with an example for --help, and exits 0", async () => {
    const { code, stdout } = await isthmus(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: isthmus <command> \[options\]$/m);
    for (const command of COMMANDS) expect(stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    expect(stdout).toMatch(/Example:\n  isthmus /);
  });

  for (const command of COMMANDS) {
    it(`prints ${command} --help with an example, and exits 0`, async () => {
      const { code, stdout, stderr } = await isthmus([command, "--help"]);
      expect(code).toBe(0);
      expect(stderr).toBe("");
      expect(stdout).toMatch(new RegExp(`^isthmus ${command} `));
      expect(stdout).toMatch(new RegExp(`Examples?:\\n  isthmus ${command}`));
    });
  }
});

describe("usage errors exit 2", () => {
  const cases: [string, string[], RegExp][] = [
    ["no command", [], /^Usage: isthmus/m],
    ["an unknown command", ["deploy"], /^isthmus: unknown command "deploy"/],
    ["an unknown option", ["validate", "-f", "x.yaml", "--strict"], /^isthmus validate: Unknown option '--strict'/],
    ["a positional argument", ["validate", "x.yaml"], /^isthmus validate: .*positional argument/i],
    ["a missing -f", ["apply"], /^isthmus apply: expected at least one -f PATH/],
    ["a missing option value", ["rollback", "--to"], /^isthmus rollback: Option '--to <value>' argument missing/],
    ["both --local and --remote", ["versions", "--local", "--remote"], /^isthmus: expected only one of --local, --remote and --state$/m],
    ["a bad --port", ["dev", "-f", "examples/bookinfo/config", "--port", "http"], /^isthmus: --port: expected a port number, got http$/m],
  ];
  for (const [what, args, message] of cases) {
    it(`for ${what}`, async () => {
      const { code, stdout, stderr } = await isthmus(args);
      expect(code).toBe(2);
      expect(`${stdout}${stderr}`).toMatch(message);
    });
  }
});

describe("isthmus validate", () => {
  const p = project();
  afterAll(() => p.cleanup());

  it("passes on the bookinfo demo", async () => {
    const { code, stdout, stderr } = await isthmus(["validate", "-f", "examples/bookinfo/config"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toMatch(/^isthmus: 11 resources valid; config [0-9a-f]{12}\n$/);
  });

  it("prints one line per problem naming file:line, and exits 1", async () => {
    p.write(
      "bad/routes.yaml",
      [
        "apiVersion: networking.istio.io/v1", // 1
        "kind: VirtualService", // 2
        "metadata:", // 3
        "  name: app", // 4
        "spec:", // 5
        "  hosts: [app.example.com]", // 6
        "  htpp:", // 7
        "  - route: []", // 8
        "",
      ].join("\n"),
    );
    p.write(
      "bad/services.yml",
      [
        "apiVersion: networking.istio.io/v1", // 1
        "kind: ServiceEntry", // 2
        "metadata: {name: api, namespace: edge}", // 3
        "spec:", // 4
        "  hosts: [api.example.com]", // 5
        "  location: OUTSIDE", // 6
        "---", // 7
        "apiVersion: networking.istio.io/v1", // 8
        "kind: Sidecar", // 9
        "metadata: {name: default}", // 10
        "spec: {}", // 11
        "",
      ].join("\n"),
    );
    p.write("bad/notes.txt", "not yaml, not read");
    const { code, stdout, stderr } = await p.run("validate", "-f", "bad");
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(linesOf(stderr)).toEqual([
      // The misspelt field leaves the VirtualService without routes, which Istio refuses too.
      "bad/routes.yaml:5: error: VirtualService/default/app: spec: expected http, tcp or tls routes: a VirtualService without any routes serves nothing",
      'bad/routes.yaml:7: error: VirtualService/default/app: spec.htpp: unknown field "htpp" (did you mean "http"?)',
      'bad/services.yml:6: error: ServiceEntry/edge/api: spec.location: expected one of MESH_EXTERNAL, MESH_INTERNAL, got "OUTSIDE"',
      "bad/services.yml:9: warning: Sidecar/default/default: ignored: Sidecar configures in-mesh sidecar proxies; an edge gateway has none",
      "isthmus: 3 errors, 1 warning; nothing applied",
    ]);
  });

  it("reports cross-resource errors once every resource is valid on its own", async () => {
    p.write(
      "refs/app.yaml",
      [
        "apiVersion: networking.istio.io/v1", // 1
        "kind: VirtualService", // 2
        "metadata: {name: app}", // 3
        "spec:", // 4
        "  hosts: [app.example.com]", // 5
        "  http:", // 6
        "  - route:", // 7
        "    - destination:", // 8
        "        host: reviews", // 9
        "        subset: v9", // 10
        "",
      ].join("\n"),
    );
    const { code, stderr } = await p.run("validate", "-f", "refs/app.yaml");
    expect(code).toBe(1);
    expect(linesOf(stderr)).toEqual([
      'refs/app.yaml:9: error: VirtualService/default/app: spec.http[0].route[0].destination.host: expected a host declared by a ServiceEntry, got "reviews" (the edge only reaches origins listed as ServiceEntry endpoints)',
      "isthmus: 1 error; nothing applied",
    ]);
  });

  it("reads several -f paths, files and directories, and a kind: List", async () => {
    p.write(
      "ok/list.yaml",
      [
        "apiVersion: v1",
        "kind: List",
        "items:",
        "- apiVersion: networking.istio.io/v1",
        "  kind: ServiceEntry",
        "  metadata: {name: httpbin}",
        "  spec: {hosts: [httpbin.org], ports: [{number: 443, name: https, protocol: HTTPS}]}",
        "",
      ].join("\n"),
    );
    p.write("single.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [v.example.com], http: [{directResponse: {status: 204}}]}\n");
    const { code, stdout } = await p.run("validate", "-f", "ok", "-f", "single.yaml");
    expect(code).toBe(0);
    expect(stdout).toMatch(/^isthmus: 2 resources valid; config [0-9a-f]{12}$/m);
  });

  it("fails with one clear line for a path that does not exist or holds no YAML", async () => {
    const missing = await p.run("validate", "-f", "nowhere.yaml");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("isthmus: nowhere.yaml: no such file or directory\n");
    p.write("empty/readme.md", "# nothing here");
    const empty = await p.run("validate", "-f", "empty");
    expect(empty.code).toBe(1);
    expect(empty.stderr).toBe("isthmus: no .yaml, .yml or .json files found in empty\n");
  });
});
