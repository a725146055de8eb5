/**
 * Decisions for one rule and one key: LOCAL in the isolate's buckets,
 * GLOBAL through the key's Durable Object (directly, or through a lease),
 * bounded by the rule's decision timeout. A GLOBAL decision that cannot be
 * made — the object throws, is overloaded or unreachable, answers too late,
 * or the binding is missing — becomes `failed-open` (admitted) or
 * `failed-closed` by the rule's failureMode.
 *
 * A call the decision gave up on at its timeout is not cancelled: the
 * object may still apply it (under `isthmus serve --cluster-bucket`, a call
 * waiting for a lost replica's object runs once another replica has taken
 * it over). Its grant is then given back with the isolate's next call for
 * the key, less the one token of a request failureMode let through, so a
 * request refused by failureMode spends nothing and one admitted by it is
 * counted, as if the object had answered in time. While tokens wait to be
 * given back, a refusal the isolate remembers does not answer for the
 * object: the call that gives them back may be admitted.
 */
import type { LimitDef } from "../config/snapshot.ts";
import { shapedGrant, type AcquireRequest, type Grant } from "./bucket-set.ts";
import type { LimitSet, RuntimeRule } from "./hydrate.ts";
import { Leases } from "./lease.ts";
import { LocalBuckets } from "./local-buckets.ts";
import { Refusals } from "./refusals.ts";

/** The RPC surface of the RateLimiter object, as a stub exposes it. */
export interface RateLimiterStub {
  acquire(request: AcquireRequest): Promise<Grant>;
}

/** A Durable Object namespace binding (env.RATE_LIMITER) satisfies it. */
export interface RateLimiterNamespace {
  getByName(name: string): RateLimiterStub;
}

/** The isolate's rate-limit state and the object binding; lives as long as the isolate. */
export interface RateLimitEnv {
  /** Absent when the Worker has no RATE_LIMITER binding: GLOBAL decisions then fail (by failureMode). */
  objects?: RateLimiterNamespace;
  local: LocalBuckets;
  leases: Leases;
  refusals: Refusals;
  /** Decisions this isolate made, by where they were made (admin `/status`): `object` counts Durable Object calls. */
  decisions: Record<DecisionSource, number>;
}

export function rateLimitEnv(objects?: RateLimiterNamespace): RateLimitEnv {
  const env: RateLimitEnv = {
    local: new LocalBuckets(),
    leases: new Leases(),
    refusals: new Refusals(),
    decisions: { isolate: 0, object: 0, lease: 0, cache: 0, config: 0 },
  };
  if (objects) env.objects = objects;
  return env;
}

export type Outcome = "allowed" | "limited" | "shadow-limited" | "failed-open" | "failed-closed";

/**
 * Where a decision was made: the isolate's own buckets (LOCAL), the key's
 * object, a lease of its tokens, a refusal the object made earlier and the
 * isolate remembers, or the configuration itself (`requests: 0`).
 */
export type DecisionSource = "isolate" | "object" | "lease" | "cache" | "config";

export interface RuleDecision {
  rule: RuntimeRule;
  limits: LimitDef[];
  policyNames: string[];
  outcome: Outcome;
  source: DecisionSource;
  /** The bucket's numbers, when a decision was made (none when it failed). */
  grant?: Grant;
  /** Lease mode: tokens this isolate still holds for the key (counted in `remaining` for headers). */
  held?: number;
  error?: string;
}

/** What the request record keeps of a decision (exported with telemetry). */
export interface RateLimitRecord {
  /** `<ns>/<policy>/<rule>`. */
  rule: string;
  scope: "GLOBAL" | "LOCAL";
  mode: "ENFORCE" | "SHADOW";
  outcome: Outcome;
  source: DecisionSource;
  /** Whole tokens left in the strictest bucket, when known. */
  remaining?: number;
  error?: string;
}

/** A request's one token, from the isolate's buckets. */
export function decideLocal(rule: RuntimeRule, name: string, set: LimitSet, env: RateLimitEnv, now: number): Pick<RuleDecision, "outcome" | "source" | "grant"> {
  const grant = env.local.acquire(name, { algorithm: rule.def.algorithm, limits: set.limits, want: 1, partial: false, returning: 0 }, now);
  return { outcome: verdict(rule, grant.granted > 0), source: "isolate", grant };
}

/** What a GLOBAL decision settles. */
export type GlobalDecision = Pick<RuleDecision, "outcome" | "source" | "grant" | "held" | "error">;

/**
 * A request's one token, from the key's Durable Object or a lease of its
 * tokens. In lease mode a token from the isolate's pool answers at once;
 * an empty pool is refilled by one request at a time (`decideLeased`).
 */
