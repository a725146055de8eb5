/**
 * `isthmus apply`, `versions`, `diff` and `rollback` against a temporary
 * local state directory: the real Miniflare KV that `wrangler dev` reads.
 * The tests run in order and share one store, like a user's session.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linesOf, NODE, project, type CliResult } from "./support.ts";

const p = project();
afterAll(() => p.cleanup());
const state = p.store[1] as string;
const run = (...args: string[]) => p.run(...args, ...p.store);

const SERVICES = [
  "apiVersion: networking.istio.io/v1",
  "kind: ServiceEntry",
  "metadata: {name: httpbin}",
  "spec:",
  "  hosts: [httpbin.org]",
  "  ports: [{number: 443, name: https, protocol: HTTPS}]",
  "---",
  "apiVersion: networking.istio.io/v1",
  "kind: ServiceEntry",
  "metadata: {name: app}",
  "spec:",
  "  hosts: [app.internal]",
  "  location: MESH_INTERNAL",
  "  resolution: STATIC",
  "  ports: [{number: 8080, name: http}]",
  "  endpoints: [{address: 127.0.0.1}]",
  "",
].join("\n");
const routes = (prefix: string) =>
  [
    "apiVersion: networking.istio.io/v1",
    "kind: VirtualService",
    "metadata: {name: app}",
    "spec:",
    "  hosts: [app.example.com]",
    "  http:",
    "  - match: [{uri: {prefix: " + prefix + "}}]",
    "    route: [{destination: {host: app.internal}}]",
    "",
  ].join("\n");

/** Reads a key with `wrangler kv key get --local`, the way wrangler itself sees the store. */
function wranglerGet(key: string): Promise<CliResult> {
  const require = createRequire(import.meta.url);
  const wrangler = join(dirname(require.resolve("wrangler/package.json")), "bin", "wrangler.js");
  return new Promise((done, fail) => {
    const child = spawn(NODE, [wrangler, "kv", "key", "get", key, "--binding", "CONFIG", "--local", "--persist-to", state, "--config", join(p.dir, "wrangler.toml")], {
      cwd: p.dir,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", fail);
    child.once("close", (code) => done({ code, stdout, stderr }));
  });
}

const versionIn = (text: string, pattern: RegExp) => {
  const m = pattern.exec(text);
  if (!m?.[1]) throw new Error(`no version in: ${text}`);
  return m[1];
};

let v1 = "";
let v2 = "";

beforeAll(() => {
  p.write("mesh/services.yaml", SERVICES);
  p.write("mesh/routes.yaml", routes("/api"));
});

describe("an empty store", () => {
  it("has no versions", async () => {
    const { code, stdout } = await run("versions");
    expect(code).toBe(0);
    expect(stdout).toBe(`isthmus: no configuration has been applied to local KV (${state})\n`);
  });

  it("diffs as all added, exiting 1", async () => {
    const { code, stdout } = await run("diff", "-f", "mesh");
    expect(code).toBe(1);
    expect(linesOf(stdout)).toEqual([
      "+ VirtualService/default/app (mesh/routes.yaml:1)",
      "+ ServiceEntry/default/httpbin (mesh/services.yaml:1)",
      "+ ServiceEntry/default/app (mesh/services.yaml:8)",
      expect.stringMatching(/^isthmus: 3 added, 0 changed, 0 removed against an empty store; new config [0-9a-f]{12}$/),
    ]);
  });

  it("cannot be rolled back", async () => {
    const { code, stderr } = await run("rollback");
    expect(code).toBe(1);
    expect(stderr).toBe("isthmus: no configuration is active, so there is nothing to roll back\n");
  });
});

describe("apply", () => {
  it("activates the configuration and prints its version", async () => {
    const { code, stdout } = await run("apply", "-f", "mesh");
    expect(code).toBe(0);
    v1 = versionIn(stdout, /^isthmus: applied config ([0-9a-f]{12}) \(3 resources\) to local KV \(.+\)$/m);
    const validated = await p.run("validate", "-f", "mesh");
    expect(validated.stdout).toContain(`config ${v1}`);
  });

  it("writes the KV that wrangler reads: the active pointer and the snapshot", async () => {
    const active = await wranglerGet("active");
    expect(active.code).toBe(0);
    expect(JSON.parse(active.stdout)).toMatchObject({ version: v1 });
    const snapshot = await wranglerGet(`snapshot:${v1}`);
    // Stored packed (format 2): each virtual host's routes and rules as JSON text of their own.
    const stored = JSON.parse(snapshot.stdout) as { virtualHosts: { name: string; packed: string }[] };
    expect(stored).toMatchObject({ format: 2, version: v1, resources: ["ServiceEntry/default/app", "ServiceEntry/default/httpbin", "VirtualService/default/app"] });
    expect(stored.virtualHosts.length).toBeGreaterThan(0);
    for (const vh of stored.virtualHosts) expect(JSON.parse(vh.packed)).toHaveProperty("routes");
  });

  it("says so when the same configuration is applied again", async () => {
    const { code, stdout } = await run("apply", "-f", "mesh");
    expect(code).toBe(0);
    expect(stdout).toBe(`isthmus: config ${v1} is already active in local KV (${state})\n`);
  });

  it("applies nothing when the configuration has errors, and says which errors", async () => {
    p.write("broken/routes.yaml", routes("/api").replace("prefix: /api", "prefx: /api"));
    const { code, stdout, stderr } = await run("apply", "-f", "mesh/services.yaml", "-f", "broken");
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(linesOf(stderr)).toEqual([
      expect.stringMatching(/^broken\/routes\.yaml:7: error: VirtualService\/default\/app: spec\.http\[0\]\.match\[0\]\.uri\.prefx: unknown field "prefx" \(did you mean "prefix"\?\)$/),
      "isthmus: 1 error; nothing applied",
    ]);
    expect(JSON.parse((await wranglerGet("active")).stdout)).toMatchObject({ version: v1 });
  });
});

describe("diff", () => {
  it("exits 0 when nothing would change", async () => {
    const { code, stdout } = await run("diff", "-f", "mesh");
    expect(code).toBe(0);
    expect(stdout).toBe(`isthmus: no changes against config ${v1}\n`);
  });

  it("lists changed (~), added (+) and removed (-) resources, with the changed lines, and exits 1", async () => {
    p.write("mesh/routes.yaml", routes("/v2"));
    p.write("mesh/services.yaml", SERVICES.split("---\n")[1] as string);
    p.write("mesh/extra.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: health}\nspec: {hosts: [health.example.com], http: [{directResponse: {status: 204}}]}\n");
    const { code, stdout } = await run("diff", "-f", "mesh");
    expect(code).toBe(1);
    const out = linesOf(stdout);
    expect(out).toContain("~ VirtualService/default/app (mesh/routes.yaml:1)");
    expect(out).toContain("+ VirtualService/default/health (mesh/extra.yaml:1)");
    expect(out).toContain("- ServiceEntry/default/httpbin (mesh/services.yaml:1)");
    expect(out).toContain("    -             prefix: /api");
    expect(out).toContain("    +             prefix: /v2");
    expect(out).not.toContainEqual(expect.stringMatching(/ServiceEntry\/default\/app/));
    expect(out.at(-1)).toMatch(new RegExp(`^isthmus: 1 added, 1 changed, 1 removed against config ${v1}; new config [0-9a-f]{12}$`));
  });

  it("exits 2 when the new configuration has errors", async () => {
    const { code, stderr } = await run("diff", "-f", "broken");
    expect(code).toBe(2);
    expect(linesOf(stderr).at(-1)).toBe("isthmus: the new configuration has errors (see above); it could not be applied");
  });
});

describe("versions and rollback", () => {
  it("lists versions newest first with the active one marked", async () => {
    const applied = await run("apply", "-f", "mesh");
    expect(applied.code).toBe(0);
    v2 = versionIn(applied.stdout, /^isthmus: applied config ([0-9a-f]{12}) \(3 resources\) to local KV \(.+\); previous ([0-9a-f]{12})$/m);
    expect(applied.stdout).toContain(`previous ${v1}`);
    const { code, stdout } = await run("versions");
    expect(code).toBe(0);
    const rows = linesOf(stdout);
    expect(rows[0]).toMatch(/^ {2}VERSION +APPLIED AT +ACTION +RESOURCES$/);
    expect(rows[1]).toMatch(new RegExp(`^\\* ${v2} +\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +apply +3$`));
    expect(rows[2]).toMatch(new RegExp(`^  ${v1} +\\S+ +apply +3$`));
    expect(rows).toHaveLength(3);
  });

  it("rolls back to the previous version by default", async () => {
    const { code, stdout } = await run("rollback");
    expect(code).toBe(0);
    expect(stdout).toBe(`isthmus: rolled back to config ${v1} (was ${v2}) in local KV (${state})\n`);
    expect(JSON.parse((await wranglerGet("active")).stdout)).toMatchObject({ version: v1, previous: v2 });
    const rows = linesOf((await run("versions")).stdout);
    expect(rows[1]).toMatch(new RegExp(`^\\* ${v1} +\\S+ +rollback +3$`));
    expect(rows[2]).toMatch(new RegExp(`^  ${v2} +\\S+ +apply +3$`));
  });

  it("rolls back to a version given by a prefix", async () => {
    const { code, stdout } = await run("rollback", "--to", v2.slice(0, 5));
    expect(code).toBe(0);
    expect(stdout).toBe(`isthmus: rolled back to config ${v2} (was ${v1}) in local KV (${state})\n`);
  });

  it("does nothing when asked for the active version", async () => {
    const { code, stdout } = await run("rollback", "--to", v2);
    expect(code).toBe(0);
    expect(stdout).toBe(`isthmus: config ${v2} is already active\n`);
  });

  it("fails with one clear line for a version it does not have", async () => {
    const { code, stdout, stderr } = await run("rollback", "--to", "0123456789ab");
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe("isthmus: version 0123456789ab is not stored (only the last 20 versions are kept); see isthmus versions\n");
  });
});

describe("a missing wrangler.toml", () => {
  it("is named in one line", async () => {
    const { code, stderr } = await run("versions", "--config", "nowhere/wrangler.toml");
    expect(code).toBe(1);
    expect(stderr).toBe("isthmus: nowhere/wrangler.toml: not found (pass --config PATH to the wrangler.toml of the gateway)\n");
  });
});
