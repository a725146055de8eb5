/**
 * Micro-benchmark of authorization: one request's policy decision (DENY
 * policies, then ALLOW, layer by layer: `verdict`, as the gateway's stage
 * calls it) against configurations of 10 and 1,000 AuthorizationPolicies,
 * compiled by the CLI and hydrated as the Worker does. Two shapes:
 *
 * - every policy applies: all of them in the root namespace, so each one
 *   is evaluated for every request (the worst case: the cost grows with N);
 * - spread over namespaces: ten per namespace (nine DENY, one ALLOW), as a
 *   mesh with many teams writes them; a request is judged by the root
 *   namespace's and its destination namespace's only.
 *
 * The DENY policies never match the measured request (so every one is
 * evaluated) and mix the matchers Istio users write: path globs, methods,
 * request headers, IP blocks, hosts. Each request builds its own policy
 * input, as the gateway does, so the client IP is parsed once per request.
 */
import { buildConfig } from "../src/config/build.ts";
import { hydrate } from "../src/routing/hydrate.ts";
import { policyInput, verdict, NO_ALLOW_MATCHED } from "../src/authz/policy/engine.ts";
import type { SecurityScope } from "../src/authz/hydrate.ts";
import type { RequestFacts } from "../src/gateway/facts.ts";

export interface AuthzCost {
  policies: number;
  shape: "every policy applies" | "spread over namespaces";
  /** Policies evaluated for the measured request's decision. */
  evaluated: number;
  nsPerDecision: number;
}

const ROOT = "istio-system";

/** A DENY policy that never matches the measured request; `i` varies what it names. */
function denyPolicy(name: string, namespace: string, i: number): string {
  const rules = [
    `[{to: [{operation: {paths: ["/admin/${i}/*", "*.php"]}}]}]`,
    `[{to: [{operation: {methods: [DELETE, TRACE], paths: ["/v${i}/*"]}}]}]`,
    `[{when: [{key: "request.headers[x-debug-${i}]", values: ["*"]}]}]`,
    `[{from: [{source: {remoteIpBlocks: ["10.${i % 256}.0.0/16", "192.0.2.${i % 256}"]}}]}]`,
  ][i % 4];
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  action: DENY
  rules: ${rules}`;
}

function allowPolicy(name: string, namespace: string, host: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  action: ALLOW
  rules: [{to: [{operation: {hosts: ["${host}"], methods: [GET, HEAD], paths: ["/api/*"]}}]}]`;
}

function service(namespace: string): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: ${namespace}}
spec:
  hosts: [svc.${namespace}.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: ${namespace}}
spec:
  hosts: [${namespace}.example.com]
  http: [{route: [{destination: {host: svc.${namespace}.internal}}]}]`;
}

/** The configuration, and the namespace whose service the measured request goes to. */
function config(policies: number, shape: AuthzCost["shape"]): { yaml: string; namespace: string } {
  const docs: string[] = [];
  let namespace: string;
  if (shape === "every policy applies") {
    namespace = "app";
    docs.push(service(namespace));
    for (let i = 0; i < policies - 1; i++) docs.push(denyPolicy(`deny-${i}`, ROOT, i));
    docs.push(allowPolicy("allow-app", ROOT, `${namespace}.example.com`));
  } else {
    const namespaces = policies / 10;
    for (let n = 0; n < namespaces; n++) {
      const ns = `team-${n}`;
      docs.push(service(ns));
      for (let i = 0; i < 9; i++) docs.push(denyPolicy(`deny-${i}`, ns, n * 9 + i));
      docs.push(allowPolicy("allow", ns, `${ns}.example.com`));
    }
    namespace = `team-${Math.floor(namespaces / 2)}`;
  }
  return { yaml: docs.join("\n---\n") + "\n", namespace };
}

async function scopeOf(yaml: string, namespace: string): Promise<SecurityScope> {
  const built = await buildConfig([{ path: "authz.yaml", text: yaml }]);
  if (!built.snapshot) throw new Error(`authorization bench config does not build: ${JSON.stringify(built.problems.slice(0, 3))}`);
  const security = hydrate(built.snapshot).security;
  if (!security) throw new Error("the authorization bench config has no policies");
  // A destination judged by the gateway's policies alone shares the gateway's scope, as in the stage.
  return security.clusterScopes.get(`outbound|80||svc.${namespace}.internal`) ?? security.gateway;
}

/** Nanoseconds per decision for `policies` policies of `shape`, fastest of `rounds` rounds of `iterations`. */
export async function measureAuthz(policies: number, shape: AuthzCost["shape"], iterations: number, rounds: number): Promise<AuthzCost> {
  const { yaml, namespace } = config(policies, shape);
  const scope = await scopeOf(yaml, namespace);
  const host = `${namespace}.example.com`;
  const facts: RequestFacts = {
    method: "GET",
    scheme: "https",
    host,
    port: 443,
    authority: host,
    path: "/api/orders/42",
    query: "",
    headers: new Headers({ accept: "application/json", "user-agent": "bench" }),
    remoteIp: "198.18.0.7",
  };
  const decide = () => verdict(scope.layers, policyInput(facts, undefined, undefined, undefined));
  // The request must be allowed, after every DENY policy was evaluated.
  if (decide() !== undefined) throw new Error(`the measured request is not allowed by the ${shape} config of ${policies} policies`);
  const evaluated = scope.layers.reduce((n, layer) => n + layer.deny.length + layer.allow.length, 0);
  let best = Infinity;
  for (let round = 0; round < rounds; round++) {
    let denied = 0;
    const start = performance.now();
    for (let i = 0; i < iterations; i++) if (decide() === NO_ALLOW_MATCHED) denied++;
    best = Math.min(best, ((performance.now() - start) * 1e6) / iterations);
    if (denied > 0) throw new Error("unreachable");
  }
  return { policies, shape, evaluated, nsPerDecision: best };
}
