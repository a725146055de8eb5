/**
 * CORS as Envoy's cors filter does it (§1.12): preflights for an allowed
 * origin are answered at the edge; actual requests from an allowed origin
 * get the origin echoed back (never `*`) and no `Vary: Origin`.
 */
import type { CorsDef } from "../config/snapshot.ts";
import { matchesString } from "./match.ts";

export interface Cors {
  def: CorsDef;
  /** An origin match that accepts the literal `*` allows every origin. */
  allowAll: boolean;
}

export function hydrateCors(def: CorsDef): Cors {
  return { def, allowAll: def.allowOrigins.some((m) => matchesString(m, "*")) };
}

export type CorsDecision =
  | { type: "none" }
  /** Answer the preflight at the edge with these headers (status 200). */
  | { type: "preflight"; headers: Record<string, string> }
  /** Add these headers to whatever response the request gets. */
  | { type: "actual"; headers: Record<string, string> };

/** Decides what CORS does for a request (method and headers as received). */
export function decideCors(cors: Cors, method: string, headers: Headers): CorsDecision {
  const origin = headers.get("origin");
  if (!origin) return { type: "none" };
  const allowed = cors.allowAll || cors.def.allowOrigins.some((m) => matchesString(m, origin));
  const requestedMethod = headers.get("access-control-request-method");
  const preflight = method === "OPTIONS" && !!requestedMethod;
  const d = cors.def;
  if (preflight) {
    if (!allowed && d.unmatchedPreflights !== "IGNORE") return { type: "none" };
    // Envoy's cors_filter answers an unmatched preflight it does not forward with every header but
    // Access-Control-Allow-Origin (credentials, methods, headers, max age), so the browser still refuses it.
    const out: Record<string, string> = allowed ? { "access-control-allow-origin": origin } : {};
    if (d.allowCredentials) out["access-control-allow-credentials"] = "true";
    if (d.allowMethods) out["access-control-allow-methods"] = d.allowMethods === "*" ? requestedMethod : d.allowMethods;
    if (d.allowHeaders) {
      const requested = headers.get("access-control-request-headers");
      if (d.allowHeaders !== "*") out["access-control-allow-headers"] = d.allowHeaders;
      else if (requested) out["access-control-allow-headers"] = requested;
    }
    if (d.maxAge !== undefined) out["access-control-max-age"] = d.maxAge;
    return { type: "preflight", headers: out };
  }
  if (!allowed) return { type: "none" };
  const out: Record<string, string> = { "access-control-allow-origin": origin };
  if (d.allowCredentials) out["access-control-allow-credentials"] = "true";
  if (d.exposeHeaders) out["access-control-expose-headers"] = d.exposeHeaders;
  return { type: "actual", headers: out };
}
