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

/**
 * Ids kept per isolate, in two generations of half as many: a full recent
 * generation becomes the older one (the previous older is dropped), and an
 * id found in the older is moved back. A key asked for at least once per
 * MAX_CACHED_IDS / 2 new keys keeps its id through any flood of new keys;
 * one that is not has its id derived again on its next request.
 */
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
  const generation = Math.max(1, Math.floor(max / 2));
  let recent = new Map<string, Id>();
  let older = new Map<string, Id>();
  const keep = (name: string, id: Id): Id => {
    if (recent.size >= generation) {
      older = recent;
      recent = new Map();
    }
    recent.set(name, id);
    return id;
  };
  return {
    getByName(name: string): RateLimiterStub {
      let id = recent.get(name);
      if (id === undefined) {
        const kept = older.get(name);
        if (kept !== undefined) older.delete(name);
        id = keep(name, kept ?? namespace.idFromName(name));
      }
      return namespace.get(id);
    },
    get cached() {
      return recent.size + older.size;
    },
  };
}
