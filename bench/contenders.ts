/**
 * The systems the benchmark compares, each started pinned to the
 * system-under-test core and stopped after its runs.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { workerdBinary } from "../src/cli/commands/serve.ts";
import { minimal, realistic, type RequestSpec } from "./configs.ts";
import type { BenchKeys } from "./idp.ts";
import { freePort, startPinned, stopProc, waitForOutput, waitForPort, type Proc } from "./processes.ts";
import { debianBinary, ensureDebianPackage } from "./debian.ts";
import { compatibilityCapnp } from "./runtime.ts";

export interface Running {
  port: number;
  requests: RequestSpec[];
  /** The pid whose process tree is the system under test (for CPU time). */
  pid: number;
  stop(): Promise<void>;
}

/** The servers every contender may point at, started by the harness on the generator core (or, for the JWKS, in the harness). */
export interface BenchEnv {
  upstreamPort: number;
  /** The issuer, JWKS URL and tokens (bench/idp.ts). */
  idp: BenchKeys;
  /** OTLP/HTTP base URL of the sink (bench/otlp-sink.ts). */
  otlpEndpoint: string;
}

export interface Contender {
  id: string;
  label: string;
  start(env: BenchEnv, sutCpu: string): Promise<Running>;
}

export const UPSTREAM_REQUEST: RequestSpec[] = [{ host: "upstream.bench", path: "/api/items/7" }];

export const direct: Contender = {
  id: "direct",
  label: "direct to the upstream (no proxy)",
  async start({ upstreamPort }) {
    return { port: upstreamPort, requests: UPSTREAM_REQUEST, pid: 0, stop: async () => {} };
  },
};

/** A bare Worker of bench/passthrough/ and its Durable Object namespace, if it has one. */
export interface BareWorker {
  id: string;
  label: string;
  file: string;
  object?: { binding: string; className: string };
}

/**
 * Writes `dir/worker.capnp` (and the Worker beside it): the bare Worker with
 * UPSTREAM bound, listening on 127.0.0.1:`port`. Returns the config's path.
 */
