/**
 * AuthorizationPolicy → PolicyDef, following Istio's model
 * (pilot/pkg/security/authz/model): a rule is (any from) AND (any to) AND
 * (every when); inside a source or operation the fields are ANDed; a field
 * with values and notValues requires a value match and no notValue match.
 *
 * Values are validated here (CIDRs, ports, path templates, condition keys)
 * so nothing is parsed per request. Attributes the edge cannot know
 * (`destination.ip`, `experimental.envoy.filters.*`) are handled as Istio
 * handles unusable attributes: an ALLOW rule using one is dropped (a
 * narrower allow), a DENY/AUDIT/CUSTOM condition using one is dropped (a
 * wider deny).
 */
import type { PolicyAttribute, PolicyCheckDef, PolicyDef, PolicyRuleDef } from "../snapshot.ts";
import type { Rule } from "../schema/security.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { check, conditionCheck, isUnusable, MESH_IDENTITY, operationChecks, validateValues } from "./policy-checks.ts";

type Action = PolicyDef["action"];

const DRY_RUN = "istio.io/dry-run";

/** Go's strconv.ParseBool spellings: Istio reads the dry-run annotation with it, and its validation rejects any other value. */
const PARSE_BOOL: Readonly<Record<string, boolean>> = {
  "1": true, t: true, T: true, TRUE: true, true: true, True: true,
  "0": false, f: false, F: false, FALSE: false, false: false, False: false,
};

class Unusable extends Error {}

/** Compiles one AuthorizationPolicy; undefined when it has errors or is ignored. */
export function compileAuthorizationPolicy(ap: Resource<"AuthorizationPolicy">, providers: ReadonlySet<string>, diag: Diagnostics): PolicyDef | undefined {
  const action: Action = ap.spec.action ?? "ALLOW";
  const errorsBefore = diag.problems.filter((p) => p.severity === "error").length;
  const dryRun = dryRunOf(ap, diag);
  const def: PolicyDef = { source: ap.id, action, dryRun, rules: [] };

  if (action === "CUSTOM") {
    const name = ap.spec.provider?.name;
    if (!name) diag.error(ap, ["spec", "provider"], "expected provider.name: a CUSTOM policy names an ext-authz extensionProvider of GatewayConfig");
    else if (!providers.has(name)) {
      diag.error(ap, ["spec", "provider", "name"], `expected one of the envoyExtAuthzHttp extensionProviders in GatewayConfig (${[...providers].join(", ") || "none defined"}), got "${name}"`);
    } else def.provider = name;
    if (dryRun) {
      diag.warn(ap, ["metadata", "annotations"], "istio.io/dry-run is not supported for CUSTOM policies (as in Istio); this policy is ignored");
      return undefined;
    }
  } else if (ap.spec.provider) {
    diag.error(ap, ["spec", "provider"], `provider is only allowed with action CUSTOM (action is ${action})`);
  }

  ap.spec.rules?.forEach((rule, i) => {
    try {
      def.rules.push(compileRule(ap, rule, ["spec", "rules", i], action, diag));
    } catch (e) {
      if (!(e instanceof Unusable)) throw e;
      diag.warn(ap, ["spec", "rules", i], `${e.message}; as in Istio, this ALLOW rule is dropped (it allows nothing)`);
    }
  });
  const errorsAfter = diag.problems.filter((p) => p.severity === "error").length;
  return errorsAfter > errorsBefore ? undefined : def;
}

/**
 * The `istio.io/dry-run` annotation, read as Istio reads it (strconv.ParseBool);
 * any other value is an error, as Istio's validation makes it.
 *
 * @example
 * dryRunOf(policyAnnotated("True"), diag); // true
 * dryRunOf(policyAnnotated("yes"), diag);  // false, and an error naming the annotation
 */
export function dryRunOf(ap: Resource<"AuthorizationPolicy">, diag: Diagnostics): boolean {
  const value = ap.metadata.annotations?.[DRY_RUN];
  if (value === undefined) return false;
  if (Object.hasOwn(PARSE_BOOL, value)) return PARSE_BOOL[value] as boolean;
  diag.error(ap, ["metadata", "annotations", DRY_RUN], `expected a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False, as Istio parses it), got "${value}"`);
  return false;
}

/**
 * Istio's validation of a rule's shape (ValidateAuthorizationPolicy): a
 * `from` or `to` that is present must list something, and each source or
 * operation must set a field with values. Each of these would otherwise
 * match every request, turning an ALLOW into allow-all. (An empty list
 * counts as absent, as in the proto, so `paths: []` alone is empty.)
 */
