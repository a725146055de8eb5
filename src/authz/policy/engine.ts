/**
 * The AuthorizationPolicy engine, pure: compiled policies (built once per
 * snapshot) evaluated against the facts of one request. The decision
 * procedure is Istio's:
 *
 * 1. CUSTOM policies whose rules match send the request to their
 *    authorizer (done by the caller, which does the I/O);
 * 2. any matching DENY policy → 403 `RBAC: access denied`;
 * 3. a layer with ALLOW policies of which none matches → 403;
 * 4. otherwise allowed. AUDIT policies only mark; dry-run policies are
 *    evaluated in a shadow engine and never change the verdict.
 */
import { requestHeaderReader } from "../../gateway/request-header.ts";
import type { PolicyCheckDef, PolicyDef, PolicyRuleDef } from "../../config/snapshot.ts";
import type { RequestFacts } from "../../gateway/facts.ts";
import type { PeerIdentity, RequestIdentity } from "../identity.ts";
import { cidrContains, parseCidr, parseIp } from "./cidr.ts";
import { isPathTemplate, pathTemplateRegex } from "./path-template.ts";
import { anyOf, anyValue, istioValue, type ValueMatcher } from "./value-match.ts";

/** What a policy can read about a request. */
export interface PolicyInput {
  facts: RequestFacts;
  /** The verified peer, when the destination's PeerAuthentication mode lets it count. */
  peer?: PeerIdentity;
  identity?: RequestIdentity;
  /** The client IP as bytes, parsed at most once per request. */
  clientIp?: Uint8Array | null;
  /** The direct peer's IP as bytes, when it is not the client (trusted proxies in front), parsed at most once. */
  peerIp?: Uint8Array | null;
  /** The selected route's name (read by RateLimitPolicy `match.routes`). */
  route?: string;
}

/**
 * A PolicyInput with all its fields present from the start, so that every
 * input has one shape (see `newRecord` in gateway/context.ts for why).
 *
 * @example
 * const input = policyInput(facts, peer, facts.auth, undefined);
 */
export function policyInput(facts: RequestFacts, peer: PeerIdentity | undefined, identity: RequestIdentity | undefined, route: string | undefined): PolicyInput {
  return { facts, peer, identity, clientIp: undefined, peerIp: undefined, route };
}

export type Predicate = (input: PolicyInput) => boolean;

export interface Policy {
  def: PolicyDef;
  matches: Predicate;
  /** The index of the first rule that matches, -1 when none does (asked only to name a denial). */
  matchedRule: (input: PolicyInput) => number;
}

/** The verdict when a layer has ALLOW policies and none of them matches (Istio's step 3). */
export const NO_ALLOW_MATCHED = Symbol("no ALLOW policy matched");

/**
 * Istio's steps 2–4 over a request's policy layers: the first DENY policy
 * that matches, in layer order; else `NO_ALLOW_MATCHED` when some layer has
 * ALLOW policies and none of them matches; else undefined (allowed).
 *
 * @example
 * const outcome = verdict(scope.layers, input);
 * if (outcome !== undefined) deny(outcome === NO_ALLOW_MATCHED ? undefined : outcome.def.source);
 */
export function verdict(layers: readonly { deny: readonly Policy[]; allow: readonly Policy[] }[], input: PolicyInput): Policy | typeof NO_ALLOW_MATCHED | undefined {
  for (const layer of layers) {
    for (const policy of layer.deny) if (policy.matches(input)) return policy;
  }
  for (const layer of layers) {
    if (layer.allow.length > 0 && !some(layer.allow, input)) return NO_ALLOW_MATCHED;
  }
  return undefined;
}

/** Compiles a policy's rules; a policy without rules matches nothing. */
export function compilePolicy(def: PolicyDef): Policy {
  const rules = def.rules.map(compileRule);
  return { def, matches: rules.length === 0 ? never : anyPredicate(rules), matchedRule: (input) => rules.findIndex((r) => r(input)) };
}

/**
 * The name Istio gives a policy's rule in Envoy's RBAC configuration, which
 * a denial's `response_code_details` carries.
 *
 * @example
 * rbacPolicyName("AuthorizationPolicy/shop/no-admin", 1) // "ns[shop]-policy[no-admin]-rule[1]"
 */
export function rbacPolicyName(source: string, rule: number): string {
  const [, namespace = "", name = ""] = source.split("/");
  return `ns[${namespace}]-policy[${name}]-rule[${rule}]`;
}

