/**
 * Validation: kinds and apiVersions, schemas, the one-line message format
 * with the right line numbers, Kubernetes bookkeeping fields, duplicates.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import { KINDS } from "../../../src/config/kinds.ts";
import { parseYaml } from "../../../src/config/parse.ts";
import { formatProblem } from "../../../src/config/problems.ts";
import { validateDocuments } from "../../../src/config/validate.ts";
import { build, errors, lines, warnings } from "../support.ts";

function validate(text: string, path = "config.yaml") {
  const { documents, problems } = parseYaml({ path, text });
  expect(problems).toEqual([]);
  const result = validateDocuments(documents);
  // In line order, as buildConfig (and so the CLI) prints them.
  const sorted = result.problems.map((p, i) => ({ p, i })).sort((a, b) => (a.p.line ?? 0) - (b.p.line ?? 0) || a.i - b.i);
  return { ...result, lines: sorted.map(({ p }) => formatProblem(p)) };
}

/** A minimal valid spec for each kind. */
const MINIMAL: Record<keyof typeof KINDS, string> = {
  VirtualService: "{hosts: [a.example.com], http: [{directResponse: {status: 200}}]}",
  DestinationRule: "{host: a.example.com}",
  ServiceEntry: "{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}]}",
  Gateway: "{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}",
  RequestAuthentication: "{}",
  AuthorizationPolicy: "{}",
  PeerAuthentication: "{}",
  Telemetry: "{}",
  GatewayConfig: "{}",
  RateLimitPolicy: "{}",
  EnvoyFilter: "{}",
};