export function writeBareWorker(dir: string, { id, file, object }: BareWorker, upstreamPort: number, port: number): string {
  copyFileSync(resolve("bench/passthrough", file), join(dir, "worker.js"));
  const objectConfig = object
    ? `,
      durableObjectNamespaces = [(className = "${object.className}", uniqueKey = "isthmus-bench-${id}")],
      durableObjectStorage = (inMemory = void)`
    : "";
  const objectBinding = object ? `, (name = "${object.binding}", durableObjectNamespace = "${object.className}")` : "";
  writeFileSync(
    join(dir, "worker.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [(name = "worker.js", esModule = embed "worker.js")],
      ${compatibilityCapnp()},
      bindings = [(name = "UPSTREAM", text = "http://127.0.0.1:${upstreamPort}")${objectBinding}],
      globalOutbound = "internet"${objectConfig})),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
`,
  );
  return join(dir, "worker.capnp");
}

/** A bare Worker on bare workerd: `file` under bench/passthrough/, with UPSTREAM bound and, with `object`, a Durable Object namespace. */
function bareWorker(worker: BareWorker): Contender {
  return {
    id: worker.id,
    label: worker.label,
    async start({ upstreamPort }, sutCpu) {
      const dir = mkdtempSync(join(tmpdir(), `isthmus-bench-${worker.id}-`));
      const port = await freePort();
      const proc = startPinned(sutCpu, workerdBinary(), ["serve", writeBareWorker(dir, worker, upstreamPort, port)]);
      await waitForPort(port, 20_000, proc);
      return running(proc, port, UPSTREAM_REQUEST, () => rmSync(dir, { recursive: true, force: true }));
    },
  };
}

export const PASSTHROUGH: BareWorker = { id: "passthrough", label: "bare passthrough Worker on bare workerd", file: "worker.js" };
/** What one Durable Object call per request costs any Worker here, whatever it does around it. */
export const PASSTHROUGH_OBJECT: BareWorker = {
  id: "passthrough-object",
  label: "the passthrough + one Durable Object call per request",
  file: "with-object.js",
  object: { binding: "COUNTER", className: "Counter" },
};
/** What keeping Envoy's header contract costs any Worker here, before it routes or decides anything. */
export const PASSTHROUGH_ENVOY_HEADERS: BareWorker = {
  id: "passthrough-envoy-headers",
  label: "the passthrough + the header work an Istio gateway does on every request",
  file: "envoy-headers.js",
};

export const passthrough = bareWorker(PASSTHROUGH);
export const passthroughWithObject = bareWorker(PASSTHROUGH_OBJECT);
export const passthroughEnvoyHeaders = bareWorker(PASSTHROUGH_ENVOY_HEADERS);

export const nginx: Contender = {
  id: "nginx",
  label: "nginx (Debian) reverse proxy, 1 worker, upstream keepalive",
  async start({ upstreamPort }, sutCpu) {
    const dir = mkdtempSync(join(tmpdir(), "isthmus-bench-nginx-"));
    const port = await freePort();
    for (const sub of ["client", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, sub));
    writeFileSync(
      join(dir, "nginx.conf"),
      `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream bench_upstream { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`,
    );
    const proc = startPinned(sutCpu, nginxBinary() as string, ["-p", dir, "-c", join(dir, "nginx.conf")]);
    await waitForPort(port, 20_000, proc);
    return running(proc, port, UPSTREAM_REQUEST, () => rmSync(dir, { recursive: true, force: true }));
  },
};

/**
 * Writes `yaml` as `dir/config/gateway.yaml` and starts `isthmus serve` on it
 * (state in `dir/state`, listening on `port`) pinned to `sutCpu`; resolves
 * once the gateway serves it. Its workerd config is `dir/state/run/isthmus.capnp`.
 */
export async function startServe(dir: string, yaml: string, port: number, sutCpu: string): Promise<Proc> {
  mkdirSync(join(dir, "config"));
  writeFileSync(join(dir, "config", "gateway.yaml"), yaml);
  const proc = startPinned(sutCpu, process.execPath, ["bin/isthmus.js", "serve", "-f", join(dir, "config"), "--port", String(port), "--state", join(dir, "state")]);
  await waitForOutput(proc, /isthmus: ready on/, 60_000);
  return proc;
}

/** Isthmus on `isthmus serve` (bare workerd) with a given configuration. */
function isthmus(id: string, label: string, build: (env: BenchEnv) => { yaml: string; requests: RequestSpec[] }): Contender {
  return {
    id,
    label,
    async start(env, sutCpu) {
      const dir = mkdtempSync(join(tmpdir(), `isthmus-bench-${id}-`));
      const port = await freePort();
      const config = build(env);
      const proc = await startServe(dir, config.yaml, port, sutCpu);
      return running(proc, port, config.requests, () => rmSync(dir, { recursive: true, force: true }));
    },
  };
}

export const isthmusRealistic = isthmus("isthmus", "Isthmus on isthmus serve, realistic config", (e) => realistic(e.upstreamPort, { telemetry: true, jwt: e.idp, otlpEndpoint: e.otlpEndpoint }));
export const isthmusNoTelemetry = isthmus("isthmus-telemetry-off", "the same, telemetry off", (e) => realistic(e.upstreamPort, { telemetry: false, jwt: e.idp }));
export const isthmusLease = isthmus("isthmus-lease", "the realistic config with lease mode on its GLOBAL rule (size 100)", (e) =>
  realistic(e.upstreamPort, { telemetry: true, jwt: e.idp, otlpEndpoint: e.otlpEndpoint, lease: { size: 100 } }),
);
export const isthmusMinimal = isthmus("isthmus-minimal", "Isthmus on isthmus serve, minimal config (one route)", (e) => minimal(e.upstreamPort));

function running(proc: Proc, port: number, requests: RequestSpec[], cleanup: () => void): Running {
  return {
    port,
    requests,
    pid: proc.child.pid as number,
    async stop() {
      await stopProc(proc);
      cleanup();
    },
  };
}

/** Per-call costs of runtime operations inside workerd (bench/workerd-ops), pinned to the SUT core. */
export async function workerdOps(sutCpu: string): Promise<{ name: string; us: number }[]> {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-bench-ops-"));
  const port = await freePort();
  copyFileSync(resolve("bench/workerd-ops/worker.js"), join(dir, "worker.js"));
  writeFileSync(
    join(dir, "ops.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = (modules = [(name = "worker.js", esModule = embed "worker.js")], ${compatibilityCapnp()}))],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
`,
  );
  try {
    return await answerOnce<{ name: string; us: number }[]>(sutCpu, join(dir, "ops.capnp"), port);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Serves a workerd config pinned to `sutCpu`, asks its Worker `GET /` once
 * (a measurement that runs inside workerd) and returns the JSON answer;
 * `around` wraps that request (to profile it over `--inspector-addr`).
 */
export async function answerOnce<T>(sutCpu: string, capnp: string, port: number, inspector?: { port: number; around: (ask: () => Promise<T>) => Promise<T> }): Promise<T> {
  const proc = startPinned(sutCpu, workerdBinary(), ["serve", capnp, ...(inspector ? [`--inspector-addr=127.0.0.1:${inspector.port}`] : [])]);
  try {
    await waitForPort(port, 20_000, proc);
    const ask = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      if (!res.ok) throw new Error(`the Worker of ${capnp} answered ${res.status}: ${await res.text()}`);
      return (await res.json()) as T;
    };
    return inspector ? await inspector.around(ask) : await ask();
  } finally {
    await stopProc(proc);
  }
}

/** The nginx binary, or undefined when it is not installed. */
export function nginxBinary(): string | undefined {
  return debianBinary("nginx");
}

/** Installs nginx from Debian when it is missing (full runs only). Returns its path, or undefined. */
export function ensureNginx(log: (s: string) => void): string | undefined {
  return ensureDebianPackage("nginx", "nginx", log);
}