function compileRule(def: PolicyRuleDef): Predicate {
  const all = (checks: PolicyCheckDef[]): Predicate => allPredicates(checks.map(compileCheck));
  const parts: Predicate[] = [];
  if (def.from.length > 0) parts.push(anyPredicate(def.from.map(all)));
  if (def.to.length > 0) parts.push(anyPredicate(def.to.map(all)));
  if (def.when.length > 0) parts.push(all(def.when));
  return allPredicates(parts);
}

// Plain loops over compiled predicates: a policy decision runs every DENY policy for every request.
const never: Predicate = () => false;
const always: Predicate = () => true;

function some(policies: readonly Policy[], input: PolicyInput): boolean {
  for (const policy of policies) if (policy.matches(input)) return true;
  return false;
}

function anyPredicate(predicates: readonly Predicate[]): Predicate {
  if (predicates.length === 1) return predicates[0] as Predicate;
  return (input) => {
    for (const p of predicates) if (p(input)) return true;
    return false;
  };
}

function allPredicates(predicates: readonly Predicate[]): Predicate {
  if (predicates.length === 0) return always;
  if (predicates.length === 1) return predicates[0] as Predicate;
  return (input) => {
    for (const p of predicates) if (!p(input)) return false;
    return true;
  };
}

/**
 * One field: some value matches (when `values` is set) and no notValue
 * matches (when `notValues` is set). An absent attribute matches nothing.
 */
export function compileCheck(def: PolicyCheckDef): Predicate {
  const test = attributeTest(def);
  const pos = def.values ? test(def.values) : undefined;
  const neg = def.notValues ? test(def.notValues) : undefined;
  // Most checks have only one side: use it without a wrapper (a predicate call each is what a decision costs).
  if (neg === undefined) return pos ?? always;
  if (pos === undefined) return (input) => !neg(input);
  return (input) => pos(input) && !neg(input);
}

type Test = (values: string[]) => Predicate;

function attributeTest(def: PolicyCheckDef): Test {
  switch (def.attribute) {
    case "source.principal":
      return strings((i) => i.peer?.principal);
    case "source.namespace":
      return (values) => {
        const res = values.map((v) => new RegExp(`^.*/ns/${globToRegex(v)}/.*$`));
        return (i) => {
          const p = i.peer?.principal;
          return p !== undefined && anyRegex(res, p);
        };
      };
    case "source.serviceAccount":
      return (values) => {
        const res = values.map((v) => {
          const [ns, sa] = v.includes("/") ? (v.split("/", 2) as [string, string]) : [def.namespace ?? "", v];
          return new RegExp(`^spiffe://.+/ns/${escape(ns)}/(.+/|)sa/${escape(sa)}(/.+)?$`);
        });
        return (i) => {
          const p = i.peer?.principal;
          return p !== undefined && anyRegex(res, p);
        };
      };
    case "source.ip":
    case "remote.ip": {
      // Istio: ipBlocks (source.ip) is the direct peer, remoteIpBlocks (remote.ip) the client that trusted
      // proxies report in X-Forwarded-For. Without trusted proxies both are the peer (CF-Connecting-IP on Cloudflare).
      const ipOf = def.attribute === "source.ip" ? peerIp : clientIp;
      return (values) => {
        const ranges = values.map((v) => parseCidr(v)).filter((c) => c !== undefined);
        return (i) => {
          const ip = ipOf(i);
          if (ip === null) return false;
          for (const r of ranges) if (cidrContains(r, ip)) return true;
          return false;
        };
      };
    }
    case "request.auth.principal":
      return (values) => {
        const ms = values.map(requestPrincipalMatcher);
        return (i) => {
          const identity = i.identity;
          if (identity === undefined) return false;
          for (const m of ms) if (m(identity)) return true;
          return false;
        };
      };
    case "request.auth.audiences":
      return list((i) => i.identity?.audiences);
    case "request.auth.presenter":
      return strings((i) => i.identity?.presenter);
    case "request.auth.claims": {
      const path = Array.isArray(def.key) ? def.key : [def.key ?? ""];
      return list((i) => claimValues(i.identity?.claims, path));
    }
    case "request.headers": {
      const read = requestHeaderReader(typeof def.key === "string" ? def.key : "");
      // Istio makes `*` on a header Envoy's present_match (matcher.HeaderMatcher): an empty value is present too,
      // where `*` on any other attribute needs a value (`.+`).
      return (values) => {
        const present = values.includes("*");
        const m = anyValue(values);
        return (i) => {
          const v = read(i.facts);
          return v !== undefined && (present || m(v));
        };
      };
    }
    case "request.host":
      return (values) => {
        const m = anyValue(values, true);
        return (i) => m(i.facts.authority);
      };
    case "request.hostname":
      return (values) => {
        const m = anyValue(values, true);
        // The authority first (a value with a port), then the host alone (any port).
        return (i) => m(i.facts.authority) || (i.facts.authority !== i.facts.host && m(i.facts.host));
      };
    case "request.method":
      return strings((i) => i.facts.method);
    case "request.path":
      return (values) => {
        const m = anyOf(
          values.map((v): ValueMatcher => {
            if (!isPathTemplate(v)) return istioValue(v);
            const re = pathTemplateRegex(v);
            return (p) => re.test(p);
          }),
        );
        return (i) => m(i.facts.path);
      };
    case "destination.port":
      return (values) => {
        const ports = new Set(values.map(Number));
        return (i) => ports.has(i.facts.port);
      };
    case "connection.sni":
      // Cloudflare routes a TLS request by its SNI, which is the host the request names.
      return strings((i) => (i.facts.scheme === "https" ? i.facts.host : undefined));
    case "route.name":
      return strings((i) => i.route);
  }
}

