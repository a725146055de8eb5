/**
 * Keys: the request attributes a rule counts by, and the bucket name they
 * make. A bucket is identified by the rule (`<ns>/<policy>/<rule>`) and
 * the values of its key parts; its name is the SHA-256 of both, so Durable
 * Object names and isolate map keys have a fixed size and carry no client
 * data (IP addresses, API keys) in clear.
 */
import type { KeyPartDef } from "../config/snapshot.ts";
import type { RequestFacts } from "../gateway/facts.ts";
import { isHttpToken, PSEUDO_HEADERS, requestHeaderReader } from "../gateway/request-header.ts";
import { Generations } from "./generations.ts";

/** One value per key part; null is a missing part counted under the shared bucket (`missingKey: SHARED`). */
export type KeyValues = (string | null)[];

/** What a key part can read. */
export interface KeyInput {
  facts: RequestFacts;
  /** The selected route's name. */
  route?: string | undefined;
}

export type KeyReader = (input: KeyInput) => string | undefined;

/** Compiles a key part into a reader (once per snapshot). */
export function keyReader(part: KeyPartDef): KeyReader {
  switch (part.attribute) {
    case "remote.ip":
      return (i) => i.facts.remoteIp || undefined;
    case "request.headers":
      return headerKeyReader(typeof part.key === "string" ? part.key : "");
    case "request.auth.principal":
      // Istio's request.auth.principal needs both iss and sub.
      return (i) => (i.facts.auth?.iss && i.facts.auth.sub ? i.facts.auth.principal : undefined);
    case "request.auth.claims": {
      const path = Array.isArray(part.key) ? part.key : [part.key ?? ""];
      return (i) => claimText(i.facts.auth?.claims, path);
    }
    case "request.host":
      return (i) => i.facts.host;
    case "request.method":
      return (i) => i.facts.method;
    case "request.path":
      return (i) => i.facts.path;
    case "route":
      return (i) => i.route || undefined;
  }
}

/**
 * A header key part. workerd joins repeated lines of a header with ", " and
 * cannot give the lines apart, so `x-api-key: K` plus `x-api-key: r1` is
 * counted as "K, r1", while the origin would get both lines and most read
 * the first (K): a second line with a fresh value each time would be a
 * fresh bucket for K. Envoy keys on the first line only; what a Worker can
 * do is make the origin receive what was counted: a value with a comma (two
 * lines give one) is set back as one line of the forwarded headers. The
 * other choices were worse: refusing a comma refuses legitimate values
 * (many headers carry lists), and charging every member multiplies bucket
 * lookups. Cost: a scan for a comma per keyed header, and a set only when
 * one is there.
 */
function headerKeyReader(name: string): KeyReader {
  if (PSEUDO_HEADERS.has(name) || !isHttpToken(name)) {
    const read = requestHeaderReader(name);
    return (i) => read(i.facts);
  }
  return (i) => {
    const value = i.facts.headers.get(name);
    if (value === null) return undefined;
    if (value.includes(",")) i.facts.headers.set(name, value);
    return value;
  };
}

/**
 * A claim as key text: strings as they are, numbers and booleans in their
 * JSON form, lists and objects as JSON (so `["a","b"]` is one key).
 */
function claimText(claims: Record<string, unknown> | undefined, path: readonly string[]): string | undefined {
  let node: unknown = claims;
  for (const key of path) {
    if (typeof node !== "object" || node === null || Array.isArray(node) || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  if (typeof node === "string") return node;
  if (node === undefined || node === null) return undefined;
  return JSON.stringify(node);
}

const encoder = new TextEncoder();

/** Longer keys of LOCAL rules are hashed; shorter ones are used as they are (no hashing on the local path). */
const LOCAL_KEY_MAX = 512;

/**
 * The isolate map key for a LOCAL rule's bucket: the rule and key values
 * themselves when short (exact: two keys never share a bucket), their
 * SHA-256 when long (bounded memory).
 */
export function localBucketKey(ruleId: string, values: KeyValues): string | Promise<string> {
  const text = `${ruleId}\u0000${JSON.stringify(values)}`;
  return text.length <= LOCAL_KEY_MAX ? text : bucketName(ruleId, values);
}

/**
 * Names already computed in this isolate (a warm key skips the digest), per
 * rule: a one-part key by its value as it is (no text to build per request:
 * the value is usually a string the request already holds, such as the
 * verified principal), any other key by its JSON, in a group of its own
 * (`<ruleId>\0`: a one-part value can spell a JSON text; no rule id holds a
 * NUL, compile refuses control characters in them, so that group is never
 * another rule's). Only keys whose
 * digest input is at most LOCAL_KEY_MAX long are kept, in two generations of
 * 5,000 (src/ratelimit/generations.ts): at most 10,000 names.
 */
const names = new Generations<string>(5_000);

/**
 * The bucket name for a rule and key values: 64 hex characters, the
 * SHA-256 of `<ruleId>\0<JSON of the values>` (stable across isolates and
 * deploys: it names the rule's Durable Objects).
 *
 * @example
 * await bucketName("istio-system/api/per-user", ["alice"]) // "5b1c…"
 */
export function bucketName(ruleId: string, values: KeyValues): string | Promise<string> {
  const one = values.length === 1 ? values[0] : null;
  const known = typeof one === "string" ? names.get(ruleId, one) : names.get(`${ruleId}\u0000`, JSON.stringify(values));
  return known ?? digestName(ruleId, values, one);
}

async function digestName(ruleId: string, values: KeyValues, one: string | null | undefined): Promise<string> {
  const json = JSON.stringify(values);
  const text = `${ruleId}\u0000${json}`;
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  let hex = "";
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, "0");
  if (text.length <= LOCAL_KEY_MAX) {
    if (typeof one === "string") names.set(ruleId, one, hex);
    else names.set(`${ruleId}\u0000`, json, hex);
  }
  return hex;
}