export function decideGlobal(rule: RuntimeRule, name: string, set: LimitSet, env: RateLimitEnv, now: () => number, waitUntil: (promise: Promise<unknown>) => void): Promise<GlobalDecision> {
  const lease = rule.def.lease;
  if (lease) {
    const taken = env.leases.take(name, now());
    if (taken.taken && taken.lease) return Promise.resolve({ outcome: "allowed", source: "lease", grant: taken.lease.grant, held: taken.lease.tokens });
  }
  const remembered = rememberedRefusal(rule, name, set, env, now);
  if (remembered) return Promise.resolve(remembered);
  if (!lease) return askObject(rule, name, set, env, now, waitUntil, now() + rule.def.timeoutMs);
  return decideLeased(rule, name, set, env, now, waitUntil);
}

/**
 * A refusal the object made earlier and the isolate remembers (see
 * refusals.ts), unless tokens wait to be given back: the call that returns
 * them may be admitted.
 */
function rememberedRefusal(rule: RuntimeRule, name: string, set: LimitSet, env: RateLimitEnv, now: () => number): GlobalDecision | undefined {
  if (env.refusals.empty || env.leases.returning(name)) return undefined;
  const grant = env.refusals.get(refusalKey(name, set, rule.def.lease !== undefined), now());
  return grant ? { outcome: verdict(rule, false), source: "cache", grant } : undefined;
}

/**
 * Lease mode with the isolate's pool empty: this request asks the object
 * for a lease unless another request of the isolate is asking already; it
 * then waits for that call and takes from the pool it refilled, asks next
 * if the pool is empty again, or fails (by failureMode, with that call's
 * error) if the call failed. Bounded by the rule's decision timeout, from
 * this request's start, like any GLOBAL decision.
 */
async function decideLeased(rule: RuntimeRule, name: string, set: LimitSet, env: RateLimitEnv, now: () => number, waitUntil: (promise: Promise<unknown>) => void): Promise<GlobalDecision> {
  const deadline = now() + rule.def.timeoutMs;
  for (;;) {
    const turn = env.leases.lead(name, now(), rule.def.timeoutMs);
    if (turn > 0) return askAsLeader(rule, name, set, env, now, waitUntil, deadline, turn);
    const failed = await env.leases.waitFor(name, deadline - now());
    if (failed !== undefined) return failure(rule, failed);
    const taken = env.leases.take(name, now());
    if (taken.taken && taken.lease) return { outcome: "allowed", source: "lease", grant: taken.lease.grant, held: taken.lease.tokens };
    // The call came back short: the object refused, and the isolate remembers it.
    const remembered = rememberedRefusal(rule, name, set, env, now);
    if (remembered) return remembered;
    if (now() >= deadline) return failure(rule, timeoutMessage(rule.def.timeoutMs));
  }
}

/** The lease call of turn `turn`; the requests waiting for it are woken once it ends, with its error if it failed. */
async function askAsLeader(rule: RuntimeRule, name: string, set: LimitSet, env: RateLimitEnv, now: () => number, waitUntil: (promise: Promise<unknown>) => void, deadline: number, turn: number): Promise<GlobalDecision> {
  let failed: string | undefined;
  try {
    const decision = await askObject(rule, name, set, env, now, waitUntil, deadline);
    failed = decision.error;
    return decision;
  } finally {
    env.leases.settle(name, turn, failed);
  }
}

/** The object's answer, by `deadline`; in lease mode a lease of which this request spends one token. */
async function askObject(rule: RuntimeRule, name: string, set: LimitSet, env: RateLimitEnv, now: () => number, waitUntil: (promise: Promise<unknown>) => void, deadline: number): Promise<GlobalDecision> {
  const lease = rule.def.lease;
  const limits = set.limits;
  if (!env.objects) return failure(rule, "the Worker has no RATE_LIMITER Durable Object binding");
  const returning = env.leases.takeReturns(name);
  const request: AcquireRequest = { algorithm: rule.def.algorithm, limits, want: lease ? lease.size : 1, partial: lease !== undefined, returning };
  const sentAt = now();
  let grant: Grant;
  try {
    grant = await acquireWithRetries(env.objects, name, request, deadline, rule.def.timeoutMs, now);
  } catch (error) {
    // The object may or may not have taken `returning` back; keeping them out is the side that never over-admits.
    if (!(error instanceof DecisionTimeout)) return failure(rule, `the rate limiter failed: ${error instanceof Error ? error.message : String(error)}`);
    const failed = failure(rule, error.message);
    waitUntil(giveBackLate(env.leases, name, error.late, failed.outcome === "failed-open"));
    return failed;
  }
  if (!lease && grant.granted === 0) env.refusals.set(refusalKey(name, set, false), sentAt, sentAt + grant.retryAfterMs, grant);
  else if (lease && grant.granted < lease.size) env.refusals.set(refusalKey(name, set, true), sentAt, sentAt + Math.min(grant.wantReadyMs, lease.ttlMs), { ...grant, granted: 0 });
  // Tokens given back can outlast a refusal remembered before: the object just granted what was asked, so the
  // refusal no longer holds (two late grants given back in one call left a token no request asked for again).
  else if (returning > 0 && !env.refusals.empty) env.refusals.delete(refusalKey(name, set, lease !== undefined));
  // An isolate holds at most one lease's tokens of a key (lease.ts).
  if (lease && grant.granted > 1) env.leases.add(name, grant.granted - 1, sentAt + lease.ttlMs, grant, lease.size - 1);
  return { outcome: verdict(rule, grant.granted > 0), source: "object", grant, held: lease ? Math.max(0, grant.granted - 1) : undefined };
}