function strings(get: (i: PolicyInput) => string | undefined): Test {
  return (values) => {
    const m = anyValue(values);
    return (i) => {
      const v = get(i);
      return v !== undefined && m(v);
    };
  };
}

function anyRegex(res: readonly RegExp[], value: string): boolean {
  for (const r of res) if (r.test(value)) return true;
  return false;
}

/** A string attribute, or any element of a list attribute, matches. */
function list(get: (i: PolicyInput) => readonly unknown[] | undefined): Test {
  return (values) => {
    const m = anyValue(values);
    return (i) => {
      const vs = get(i);
      if (vs === undefined) return false;
      for (const v of vs) if (typeof v === "string" && m(v)) return true;
      return false;
    };
  };
}

/** A claim at a nested path as a list: a string claim is one element; numbers and booleans never match. */
function claimValues(claims: Record<string, unknown> | undefined, path: readonly string[]): readonly unknown[] | undefined {
  let node: unknown = claims;
  for (const key of path) {
    if (typeof node !== "object" || node === null || Array.isArray(node)) return undefined;
    if (!Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  if (typeof node === "string") return [node];
  if (Array.isArray(node)) return node;
  return undefined;
}

/**
 * Istio's requestPrincipals matcher: the value splits at its last `/` into
 * issuer and subject (issuers are URLs), `*` needs both non-empty, and a
 * leading or trailing `*` makes a suffix or prefix match on that side.
 */
export function requestPrincipalMatcher(value: string): (id: RequestIdentity) => boolean {
  const any: ValueMatcher = (v) => v.length > 0;
  const idx = value.lastIndexOf("/");
  const found = idx >= 0;
  const iss = found ? value.slice(0, idx) : value;
  const sub = found ? value.slice(idx + 1) : "";
  let matchIss: ValueMatcher;
  let matchSub: ValueMatcher;
  if (value === "*") {
    matchIss = any;
    matchSub = any;
  } else if (value.startsWith("*")) {
    if (found) {
      matchIss = iss === "*" ? any : (v) => v.endsWith(iss.slice(1));
      matchSub = (v) => v === sub;
    } else {
      matchIss = any;
      matchSub = (v) => v.endsWith(value.slice(1));
    }
  } else if (value.endsWith("*")) {
    if (found) {
      matchIss = (v) => v === iss;
      matchSub = sub === "*" ? any : (v) => v.startsWith(sub.slice(0, -1));
    } else {
      matchIss = (v) => v.startsWith(value.slice(0, -1));
      matchSub = any;
    }
  } else {
    matchIss = (v) => v === iss;
    matchSub = (v) => v === sub;
  }
  return (id) => id.iss !== undefined && id.sub !== undefined && matchIss(id.iss) && matchSub(id.sub);
}

function clientIp(input: PolicyInput): Uint8Array | null {
  if (input.clientIp === undefined) input.clientIp = parseIp(input.facts.remoteIp) ?? null;
  return input.clientIp;
}

function peerIp(input: PolicyInput): Uint8Array | null {
  const peer = input.facts.peerIp;
  if (peer === undefined) return clientIp(input);
  if (input.peerIp === undefined) input.peerIp = parseIp(peer) ?? null;
  return input.peerIp;
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

function globToRegex(s: string): string {
  return s.split("*").map(escape).join(".*");
}
