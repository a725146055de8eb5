/**
 * The pure parts of `isthmus serve`: key ↔ file-name mapping of the
 * directory store, and what is read from wrangler.toml.
 */
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { PassThrough } from "node:stream";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileNameToKey, keyToFileName } from "../../src/config/store-files.ts";
import { directoryStoreFile, openDirectoryStore } from "../../src/cli/stores.ts";
import { kvBinding, workerSettings } from "../../src/cli/wrangler-config.ts";
import { workerdConfig } from "../../src/cli/serve/workerd-config.ts";
import { clusterArgs, clusterOptions, decisionTimeoutNotes, type ClusterFlags } from "../../src/cli/serve/cluster.ts";
import { buildConfig } from "../../src/config/build.ts";
import { eachLine, refusalMessage, servedDeployment } from "../../src/cli/serve/deployments.ts";
import { waitForVersion } from "../../src/cli/supervise.ts";
import { isthmus } from "./support.ts";

describe("directory store file names", () => {
  it("round-trips every key layout the store uses", () => {
    for (const key of ["active", "history", "snapshot:3f9c2a1b0c4d", "source:3f9c2a1b0c4d"]) {
      expect(fileNameToKey(keyToFileName(key))).toBe(key);
    }
    expect(keyToFileName("snapshot:3f9c2a1b0c4d")).toBe("snapshot_3a3f9c2a1b0c4d");
  });

  it("never produces a path separator, a dot or a percent sign, and keeps distinct keys distinct", () => {
    const keys = ["../etc/passwd", ".hidden", "a/b", "a_3ab", "a:b", "100%", "ünïcode", "a b"];
    const names = keys.map(keyToFileName);
    for (const name of names) expect(name).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(new Set(names).size).toBe(keys.length);
    for (const key of keys) expect(fileNameToKey(keyToFileName(key))).toBe(key);
  });

  it("rejects names it did not make", () => {
    expect(fileNameToKey(".tmp")).toBeUndefined();
    expect(fileNameToKey("a_zz")).toBeUndefined();
    expect(fileNameToKey("")).toBeUndefined();
  });

  it("writes whole files and leaves no temporary files behind", async () => {
    const dir = mkdtempSync(join(tmpdir(), "isthmus-dirstore-"));
    try {
      const store = openDirectoryStore(dir);
      expect(await store.get("snapshot:abc")).toBeNull();
      await store.put("snapshot:abc", '{"v":1}');
      await store.put("snapshot:abc", '{"v":2}');
      expect(await store.get("snapshot:abc")).toBe('{"v":2}');
      expect(readdirSync(dir)).toEqual(["snapshot_3aabc"]);
      await store.delete("snapshot:abc");
      await store.delete("snapshot:abc");
      expect(await store.get("snapshot:abc")).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a state directory holds secrets (an inline HMAC JWKS key)", () => {
  const mode = (path: string) => statSync(path).mode & 0o777;

  it("the directory store makes its directory readable by its owner only, an existing one too, and writes 0600 files", async () => {
    const dir = mkdtempSync(join(tmpdir(), "isthmus-dirstore-"));
    try {
      const fresh = openDirectoryStore(join(dir, "state", "config"));
      expect(mode(join(dir, "state"))).toBe(0o700);
      expect(mode(join(dir, "state", "config"))).toBe(0o700);
      await fresh.put("snapshot:abc", '{"v":1}');
      expect(mode(join(dir, "state", "config", "snapshot_3aabc"))).toBe(0o600);
      // One an older version made world-readable.
      mkdirSync(join(dir, "old"), { mode: 0o755 });
      chmodSync(join(dir, "old"), 0o755);
      openDirectoryStore(join(dir, "old"));
      expect(mode(join(dir, "old"))).toBe(0o700);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("serve tightens an existing state directory, and a half-written active pointer is an error naming its file, not a stack trace", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    try {
      mkdirSync(join(state, "config"), { mode: 0o755 });
      chmodSync(state, 0o755);
      chmodSync(join(state, "config"), 0o755);
      writeFileSync(join(state, "config", "active"), '{"version": "3f9c');
      const result = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--port", "21890"]);
      expect(result.code).toBe(1);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(result.stderr).toContain(
        `isthmus: directory store (${join(state, "config")}): key active is not valid JSON: Unterminated string in JSON at position 17 (line 1 column 18) (the file ${join(state, "config", "active")}: restore it, or delete it to start from the -f files)`,
      );
      for (const dir of [state, join(state, "config"), join(state, "run")]) expect(mode(dir)).toBe(0o700);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("serve starts from its -f files", () => {
  it("notes when they replace an active version they did not produce (an apply or rollback --state since), naming both", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    try {
      const applied = await isthmus(["apply", "--state", state, "-f", "examples/bookinfo/config/gateway.yaml"]);
      const replaced = /applied config ([0-9a-f]{12})/.exec(applied.stdout)?.[1];
      expect(replaced).toBeDefined();
      // A Worker that cannot be bundled stops serve right after it has applied the files, before workerd.
      writeFileSync(join(state, "wrangler.toml"), 'main = "missing.ts"\ncompatibility_date = "2026-11-01"\n');
      const result = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--config", join(state, "wrangler.toml"), "--port", "21892"]);
      const version = /-f files \(config ([0-9a-f]{12})\)/.exec(result.stderr)?.[1];
      expect(result.stderr).toContain(`isthmus: note: the -f files (config ${version}) replace the active config ${replaced}, which they did not produce`);
      expect(version).not.toBe(replaced);
      // Started again on the same files: nothing to note.
      const again = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--config", join(state, "wrangler.toml"), "--port", "21892"]);
      expect(again.stderr).toContain("bundling missing.ts failed");
      expect(again.stderr).not.toContain("note: the -f files");
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });

  it("says it did not start when the -f files have errors, not that it still serves the store's active version", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    try {
      await isthmus(["apply", "--state", state, "-f", "examples/bookinfo/config/gateway.yaml"]);
      const broken = join(state, "broken.yaml");
      writeFileSync(broken, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: default}\nspec: {hosts: 7}\n");
      const result = await isthmus(["serve", "-f", broken, "--state", state, "--port", "21893"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/isthmus: \d+ errors?; not started \(fix the files and start again\)/);
      expect(result.stderr).not.toContain("still serving");
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("workerSettings (wrangler.toml)", () => {
  const read = (toml: string) => {
    const dir = mkdtempSync(join(tmpdir(), "isthmus-wrangler-"));
    try {
      writeFileSync(join(dir, "wrangler.toml"), toml);
      return workerSettings(join(dir, "wrangler.toml"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("reads the project's own wrangler.toml", () => {
    const s = workerSettings("wrangler.toml");
    expect(s.main).toBe("src/index.ts");
    expect(s.compatibilityDate).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });

  it("reads Durable Object bindings in both TOML spellings, marking SQLite-backed classes", () => {
    const s = read(`main = "w.ts"
compatibility_date = "2026-11-01"
compatibility_flags = ["nodejs_compat"]
durable_objects.bindings = [{ name = "LIMITER", class_name = "RateLimiter" }, { name = "OLD", class_name = "Legacy" }]
[[migrations]]
tag = "v1"
new_classes = ["Legacy"]
[[migrations]]
tag = "v2"
new_sqlite_classes = ["RateLimiter"]
`);
    expect(s.compatibilityFlags).toEqual(["nodejs_compat"]);
    expect(s.durableObjects).toEqual([
      { binding: "LIMITER", className: "RateLimiter", sql: true },
      { binding: "OLD", className: "Legacy", sql: false },
    ]);
  });

  it("names the file and what is missing", () => {
    expect(() => read(`compatibility_date = "2026-11-01"`)).toThrow(/wrangler.toml: expected main/);
    expect(() => read(`main = "w.ts"\ncompatibility_date = "2026-11-01"\n[[durable_objects.bindings]]\nname = "X"\nclass_name = "Y"\nscript_name = "other"`)).toThrow(/names another Worker/);
  });
});

describe("secrets for isthmus serve", () => {
  it("reads a .dev.vars-style file as wrangler does", async () => {
    const { parseEnvFile } = await import("../../src/cli/commands/serve.ts");
    expect(parseEnvFile(["# OTLP exporter", "OTLP_TOKEN=Bearer abc # trailing comment", 'QUOTED="a b\\nc"', "SINGLE='x=y'", "export EXPORTED=1", "not a line", ""].join("\n"))).toEqual({
      OTLP_TOKEN: "Bearer abc",
      QUOTED: "a b\nc",
      SINGLE: "x=y",
      EXPORTED: "1",
    });
  });

  it("binds each variable as a text binding, never overriding ADMIN_TOKEN", async () => {
    const { workerdConfig } = await import("../../src/cli/serve/workerd-config.ts");
    const text = workerdConfig({
      moduleFile: "worker.js",
      compatibilityDate: "2026-11-01",
      compatibilityFlags: [],
      listen: "127.0.0.1:8787",
      configDir: "/c",
      durableObjectDir: "/d",
      durableObjects: [],
      adminToken: "t",
      vars: { OTLP_TOKEN: 'Bearer "x"', ADMIN_TOKEN: "ignored" },
    });
    expect(text).toContain('(name = "OTLP_TOKEN", text = "Bearer \\"x\\"")');
    expect(text.match(/ADMIN_TOKEN/g)?.length).toBe(1);
  });
});

describe("the CONFIG KV namespace in wrangler.toml", () => {
  const withToml = (text: string, check: (path: string) => void) => {
    const dir = mkdtempSync(join(tmpdir(), "isthmus-toml-"));
    try {
      const path = join(dir, "wrangler.toml");
      writeFileSync(path, text);
      check(path);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("is found in the [[kv_namespaces]] block form and in the inline-array form", () => {
    withToml('name = "gw"\n[[kv_namespaces]]\nbinding = "OTHER"\nid = "o1"\n\n[[kv_namespaces]]\nbinding = "CONFIG"\nid = "c1"\n', (path) => {
      expect(kvBinding(path, "CONFIG")).toEqual({ binding: "CONFIG", id: "c1" });
    });
    withToml('name = "gw"\nkv_namespaces = [\n  { binding = "CONFIG", id = "c2" },\n]\n', (path) => {
      expect(kvBinding(path, "CONFIG")).toEqual({ binding: "CONFIG", id: "c2" });
    });
  });

  it("names the file and the binding when there is none, or the file is not TOML", () => {
    withToml('name = "gw"\n[[kv_namespaces]]\nbinding = "OTHER"\nid = "o1"\n', (path) => {
      expect(() => kvBinding(path, "CONFIG")).toThrow(`${path}: no kv_namespaces entry with binding = "CONFIG" and an id`);
    });
    withToml('name = "gw\n', (path) => {
      expect(() => kvBinding(path, "CONFIG")).toThrow(path);
    });
  });
});

describe("readiness probes (serve --health-port)", () => {
  const base = { moduleFile: "worker.js", compatibilityDate: "2026-11-01", compatibilityFlags: [], listen: "0.0.0.0:8080", configDir: "/s/config", durableObjectDir: "/s/do", durableObjects: [] };

  it("binds a socket to the Worker's Health entrypoint, never to the routed default", () => {
    expect(workerdConfig({ ...base, healthListen: "0.0.0.0:15021" })).toContain(`(name = "health", address = "0.0.0.0:15021", http = (), service = (name = "isthmus", entrypoint = "Health"))`);
    expect(workerdConfig(base)).not.toContain(`entrypoint = "Health"`);
  });

  it("names the flag of a port another process listens on, before applying anything (workerd names only its socket)", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    const busy = createServer();
    await new Promise<void>((done) => busy.listen(21894, "127.0.0.1", done));
    try {
      const result = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--port", "21895", "--health-port", "21894"]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("--health-port 21894: cannot listen on 127.0.0.1:21894: the address is already in use (EADDRINUSE)");
      expect(existsSync(join(state, "config"))).toBe(false);
    } finally {
      await new Promise<void>((done) => busy.close(() => done()));
      rmSync(state, { recursive: true, force: true });
    }
  });

  it("refuses a port another option already took, before applying anything", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    try {
      const result = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--port", "8080", "--health-port", "8080"]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("--health-port: expected a port number other than --port, got 8080");
      expect(existsSync(join(state, "config"))).toBe(false);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("Prometheus scrapes (serve --metrics-port)", () => {
  const base = { moduleFile: "worker.js", compatibilityDate: "2026-11-01", compatibilityFlags: [], listen: "0.0.0.0:8080", configDir: "/s/config", durableObjectDir: "/s/do", durableObjects: [] };

  it("binds a socket to the Worker's Metrics entrypoint and tells the Worker to keep metrics; without it, neither", () => {
    const text = workerdConfig({ ...base, metricsListen: "0.0.0.0:15090", vars: { PROMETHEUS_SCRAPE: "false" } });
    expect(text).toContain(`(name = "metrics", address = "0.0.0.0:15090", http = (), service = (name = "isthmus", entrypoint = "Metrics"))`);
    // The variable is serve's: an --env-file cannot set it (without the socket it would only cost memory).
    expect(text.match(/PROMETHEUS_SCRAPE/g)).toEqual(["PROMETHEUS_SCRAPE"]);
    expect(text).toContain(`(name = "PROMETHEUS_SCRAPE", text = "true")`);
    const without = workerdConfig({ ...base, vars: { PROMETHEUS_SCRAPE: "true" } });
    expect(without).not.toContain(`entrypoint = "Metrics"`);
    expect(without).not.toContain("PROMETHEUS_SCRAPE");
  });

  it("refuses a port another option already took, before applying anything", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    try {
      const result = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--port", "8080", "--health-port", "15021", "--metrics-port", "15021"]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("--metrics-port: expected a port number other than --port and --health-port, got 15021");
      expect(existsSync(join(state, "config"))).toBe(false);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("replicas sharing Durable Objects (serve --cluster-bucket)", () => {
  const base = { moduleFile: "worker.js", compatibilityDate: "2026-11-01", compatibilityFlags: [], listen: "0.0.0.0:8080", configDir: "/s/config", durableObjectDir: "/s/do", durableObjects: [] };
  const withKey = (key: string, run: (file: string) => void) => {
    const dir = mkdtempSync(join(tmpdir(), "isthmus-cluster-key-"));
    try {
      writeFileSync(join(dir, "key"), key);
      run(join(dir, "key"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const KEY = `${"ab".repeat(32)}\n`;

  it("joins the cluster in the config file, and gives the instance's own addresses as workerd flags, so every replica's file is the same", () => {
    withKey(KEY, (file) => {
      const cluster = clusterOptions({ "cluster-bucket": "s3://gateways/prod/", "cluster-addr": "0.0.0.0:7000", "cluster-advertise": "10.0.3.7:7000", "cluster-key-file": file });
      expect(cluster).toEqual({ bucket: "s3://gateways/prod", address: "0.0.0.0:7000", advertise: "10.0.3.7:7000", key: "ab".repeat(32) });
      // workerd appends "/v1/..." to the prefix as given: both spellings must name the same cluster.
      expect(clusterOptions({ "cluster-bucket": "s3://gateways/prod", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file })?.bucket).toBe("s3://gateways/prod");
      const text = workerdConfig({ ...base, cluster: { bucket: "s3://gateways/prod", key: "ab".repeat(32) } });
      expect(text).toContain(`cluster = (bucket = "s3://gateways/prod", key = "${"ab".repeat(32)}")`);
      expect(text).not.toContain("7000");
      // The Worker's readiness check reaches the instance's own cluster port (over loopback for a wildcard).
      expect(clusterArgs(cluster as NonNullable<typeof cluster>)).toEqual(["--cluster-addr=0.0.0.0:7000", "--cluster-advertise=10.0.3.7:7000", "--external-addr=cluster-port=127.0.0.1:7000"]);
      expect(text).toContain(`(name = "CLUSTER_PORT", service = "cluster-port")`);
      expect(text).toContain(`(name = "cluster-port", external = (address = "127.0.0.1:1", http = ()))`);
      expect(clusterArgs({ bucket: "s3://b/p", address: "[::]:7000", key: "k" }).at(-1)).toBe("--external-addr=cluster-port=[::1]:7000");
      expect(clusterArgs({ bucket: "s3://b/p", address: "10.0.3.7:7000", key: "k" }).at(-1)).toBe("--external-addr=cluster-port=10.0.3.7:7000");
      expect(workerdConfig(base)).not.toContain("cluster =");
      expect(workerdConfig(base)).not.toContain("CLUSTER_PORT");
      // --cluster-stop-timeout: workerd's stopTimeoutMs.
      const slow = clusterOptions({ "cluster-bucket": "s3://gateways/prod", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file, "cluster-stop-timeout": "1m30s" });
      expect(slow?.stopTimeoutMs).toBe(90_000);
      expect(workerdConfig({ ...base, cluster: { bucket: "s3://gateways/prod", key: "k", stopTimeoutMs: 90_000 } })).toContain(`key = "k", stopTimeoutMs = 90000)`);
      expect(text).not.toContain("stopTimeoutMs");
      // For tests only: workerd's unsafeTimeDivisor shortens the 20 s lease.
      const fast = clusterOptions({ "cluster-bucket": "s3://gateways/prod", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file }, { ISTHMUS_CLUSTER_TIME_DIVISOR: "10" });
      expect(fast?.timeDivisor).toBe(10);
      expect(workerdConfig({ ...base, cluster: { bucket: "s3://gateways/prod", key: "k", timeDivisor: 10 } })).toContain(`key = "k", unsafeTimeDivisor = 10)`);
      expect(text).not.toContain("unsafeTimeDivisor");
      for (const bad of ["0", "1001", "2.5", "x"]) {
        expect(() => clusterOptions({ "cluster-bucket": "s3://gateways/prod", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file }, { ISTHMUS_CLUSTER_TIME_DIVISOR: bad })).toThrow(
          `ISTHMUS_CLUSTER_TIME_DIVISOR: expected an integer from 1 to 1000 (for tests: it shortens the cluster's 20 s lease), got ${bad}`,
        );
      }
      // Deployments in the bucket are refused unless allowed.
      expect(cluster?.allowDeployments).toBeUndefined();
      expect(clusterOptions({ "cluster-bucket": "s3://gateways/prod", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file, "cluster-allow-deployments": true })?.allowDeployments).toBe(true);
      // Google Cloud Storage, whose bucket names may hold underscores.
      expect(clusterOptions({ "cluster-bucket": "gs://isthmus_gateways/prod/", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file })?.bucket).toBe("gs://isthmus_gateways/prod");
    });
  });

  it("names the flag and what was expected for each incomplete or malformed setting", () => {
    withKey(KEY, (file) => {
      const ok: ClusterFlags = { "cluster-bucket": "s3://gateways/prod/", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file };
      const cases: [ClusterFlags, string][] = [
        [{ "cluster-addr": "10.0.3.7:7000" }, "--cluster-addr needs --cluster-bucket"],
        [{ "cluster-key-file": file }, "--cluster-key-file needs --cluster-bucket"],
        [{ ...ok, "cluster-bucket": "https://gateways.example.com/" }, "--cluster-bucket: expected s3://BUCKET/PREFIX (an S3-compatible bucket with conditional writes: Amazon S3, R2, MinIO) or gs://BUCKET/PREFIX (Google Cloud Storage), got https://gateways.example.com/"],
        [{ ...ok, "cluster-bucket": "s3://under_score/prod" }, "--cluster-bucket: expected s3://BUCKET/PREFIX"],
        [{ ...ok, "cluster-bucket": "gs://Gateways/prod" }, "--cluster-bucket: expected s3://BUCKET/PREFIX"],
        [{ ...ok, "cluster-addr": undefined }, "--cluster-bucket needs --cluster-addr HOST:PORT"],
        [{ ...ok, "cluster-addr": "10.0.3.7" }, "--cluster-addr: expected host:port, got 10.0.3.7"],
        [{ ...ok, "cluster-addr": "10.0.3.7:0" }, "--cluster-addr 10.0.3.7:0: expected a fixed port"],
        [{ ...ok, "cluster-addr": "0.0.0.0:7000" }, "--cluster-addr 0.0.0.0:7000 listens on every interface; add --cluster-advertise HOST:PORT"],
        [{ ...ok, "cluster-advertise": "pod" }, "--cluster-advertise: expected host:port, got pod"],
        [{ ...ok, "cluster-key-file": undefined }, "--cluster-bucket needs --cluster-key-file FILE"],
        [{ "cluster-stop-timeout": "20s" }, "--cluster-stop-timeout needs --cluster-bucket"],
        [{ "cluster-allow-deployments": true }, "--cluster-allow-deployments needs --cluster-bucket"],
        [{ ...ok, "cluster-stop-timeout": "500ms" }, "--cluster-stop-timeout: expected a duration from 1s to 1h, such as 25s (raise the pod's terminationGracePeriodSeconds with it), got 500ms"],
        [{ ...ok, "cluster-stop-timeout": "2h" }, "--cluster-stop-timeout: expected a duration from 1s to 1h"],
        [{ ...ok, "cluster-stop-timeout": "30" }, "--cluster-stop-timeout: expected a duration from 1s to 1h"],
        [{ ...ok, "cluster-key-file": `${file}.absent` }, `--cluster-key-file: ${file}.absent: cannot be read`],
      ];
      for (const [flags, message] of cases) expect(() => clusterOptions(flags), message).toThrow(message);
      expect(clusterOptions({})).toBeUndefined();
    });
    withKey("too-short\n", (file) => {
      expect(() => clusterOptions({ "cluster-bucket": "s3://gateways/prod/", "cluster-addr": "10.0.3.7:7000", "cluster-key-file": file })).toThrow(
        `--cluster-key-file: ${file} holds 9 bytes; expected at least 32 (openssl rand -hex 32)`,
      );
    });
  });

  it("notes each GLOBAL rule whose decisionTimeout fits only a nearby bucket, with the distance it fits and what happens past it", async () => {
    const rule = (name: string, extra: string) => `  - {name: ${name}, limits: [{requests: 10, unit: minute}]${extra}}`;
    const yaml = `apiVersion: isthmus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: api, namespace: istio-system}
spec:
  rules:
${[rule("by-default", ""), rule("closed-100ms", ", decisionTimeout: 100ms, failureMode: CLOSED"), rule("roomy", ", decisionTimeout: 2s"), rule("at-1s", ", decisionTimeout: 1s"), rule("local", ", scope: LOCAL")].join("\n")}
`;
    const built = await buildConfig([{ path: "limits.yaml", text: yaml }]);
    expect(built.problems).toEqual([]);
    const notes = decisionTimeoutNotes(built.snapshot!);
    expect(notes).toHaveLength(2);
    expect(notes[0]).toMatch(/^isthmus: note: RateLimitPolicy\/istio-system\/api rule by-default: decisionTimeout 250 ms fits a bucket up to ~16 ms away; .* is admitted unchecked \(failureMode OPEN\)\. Raise decisionTimeout if the bucket is farther \(docs\/SELF-HOSTED\.md\)\.$/);
    expect(notes[1]).toMatch(/rule closed-100ms: decisionTimeout 100 ms fits a bucket up to ~6 ms away; .* is answered 500 \(failureMode CLOSED\)/);
    expect(decisionTimeoutNotes({})).toEqual([]);
  });

  it("refuses an incomplete cluster setting before applying anything", async () => {
    const state = mkdtempSync(join(tmpdir(), "isthmus-state-"));
    try {
      const result = await isthmus(["serve", "-f", "examples/bookinfo/config", "--state", state, "--cluster-bucket", "s3://gateways/prod/", "--cluster-addr", "10.0.3.7:7000"]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("--cluster-bucket needs --cluster-key-file FILE");
      expect(existsSync(join(state, "config"))).toBe(false);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("workerd deployments in a cluster bucket", () => {
  it("recognizes workerd's line for each deployment an instance serves, and no other", () => {
    expect(servedDeployment('cluster: serving deployment "intruder" at version 368f15328d9fb556a54f52d31e1248b8142612d94671f24dea7abcecf1c907d8')).toEqual({
      name: "intruder",
      version: "368f15328d9fb556a54f52d31e1248b8142612d94671f24dea7abcecf1c907d8",
    });
    for (const line of ["cluster: serving deployments from catalog revision 1", 'deployment "intruder": service "intruder" cannot handle requests because of the errors above.', 'workerd: cluster: serving deployment "x" at version ab']) {
      expect(servedDeployment(line)).toBeUndefined();
    }
    const message = refusalMessage("s3://gateways/prod", { name: "intruder", version: "368f15328d9fb556a54f52d31e1248b8142612d94671f24dea7abcecf1c907d8" });
    expect(message).toContain('s3://gateways/prod holds a workerd deployment "intruder" (version 368f15328d9f)');
    expect(message).toContain("remove it from s3://gateways/prod/v1/deploy/catalog.json");
  });

  it("splits a stream into lines across chunks", async () => {
    const lines: string[] = [];
    const stream = new PassThrough();
    eachLine(stream, (line) => lines.push(line));
    stream.write("cluster: serving deploy");
    stream.write('ment "a" at version 01\r\nsecond\nthi');
    stream.end("rd");
    await new Promise((r) => stream.on("end", r));
    expect(lines).toEqual(['cluster: serving deployment "a" at version 01', "second", "third"]);
  });
});

describe("waiting for the gateway to serve", () => {
  it("gives up at once when the gateway was killed by a signal before it served", async () => {
    const child = spawn("sleep", ["60"], { stdio: "ignore" });
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const started = Date.now();
    await expect(waitForVersion("http://127.0.0.1:9", "/_isthmus", "token", "abc", child, 20_000, "workerd")).rejects.toThrow("the gateway (workerd) was killed by SIGKILL before serving config abc");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("names the store's file a load error is about: the snapshot of the version it names, else the active pointer", async () => {
    let lastError: { message: string; version?: string } = { message: "Unexpected end of JSON input", version: "abc" };
    const server = createServer((_req, res) => res.end(JSON.stringify({ serving: null, lastError })));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const child = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const storeFile = (key: string) => directoryStoreFile("/var/lib/isthmus/config", key);
      await expect(waitForVersion(base, "/_isthmus", "token", "abc", child, 1_000, "workerd", storeFile)).rejects.toThrow(
        "the gateway did not serve config abc within 1s (load error: Unexpected end of JSON input in /var/lib/isthmus/config/snapshot_3aabc)",
      );
      lastError = { message: "the active pointer has no version" };
      await expect(waitForVersion(base, "/_isthmus", "token", "abc", child, 1_000, "workerd", storeFile)).rejects.toThrow("(load error: the active pointer has no version in /var/lib/isthmus/config/active)");
    } finally {
      child.kill();
      server.close();
    }
  });
});
