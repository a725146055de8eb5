/**
 * A denial's response_code_details names the rule as Istio names it in
 * Envoy's RBAC configuration (`ns[..]-policy[..]-rule[i]`), so access-log
 * queries written for an Istio gateway keep working.
 */
import { describe, expect, it } from "vitest";
import { runPipeline } from "../../../src/gateway/pipeline.ts";
import { rbacPolicyName } from "../../../src/authz/policy/engine.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { doc, pipelineDeps, snapshotOf, virtualService } from "../support.ts";

describe("response_code_details of an authorization denial", () => {
  it("names the DENY policy's matching rule as Istio does, and none when no ALLOW policy matched", async () => {
    const runtime = hydrate(
      await snapshotOf(
        virtualService("v", ["app.test", "locked.test"], [{ directResponse: { status: 200 } }], {}, "istio-system"),
        doc("AuthorizationPolicy", "no-admin", { action: "DENY", rules: [{ to: [{ operation: { paths: ["/debug"] } }] }, { to: [{ operation: { paths: ["/admin"] } }] }] }, "istio-system"),
        doc("AuthorizationPolicy", "only-get", { action: "ALLOW", rules: [{ to: [{ operation: { hosts: ["app.test"] } }] }] }, "istio-system"),
      ),
    );
    const deps = pipelineDeps();
    const details = async (url: string) => {
      const r = await runPipeline(new Request(url), runtime, deps);
      return [r.response.status, r.record.details, r.record.authz?.deniedBy];
    };
    expect(await details("http://app.test/admin")).toEqual([403, "rbac_access_denied_matched_policy[ns[istio-system]-policy[no-admin]-rule[1]]", "AuthorizationPolicy/istio-system/no-admin"]);
    expect(await details("http://locked.test/x")).toEqual([403, "rbac_access_denied_matched_policy[none]", "no ALLOW policy matched"]);
    expect(rbacPolicyName("AuthorizationPolicy/shop/p", 0)).toBe("ns[shop]-policy[p]-rule[0]");
  });
});
