/**
 * RateLimitDef (plain JSON) → runtime rules, once per snapshot per
 * isolate: `match` and `when` compiled into the AuthorizationPolicy
 * engine's predicates, key parts into readers, overrides into value
 * matchers, and the quota policy names clients see in response headers.
 */
import type { LimitDef, RateLimitDef, RateLimitRuleDef } from "../config/snapshot.ts";
import { compileCheck, type PolicyInput, type Predicate } from "../authz/policy/engine.ts";
import { anyValue, type ValueMatcher } from "../authz/policy/value-match.ts";
import { keyReader, type KeyInput, type KeyReader, type KeyValues } from "./key.ts";

/** The limits a key is counted under, with what the request path needs about them precomputed. */
export interface LimitSet {
  limits: LimitDef[];
  /** One quota policy name per limit (`name`, or `name.i` when there are several). */
  policyNames: string[];
  /** Identifies the limits (remembered refusals are keyed by it, so a configuration change is seen at once). */
  signature: string;
}

export interface RuntimeRule {
  def: RateLimitRuleDef;
  /** `match` and `when` both hold. */
  applies: Predicate;
  readers: KeyReader[];
  /** The rule's own limits. */
  base: LimitSet;
  overrides: { part: number; matches: ValueMatcher; set: LimitSet }[];
}

export interface RuntimeRateLimits {
  def: RateLimitDef;
  rules: RuntimeRule[];
  /** Scope 0: every request. */
  gateway: RuntimeRule[];
  clusterScopes: Map<string, RuntimeRule[]>;
}

export function hydrateRateLimits(def: RateLimitDef): RuntimeRateLimits {
  const rules = def.rules.map(hydrateRule);
  const scopes = def.scopes.map((s) => s.map((i) => rules[i] as RuntimeRule));
  return {
    def,
    rules,
    gateway: scopes[0] ?? [],
    clusterScopes: new Map(Object.entries(def.clusterScopes).map(([name, i]) => [name, scopes[i] ?? []])),
  };
}

function hydrateRule(def: RateLimitRuleDef): RuntimeRule {
  const checks = [...def.match, ...def.when].map(compileCheck);
  const holds: Predicate = checks.length === 0 ? () => true : (input) => checks.every((c) => c(input));
  const replaced = (def.unless ?? []).map((list) => list.map(compileCheck));
  const applies: Predicate = replaced.length === 0 ? holds : (input) => holds(input) && !replaced.some((list) => list.every((c) => c(input)));
  return {
    def,
    applies,
    readers: def.key.map(keyReader),
    base: limitSet(def.name, def.limits),
    overrides: def.overrides.map((o) => ({ part: o.part, matches: anyValue(o.values), set: limitSet(def.name, o.limits) })),
  };
}

function limitSet(name: string, limits: LimitDef[]): LimitSet {
  return { limits, policyNames: limits.length === 1 ? [name] : limits.map((_, i) => `${name}.${i}`), signature: JSON.stringify(limits) };
}

/** The rules for a request routed to `cluster` (or to no cluster). */
export function rulesFor(rl: RuntimeRateLimits, cluster: string | undefined): RuntimeRule[] {
  return (cluster !== undefined ? rl.clusterScopes.get(cluster) : undefined) ?? rl.gateway;
}

/** The key values of a request, or undefined when the rule skips it (a part is missing under `missingKey: SKIP`). */
export function keyOf(rule: RuntimeRule, input: KeyInput): KeyValues | undefined {
  const values: KeyValues = [];
  for (const read of rule.readers) {
    const v = read(input);
    if (v === undefined) {
      if (rule.def.missingKey === "SKIP") return undefined;
      values.push(null);
    } else values.push(v);
  }
  return values;
}

/** The limits for a key: the first override whose part matches, else the rule's. */
export function limitsFor(rule: RuntimeRule, values: KeyValues): LimitSet {
  for (const o of rule.overrides) {
    const v = values[o.part];
    if (typeof v === "string" && o.matches(v)) return o.set;
  }
  return rule.base;
}

export type { PolicyInput };
