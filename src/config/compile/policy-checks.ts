/**
 * The AuthorizationPolicy vocabulary, compiled into PolicyCheckDefs: the
 * operation fields (hosts, ports, methods, paths and their `not` forms)
 * and the `when` conditions (request.headers[x], remote.ip,
 * request.auth.claims[...], ...). Shared by AuthorizationPolicy and
 * RateLimitPolicy, so both read requests with the same words and the same
 * value checks; each decides what to do with an attribute the edge cannot
 * know (see `Unusable`).
 */
import { isRequestHeaderName } from "../../gateway/request-header.ts";
import type { PolicyAttribute, PolicyCheckDef } from "../snapshot.ts";
import type { AnyResource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { parseCidr } from "../../authz/policy/cidr.ts";
import { isPathTemplate, pathTemplateProblem } from "../../authz/policy/path-template.ts";

/** Why a port other than 80 or 443 never matches at the edge (RequestFacts.port). */
export const LISTENER_PORTS_NOTE =
  "at the edge a request's port is the listener's, 80 for http and 443 for https, whatever port its Host header names";

export const MESH_IDENTITY =
  "matches mesh (SPIFFE) identities; the edge identifies clients by their certificate (subject DN or SHA-256 fingerprint), which contains no namespace or service account, so this only matches if that principal does";

/** A condition on an attribute the edge cannot know; the caller decides (drop the rule, drop the condition, refuse). */
export interface Unusable {
  unusable: string;
}

/** The operation fields of AuthorizationPolicy (`to[].operation`), also RateLimitPolicy's `match`. */
export interface OperationFields {
  hosts?: string[] | undefined;
  notHosts?: string[] | undefined;
  ports?: string[] | undefined;
  notPorts?: string[] | undefined;
  methods?: string[] | undefined;
  notMethods?: string[] | undefined;
  paths?: string[] | undefined;
  notPaths?: string[] | undefined;
}

/** One field with values and/or notValues → a check; undefined when both are empty. */
export function check(attribute: PolicyAttribute, values: string[] | undefined, notValues: string[] | undefined, extra: Partial<PolicyCheckDef> = {}): PolicyCheckDef | undefined {
  if (!values?.length && !notValues?.length) return undefined;
  const c: PolicyCheckDef = { attribute, ...extra };
  if (values?.length) c.values = values;
  if (notValues?.length) c.notValues = notValues;
  return c;
}

/** The checks of one operation, ANDed: hosts, methods, paths, ports. */
export function operationChecks(resource: AnyResource, o: OperationFields, path: FieldPath, diag: Diagnostics): PolicyCheckDef[] {
  const checks: PolicyCheckDef[] = [];
  const add = (attribute: PolicyAttribute, values: string[] | undefined, notValues: string[] | undefined, field: string) => {
    const c = check(attribute, values, notValues);
    if (!c) return;
    validateValues(resource, attribute, c, [...path, field], diag);
    checks.push(c);
  };
  add("request.host", o.hosts, o.notHosts, "hosts");
  add("request.method", o.methods, o.notMethods, "methods");
  add("request.path", o.paths, o.notPaths, "paths");
  add("destination.port", o.ports, o.notPorts, "ports");
  return checks;
}

const SIMPLE_CONDITIONS: Record<string, PolicyAttribute> = {
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

/**
 * A `when` condition → a check. Undefined when the condition is in error
 * (reported) or has no values; `{unusable}` for an attribute the edge
 * cannot know (`destination.ip`, `experimental.envoy.filters.*`).
 */
export function conditionCheck(
  resource: AnyResource,
  key: string,
  values: string[] | undefined,
  notValues: string[] | undefined,
  path: FieldPath,
  diag: Diagnostics,
): PolicyCheckDef | Unusable | undefined {
  let c: PolicyCheckDef | undefined;
  const attribute = SIMPLE_CONDITIONS[key];
  if (attribute) {
    c = check(attribute, values, notValues, attribute === "source.serviceAccount" ? { namespace: resource.namespace } : {});
    if (attribute === "source.namespace" || attribute === "source.serviceAccount") diag.warn(resource, [...path, "key"], `${key} ${MESH_IDENTITY}`);
  } else if (key.startsWith("request.headers")) {
    const names = bracketed(key.slice("request.headers".length));
    if (!names || names.length !== 1 || !isRequestHeaderName((names[0] as string).toLowerCase())) {
      diag.error(resource, [...path, "key"], `expected request.headers[<header name>] (an HTTP header name, or :authority, :path, :method or :scheme), got "${key}"`);
      return undefined;
    }
    c = check("request.headers", values, notValues, { key: (names[0] as string).toLowerCase() });
  } else if (key.startsWith("request.auth.claims")) {
    const names = bracketed(key.slice("request.auth.claims".length));
    if (!names) {
      diag.error(resource, [...path, "key"], `expected request.auth.claims[<claim>] (nested: request.auth.claims[<a>][<b>]), got "${key}"`);
      return undefined;
    }
    c = check("request.auth.claims", values, notValues, { key: names });
  } else if (key === "destination.ip" || key.startsWith("experimental.envoy.filters.")) {
    return { unusable: `${key} is not known at the edge (a Worker sees neither the address the client connected to nor Envoy filter metadata)` };
  } else {
    diag.error(
      resource,
      [...path, "key"],
      `unknown attribute "${key}"; expected one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.ip, destination.port, connection.sni`,
    );
    return undefined;
  }
  if (c) validateValues(resource, c.attribute, c, [...path, "values"], diag);
  return c;
}

export function isUnusable(c: PolicyCheckDef | Unusable | undefined): c is Unusable {
  return c !== undefined && "unusable" in c;
}

/** `[a][b]` → ["a", "b"]; undefined when malformed. */
export function bracketed(text: string): string[] | undefined {
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

/** Checks the values of one field now, so nothing is parsed per request. */
export function validateValues(resource: AnyResource, attribute: PolicyAttribute, c: PolicyCheckDef, path: FieldPath, diag: Diagnostics): void {
  const all = [...(c.values ?? []), ...(c.notValues ?? [])];
  for (const v of all) {
    // Istio's CheckEmptyValues: an empty value is a mistake (a dropped variable, a stray `""`), never a pattern.
    if (v === "") {
      diag.error(resource, path, 'expected a non-empty value, got "" (Istio rejects empty values)');
      continue;
    }
    switch (attribute) {
      case "source.ip":
      case "remote.ip":
        if (!parseCidr(v)) diag.error(resource, path, `expected an IP address or CIDR range, got "${v}"`);
        break;
      case "destination.port":
        if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) diag.error(resource, path, `expected a port number (0-65535), got "${v}"`);
        else if (v !== "80" && v !== "443") diag.warn(resource, path, `${LISTENER_PORTS_NOTE}; ${v} is never one`);
        break;
      case "request.path":
        if (isPathTemplate(v)) {
          const problem = pathTemplateProblem(v);
          if (problem) diag.error(resource, path, `invalid path template "${v}": ${problem}`);
        } else if (v.includes("{") || v.includes("}")) {
          diag.error(resource, path, `invalid path "${v}": { and } are only allowed in the {*} and {**} template operators`);
        }
        break;
      case "request.method":
        if (v !== v.toUpperCase() && !v.includes("*")) diag.warn(resource, path, `methods are case-sensitive and HTTP methods are upper case; "${v}" never matches a standard method`);
        break;
      default:
        break;
    }
  }
}
