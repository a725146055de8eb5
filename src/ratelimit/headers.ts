/**
 * Rate-limit response fields:
 *
 * - IETF (draft-ietf-httpapi-ratelimit-headers): one item per limit,
 *   `RateLimit-Policy: "<name>";q=<requests>;w=<window s>` and
 *   `RateLimit: "<name>";r=<remaining>;t=<s until the next token>`;
 * - DRAFT_VERSION_03 (Envoy's `x-ratelimit-*`): for the limit closest to
 *   exhaustion, `X-RateLimit-Limit: <burst>, <q>;w=<w>, …` (the bucket's
 *   max_tokens first, as Envoy's local rate limit states it, then every
 *   limit's quota policy), `X-RateLimit-Remaining`, `X-RateLimit-Reset`;
 * - and on a 429, always `Retry-After` (RFC 9110) and
 *   `x-envoy-ratelimited: true`, as Envoy's rate limit filters send.
 *
 * Quotas are stated over whole seconds (`quota`). Reset times are the
 * seconds until the next token, rounded up, so a client that waits that
 * long finds one. Envoy's local rate limit states 0 while a token is left
 * and, once empty, one token's interval rounded down (its
 * `resetSeconds` divides whole milliseconds before it rounds up): 0 for
 * any limit above one a second, which would send clients back at once.
 */
import type { LimitDef } from "../config/snapshot.ts";
import type { RuleDecision } from "./decide.ts";

/** Fields for a 429: `limiting` are the enforced decisions that refused the request. */
export function limitedHeaders(decisions: readonly RuleDecision[], limiting: readonly RuleDecision[]): Record<string, string> {
  let retryMs = 0;
  for (const d of limiting) retryMs = Math.max(retryMs, d.grant?.retryAfterMs ?? 0);
  const headers: Record<string, string> = { "retry-after": String(Math.max(1, Math.ceil(retryMs / 1000))), "x-envoy-ratelimited": "true" };
  Object.assign(headers, quotaHeaders(decisions.filter((d) => d.rule.def.mode === "ENFORCE")));
  for (const d of limiting) for (const [name, value] of d.rule.def.headers.onLimited ?? []) headers[name] = value;
  return headers;
}

/**
 * Fields for an admitted request: only rules whose policy asks for them
 * (`responseHeaders.onAllowed`); undefined when none does.
 */
export function allowedHeaders(decisions: readonly RuleDecision[]): Record<string, string> | undefined {
  const asking = decisions.filter(asksOnAllowed);
  if (asking.length === 0) return undefined;
  const headers = quotaHeaders(asking);
  return Object.keys(headers).length > 0 ? headers : undefined;
}

function asksOnAllowed(d: RuleDecision): boolean {
  return d.rule.def.mode === "ENFORCE" && d.rule.def.headers.onAllowed;
}

interface Item {
  name: string;
  limit: LimitDef;
  remaining: number;
  resetS: number;
}

function quotaHeaders(decisions: readonly RuleDecision[]): Record<string, string> {
  const ietf: Item[] = [];
  const draft: Item[] = [];
  for (const d of decisions) {
    const grant = d.grant;
    if (!grant || d.rule.def.headers.format === "NONE") continue;
    const items = d.limits.map((limit, i): Item => ({
      name: d.policyNames[i] ?? d.rule.def.name,
      limit,
      remaining: (grant.remaining[i] ?? 0) + (d.held ?? 0),
      resetS: Math.ceil((grant.resetMs[i] ?? 0) / 1000),
    }));
    (d.rule.def.headers.format === "IETF" ? ietf : draft).push(...items);
  }
  const out: Record<string, string> = {};
  if (ietf.length > 0) {
    out["ratelimit-policy"] = ietf.map((it) => `${sfString(it.name)};${quotaPolicy(it.limit, "q=")}`).join(", ");
    out.ratelimit = ietf.map((it) => `${sfString(it.name)};r=${it.remaining};t=${it.resetS}`).join(", ");
  }
  if (draft.length > 0) {
    let closest = draft[0] as Item;
    for (const it of draft) {
      if (it.remaining < closest.remaining || (it.remaining === closest.remaining && it.resetS > closest.resetS)) closest = it;
    }
    out["x-ratelimit-limit"] = [String(closest.limit.burst), ...draft.map((it) => quotaPolicy(it.limit, ""))].join(", ");
    out["x-ratelimit-remaining"] = String(closest.remaining);
    out["x-ratelimit-reset"] = String(closest.resetS);
  }
  return out;
}

/** `<q>;w=<w>` (IETF: `q=<q>;w=<w>`, with `prefix` "q="). */
function quotaPolicy(limit: LimitDef, prefix: string): string {
  const { q, w } = quota(limit);
  return `${prefix}${q};w=${w}`;
}

/**
 * Quota and window as whole numbers: a window of whole seconds as it is;
 * any other (an EnvoyFilter fill_interval of 1.5s or 100ms) rounded up to
 * whole seconds, at least 1, with the whole tokens that refill in it (at
 * least `requests`, never 0): 1 per 1.5 s is stated as 1 per 2 s, 2 per
 * 500 ms as 4 per 1 s. A client keeping to it stays within the limit.
 */
function quota(limit: LimitDef): { q: number; w: number } {
  if (limit.windowMs % 1000 === 0) return { q: limit.requests, w: limit.windowMs / 1000 };
  const w = Math.max(1, Math.ceil(limit.windowMs / 1000));
  return { q: Math.floor((limit.requests * w * 1000) / limit.windowMs + 1e-9), w };
}

/** A Structured Field string (RFC 8941 §3.3.3). */
function sfString(s: string): string {
  return `"${s.replace(/[^\x20-\x7e]/g, "?").replace(/["\\]/g, (c) => `\\${c}`)}"`;
}
