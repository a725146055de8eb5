/**
 * Stage 8 of the pipeline: rate limiting, after authorization (so keys can
 * use the verified identity and the destination is known) and before
 * fault injection and the route's actions.
 *
 * 1. The rules of the request's scope (gateway rules, plus those of the
 *    destination cluster) whose `match` and `when` hold, and whose key the
 *    request has (or counts under the shared bucket).
 * 2. LOCAL rules first, in the isolate: a cheap pre-filter. When an
 *    enforced one refuses, no Durable Object is asked.
 * 3. GLOBAL rules, in parallel, each through its key's Durable Object.
 * 4. Any enforced refusal → 429 `local_rate_limited` (flag RL) with
 *    Retry-After and the quota fields; otherwise a GLOBAL decision that
 *    failed closed → 500 (flag RLSE, Envoy's failure_mode_deny); otherwise
 *    the request goes on, and quota fields are added to its response when
 *    the policy asks for them.
 *
 * Every decision is recorded on the request record; shadow refusals are
 * also logged.
 */
import { localReply, type PipelineResult, type RequestContext } from "../gateway/context.ts";
import { REPLIES } from "../gateway/local-reply.ts";
import { policyInput } from "../authz/policy/engine.ts";
import { decideGlobal, decideLocal, rateLimitEnv, type RateLimitEnv, type RateLimitRecord, type RuleDecision } from "./decide.ts";
import { allowedHeaders, limitedHeaders } from "./headers.ts";
import { keyOf, limitsFor, rulesFor, type LimitSet, type RuntimeRule } from "./hydrate.ts";
import { bucketName, localBucketKey, type KeyValues } from "./key.ts";
import type { LimitDef } from "../config/snapshot.ts";
import { endStage, startStage } from "../telemetry/record.ts";

interface Pending {
  rule: RuntimeRule;
  values: KeyValues;
  set: LimitSet;
}

export function limitRate(ctx: RequestContext): PipelineResult | undefined | Promise<PipelineResult | undefined> {
  const rl = ctx.snapshot.rateLimits;
  if (!rl) return undefined;
  const { facts, record } = ctx;
  const rules = rulesFor(rl, ctx.destination?.cluster);
  if (rules.length === 0) return undefined;

  const input = policyInput(facts, record.peerPrincipal ? facts.peer : undefined, facts.auth, record.routeName);
  const keyInput = { facts, route: record.routeName };

  const pending: Pending[] = [];
  for (const rule of rules) {
    if (!rule.applies(input)) continue;
    const values = keyOf(rule, keyInput);
    if (!values) continue;
    pending.push({ rule, values, set: limitsFor(rule, values) });
  }
  if (pending.length === 0) return undefined;
  return decide(ctx, pending);
}

/** The decisions for the rules that apply (GLOBAL ones ask their objects), and the refusal or the response headers. */
async function decide(ctx: RequestContext, pending: Pending[]): Promise<PipelineResult | undefined> {
  const { record } = ctx;
  const start = startStage(ctx);
  const env = rateLimitState(ctx);
  const decisions: RuleDecision[] = [];
  const named = bucketNames(pending);
  const names = named instanceof Promise ? await named : named;

  const now = ctx.deps.now();
  const global: number[] = [];
  pending.forEach((p, i) => {
    if (blocksAll(p.set.limits)) {
      decisions.push(ruleDecision(p, { outcome: p.rule.def.mode === "SHADOW" ? "shadow-limited" : "limited", source: "config", grant: blockedGrant(p.set.limits) }));
    } else if (p.rule.def.scope === "LOCAL") {
      decisions.push(ruleDecision(p, decideLocal(p.rule, names[i] as string, p.set, env, now)));
    } else {
      global.push(i);
    }
  });

  if (global.length > 0 && !decisions.some(refuses)) {
    const ask = (i: number) => decideGlobal((pending[i] as Pending).rule, names[i] as string, (pending[i] as Pending).set, env, ctx.deps.now, ctx.waitUntil);
    // One GLOBAL rule (the usual case) is awaited alone, without a function of its own around it; several are asked in parallel.
    if (global.length === 1) decisions.push(ruleDecision(pending[global[0] as number] as Pending, await ask(global[0] as number)));
    else {
      const made = await Promise.all(global.map(ask));
      made.forEach((m, j) => decisions.push(ruleDecision(pending[global[j] as number] as Pending, m)));
    }
  }

  for (const d of decisions) env.decisions[d.source]++;
  report(ctx, decisions);
  const limiting = decisions.filter(refuses);
  const failedClosed = decisions.some((d) => d.outcome === "failed-closed");
  endStage(ctx, "rate_limit", start, () => ({
    "isthmus.ratelimit.result": limiting.length > 0 ? "limited" : failedClosed ? "failed-closed" : "allowed",
    "isthmus.ratelimit.decisions": decisions.length,
    "isthmus.ratelimit.object_calls": decisions.filter((d) => d.source === "object").length,
  }));
  if (limiting.length > 0) return localReply({ ...REPLIES.rateLimited, headers: limitedHeaders(decisions, limiting) }, record);
  if (failedClosed) return localReply(REPLIES.rateLimitServiceError, record);

  const headers = allowedHeaders(decisions);
  if (headers) {
    ctx.responseHooks.push((response) => {
      for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
    });
  }
  return undefined;
}

