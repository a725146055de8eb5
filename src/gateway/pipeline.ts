/**
 * The request pipeline (DESIGN.md). Ingress builds the request context;
 * then each stage either ends the request (returns a result) or enriches
 * the context for the next one. The order mirrors Envoy's filter chain at
 * an Istio gateway:
 *
 *   ingress (1 hygiene, 2 normalize)
 *   3  virtual host         routing/stages.ts  selectVirtualHost
 *   4  peer authentication  authz/stages.ts    authenticatePeer
 *   5  request authn (JWT)  authz/stages.ts    authenticateRequest
 *   6  route selection      routing/stages.ts  selectRouteStage
 *   7  authorization        authz/stages.ts    authorize
 *   8  rate limiting        ratelimit/stage.ts limitRate
 *      no route: 404 NR     routing/stages.ts  answerUnrouted
 *   9  fault injection      routing/stages.ts  injectFault
 *      CORS                 routing/stages.ts  applyCors
 *      route actions        routing/stages.ts  answerAtEdge
 *   10 upstream selection   routing/stages.ts  selectUpstream
 *   11 forward + 12 response routing/stages.ts forwardUpstream
 */
import type { RuntimeSnapshot } from "../routing/hydrate.ts";
import { answerAtEdge, answerUnrouted, applyCors, applyRouteResponseHeaders, forwardUpstream, injectFault, selectRouteStage, selectUpstream, selectVirtualHost } from "../routing/stages.ts";
import { authenticatePeer, authenticateRequest, authorize } from "../authz/stages.ts";
import { limitRate } from "../ratelimit/stage.ts";
import { localReply, newContext, newRecord, type PipelineDeps, type PipelineResult, type RequestContext } from "./context.ts";
import { ingress } from "./ingress.ts";
import { traceAtEntry } from "../telemetry/tracing.ts";

export type { PipelineDeps, PipelineResult, RequestContext } from "./context.ts";

/** A pipeline stage: a result ends the request, undefined passes it on. */
export type Stage = (ctx: RequestContext) => PipelineResult | undefined | Promise<PipelineResult | undefined>;

export const STAGES: readonly Stage[] = [
  selectVirtualHost,
  authenticatePeer,
  authenticateRequest,
  selectRouteStage,
  authorize,
  limitRate,
  answerUnrouted,
  injectFault,
  applyCors,
  answerAtEdge,
  selectUpstream,
  forwardUpstream,
];

/**
 * Runs one request through the pipeline against a hydrated snapshot.
 *
 * @example
 * const { response } = await runPipeline(request, snapshot, deps, (p) => ctx.waitUntil(p));
 */
export async function runPipeline(
  request: Request,
  snapshot: RuntimeSnapshot,
  deps: PipelineDeps,
  waitUntil: (promise: Promise<unknown>) => void = () => {},
): Promise<PipelineResult> {
  const record = newRecord(deps.now());
  const entered = ingress(request, snapshot.snapshot.settings, deps, snapshot.security?.injectedHeaders);
  if (!entered.ok) return localReply(entered.reply, record);
  const ctx = newContext(request, snapshot, deps, entered.facts, record, waitUntil);
  traceAtEntry(ctx);

  for (const stage of STAGES) {
    // Most stages decide synchronously: awaiting their plain results would cost a microtask turn each.
    const step = stage(ctx);
    const result = step instanceof Promise ? await step : step;
    if (!result) continue;
    if (ctx.route !== undefined && ctx.routeHeadersApplied === undefined) applyRouteResponseHeaders(ctx, result.response.headers);
    if (ctx.responseHooks.length > 0) {
      for (const hook of ctx.responseHooks) hook(result.response);
      // A hook changes the headers: telemetry reads them again.
      ctx.responseHead = undefined;
    }
    // A new literal rather than adding `context` to the stage's object (see newRecord).
    return { response: result.response, record: result.record, context: ctx };
  }
  throw new Error("the pipeline ended without a response");
}
