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
import { parseCidr } from "../../authz/policy/cidr.ts";
import { isPathTemplate, pathTemplateProblem } from "../../authz/policy/path-template.ts";

type Action = PolicyDef["action"];

const MESH_IDENTITY =
  "matches mesh (SPIFFE) identities; the edge identifies clients by their certificate (subject DN or SHA-256 fingerprint), which contains no namespace or service account, so this only matches if that principal does";

class Unusable extends Error {}

/** Compiles one AuthorizationPolicy; undefined when it has errors or is ignored. */
export function compileAuthorizationPolicy(ap: Resource<"AuthorizationPolicy">, providers: ReadonlySet<string>, diag: Diagnostics): PolicyDef | undefined {
  const action: Action = ap.spec.action ?? "ALLOW";
  const dryRun = ap.metadata.annotations?.["istio.io/dry-run"] === "true";
  const errorsBefore = diag.problems.filter((p) => p.severity === "error").length;
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

function compileRule(ap: Resource<"AuthorizationPolicy">, rule: Rule, at: FieldPath, action: Action, diag: Diagnostics): PolicyRuleDef {
  const when: PolicyCheckDef[] = [];
  rule.when?.forEach((c, i) => {
    const path = [...at, "when", i];
    const check = conditionCheck(ap, c.key, c.values, c.notValues, path, action, diag);
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
  const to: PolicyCheckDef[][] = (rule.to ?? []).map((t, i) => {
    const o = t.operation ?? {};
    const path = [...at, "to", i, "operation"];
    const checks: PolicyCheckDef[] = [];
    const add = (attribute: PolicyAttribute, values: string[] | undefined, notValues: string[] | undefined, field: string) => {
      const c = check(attribute, values, notValues);
      if (!c) return;
      validateValues(ap, attribute, c, [...path, field], diag);
      checks.push(c);
    };
    add("request.host", o.hosts, o.notHosts, "hosts");
    add("request.method", o.methods, o.notMethods, "methods");
    add("request.path", o.paths, o.notPaths, "paths");
    add("destination.port", o.ports, o.notPorts, "ports");
    return checks;
  });
  return { from, to, when };
}

function check(attribute: PolicyAttribute, values: string[] | undefined, notValues: string[] | undefined, extra: Partial<PolicyCheckDef> = {}): PolicyCheckDef | undefined {
  if (!values?.length && !notValues?.length) return undefined;
  const c: PolicyCheckDef = { attribute, ...extra };
  if (values?.length) c.values = values;
  if (notValues?.length) c.notValues = notValues;
  return c;
}

/** A `when` condition → a check; undefined when the condition is dropped. Throws Unusable for ALLOW rules. */
function conditionCheck(
  ap: Resource<"AuthorizationPolicy">,
  key: string,
  values: string[] | undefined,
  notValues: string[] | undefined,
  path: FieldPath,
  action: Action,
  diag: Diagnostics,
): PolicyCheckDef | undefined {
  const simple: Record<string, PolicyAttribute> = {
    "source.ip": "source.ip",
    "remote.ip": "remote.ip",
    "source.namespace": "source.namespace",
    "source.principal": "source.principal",
    "source.serviceAccount": "source.serviceAccount",
    "request.auth.principal": "request.auth.principal",
    "request.auth.audiences": "request.auth.audiences",
    "request.auth.presenter": "request.auth.presenter",
    "destination.port": "destination.port",
    "connection.sni": "connection.sni",
  };
  let c: PolicyCheckDef | undefined;
  const attribute = simple[key];
  if (attribute) {
    c = check(attribute, values, notValues, attribute === "source.serviceAccount" ? { namespace: ap.namespace } : {});
    if (attribute === "source.namespace" || attribute === "source.serviceAccount") diag.warn(ap, [...path, "key"], `${key} ${MESH_IDENTITY}`);
  } else if (key.startsWith("request.headers")) {
    const names = bracketed(key.slice("request.headers".length));
    if (!names || names.length !== 1) {
      diag.error(ap, [...path, "key"], `expected request.headers[<header name>], got "${key}"`);
      return undefined;
    }
    c = check("request.headers", values, notValues, { key: (names[0] as string).toLowerCase() });
  } else if (key.startsWith("request.auth.claims")) {
    const names = bracketed(key.slice("request.auth.claims".length));
    if (!names) {
      diag.error(ap, [...path, "key"], `expected request.auth.claims[<claim>] (nested: request.auth.claims[<a>][<b>]), got "${key}"`);
      return undefined;
    }
    c = check("request.auth.claims", values, notValues, { key: names });
  } else if (key === "destination.ip" || key.startsWith("experimental.envoy.filters.")) {
    const reason = `${key} is not known at the edge (a Worker sees neither the address the client connected to nor Envoy filter metadata)`;
    if (action === "ALLOW") throw new Unusable(reason);
    diag.warn(ap, [...path, "key"], `${reason}; as in Istio for unusable attributes, this condition is dropped (the ${action} rule matches more)`);
    return undefined;
  } else {
    diag.error(
      ap,
      [...path, "key"],
      `unknown attribute "${key}"; expected one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.ip, destination.port, connection.sni`,
    );
    return undefined;
  }
  if (c) validateValues(ap, c.attribute, c, [...path, "values"], diag);
  return c;
}

/** `[a][b]` → ["a", "b"]; undefined when malformed. */
function bracketed(text: string): string[] | undefined {
  const out: string[] = [];
  let rest = text;
  while (rest.length > 0) {
    const m = /^\[([^\][]+)\]/.exec(rest);
    if (!m) return undefined;
    out.push(m[1] as string);
    rest = rest.slice(m[0].length);
  }
  return out.length > 0 ? out : undefined;
}

function validateValues(ap: Resource<"AuthorizationPolicy">, attribute: PolicyAttribute, c: PolicyCheckDef, path: FieldPath, diag: Diagnostics): void {
  const all = [...(c.values ?? []), ...(c.notValues ?? [])];
  for (const v of all) {
    switch (attribute) {
      case "source.ip":
      case "remote.ip":
        if (!parseCidr(v)) diag.error(ap, path, `expected an IP address or CIDR range, got "${v}"`);
        break;
      case "destination.port":
        if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) diag.error(ap, path, `expected a port number (0-65535), got "${v}"`);
        break;
      case "request.path":
        if (isPathTemplate(v)) {
          const problem = pathTemplateProblem(v);
          if (problem) diag.error(ap, path, `invalid path template "${v}": ${problem}`);
        } else if (v.includes("{") || v.includes("}")) {
          diag.error(ap, path, `invalid path "${v}": { and } are only allowed in the {*} and {**} template operators`);
        }
        break;
      case "request.method":
        if (v !== v.toUpperCase() && !v.includes("*")) diag.warn(ap, path, `methods are case-sensitive and HTTP methods are upper case; "${v}" never matches a standard method`);
        break;
      default:
        break;
    }
  }
}