function checkRuleShape(ap: Resource<"AuthorizationPolicy">, rule: Rule, at: FieldPath, diag: Diagnostics): void {
  const hasValues = (fields: object) => Object.values(fields).some((v) => Array.isArray(v) && v.length > 0);
  if (rule.from?.length === 0) diag.error(ap, [...at, "from"], "expected at least one source (Istio rejects an empty from; leave it out to match any source)");
  rule.from?.forEach((f, i) => {
    if (!f.source) diag.error(ap, [...at, "from", i], "expected a source (Istio rejects a from entry without one)");
    else if (!hasValues(f.source)) diag.error(ap, [...at, "from", i, "source"], "expected at least one field with values (Istio rejects an empty source: it would match every request)");
  });
  if (rule.to?.length === 0) diag.error(ap, [...at, "to"], "expected at least one operation (Istio rejects an empty to; leave it out to match any operation)");
  rule.to?.forEach((t, i) => {
    if (!t.operation) diag.error(ap, [...at, "to", i], "expected an operation (Istio rejects a to entry without one)");
    else if (!hasValues(t.operation)) diag.error(ap, [...at, "to", i, "operation"], "expected at least one field with values (Istio rejects an empty operation: it would match every request)");
  });
}

function compileRule(ap: Resource<"AuthorizationPolicy">, rule: Rule, at: FieldPath, action: Action, diag: Diagnostics): PolicyRuleDef {
  checkRuleShape(ap, rule, at, diag);
  const when: PolicyCheckDef[] = [];
  rule.when?.forEach((c, i) => {
    const path = [...at, "when", i];
    const check = whenCheck(ap, c.key, c.values, c.notValues, path, action, diag);
    if (check) when.push(check);
  });
  const from: PolicyCheckDef[][] = (rule.from ?? []).map((f, i) => {
    const s = f.source ?? {};
    const path = [...at, "from", i, "source"];
    if (s.serviceAccounts?.length || s.notServiceAccounts?.length) {
      if (s.principals?.length || s.notPrincipals?.length || s.namespaces?.length || s.notNamespaces?.length) {
        diag.error(ap, [...path, "serviceAccounts"], "serviceAccounts cannot be combined with principals or namespaces (Istio rejects it)");
      }
    }
    const checks: PolicyCheckDef[] = [];
    const add = (attribute: PolicyAttribute, values: string[] | undefined, notValues: string[] | undefined, field: string, extra: Partial<PolicyCheckDef> = {}) => {
      const c = check(attribute, values, notValues, extra);
      if (!c) return;
      validateValues(ap, attribute, c, [...path, field], diag);
      checks.push(c);
    };
    add("source.principal", s.principals, s.notPrincipals, "principals");
    add("request.auth.principal", s.requestPrincipals, s.notRequestPrincipals, "requestPrincipals");
    add("source.namespace", s.namespaces, s.notNamespaces, "namespaces");
    add("source.serviceAccount", s.serviceAccounts, s.notServiceAccounts, "serviceAccounts", { namespace: ap.namespace });
    add("remote.ip", s.remoteIpBlocks, s.notRemoteIpBlocks, "remoteIpBlocks");
    add("source.ip", s.ipBlocks, s.notIpBlocks, "ipBlocks");
    if (s.namespaces?.length || s.notNamespaces?.length || s.serviceAccounts?.length || s.notServiceAccounts?.length) {
      diag.warn(ap, path, `namespaces/serviceAccounts ${MESH_IDENTITY}`);
    }
    return checks;
  });
  const to: PolicyCheckDef[][] = (rule.to ?? []).map((t, i) => operationChecks(ap, t.operation ?? {}, [...at, "to", i, "operation"], diag));
  return { from, to, when };
}

/** A `when` condition → a check; undefined when the condition is dropped. Throws Unusable for ALLOW rules. */
function whenCheck(ap: Resource<"AuthorizationPolicy">, key: string, values: string[] | undefined, notValues: string[] | undefined, path: FieldPath, action: Action, diag: Diagnostics): PolicyCheckDef | undefined {
  const c = conditionCheck(ap, key, values, notValues, path, diag);
  if (!isUnusable(c)) return c;
  if (action === "ALLOW") throw new Unusable(c.unusable);
  diag.warn(ap, [...path, "key"], `${c.unusable}; as in Istio for unusable attributes, this condition is dropped (the ${action} rule matches more)`);
  return undefined;
}
