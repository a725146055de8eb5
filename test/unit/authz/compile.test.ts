/**
 * Compiling security resources: what ends up in the snapshot (scopes per
 * destination, defaults) and the errors and warnings an author sees, each
 * naming the file, line, resource and field.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import type { Problem } from "../../../src/config/problems.ts";

async function build(yaml: string) {
  return buildConfig([{ path: "security.yaml", text: yaml }]);
}
const errors = (problems: Problem[]) => problems.filter((p) => p.severity === "error");
const warnings = (problems: Problem[]) => problems.filter((p) => p.severity === "warning");

const SERVICE = (ns: string, labels = "app: web") => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: ${ns}}
spec:
  hosts: [web.${ns}.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1, labels: {${labels}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: ${ns}}
spec:
  hosts: [${ns}.example.com]
  http:
  - route: [{destination: {host: web.${ns}.internal}}]
`;

describe("security resources are enforced, not refused", () => {
  it("compile without the former not-enforced errors", async () => {
    const r = await build(`${SERVICE("shop")}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules: [{issuer: "https://idp.example", jwksUri: "https://idp.example/jwks"}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mtls, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`);
    expect(errors(r.problems)).toEqual([]);
    const sec = r.snapshot?.security;
    expect(sec?.jwtRules[0]).toMatchObject({
      issuer: "https://idp.example",
      audiences: [],
      jwks: { uri: "https://idp.example/jwks" },
      locations: [{ header: "authorization", prefix: "Bearer " }, { param: "access_token" }],
      forwardOriginalToken: false,
      timeoutMs: 5000,
      spaceDelimitedClaims: ["scope", "permission"],
    });
    expect(sec?.scopes[0]).toEqual({ jwtRules: [0], peerMode: "STRICT", layers: [] });
    const shop = sec?.clusterScopes["outbound|80||web.shop.internal"];
    expect(shop).toBeDefined();
    expect(sec?.scopes[shop as number]).toEqual({ jwtRules: [0], peerMode: "STRICT", layers: [[0]] });
    expect(sec?.jwks).toEqual({ refreshMs: 1_200_000, maxAgeMs: 86_400_000, unknownKidCooldownMs: 30_000 });
  });

  it("leaves the snapshot without a security part when nothing is configured", async () => {
    const r = await build(SERVICE("shop"));
    expect(r.snapshot?.security).toBeUndefined();
  });

  it("accepts an opentelemetry provider beside the security fields without a warning (telemetry is acted on)", async () => {
    const r = await build(`
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: c, namespace: istio-system}
spec:
  jwks: {refreshInterval: 5m}
  peerCertificate: {principal: SHA256_FINGERPRINT}
  extensionProviders:
  - name: otel
    opentelemetry: {endpoint: "https://otel.example"}
`);
    expect(warnings(r.problems).map((p) => p.field)).toEqual([]);
    expect(r.snapshot?.telemetry?.providers.map((p) => p.name)).toEqual(["otel"]);
  });
});

describe("PeerAuthentication order", () => {
  it("keeps the oldest mesh-wide policy, breaking a creation-time tie by name as Istio does (not by file order)", async () => {
    const pa = (name: string, mode: string) => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ${name}, namespace: istio-system, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {mtls: {mode: ${mode}}}`;
    const r = await build(`${SERVICE("a")}
---
${pa("zeta", "STRICT")}
---
${pa("alpha", "DISABLE")}
`);
    expect(warnings(r.problems).map((p) => `${p.resource}: ${p.message}`)).toContainEqual(expect.stringMatching(/^PeerAuthentication\/istio-system\/zeta: ignored: PeerAuthentication\/istio-system\/alpha is the older mesh-wide/));
  });
});

describe("ports", () => {
  it("warns that a port other than 80 or 443 never matches at the edge (the listener's port, not the Host header's)", async () => {
    const r = await build(`${SERVICE("a")}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ports, namespace: a}
spec:
  rules:
  - to: [{operation: {ports: ["443", "8443"]}}]
    when: [{key: destination.port, values: ["80", "9090"]}]
`);
    expect(warnings(r.problems).map((p) => [p.field, p.message])).toEqual([
      ["spec.rules[0].to[0].operation.ports", expect.stringMatching(/listener's, 80 for http and 443 for https.*; 8443 is never one$/)],
      ["spec.rules[0].when[0].values", expect.stringMatching(/; 9090 is never one$/)],
    ]);
  });
});

describe("the edge mapping", () => {
  it("scopes namespace policies to services of that namespace and selector policies to matching endpoints", async () => {
    const r = await build(`${SERVICE("a")}
---
${SERVICE("b", "app: api")}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-a, namespace: a}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-only, namespace: b}
spec:
  selector: {matchLabels: {app: api}}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: unmatched, namespace: b}
spec:
  selector: {matchLabels: {app: nothing}}
  rules: [{}]
`);
    const sec = r.snapshot?.security;
    const layersOf = (cluster: string) => sec?.scopes[sec.clusterScopes[cluster] ?? 0]?.layers.map((l) => l.map((i) => sec.policies[i]?.source));
    expect(layersOf("outbound|80||web.a.internal")).toEqual([["AuthorizationPolicy/a/ns-a"]]);
    expect(layersOf("outbound|80||web.b.internal")).toEqual([["AuthorizationPolicy/b/api-only"]]);
    expect(warnings(r.problems).find((p) => p.resource === "AuthorizationPolicy/b/unmatched")?.message).toMatch(/selects no destination/);
  });

  it("treats a selector matching the gateway's labels as a gateway policy", async () => {
    const r = await build(`${SERVICE("a")}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-the-edge, namespace: istio-system}
spec:
  selector: {matchLabels: {app: istio-ingressgateway}}
  action: DENY
  rules: [{}]
`);
    expect(r.snapshot?.security?.scopes[0]?.layers).toEqual([[0]]);
    expect(warnings(r.problems)).toEqual([]);
  });

  it("supports targetRefs to a ServiceEntry or Service, and refuses selector together with targetRef", async () => {
    const r = await build(`${SERVICE("a")}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-ref, namespace: a}
spec:
  targetRefs: [{group: networking.istio.io, kind: ServiceEntry, name: web}]
  rules: [{}]
`);
    const sec = r.snapshot?.security;
    expect(sec?.clusterScopes["outbound|80||web.a.internal"]).toBeDefined();
    const both = await build(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: both, namespace: a}
spec:
  selector: {matchLabels: {app: web}}
  targetRef: {kind: Service, name: web}
`);
    expect(errors(both.problems)[0]).toMatchObject({ resource: "AuthorizationPolicy/a/both", field: "spec.selector", line: 6 });
  });

  describe("a policy selects the gateway only from the gateway's namespace or the root namespace (tenant isolation)", () => {
    const EDGE = `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: edge-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules: [{issuer: "https://a.example", jwksUri: "https://a.example/jwks"}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: edge-require-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
`;
    const gatewayLayer = (r: Awaited<ReturnType<typeof build>>) => {
      const sec = r.snapshot?.security;
      return { policies: (sec?.scopes[0]?.layers[0] ?? []).map((i) => sec?.policies[i]?.source), issuers: (sec?.scopes[0]?.jwtRules ?? []).map((i) => sec?.jwtRules[i]?.issuer) };
    };

    it("ignores, with a warning, another namespace's selector that copies the gateway's labels", async () => {
      const r = await build(`${SERVICE("team-b")}
---
${EDGE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tenant-open, namespace: team-b}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: tenant-idp, namespace: team-b}
spec:
  selector: {matchLabels: {app: istio-ingressgateway}}
  jwtRules: [{issuer: "https://b.example", jwksUri: "https://b.example/jwks"}]
`);
      expect(errors(r.problems)).toEqual([]);
      expect(gatewayLayer(r)).toEqual({ policies: ["AuthorizationPolicy/istio-system/edge-require-jwt"], issuers: ["https://a.example"] });
      const w = warnings(r.problems);
      expect(w).toEqual([
        expect.objectContaining({ resource: "AuthorizationPolicy/team-b/tenant-open", field: "spec.selector", message: expect.stringMatching(/^matches the gateway's labels, but the gateway runs in namespace istio-system .* a selector only selects workloads of its own namespace \(team-b\); it does not apply at the gateway .*it selects no destination either/) }),
        expect.objectContaining({ resource: "RequestAuthentication/team-b/tenant-idp", field: "spec.selector", message: expect.stringMatching(/^matches the gateway's labels/) }),
      ]);
    });

    it("applies a selector from the GatewayConfig's namespace at the gateway", async () => {
      const r = await build(`
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: c, namespace: edge}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: in-edge, namespace: edge}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/x"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: in-root, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/y"]}}]}]
`);
      expect(errors(r.problems)).toEqual([]);
      expect(gatewayLayer(r).policies).toEqual(["AuthorizationPolicy/edge/in-edge", "AuthorizationPolicy/istio-system/in-root"]);
    });

    it("attaches a Gateway targetRef only to a served Gateway of the policy's own namespace", async () => {
      const r = await build(`${EDGE}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shared, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: own, namespace: team-b}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["team-b/*"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tenant-deny, namespace: team-b}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: whatever}, {kind: Gateway, name: shared}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/x"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-class, namespace: team-b}
spec:
  targetRef: {kind: GatewayClass, name: istio}
  action: DENY
  rules: [{to: [{operation: {paths: ["/y"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: own-gateway, namespace: team-b}
spec:
  targetRef: {kind: Gateway, name: own}
  action: DENY
  rules: [{to: [{operation: {paths: ["/z"]}}]}]
`);
      expect(errors(r.problems)).toEqual([]);
      expect(gatewayLayer(r).policies).toEqual(["AuthorizationPolicy/istio-system/edge-require-jwt", "AuthorizationPolicy/team-b/own-gateway"]);
      expect(warnings(r.problems).map((p) => [p.resource, p.field, p.message])).toEqual([
        ["AuthorizationPolicy/team-b/tenant-deny", "spec.targetRefs[0].name", expect.stringMatching(/^expected a Gateway of namespace team-b that the edge serves, got "whatever"/)],
        ["AuthorizationPolicy/team-b/tenant-deny", "spec.targetRefs[1].name", expect.stringMatching(/got "shared"/)],
        ["AuthorizationPolicy/team-b/by-class", "spec.targetRef.kind", expect.stringMatching(/only applies from the root namespace/)],
      ]);
    });
  });

  it("composes PeerAuthentication modes mesh → namespace → workload → port", async () => {
    const r = await build(`${SERVICE("a")}
---
${SERVICE("b")}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ns, namespace: a}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: workload, namespace: b}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: DISABLE}
`);
    const sec = r.snapshot?.security;
    const mode = (cluster: string) => sec?.scopes[sec.clusterScopes[cluster] ?? 0]?.peerMode;
    expect(sec?.scopes[0]?.peerMode).toBe("STRICT");
    expect(mode("outbound|80||web.a.internal")).toBe("PERMISSIVE");
    expect(mode("outbound|80||web.b.internal")).toBe("DISABLE");
  });

  it("warns that a mesh-wide STRICT policy asks every edge client for a certificate, unless annotated as meant", async () => {
    const mesh = (annotations = "") => `${SERVICE("a")}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system${annotations}}
spec: {mtls: {mode: STRICT}}
`;
    const plain = await build(mesh());
    expect(warnings(plain.problems)).toEqual([
      expect.objectContaining({ resource: "PeerAuthentication/istio-system/default", field: "spec.mtls.mode", message: expect.stringMatching(/^mesh-wide STRICT: every request to the edge needs a verified client certificate .* an Istio ingress gateway's clients are not affected by it\. Annotate isthmus\.dev\/edge-client-certificates: "required" if that is meant/) }),
    ]);
    expect(plain.snapshot?.security?.scopes[0]?.peerMode).toBe("STRICT");
    const meant = await build(mesh(`, annotations: {isthmus.dev/edge-client-certificates: required}`));
    expect(meant.problems).toEqual([]);
    const wrong = await build(mesh(`, annotations: {isthmus.dev/edge-client-certificates: "yes"}`));
    expect(errors(wrong.problems)).toEqual([expect.objectContaining({ field: 'metadata.annotations["isthmus.dev/edge-client-certificates"]', message: 'expected "required", got "yes"' })]);
    // A namespace's STRICT is about its own services: no warning.
    const namespaced = await build(mesh().replace("namespace: istio-system", "namespace: a"));
    expect(warnings(namespaced.problems)).toEqual([]);
  });
});

describe("errors name the file, line, resource and field", () => {
  const cases: [string, string, string, RegExp][] = [
    [
      "a CUSTOM policy with an unknown provider",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  action: CUSTOM
  provider: {name: nope}
  rules: [{}]`,
      "spec.provider.name",
      /envoyExtAuthzHttp extensionProviders.*"nope"/,
    ],
    [
      "a provider on a non-CUSTOM policy",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  provider: {name: x}`,
      "spec.provider",
      /only allowed with action CUSTOM/,
    ],
    [
      "a bad CIDR",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/40"]}}]`,
      "spec.rules[0].from[0].source.ipBlocks",
      /IP address or CIDR/,
    ],
    [
      "a bad port",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - to: [{operation: {ports: ["http"]}}]`,
      "spec.rules[0].to[0].operation.ports",
      /port number/,
    ],
    [
      "an invalid path template",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - to: [{operation: {paths: ["/{**}/x/{*}"]}}]`,
      "spec.rules[0].to[0].operation.paths",
      /last operator/,
    ],
    [
      "an unknown condition key",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - when: [{key: request.user, values: ["x"]}]`,
      "spec.rules[0].when[0].key",
      /unknown attribute "request.user"/,
    ],
    [
      "an empty from (Istio: `from` must not be empty)",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from: []`,
      "spec.rules[0].from",
      /expected at least one source/,
    ],
    [
      "a from entry without a source",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from: [{}]`,
      "spec.rules[0].from[0]",
      /expected a source/,
    ],
    [
      "a source whose only field is an empty list (it would match every request)",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from: [{source: {requestPrincipals: []}}]`,
      "spec.rules[0].from[0].source",
      /empty source: it would match every request/,
    ],
    [
      "an empty to",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - to: []`,
      "spec.rules[0].to",
      /expected at least one operation/,
    ],
    [
      "an operation whose only field is an empty list",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - to: [{operation: {paths: []}}]`,
      "spec.rules[0].to[0].operation",
      /empty operation: it would match every request/,
    ],
    [
      "an empty operation",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - to: [{operation: {}}]`,
      "spec.rules[0].to[0].operation",
      /empty operation/,
    ],
    [
      "an empty value in an operation (Istio's CheckEmptyValues)",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - to: [{operation: {paths: [""]}}]`,
      "spec.rules[0].to[0].operation.paths",
      /expected a non-empty value, got ""/,
    ],
    [
      "an empty value in a source",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from: [{source: {notRequestPrincipals: ["a/b", ""]}}]`,
      "spec.rules[0].from[0].source.requestPrincipals",
      /non-empty value/,
    ],
    [
      "an empty value in a condition",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - when: [{key: "request.headers[x-team]", values: [""]}]`,
      "spec.rules[0].when[0].values",
      /non-empty value/,
    ],
    [
      "an istio.io/dry-run value that is not a boolean",
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: ns
  annotations: {istio.io/dry-run: "yes"}
spec:
  rules: [{}]`,
      'metadata.annotations["istio.io/dry-run"]',
      /expected a boolean \(1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False, as Istio parses it\), got "yes"/,
    ],
    [
      "portLevelMtls without a selector",
      `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p, namespace: ns}
spec:
  portLevelMtls: {"8080": {mode: STRICT}}`,
      "spec.portLevelMtls",
      /requires a selector/,
    ],
    [
      "an inline JWKS that is not JSON",
      `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r, namespace: ns}
spec:
  jwtRules: [{issuer: x, jwks: "{not json"}]`,
      "spec.jwtRules[0].jwks",
      /JSON Web Key Set/,
    ],
    [
      "an inline JWKS with an empty HMAC secret",
      `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r, namespace: ns}
spec:
  jwtRules: [{issuer: x, jwks: '{"keys":[{"kty":"oct","k":""}]}'}]`,
      "spec.jwtRules[0].jwks",
      /empty secret/,
    ],
    [
      "keys by OIDC discovery from an issuer that is not a URL",
      `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: r, namespace: ns}
spec:
  jwtRules: [{issuer: my-issuer}]`,
      "spec.jwtRules[0].issuer",
      /OIDC discovery/,
    ],
    [
      "an authorizer that is not a ServiceEntry host",
      `apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: c, namespace: istio-system}
spec:
  extensionProviders:
  - name: ext
    envoyExtAuthzHttp: {service: authz.nowhere, port: 9000}`,
      "spec.extensionProviders[0].envoyExtAuthzHttp.service",
      /ServiceEntry host/,
    ],
  ];
  for (const [name, yaml, field, message] of cases) {
    it(name, async () => {
      const r = await build(yaml);
      const e = errors(r.problems);
      expect(e.length, JSON.stringify(r.problems)).toBeGreaterThan(0);
      expect(e[0]).toMatchObject({ file: "security.yaml", field });
      expect(e[0]?.line).toBeGreaterThan(0);
      expect(e[0]?.message).toMatch(message);
      expect(r.snapshot).toBeUndefined();
    });
  }

  it("warns that an ALLOW rule using destination.ip is dropped, and a DENY condition using it is dropped", async () => {
    const r = await build(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: ns}
spec:
  rules:
  - when: [{key: destination.ip, values: ["10.0.0.1"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: d, namespace: ns}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/x"]}}]
    when: [{key: destination.ip, values: ["10.0.0.1"]}]
`);
    expect(errors(r.problems)).toEqual([]);
    const sec = r.snapshot?.security;
    expect(sec?.policies[0]?.rules).toEqual([]);
    expect(sec?.policies[1]?.rules[0]?.when).toEqual([]);
    expect(warnings(r.problems).map((p) => p.message).join("\n")).toMatch(/ALLOW rule is dropped[\s\S]*condition is dropped/);
  });

  it("reads istio.io/dry-run as Istio does (strconv.ParseBool)", async () => {
    const values = ["true", "True", "TRUE", "t", "T", "1", "false", "False", "FALSE", "f", "F", "0"];
    const r = await build(
      values
        .map(
          (v, i) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p${i}
  namespace: ns
  annotations: {istio.io/dry-run: "${v}"}
spec:
  rules: [{to: [{operation: {paths: ["/x"]}}]}]`,
        )
        .join("\n---\n"),
    );
    expect(errors(r.problems)).toEqual([]);
    expect(r.snapshot?.security?.policies.map((p) => p.dryRun)).toEqual(values.map((_, i) => i < 6));
  });

  it("warns that a lower-case method never matches (methods are case-sensitive, §7.20)", async () => {
    const r = await build(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: lower, namespace: ns}
spec:
  rules:
  - to: [{operation: {methods: ["get", "POST", "*"]}}]
`);
    expect(errors(r.problems)).toEqual([]);
    expect(warnings(r.problems)).toEqual([
      expect.objectContaining({
        file: "security.yaml",
        resource: "AuthorizationPolicy/ns/lower",
        field: "spec.rules[0].to[0].operation.methods",
        message: 'methods are case-sensitive and HTTP methods are upper case; "get" never matches a standard method',
      }),
    ]);
  });
});
