/**
 * Small helpers for the unit tests: write resources as objects, run them
 * through the real config pipeline (parse → validate → compile), and read
 * the problems the way a user sees them (one formatted line each).
 */
import { stringify } from "yaml";
import { buildConfig, type BuildResult } from "../../src/config/build.ts";
import { formatProblem } from "../../src/config/problems.ts";
import type { Snapshot } from "../../src/config/snapshot.ts";
import type { PipelineDeps } from "../../src/gateway/context.ts";
import type { RequestFacts } from "../../src/gateway/facts.ts";
import { Balancer } from "../../src/routing/balancer.ts";

const API: Record<string, string> = {
  VirtualService: "networking.istio.io/v1",
  DestinationRule: "networking.istio.io/v1",
  ServiceEntry: "networking.istio.io/v1",
  Gateway: "networking.istio.io/v1",
  RequestAuthentication: "security.istio.io/v1",
  AuthorizationPolicy: "security.istio.io/v1",
  PeerAuthentication: "security.istio.io/v1",
  Telemetry: "telemetry.istio.io/v1",
  GatewayConfig: "isthmus.dev/v1alpha1",
  RateLimitPolicy: "isthmus.dev/v1alpha1",
};

export interface Doc {
  apiVersion: string;
  kind: string;
  metadata: Record<string, unknown>;
  spec: unknown;
}

/** A resource of `kind` named `name` (namespace `default` unless given). */
export function doc(kind: string, name: string, spec: unknown, namespace = "default"): Doc {
  return { apiVersion: API[kind] ?? "networking.istio.io/v1", kind, metadata: { name, namespace }, spec };
}

/** A ServiceEntry with one HTTP port (80 unless given), DNS resolution, MESH_EXTERNAL. */
export function serviceEntry(name: string, hosts: string[], extra: Record<string, unknown> = {}, namespace = "default"): Doc {
  return doc("ServiceEntry", name, { hosts, ports: [{ number: 80, name: "http", protocol: "HTTP" }], resolution: "DNS", ...extra }, namespace);
}

/** A VirtualService with the given hosts and http rules. */
export function virtualService(name: string, hosts: string[], http: unknown[], extra: Record<string, unknown> = {}, namespace = "default"): Doc {
  return doc("VirtualService", name, { hosts, http, ...extra }, namespace);
}

/** A route rule to one destination. */
export function routeTo(host: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { route: [{ destination: { host } }], ...extra };
}

/** Multi-document YAML for the given resources. */
export function toYaml(docs: readonly (Doc | string)[]): string {
  return docs.map((d) => (typeof d === "string" ? d : stringify(d))).join("---\n");
}

/** Builds the resources (objects or YAML text) as one file `config.yaml`. */
export function build(...docs: (Doc | string)[]): Promise<BuildResult> {
  return buildConfig([{ path: "config.yaml", text: toYaml(docs) }]);
}

/** Every problem as the one line the CLI prints. */
export function lines(result: BuildResult): string[] {
  return result.problems.map(formatProblem);
}

export function errors(result: BuildResult): string[] {
  return result.problems.filter((p) => p.severity === "error").map(formatProblem);
}

export function warnings(result: BuildResult): string[] {
  return result.problems.filter((p) => p.severity === "warning").map(formatProblem);
}

/** Builds and insists there is no error; returns the snapshot. */
export async function snapshotOf(...docs: (Doc | string)[]): Promise<Snapshot> {
  const result = await build(...docs);
  const errs = errors(result);
  if (errs.length > 0 || !result.snapshot) throw new Error(`unexpected errors:\n${errs.join("\n")}`);
  return result.snapshot;
}

/** Request facts for the pure matchers, with sensible defaults. */
export function facts(overrides: Omit<Partial<RequestFacts>, "headers"> & { headers?: Headers | Record<string, string> } = {}): RequestFacts {
  const { headers, ...rest } = overrides;
  return {
    method: "GET",
    scheme: "http",
    host: "app.example.com",
    port: 80,
    authority: "app.example.com",
    path: "/",
    query: "",
    headers: headers instanceof Headers ? headers : new Headers(headers ?? {}),
    remoteIp: "203.0.113.7",
    ...rest,
  };
}

/**
 * One isolate's dependencies for running the pipeline in a test: no
 * upstream unless `fetch` is given, draws that always take the first
 * choice, the real clock and no waiting; a test overrides what it controls.
 *
 * @example
 * const deps = pipelineDeps({ fetch: async () => new Response("ok"), upstreams: new UpstreamState({ log: () => {} }) });
 */
export function pipelineDeps(overrides: Partial<PipelineDeps> = {}): PipelineDeps {
  return {
    fetch: () => Promise.reject(new Error("no upstream in this test")),
    balancer: new Balancer(() => 0),
    random: () => 0,
    requestId: () => "00000000-0000-4000-8000-000000000000",
    now: () => Date.now(),
    sleep: async () => {},
    ...overrides,
  };
}