/**
 * A decision with every field present, whatever made it: objects built by
 * spreading gain their properties one by one, through map transitions a
 * major GC can free, which deoptimizes the code that saw them (see
 * `newRecord` in gateway/context.ts).
 */
function ruleDecision(p: Pending, made: Pick<RuleDecision, "outcome" | "source" | "grant" | "held" | "error">): RuleDecision {
  return { rule: p.rule, limits: p.set.limits, policyNames: p.set.policyNames, outcome: made.outcome, source: made.source, grant: made.grant, held: made.held, error: made.error };
}

/** Every pending rule's bucket name; a promise only when one must still be hashed (bucketName remembers them). */
function bucketNames(pending: readonly Pending[]): string[] | Promise<string[]> {
  const names = pending.map(bucketOf);
  return names.every((n): n is string => typeof n === "string") ? names : Promise.all(names);
}

/** The bucket's name: the object name for GLOBAL rules, the isolate map key for LOCAL ones (none for `requests: 0`). */
function bucketOf(p: Pending): string | Promise<string> {
  if (blocksAll(p.set.limits)) return "";
  return p.rule.def.scope === "LOCAL" ? localBucketKey(p.rule.def.id, p.values) : bucketName(p.rule.def.id, p.values);
}

function refuses(d: RuleDecision): boolean {
  return d.outcome === "limited";
}

/** `requests: 0` refuses everything without asking anyone. */
function blocksAll(limits: readonly LimitDef[]): boolean {
  return limits.some((l) => l.requests === 0);
}

function blockedGrant(limits: readonly LimitDef[]) {
  const retryAfterMs = Math.max(...limits.map((l) => l.windowMs));
  return { granted: 0, remaining: limits.map(() => 0), resetMs: limits.map((l) => l.windowMs), retryAfterMs, wantReadyMs: retryAfterMs };
}

/** Records every decision; logs shadow refusals and failed decisions. */
function report(ctx: RequestContext, decisions: readonly RuleDecision[]): void {
  const records = decisions.map(
    (d): RateLimitRecord => ({
      rule: d.rule.def.id,
      scope: d.rule.def.scope,
      mode: d.rule.def.mode,
      outcome: d.outcome,
      source: d.source,
      remaining: d.grant ? Math.min(...d.grant.remaining) + (d.held ?? 0) : undefined,
      error: d.error || undefined,
    }),
  );
  if (ctx.record.rateLimit) ctx.record.rateLimit.push(...records);
  else ctx.record.rateLimit = records;
  const { facts } = ctx;
  for (const r of records) {
    if (r.outcome === "shadow-limited") {
      console.log(JSON.stringify({ message: "isthmus: rate limit (shadow)", rule: r.rule, outcome: r.outcome, host: facts.authority, path: facts.path }));
    } else if (r.error) {
      console.error(JSON.stringify({ message: "isthmus: rate limit decision failed", rule: r.rule, outcome: r.outcome, error: r.error }));
    }
  }
}

const fallbackState = new WeakMap<object, RateLimitEnv>();

/** The isolate's state: from the deps (the Worker sets it with its binding), else one per deps object, without a binding. */
function rateLimitState(ctx: RequestContext): RateLimitEnv {
  const deps = ctx.deps;
  if (deps.rateLimits) return deps.rateLimits;
  let env = fallbackState.get(deps);
  if (!env) {
    env = rateLimitEnv();
    fallbackState.set(deps, env);
  }
  return env;
}
