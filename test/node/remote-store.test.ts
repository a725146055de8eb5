/**
 * `--remote` against a local stand-in for the Cloudflare API: through the
 * API directly (CLOUDFLARE_API_TOKEN + CLOUDFLARE_ACCOUNT_ID), and through
 * the real wrangler CLI (`wrangler kv key ... --remote`) for users who
 * authenticate with `wrangler login`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../src/cli/main.ts";
import { wranglerError } from "../../src/cli/stores.ts";
import { startFakeCloudflare, type FakeCloudflare } from "../helpers/fake-cloudflare-api.ts";

let api: FakeCloudflare;
let dir: string;
let wranglerToml: string;
const saved = { ...process.env };

const yaml = (status: number) => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: prod}
spec:
  hosts: [app.example.com]
  http:
  - directResponse: {status: ${status}}
`;

beforeAll(async () => {
  api = await startFakeCloudflare();
  dir = mkdtempSync(join(tmpdir(), "isthmus-remote-"));
  wranglerToml = join(dir, "wrangler.toml");
  writeFileSync(wranglerToml, 'name = "gw"\nmain = "x.js"\n\n[[kv_namespaces]]\nbinding = "CONFIG"\nid = "ns-prod"\n');
});

afterEach(() => {
  process.env = { ...saved };
  api.namespaces.clear();
  api.requests.length = 0;
});

afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

const active = () => JSON.parse(api.namespaces.get("ns-prod")?.get("active") ?? "{}") as { version: string; previous?: string };
const putOrder = () => api.requests.filter((r) => r.startsWith("PUT")).map((r) => decodeURIComponent(r.split("/values/")[1] ?? ""));

describe("isthmus apply/rollback --remote through the Cloudflare API", () => {
  it("writes the snapshot before flipping the pointer, keeps the previous version, and rolls back", async () => {
    Object.assign(process.env, { CLOUDFLARE_API_BASE_URL: api.baseUrl, CLOUDFLARE_API_TOKEN: "test-token", CLOUDFLARE_ACCOUNT_ID: "acc-1" });
    const file = join(dir, "app.yaml");
    writeFileSync(file, yaml(200));
    expect(await main(["apply", "-f", file, "--remote", "--config", wranglerToml])).toBe(0);
    const first = active().version;
    expect(api.namespaces.get("ns-prod")?.get(`snapshot:${first}`)).toContain('"virtualHosts"');
    expect(putOrder().indexOf(`snapshot:${first}`)).toBeLessThan(putOrder().indexOf("active"));
    expect(api.requests.every((r) => r.includes("/accounts/acc-1/storage/kv/namespaces/ns-prod/"))).toBe(true);

    writeFileSync(file, yaml(204));
    expect(await main(["apply", "-f", file, "--remote", "--config", wranglerToml])).toBe(0);
    expect(active().previous).toBe(first);

    expect(await main(["rollback", "--remote", "--config", wranglerToml])).toBe(0);
    expect(active().version).toBe(first);
  });

  it("reports an API failure in one line and exits 1", async () => {
    Object.assign(process.env, { CLOUDFLARE_API_BASE_URL: `${api.baseUrl}/wrong`, CLOUDFLARE_API_TOKEN: "t", CLOUDFLARE_ACCOUNT_ID: "acc-1" });
    const file = join(dir, "app.yaml");
    writeFileSync(file, yaml(200));
    expect(await main(["apply", "-f", file, "--remote", "--config", wranglerToml])).toBe(1);
  });
});

describe("isthmus apply --remote through wrangler (wrangler login users)", () => {
  it("applies with `wrangler kv key ... --remote`", { timeout: 120_000 }, async () => {
    // wrangler itself authenticates with these; Isthmus sees no account id, so it goes through wrangler.
    Object.assign(process.env, { CLOUDFLARE_API_BASE_URL: api.baseUrl, CLOUDFLARE_API_TOKEN: "test-token" });
    delete process.env.CLOUDFLARE_ACCOUNT_ID;
    writeFileSync(join(dir, "wrangler.toml"), 'name = "gw"\nmain = "x.js"\naccount_id = "acc-2"\n\n[[kv_namespaces]]\nbinding = "CONFIG"\nid = "ns-prod"\n');
    const file = join(dir, "app.yaml");
    writeFileSync(file, yaml(200));
    expect(await main(["apply", "-f", file, "--remote", "--config", wranglerToml])).toBe(0);
    expect(active().version).toMatch(/^[0-9a-f]{12}$/);
    expect(api.requests.some((r) => r.includes("/accounts/acc-2/"))).toBe(true);
  });

  it("reports wrangler's own error, not its log-file pointer, when wrangler cannot authenticate", { timeout: 120_000 }, async () => {
    // No login either: wrangler keeps its OAuth token under $XDG_CONFIG_HOME/.wrangler.
    Object.assign(process.env, { CLOUDFLARE_API_BASE_URL: api.baseUrl, XDG_CONFIG_HOME: join(dir, "no-login") });
    delete process.env.CLOUDFLARE_API_TOKEN;
    delete process.env.CLOUDFLARE_ACCOUNT_ID;
    const errors: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void errors.push(args.join(" ")));
    try {
      expect(await main(["versions", "--remote", "--config", wranglerToml])).toBe(1);
    } finally {
      spy.mockRestore();
    }
    expect(errors).toEqual([expect.stringMatching(/^isthmus: wrangler kv key get \w+ failed: In a non-interactive environment, it's necessary to set a CLOUDFLARE_API_TOKEN/)]);
  });
});

describe("wranglerError", () => {
  it("takes the [ERROR] line without colours, else the last line that is not the log pointer", () => {
    expect(wranglerError("\x1b[31m✘ \x1b[41;31m[\x1b[41;97mERROR\x1b[41;31m]\x1b[0m \x1b[1mAuthentication error [code: 10000]\x1b[0m\n\n🪵  Logs were written to \"/x.log\"\n")).toBe("Authentication error [code: 10000]");
    expect(wranglerError("something odd\n\n🪵  Logs were written to \"/x.log\"\n")).toBe("something odd");
    expect(wranglerError("")).toBe("unknown error");
  });
});
