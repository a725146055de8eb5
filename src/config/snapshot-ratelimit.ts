/**
 * The rate-limit part of the Snapshot: RateLimitPolicy rules (and
 * local_ratelimit filters translated from EnvoyFilter), already resolved
 * against the clusters of the same snapshot. Plain JSON; the Worker
 * hydrates it once per isolate (src/ratelimit/hydrate.ts).
 *
 * Which rules apply to a request is decided at compile time with the edge
 * mapping the security kinds use (docs/CONFIG.md): scope 0 holds the rules
 * that apply to every request; a cluster whose traffic has more rules has
 * its own scope.
 */
import type { PolicyCheckDef } from "./snapshot-security.ts";

/** A token bucket: `requests` tokens per `windowMs`, holding at most `burst`. */
export interface LimitDef {
  requests: number;
  windowMs: number;
  /** Bucket capacity (and initial fill); 0 only when `requests` is 0 (block everything). */
  burst: number;
}

/** What a key part reads from the request. */
export type KeyAttribute =
  | "remote.ip"
  | "request.headers"
  | "request.auth.principal"
  | "request.auth.claims"
  | "request.host"
  | "request.method"
  | "request.path"
  | "route";

export interface KeyPartDef {
  attribute: KeyAttribute;
  /** Header name (lower case) for `request.headers`; claim path for `request.auth.claims`. */
  key?: string | string[];
}

/** Other limits for keys whose part `part` matches one of `values` (Istio value forms). */
export interface OverrideDef {
  part: number;
  values: string[];
  limits: LimitDef[];
}

export type RateLimitHeaderFormat = "NONE" | "IETF" | "DRAFT_VERSION_03";

export interface RateLimitRuleDef {
  /** `RateLimitPolicy/<ns>/<name>` (or `EnvoyFilter/<ns>/<name>`). */
  source: string;
  /** The rule's name: the quota policy name clients see in RateLimit-Policy. */
  name: string;
  /**
   * `<ns>/<policy>/<rule>` (`EnvoyFilter/<ns>/<name>/configPatches[<i>]` for
   * a translated patch): part of every bucket's identity (renaming a rule
   * starts new buckets). Unique in a snapshot and free of control
   * characters (compile refuses both).
   */
  id: string;
  /** The request must match every check (hosts, methods, paths, ports, routes). */
  match: PolicyCheckDef[];
  /** And every condition. */
  when: PolicyCheckDef[];
  /**
   * Not where every check of one of these lists holds: the routes (hosts) an
   * EnvoyFilter configures its local rate limit for itself, where Envoy's
   * more specific configuration replaces this one. Absent: none.
   */
  unless?: PolicyCheckDef[][];
  /** The parts of the key the rule counts by; none: one bucket for every request the rule covers. */
  key: KeyPartDef[];
  missingKey: "SKIP" | "SHARED";
  limits: LimitDef[];
  overrides: OverrideDef[];
  scope: "GLOBAL" | "LOCAL";
  mode: "ENFORCE" | "SHADOW";
  failureMode: "OPEN" | "CLOSED";
  timeoutMs: number;
  algorithm: "TOKEN_BUCKET" | "GCRA";
  lease?: { size: number; ttlMs: number };
  headers: {
    format: RateLimitHeaderFormat;
    onAllowed: boolean;
    /** Added to this rule's 429 responses (Envoy `response_headers_to_add`). */
    onLimited?: [name: string, value: string][];
  };
}

export interface RateLimitDef {
  rules: RateLimitRuleDef[];
  /** Rule indexes per scope, in evaluation order; scope 0 applies to every request. */
  scopes: number[][];
  /** Cluster name → scope index, for clusters whose scope is not scope 0. */
  clusterScopes: Record<string, number>;
}
