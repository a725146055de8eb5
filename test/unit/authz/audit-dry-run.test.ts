/**
 * AUDIT policies and `istio.io/dry-run` policies never change a verdict;
 * what they would have done is logged (one JSON line per request), which
 * is how an operator observes them. Through the real Worker entry.
 */
import { exports } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { applyConfig } from "../helpers/apply.ts";

const config = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: istio-system}
spec:
  hosts: [audit.test]
  http:
  - directResponse: {status: 200, body: {string: "ok"}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: istio-system}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny
  namespace: istio-system
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/secret"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-allow
  namespace: istio-system
  annotations: {istio.io/dry-run: "true"}
spec:
  rules:
  - to: [{operation: {paths: ["/public"]}}]
`;

beforeAll(async () => {
  await applyConfig(config, "http://audit.test/");
});
afterEach(() => vi.restoreAllMocks());

async function logged(path: string) {
  const log = vi.spyOn(console, "log");
  const res = await exports.default.fetch(`http://audit.test${path}`);
  const lines = log.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("authorization audit")).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: res.status, body: await res.text(), lines };
}

describe("AUDIT and dry-run policies", () => {
  it("AUDIT marks matching requests and lets them through", async () => {
    const r = await logged("/admin/users");
    expect(r.status).toBe(200);
    expect(r.lines[0]?.audit).toEqual(["AuthorizationPolicy/istio-system/audit-admin"]);
  });

  it("a dry-run DENY reports the denial it would have made, and does not make it", async () => {
    const r = await logged("/secret");
    expect(r.status).toBe(200);
    expect(r.lines[0]?.dryRun).toEqual({ deny: "denied by AuthorizationPolicy/istio-system/would-deny", allow: "denied" });
  });

  it("a dry-run ALLOW reports whether it would have allowed", async () => {
    const r = await logged("/public");
    expect(r.status).toBe(200);
    expect(r.lines[0]?.dryRun).toEqual({ deny: "allowed", allow: "allowed by AuthorizationPolicy/istio-system/would-allow" });
  });
});
