/**
 * RateLimitPolicy compile: defaults, the problems a user sees (file:line,
 * resource, field), and which traffic each rule applies to.
 */
import { describe, expect, it } from "vitest";
import { build, doc, errors, lines, serviceEntry, snapshotOf, virtualService, warnings } from "../support.ts";

const policy = (spec: Record<string, unknown>, namespace = "istio-system", name = "limits") => doc("RateLimitPolicy", name, spec, namespace);
const rule = (extra: Record<string, unknown> = {}) => ({ name: "r", limits: [{ requests: 10, unit: "minute" }], ...extra });

describe("RateLimitPolicy compile", () => {
  it("fills in every default", async () => {
    const snapshot = await snapshotOf(policy({ rules: [rule()] }));
    expect(snapshot.rateLimits).toEqual({
      rules: [
        {
          source: "RateLimitPolicy/istio-system/limits",
          name: "r",
          id: "istio-system/limits/r",
          match: [],
          when: [],
          key: [],
          missingKey: "SKIP",
          limits: [{ requests: 10, windowMs: 60_000, burst: 10 }],
          overrides: [],
          scope: "GLOBAL",
          mode: "ENFORCE",
          failureMode: "OPEN",
          timeoutMs: 250,
          algorithm: "TOKEN_BUCKET",
          headers: { format: "IETF", onAllowed: false },
        },
      ],
      scopes: [[0]],
      clusterScopes: {},
    });
  });

  it("compiles match, when, key parts, overrides and leases", async () => {
    const snapshot = await snapshotOf(
      virtualService("v", ["a.test"], [{ name: "orders", directResponse: { status: 200 } }]),
      policy({
        responseHeaders: { format: "DRAFT_VERSION_03", onAllowed: true },
        rules: [
          rule({
            match: { hosts: ["a.test"], routes: ["orders"], methods: ["POST"], notPaths: ["/health"], ports: ["443"] },
            when: [{ key: "request.auth.claims[plan]", values: ["free"] }],
            key: ["remote.ip", "request.headers[X-Api-Key]", "request.auth.claims[org][id]", "request.auth.principal", "request.host", "route"],
            missingKey: "SHARED",
            limits: [{ requests: 100, unit: "second", burst: 200 }, { requests: 10_000, unit: "day" }],
            overrides: [{ part: "request.headers[X-Api-Key]", values: ["gold-*"], limits: [{ requests: 1000, unit: "second" }] }],
            algorithm: "GCRA",
            lease: { size: 20, ttl: "500ms" },
            decisionTimeout: "50ms",
            failureMode: "CLOSED",
            mode: "SHADOW",
          }),
        ],
      }),
    );
    const r = snapshot.rateLimits?.rules[0];
    expect(r?.match).toEqual([
      { attribute: "request.hostname", values: ["a.test"] },
      { attribute: "request.method", values: ["POST"] },
      { attribute: "request.path", notValues: ["/health"] },
      { attribute: "destination.port", values: ["443"] },
      { attribute: "route.name", values: ["orders"] },
    ]);
    expect(r?.when).toEqual([{ attribute: "request.auth.claims", key: ["plan"], values: ["free"] }]);
    expect(r?.key).toEqual([
      { attribute: "remote.ip" },
      { attribute: "request.headers", key: "x-api-key" },
      { attribute: "request.auth.claims", key: ["org", "id"] },
      { attribute: "request.auth.principal" },
      { attribute: "request.host" },
      { attribute: "route" },
    ]);
    expect(r?.limits).toEqual([{ requests: 100, windowMs: 1000, burst: 200 }, { requests: 10_000, windowMs: 86_400_000, burst: 10_000 }]);
    expect(r?.overrides).toEqual([{ part: 1, values: ["gold-*"], limits: [{ requests: 1000, windowMs: 1000, burst: 1000 }] }]);
    expect([r?.missingKey, r?.algorithm, r?.lease, r?.timeoutMs, r?.failureMode, r?.mode, r?.headers]).toEqual([
      "SHARED",
      "GCRA",
      { size: 20, ttlMs: 500 },
      50,
      "CLOSED",
      "SHADOW",
      { format: "DRAFT_VERSION_03", onAllowed: true },
    ]);
  });

  it("reports each mistake on its field", async () => {
    const result = await build(
      policy({
        rules: [
          rule({ key: ["request.cookies[session]", "request.headers[]"] }),
          rule({ name: "when", when: [{ key: "destination.ip", values: ["10.0.0.1"] }, { key: "request.colour", values: ["red"] }] }),
          rule({ name: "zero", limits: [{ requests: 0, unit: "hour", burst: 5 }] }),
          rule({ name: "local-lease", scope: "LOCAL", lease: {} }),
          rule({ name: "big-lease", lease: { size: 11 } }),
          rule({ name: "ttl", lease: { ttl: "2m" } }),
          rule({ name: "overrides", overrides: [{ values: ["x"], limits: [{ requests: 1, unit: "second" }] }] }),
          rule({ name: "part", key: ["remote.ip"], overrides: [{ part: "route", values: ["x"], limits: [{ requests: 1, unit: "second" }] }] }),
          rule({ name: "timeout", decisionTimeout: "1m" }),
          rule({ name: "values", match: { paths: ["/a/{x}"], ports: ["http"] }, when: [{ key: "remote.ip", values: ["not-an-ip"] }] }),
          rule(),
        ],
      }),
    );
    const at = "RateLimitPolicy/istio-system/limits: spec.rules";
    expect(errors(result).map((e) => e.replace(/^config\.yaml:\d+: error: /, ""))).toEqual([
      `${at}[0].key[0]: unknown key part "request.cookies[session]"; expected one of remote.ip, request.headers[<name>] (a header name, or :authority, :path, :method or :scheme), request.auth.principal, request.auth.claims[<claim>] (nested: [<a>][<b>]), request.host, request.method, request.path, route`,
      `${at}[0].key[1]: unknown key part "request.headers[]"; expected one of remote.ip, request.headers[<name>] (a header name, or :authority, :path, :method or :scheme), request.auth.principal, request.auth.claims[<claim>] (nested: [<a>][<b>]), request.host, request.method, request.path, route`,
      `${at}[1].when[0].key: destination.ip is not known at the edge (a Worker sees neither the address the client connected to nor Envoy filter metadata); a rate limit cannot depend on it`,
      `${at}[1].when[1].key: unknown attribute "request.colour"; expected one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.ip, destination.port, connection.sni`,
      `${at}[2].limits[0].burst: requests: 0 blocks every request; a burst has no meaning with it`,
      `${at}[3].lease: leases batch a GLOBAL rule's Durable Object calls; a LOCAL rule is already decided in the isolate`,
      `${at}[4].lease.size: expected at most the smallest burst (10): a lease cannot hold more tokens than the bucket`,
      `${at}[5].lease.ttl: expected a duration between 10ms and 60s`,
      `${at}[6].overrides[0]: overrides need a key: they give other limits to some values of a key part`,
      `${at}[7].overrides[0].part: expected one of this rule's key parts (remote.ip), got "route"`,
      `${at}[8].decisionTimeout: expected a duration between 1ms and 30s`,
      `${at}[9].match.paths: invalid path "/a/{x}": { and } are only allowed in the {*} and {**} template operators`,
      `${at}[9].match.ports: expected a port number (0-65535), got "http"`,
      `${at}[9].when[0].values: expected an IP address or CIDR range, got "not-an-ip"`,
      `${at}[10].name: duplicate rule name "r" (also spec.rules[0].name); rule names identify buckets and quota policies`,
    ]);
    expect(result.snapshot).toBeUndefined();
  });

  it("warns about settings that do nothing or may surprise", async () => {
    const result = await build(
      virtualService("v", ["a.test"], [{ name: "orders", directResponse: { status: 200 } }]),
      policy({
        rules: [
          rule({ match: { routes: ["order", "orders", "ord*"] } }),
          rule({ name: "local", scope: "LOCAL", failureMode: "CLOSED" }),
          rule({ name: "lease", lease: { size: 5 } }),
        ],
      }),
      policy({}, "istio-system", "empty"),
      policy({ selector: { matchLabels: { app: "nothing" } }, rules: [rule()] }, "shop", "nowhere"),
    );
    expect(warnings(result).map((w) => w.replace(/^config\.yaml:\d+: warning: /, ""))).toEqual([
      'RateLimitPolicy/istio-system/limits: spec.rules[0].match.routes: no route is named "order" (route names are VirtualService http[].name, plus "." and the match name when both are set)',
      "RateLimitPolicy/istio-system/limits: spec.rules[1].failureMode: has no effect on a LOCAL rule: it is decided in the isolate, which cannot fail or time out",
      "RateLimitPolicy/istio-system/limits: spec.rules[2].lease.size: each isolate may hold up to 5 tokens, more than a quarter of the smallest burst (10); other isolates may be refused while those tokens sit unused (see lease mode in docs/CONFIG.md)",
      "RateLimitPolicy/istio-system/empty: spec: has no rules; it limits nothing",
      "RateLimitPolicy/shop/nowhere: spec.selector: selects no destination (no ServiceEntry endpoint has these labels) and not the gateway (see GatewayConfig gatewayLabels); it has no effect at the edge",
    ]);
    expect(result.snapshot).toBeDefined();
  });

  it("gives EnvoyFilter rules ids no RateLimitPolicy rule of the same namespace and name can have", async () => {
    // The EnvoyFilter's patch and a policy rule named after it, both counting every request in one isolate bucket.
    const envoyFilter = `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: edge, namespace: istio-system}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          stat_prefix: edge
          token_bucket: {max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 1s}
          filter_enabled: {default_value: {numerator: 100}}
          filter_enforced: {default_value: {numerator: 100}}
`;
    const snapshot = await snapshotOf(envoyFilter, policy({ rules: [rule({ name: "configPatches[0]", scope: "LOCAL" })] }, "istio-system", "edge"));
    const ids = snapshot.rateLimits?.rules.map((r) => r.id);
    expect(ids).toEqual(["istio-system/edge/configPatches[0]", "EnvoyFilter/istio-system/edge/configPatches[0]"]);
  });

  it("refuses control characters in rule names, and a policy name that would give two rules one id: they name buckets", async () => {
    const result = await build(policy({ rules: [rule({ name: "b/c" }), rule({ name: "r\u0000" }), rule({ name: "line\nbreak" }), rule({ name: "del\u007f" })] }, "ns", "a"));
    expect(errors(result).map((e) => e.replace(/^config\.yaml:\d+: error: /, ""))).toEqual([
      'RateLimitPolicy/ns/a: spec.rules[1].name: expected a rule name without control characters, got "r\\u0000": the name is part of the bucket\'s identity and of response fields',
      'RateLimitPolicy/ns/a: spec.rules[2].name: expected a rule name without control characters, got "line\\nbreak": the name is part of the bucket\'s identity and of response fields',
      'RateLimitPolicy/ns/a: spec.rules[3].name: expected a rule name without control characters, got "del\\u007f": the name is part of the bucket\'s identity and of response fields',
    ]);
    expect(result.snapshot).toBeUndefined();
    // Policy "a/b"'s rule "c" would have the id of policy "a"'s rule "b/c" (ns/a/b/c): a Kubernetes name has no "/".
    const clash = await build(policy({ rules: [rule({ name: "b/c" })] }, "ns", "a"), policy({ rules: [rule({ name: "c" })] }, "ns", "a/b"));
    expect(errors(clash).map((e) => e.replace(/^config\.yaml:\d+: error: /, ""))).toEqual([
      'RateLimitPolicy/ns/a/b: metadata.name: expected a name of lowercase letters, digits, \'-\' and \'.\' (a DNS-1123 subdomain, starting and ending with a letter or digit), got "a/b"',
    ]);
  });

  it("maps policies onto traffic as the security kinds are: root namespace, namespace, selector, gateway selector", async () => {
    const origin = (name: string, ns: string, labels: Record<string, string>) =>
      serviceEntry(name, [`${name}.${ns}.internal`], { location: "MESH_INTERNAL", resolution: "STATIC", endpoints: [{ address: "10.0.0.1", labels }] }, ns);
    const snapshot = await snapshotOf(
      origin("cart", "shop", { app: "cart" }),
      origin("pay", "shop", { app: "pay" }),
      origin("blog", "web", { app: "blog" }),
      virtualService("v", ["edge.test"], ["cart.shop", "pay.shop", "blog.web"].map((h) => ({ match: [{ uri: { prefix: `/${h}` } }], route: [{ destination: { host: `${h}.internal` } }] }))),
      policy({ rules: [rule({ name: "everyone" })] }, "istio-system", "root"),
      policy({ rules: [rule({ name: "shop-wide" })] }, "shop", "ns"),
      policy({ selector: { matchLabels: { app: "pay" } }, rules: [rule({ name: "payments" })] }, "shop", "sel"),
      policy({ selector: { matchLabels: { istio: "ingressgateway" } }, rules: [rule({ name: "edge" })] }, "istio-system", "gw"),
    );
    const rl = snapshot.rateLimits!;
    const names = (scope: number) => rl.scopes[scope]?.map((i) => rl.rules[i]?.name);
    expect(names(0)).toEqual(["everyone", "edge"]);
    const scopeOf = (cluster: string) => rl.clusterScopes[cluster] ?? 0;
    expect(names(scopeOf("outbound|80||cart.shop.internal"))).toEqual(["everyone", "shop-wide", "edge"]);
    expect(names(scopeOf("outbound|80||pay.shop.internal"))).toEqual(["everyone", "shop-wide", "payments", "edge"]);
    expect(names(scopeOf("outbound|80||blog.web.internal"))).toEqual(["everyone", "edge"]);
    expect(lines(await build(policy({ rules: [rule()] })))).toEqual([]);
  });
});
