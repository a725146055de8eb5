/**
 * The RATE_LIMITER binding with each key's Durable Object id derived once
 * per isolate. `getByName(name)` derives the id from the name on every call
 * (an HMAC-SHA256 of the name, twice, ~20k instructions in workerd); a
 * busy key asks its object on every request, so the isolate keeps the ids
 * of the keys it has seen and asks `get(id)`, which reaches the same
 * object. A DurableObjectId is plain data, not tied to the request that
 * made it.
 */
import type { RateLimiterNamespace, RateLimiterStub } from "./decide.ts";
import { Generations } from "./generations.ts";

/** Ids kept per isolate, in two generations of half as many (src/ratelimit/generations.ts): a key asked for at least once per MAX_CACHED_IDS / 2 new keys keeps its id through any flood of new keys. */
export const MAX_CACHED_IDS = 10_000;

/** The part of a Durable Object namespace binding this needs. */
export interface IdNamespace<Id> {
  idFromName(name: string): Id;
  get(id: Id): RateLimiterStub;
}

/**
 * @example
 * const objects = withCachedIds(env.RATE_LIMITER);
 * await objects.getByName(bucket).acquire(request); // the same object as env.RATE_LIMITER.getByName(bucket)
 */
export function withCachedIds<Id>(namespace: IdNamespace<Id>, max = MAX_CACHED_IDS): RateLimiterNamespace & { readonly cached: number } {
  const ids = new Generations<Id>(Math.max(1, Math.floor(max / 2)));
  return {
    getByName(name: string): RateLimiterStub {
      return namespace.get(ids.get("", name) ?? ids.set("", name, namespace.idFromName(name)));
    },
    get cached() {
      return ids.size;
    },
  };
}