const API_VERSIONS: [keyof typeof KINDS, string[]][] = [
  ["VirtualService", ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"]],
  ["DestinationRule", ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"]],
  ["ServiceEntry", ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"]],
  ["Gateway", ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"]],
  ["RequestAuthentication", ["security.istio.io/v1", "security.istio.io/v1beta1"]],
  ["AuthorizationPolicy", ["security.istio.io/v1", "security.istio.io/v1beta1"]],
  ["PeerAuthentication", ["security.istio.io/v1", "security.istio.io/v1beta1"]],
  ["Telemetry", ["telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"]],
  ["GatewayConfig", ["isthmus.dev/v1alpha1"]],
  ["RateLimitPolicy", ["isthmus.dev/v1alpha1"]],
  ["EnvoyFilter", ["networking.istio.io/v1alpha3"]],
];

describe("kinds and apiVersions", () => {
  it("covers every kind Isthmus reads", () => {
    expect(API_VERSIONS.map(([k]) => k).sort()).toEqual(Object.keys(KINDS).sort());
  });

  for (const [kind, versions] of API_VERSIONS) {
    for (const apiVersion of versions) {
      it(`accepts ${kind} as ${apiVersion}`, () => {
        const { resources, problems } = validate(`apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata: {name: x, namespace: prod}\nspec: ${MINIMAL[kind]}\n`);
        expect(problems.filter((p) => p.field === "apiVersion" || p.field === "kind")).toEqual([]);
        // Only the documented field notes remain (e.g. "not enforced yet" for security kinds).
        expect(problems.every((p) => p.field === "spec")).toBe(true);
        expect(resources).toHaveLength(1);
        expect(resources[0]).toMatchObject({ kind, apiVersion, name: "x", namespace: "prod", id: `${kind}/prod/x` });
      });
    }
  }

  it("rejects an apiVersion the kind never had, listing the ones it has", () => {
    const { resources, lines } = validate(["apiVersion: security.istio.io/v1", "kind: VirtualService", "metadata: {name: r, namespace: prod}", "spec: {}", ""].join("\n"));
    expect(resources).toEqual([]);
    expect(lines).toEqual([
      'config.yaml:1: error: VirtualService/prod/r: apiVersion: expected networking.istio.io/v1 or networking.istio.io/v1beta1 or networking.istio.io/v1alpha3, got "security.istio.io/v1"',
    ]);
  });

  it("rejects a missing apiVersion and an unknown version of the right group", () => {
    expect(validate("kind: ServiceEntry\nmetadata: {name: s}\nspec: {}\n").lines).toEqual([
      "config.yaml:1: error: ServiceEntry/default/s: apiVersion: expected networking.istio.io/v1 or networking.istio.io/v1beta1 or networking.istio.io/v1alpha3, got nothing",
    ]);
    expect(validate("apiVersion: isthmus.dev/v1\nkind: GatewayConfig\nmetadata: {name: g}\nspec: {}\n").lines).toEqual([
      'config.yaml:1: error: GatewayConfig/default/g: apiVersion: expected isthmus.dev/v1alpha1, got "isthmus.dev/v1"',
    ]);
  });

  it("says Kubernetes Gateway API resources are not supported instead of suggesting another apiVersion", () => {
    const text = [
      "apiVersion: gateway.networking.k8s.io/v1", // 1
      "kind: Gateway", // 2
      "metadata: {name: edge, namespace: web}", // 3
      "spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}", // 4
      "---", // 5
      "kind: HTTPRoute", // 6
      "apiVersion: gateway.networking.k8s.io/v1beta1", // 7
      "metadata: {name: r}", // 8
      "spec: {parentRefs: [{name: edge}]}", // 9
      "---", // 10
      "apiVersion: gateway.networking.x-k8s.io/v1alpha1", // 11
      "kind: XListenerSet", // 12
      "metadata: {name: l}", // 13
      "",
    ].join("\n");
    const { resources, lines } = validate(text);
    expect(resources).toEqual([]);
    const why = "Kubernetes Gateway API resources are not supported; use Istio's networking.istio.io Gateway with VirtualServices";
    expect(lines).toEqual([
      `config.yaml:1: error: Gateway/web/edge: apiVersion: ${why}, got "gateway.networking.k8s.io/v1"`,
      `config.yaml:7: error: HTTPRoute/default/r: apiVersion: ${why}, got "gateway.networking.k8s.io/v1beta1"`,
      `config.yaml:11: error: XListenerSet/default/l: apiVersion: ${why}, got "gateway.networking.x-k8s.io/v1alpha1"`,
    ]);
  });

  it("rejects an unknown kind as an error", () => {
    const { resources, lines } = validate("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {}\n");
    expect(resources).toEqual([]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^config\.yaml:2: error: Ingress\/default\/web: kind: unknown kind "Ingress": expected one of VirtualService, DestinationRule, /);
  });

  it("rejects a document without a kind, and one that is not a mapping", () => {
    expect(validate("apiVersion: v1\nmetadata: {name: x}\n").lines[0]).toMatch(/^config\.yaml:1: error: kind: expected a kind \(one of VirtualService, /);
    expect(validate("- a\n- b\n").lines).toEqual([
      "config.yaml:1: error: expected a Kubernetes resource (a mapping with apiVersion, kind, metadata and spec)",
    ]);
  });

  it("ignores in-mesh-only Istio kinds with a warning that says why, and builds the rest", async () => {
    // EnvoyFilter is read for its local_ratelimit patches; the others are ignored at compile time (test/unit/ratelimit/envoy-filter.test.ts).
    for (const kind of ["Sidecar", "WorkloadEntry", "WorkloadGroup", "ProxyConfig", "WasmPlugin"]) {
      const { resources, problems } = validate(`apiVersion: networking.istio.io/v1alpha3\nkind: ${kind}\nmetadata: {name: x, namespace: prod}\nspec: {anything: goes}\n`);
      expect(resources).toEqual([]);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatchObject({ severity: "warning", line: 2, resource: `${kind}/prod/x` });
      expect(problems[0]?.message).toMatch(/^ignored: .+/);
    }
    const result = await build(
      "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec: {egress: [{hosts: ['./*']}]}\n",
      `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: ${MINIMAL.VirtualService}\n`,
    );
    expect(errors(result)).toEqual([]);
    expect(warnings(result)).toEqual([expect.stringMatching(/^config\.yaml:2: warning: Sidecar\/default\/default: ignored: Sidecar configures in-mesh sidecar proxies/)]);
    expect(result.snapshot).toBeDefined();
  });
});

describe("message format", () => {
  it("prints file:line: severity: Kind/namespace/name: field.path: message, with the line of the field", async () => {
    const text = [
      "apiVersion: networking.istio.io/v1", // 1
      "kind: VirtualService", // 2
      "metadata:", // 3
      "  name: reviews", // 4
      "  namespace: prod", // 5
      "spec:", // 6
      "  hosts:", // 7
      "  - reviews.example.com", // 8
      "  http:", // 9
      "  - match:", // 10
      "    - uri:", // 11
      "        prefx: /v1", // 12
      "    route:", // 13
      "    - destination:", // 14
      "        host: reviews", // 15
      "      weight: ten", // 16
      "    timeout: 5 seconds", // 17
      "",
    ].join("\n");
    const result = await buildConfig([{ path: "mesh/reviews.yaml", text }]);
    expect(lines(result)).toEqual([
      'mesh/reviews.yaml:12: error: VirtualService/prod/reviews: spec.http[0].match[0].uri.prefx: unknown field "prefx" (did you mean "prefix"?)',
      'mesh/reviews.yaml:16: error: VirtualService/prod/reviews: spec.http[0].route[0].weight: expected a number, got "ten"',
      "mesh/reviews.yaml:17: error: VirtualService/prod/reviews: spec.http[0].timeout: expected a duration such as 250ms, 5s, 1m or 1h30m",
    ]);
    expect(result.snapshot).toBeUndefined();
  });

  it("names the right line inside a multi-document file and inside a List", async () => {
    const text = [
      "apiVersion: networking.istio.io/v1", // 1
      "kind: ServiceEntry", // 2
      "metadata: {name: ok}", // 3
      "spec: {hosts: [ok.example.com], ports: [{number: 80, name: http}]}", // 4
      "---", // 5
      "apiVersion: v1", // 6
      "kind: List", // 7
      "items:", // 8
      "- apiVersion: networking.istio.io/v1", // 9
      "  kind: ServiceEntry", // 10
      "  metadata: {name: bad, namespace: edge}", // 11
      "  spec:", // 12
      "    hosts: [bad.example.com]", // 13
      "    location: OUTSIDE", // 14
      "",
    ].join("\n");
    const result = await buildConfig([{ path: "all.yaml", text }]);
    expect(lines(result)).toEqual([
      'all.yaml:14: error: ServiceEntry/edge/bad: spec.location: expected one of MESH_EXTERNAL, MESH_INTERNAL, got "OUTSIDE"',
    ]);
  });

  it("quotes field names that are not identifiers", () => {
    const { lines } = validate(
      [
        "apiVersion: networking.istio.io/v1",
        "kind: VirtualService",
        "metadata: {name: v}",
        "spec:",
        "  hosts: [a.example.com]",
        "  http:",
        "  - match:",
        "    - headers:",
        "        x-user-id: {exact: a, regex: b}",
        "    directResponse: {status: 200}",
        "",
      ].join("\n"),
    );
    expect(lines).toEqual(['config.yaml:9: error: VirtualService/default/v: spec.http[0].match[0].headers["x-user-id"]: expected exactly one of exact, prefix or regex']);
  });
});

describe("schemas", () => {
  it("rejects an unknown field with a did-you-mean when a known one is close", () => {
    const { lines } = validate(
      [
        "apiVersion: networking.istio.io/v1",
        "kind: ServiceEntry",
        "metadata: {name: s, labelz: {a: b}}",
        "spec:",
        "  host: [a.example.com]",
        "  ports: [{number: 80, nmae: http}]",
        "  xyzzy: 1",
        "",
      ].join("\n"),
    );
    expect(lines).toEqual([
      'config.yaml:3: error: ServiceEntry/default/s: metadata.labelz: unknown field "labelz" (did you mean "labels"?)',
      "config.yaml:4: error: ServiceEntry/default/s: spec.hosts: required field is missing (expected a list)",
      'config.yaml:5: error: ServiceEntry/default/s: spec.host: unknown field "host" (did you mean "hosts"?)',
      'config.yaml:6: error: ServiceEntry/default/s: spec.ports[0].nmae: unknown field "nmae" (did you mean "name"?)',
      'config.yaml:7: error: ServiceEntry/default/s: spec.xyzzy: unknown field "xyzzy"',
    ]);
  });

  it("suggests fields of objects nested in maps and lists", () => {
    const { lines } = validate(
      [
        "apiVersion: networking.istio.io/v1",
        "kind: DestinationRule",
        "metadata: {name: d}",
        "spec:",
        "  host: a",
        "  subsets:",
        "  - name: v1",
        "    lables: {version: v1}",
        "  trafficPolicy:",
        "    portLevelSettings:",
        "    - port: {numbr: 80}",
        "",
      ].join("\n"),
    );
    expect(lines).toEqual([
      'config.yaml:8: error: DestinationRule/default/d: spec.subsets[0].lables: unknown field "lables" (did you mean "labels"?)',
      'config.yaml:11: error: DestinationRule/default/d: spec.trafficPolicy.portLevelSettings[0].port.numbr: unknown field "numbr" (did you mean "number"?)',
    ]);
  });

  it("reports a missing required field", () => {
    expect(validate("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {subsets: []}\n").lines).toEqual([
      "config.yaml:4: error: DestinationRule/default/d: spec.host: required field is missing (expected a string)",
    ]);
    expect(validate("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: {hosts: [a]}\n").lines).toEqual([
      "config.yaml:1: error: ServiceEntry/default/?: metadata: required field is missing (expected a mapping)",
    ]);
    expect(validate("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {namespace: x}\nspec: {hosts: [a]}\n").lines).toEqual([
      "config.yaml:3: error: ServiceEntry/x/?: metadata.name: required field is missing (expected a string)",
    ]);
    expect(validate("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {servers: [{hosts: ['*']}]}\n").lines).toEqual([
      "config.yaml:4: error: Gateway/default/g: spec.servers[0].port: required field is missing (expected a mapping)",
    ]);
  });

  it("reports wrong types with what was expected and what was found", () => {
    const { lines } = validate(
      [
        "apiVersion: networking.istio.io/v1",
        "kind: ServiceEntry",
        "metadata: {name: s}",
        "spec:",
        "  hosts: a.example.com",
        "  ports:",
        "  - number: '80'",
        "  - number: 70000",
        "  - number: 8.5",
        "  endpoints: {address: x}",
        "",
      ].join("\n"),
    );
    expect(lines).toEqual([
      'config.yaml:5: error: ServiceEntry/default/s: spec.hosts: expected a list, got "a.example.com"',
      'config.yaml:7: error: ServiceEntry/default/s: spec.ports[0].number: expected a number, got "80"',
      "config.yaml:8: error: ServiceEntry/default/s: spec.ports[1].number: expected a port number between 1 and 65535",
      "config.yaml:9: error: ServiceEntry/default/s: spec.ports[2].number: expected a whole number, got 8.5",
      "config.yaml:10: error: ServiceEntry/default/s: spec.endpoints: expected a list, got a mapping",
    ]);
  });

  it("says what a length or size bound expected in the same words as the other messages, not zod's", () => {
    const { lines } = validate(
      [
        "apiVersion: security.istio.io/v1",
        "kind: RequestAuthentication",
        "metadata: {name: r}",
        "spec:",
        "  jwtRules:",
        "  - issuer: https://idp.example.com",
        "    fromHeaders: [{name: ''}]",
        "    fromParams: ['']",
        "---",
        "apiVersion: isthmus.dev/v1alpha1",
        "kind: GatewayConfig",
        "metadata: {name: g}",
        "spec:",
        "  limits: {maxHeadersCount: 0, maxRequestHeadersKb: 200}",
        "",
      ].join("\n"),
    );
    expect(lines).toEqual([
      'config.yaml:7: error: RequestAuthentication/default/r: spec.jwtRules[0].fromHeaders[0].name: expected a non-empty string, got ""',
      'config.yaml:8: error: RequestAuthentication/default/r: spec.jwtRules[0].fromParams[0]: expected a non-empty string, got ""',
      "config.yaml:14: error: GatewayConfig/default/g: spec.limits.maxRequestHeadersKb: expected a number <= 128, got 200",
      "config.yaml:14: error: GatewayConfig/default/g: spec.limits.maxHeadersCount: expected a number >= 1, got 0",
    ]);
  });

  it("reports a value outside an enum, listing the allowed ones", () => {
    const { lines } = validate(
      [
        "apiVersion: networking.istio.io/v1",
        "kind: DestinationRule",
        "metadata: {name: d}",
        "spec:",
        "  host: a",
        "  trafficPolicy:",
        "    loadBalancer: {simple: FASTEST}",
        "    tls: {mode: STRICT}",
        "",
      ].join("\n"),
    );
    expect(lines).toEqual([
      'config.yaml:7: error: DestinationRule/default/d: spec.trafficPolicy.loadBalancer.simple: expected one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST, got "FASTEST"',
      'config.yaml:8: error: DestinationRule/default/d: spec.trafficPolicy.tls.mode: expected one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL, got "STRICT"',
    ]);
  });

  it("enforces Istio's one-of constraints", () => {
    const { lines } = validate(
      [
        "apiVersion: networking.istio.io/v1",
        "kind: VirtualService",
        "metadata: {name: v}",
        "spec:",
        "  hosts: [a.example.com]",
        "  http:",
        "  - redirect: {uri: /a, prefixRewrite: /b, port: 8080, derivePort: FROM_REQUEST_PORT}",
        "",
      ].join("\n"),
    );
    expect(lines).toEqual([
      "config.yaml:7: error: VirtualService/default/v: spec.http[0].redirect: expected only one of uri, prefixRewrite in redirect, got uri and prefixRewrite",
      "config.yaml:7: error: VirtualService/default/v: spec.http[0].redirect: expected only one of port, derivePort in redirect, got port and derivePort",
    ]);
  });

  it("accepts the Kubernetes bookkeeping of `kubectl get -o yaml` output and ignores it", async () => {
    const text = [
      "apiVersion: networking.istio.io/v1",
      "kind: ServiceEntry",
      "metadata:",
      "  annotations:",
      "    kubectl.kubernetes.io/last-applied-configuration: |",
      '      {"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry"}',
      "    team: payments",
      "  creationTimestamp: \"2024-05-01T10:00:00Z\"",
      "  generation: 3",
      "  labels: {app: httpbin}",
      "  managedFields:",
      "  - apiVersion: networking.istio.io/v1",
      "    fieldsType: FieldsV1",
      "    fieldsV1: {f:spec: {}}",
      "    manager: kubectl-client-side-apply",
      "    operation: Update",
      "  name: httpbin",
      "  namespace: egress",
      "  resourceVersion: \"123456\"",
      "  uid: 6f1b2c3d-0000-4000-8000-000000000000",
      "spec:",
      "  hosts: [httpbin.org]",
      "  ports: [{number: 443, name: https, protocol: HTTPS}]",
      "  resolution: DNS",
      "status:",
      "  observedGeneration: \"3\"",
      "  validationMessages:",
      "  - documentationUrl: https://istio.io/latest/docs/reference/config/analysis/ist0101/",
      "    level: ERROR",
      "",
    ].join("\n");
    const result = await build(text);
    expect(lines(result)).toEqual([]);
    expect(result.snapshot).toBeDefined();
    expect(result.sources[0]?.metadata).toEqual({ name: "httpbin", namespace: "egress", labels: { app: "httpbin" }, annotations: { team: "payments" } });
    expect(result.sources[0]?.spec).not.toHaveProperty("status");
  });

  it("uses the namespace `default` when metadata.namespace is absent", () => {
    const { resources } = validate(`apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: a}\n`);
    expect(resources[0]?.id).toBe("DestinationRule/default/d");
  });
});

describe("duplicate resources", () => {
  const se = (name: string, ns: string) => `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: {hosts: [${name}-${ns}.example.com], ports: [{number: 80, name: http}]}\n`;

  it("rejects the same kind/namespace/name twice, naming both places", async () => {
    const result = await buildConfig([
      { path: "a.yaml", text: `# first\n${se("web", "prod")}` },
      { path: "b.yaml", text: `${se("other", "prod")}---\n${se("web", "prod")}` },
    ]);
    expect(errors(result)).toEqual(["b.yaml:6: error: ServiceEntry/prod/web: duplicate resource: ServiceEntry/prod/web is also defined at a.yaml:2"]);
    expect(result.snapshot).toBeUndefined();
  });

  it("allows the same name in another namespace or of another kind", async () => {
    const result = await build(se("web", "prod"), se("web", "staging"), "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: prod}\nspec: {host: web-prod.example.com}\n");
    expect(errors(result)).toEqual([]);
    expect(result.resources.map((r) => r.id)).toEqual(["ServiceEntry/prod/web", "ServiceEntry/staging/web", "DestinationRule/prod/web"]);
  });
});
