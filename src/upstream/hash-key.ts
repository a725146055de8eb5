/**
 * The consistent-hash key of a request (DestinationRule
 * `consistentHash`): a header, a cookie, the client IP (CF-Connecting-IP)
 * or a query parameter. A missing cookie is generated when the policy has
 * a `ttl`, as Envoy does: the response then sets it
 * (`name="<value>"; Max-Age=<ttl>; Path=<path>; HttpOnly`).
 */
import type { HashKeyDef } from "../config/snapshot.ts";
import { queryParam, type RequestFacts } from "../gateway/facts.ts";
import { cookie } from "../routing/cohort.ts";
import { hashOf } from "./hash-ring.ts";

export interface HashKey {
  /** Absent when the request carries no key: the pick is then random. */
  hash?: number;
  /** A Set-Cookie value to add to the response (a generated cookie). */
  setCookie?: string;
}

/**
 * @example
 * requestHash({ type: "header", name: "x-user" }, facts, random) // { hash: 2166136261 }
 */
export function requestHash(key: HashKeyDef | undefined, facts: RequestFacts, random: () => number): HashKey {
  if (!key) return {};
  let value: string | undefined;
  switch (key.type) {
    case "header": {
      const v = facts.headers.get(key.name);
      value = v === null ? undefined : v;
      break;
    }
    case "cookie": {
      value = unquote(cookie(facts.headers.get("cookie"), key.name));
      if (value === undefined && key.ttlSeconds !== undefined) {
        const generated = randomHex(random);
        return { hash: hashOf(generated), setCookie: setCookieValue(key, generated) };
      }
      break;
    }
    case "sourceIp":
      value = facts.remoteIp || undefined;
      break;
    case "query":
      value = queryParam(facts, key.name);
      break;
  }
  return value === undefined || value === "" ? {} : { hash: hashOf(value) };
}

/** Envoy's makeSetCookieValue. */
export function setCookieValue(key: Extract<HashKeyDef, { type: "cookie" }>, value: string): string {
  let out = `${key.name}="${value}"`;
  if (key.ttlSeconds) out += `; Max-Age=${key.ttlSeconds}`;
  if (key.path) out += `; Path=${key.path}`;
  for (const [name, v] of key.attributes ?? []) out += v === undefined || v === "" ? `; ${name}` : `; ${name}=${v}`;
  return `${out}; HttpOnly`;
}

function unquote(value: string | undefined): string | undefined {
  if (value !== undefined && value.length >= 2 && value.startsWith('"') && value.endsWith('"')) return value.slice(1, -1);
  return value;
}

function randomHex(random: () => number): string {
  let out = "";
  for (let i = 0; i < 4; i++) out += Math.floor(random() * 0x10000).toString(16).padStart(4, "0");
  return out;
}