/**
 * What a remembered refusal is keyed by: the bucket, the way it is asked
 * (exact or lease) and the limits, so a configuration change is seen at
 * once. Built only when a refusal is read or written: the text is as long
 * as the bucket name and the limits' signature together.
 */
function refusalKey(name: string, set: LimitSet, lease: boolean): string {
  return `${name}|${lease ? "lease" : "exact"}|${set.signature}`;
}

/**
 * The tokens of a grant that arrived after its decision gave up, given
 * back with the isolate's next call for `name`: all of them, or all but
 * the one the request spent when failureMode `admitted` it.
 */
async function giveBackLate(leases: Leases, name: string, late: Promise<Grant>, admitted: boolean): Promise<void> {
  let granted: number;
  try {
    granted = (await late).granted;
  } catch {
    return; // The call failed after all: it took nothing.
  }
  leases.giveBackLater(name, granted - (admitted ? 1 : 0));
}

/** The first wait before asking again after a retryable failure; it doubles up to RETRY_MAX_WAIT_MS. */
export const RETRY_FIRST_WAIT_MS = 10;
export const RETRY_MAX_WAIT_MS = 200;

/**
 * One acquire, asked again through a fresh stub while the runtime marks the
 * failure retryable and the decision's `deadline` leaves time (errors name
 * the rule's whole `timeoutMs`), as Cloudflare
 * advises for Durable Object errors (`retryable` set, `overloaded` not): the
 * object was reset, redeployed or is moving to another machine (under
 * `isthmus serve --cluster-bucket`, to another replica when its owner
 * stops). A retried acquire the object had applied before its reply was
 * lost counts twice, which can only refuse early, never over-admit; for
 * that reason a retry gives no tokens back (the first attempt may have).
 */
async function acquireWithRetries(objects: RateLimiterNamespace, name: string, request: AcquireRequest, deadline: number, timeoutMs: number, now: () => number): Promise<Grant> {
  let wait = RETRY_FIRST_WAIT_MS;
  let asked = request;
  for (let attempt = 1; ; attempt++) {
    try {
      return shapedGrant(await withTimeout(objects.getByName(name).acquire(asked), Math.max(1, deadline - now()), timeoutMs));
    } catch (error) {
      if (!retryable(error) || now() + wait >= deadline) throw attempt > 1 && error instanceof Error && !(error instanceof DecisionTimeout) ? new Error(`${error.message} (${attempt} attempts)`) : error;
    }
    // The failed attempt may have given the tokens back already: giving them twice could admit more than the limit.
    if (asked.returning > 0) asked = { ...asked, returning: 0 };
    await new Promise<void>((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, RETRY_MAX_WAIT_MS);
  }
}

/** A Durable Object failure the runtime says may succeed if asked again (and not because the object is overloaded). */
export function retryable(error: unknown): boolean {
  const e = error as { retryable?: unknown; overloaded?: unknown } | null;
  return typeof e === "object" && e !== null && e.retryable === true && e.overloaded !== true;
}

function verdict(rule: RuntimeRule, admitted: boolean): Outcome {
  if (admitted) return "allowed";
  return rule.def.mode === "SHADOW" ? "shadow-limited" : "limited";
}

function failure(rule: RuntimeRule, error: string): Pick<RuleDecision, "outcome" | "source" | "error"> {
  // A shadow rule never blocks, whatever its failureMode.
  const closed = rule.def.failureMode === "CLOSED" && rule.def.mode === "ENFORCE";
  return { outcome: closed ? "failed-closed" : "failed-open", source: "object", error };
}

/** The error of a decision not made within the rule's `timeoutMs`. */
function timeoutMessage(timeoutMs: number): string {
  return `the rate limiter did not answer within ${timeoutMs}ms`;
}

export class DecisionTimeout extends Error {
  /** The call given up on, which the object may still answer. */
  readonly late: Promise<Grant>;

  constructor(ms: number, late: Promise<Grant>) {
    super(timeoutMessage(ms));
    this.name = "DecisionTimeout";
    this.late = late;
  }
}

/**
 * `promise`, or a DecisionTimeout (naming the rule's whole `timeoutMs`,
 * and holding `promise`) after `ms`: a race against a timer of its own (no
 * timer or signal is shared between requests).
 */
function withTimeout(promise: Promise<Grant>, ms: number, timeoutMs: number): Promise<Grant> {
  return new Promise<Grant>((resolve, reject) => {
    const timer = setTimeout(() => reject(new DecisionTimeout(timeoutMs, promise)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
