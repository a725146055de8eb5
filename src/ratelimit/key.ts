/**
 * Keys: the request attributes a rule counts by, and the bucket name they
 * make. A bucket is identified by the rule (`<ns>/<policy>/<rule>`) and
 * the values of its key parts; its name is the SHA-256 of both, so Durable
 * Object names and isolate map keys have a fixed size and carry no client
 * data (IP addresses, API keys) in clear.
 */
import type { KeyPartDef } from "../config/snapshot.ts";
import type { RequestFacts } from "../gateway/facts.ts";

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
    case "request.headers": {
      const name = typeof part.key === "string" ? part.key : "";
      return (i) => i.facts.headers.get(name) ?? undefined;
    }
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

/** One rule's remembered names: a one-part key by its value, any other key by its JSON. */
interface RuleNames {
  one: Map<string, string>;
  json: Map<string, string>;
}

/**
 * Names already computed in this isolate (a warm key skips the digest), per
 * rule: a one-part key by its value as it is (no text to build per request:
 * the value is usually a string the request already holds, such as the
 * verified principal), any other key by its JSON. Only keys whose digest
 * input is at most LOCAL_KEY_MAX long are kept.
 *
 * Two generations bound the memory and keep warm keys warm: names go into
 * `recent`; once it holds GENERATION names it becomes `older` (the previous
 * older one is dropped) and a new `recent` starts; a name found in `older`
 * is copied into `recent`. A key used at least once per GENERATION new keys
 * is never digested again, however many new keys (a flood of principals or
 * addresses) come between its uses; at most 2 × GENERATION = 10,000 names
 * are held.
 */
let recent = new Map<string, RuleNames>();
let older = new Map<string, RuleNames>();
let recentHeld = 0;
const GENERATION = 5_000;

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
  if (typeof one === "string") {
    const known = recent.get(ruleId)?.one.get(one);
    if (known !== undefined) return known;
    const kept = older.get(ruleId)?.one.get(one);
    if (kept !== undefined) return remember(ruleId, one, true, kept);
  } else {
    const json = JSON.stringify(values);
    const known = recent.get(ruleId)?.json.get(json);
    if (known !== undefined) return known;
    const kept = older.get(ruleId)?.json.get(json);
    if (kept !== undefined) return remember(ruleId, json, false, kept);
  }
  return digestName(ruleId, values, one);
}

async function digestName(ruleId: string, values: KeyValues, one: string | null | undefined): Promise<string> {
  const json = JSON.stringify(values);
  const text = `${ruleId}\u0000${json}`;
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  let hex = "";
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, "0");
  if (text.length <= LOCAL_KEY_MAX) remember(ruleId, typeof one === "string" ? one : json, typeof one === "string", hex);
  return hex;
}

/** Puts a name into the recent generation (which becomes the older one when full), and returns it. */
function remember(ruleId: string, key: string, isOne: boolean, name: string): string {
  if (recentHeld >= GENERATION) {
    older = recent;
    recent = new Map();
    recentHeld = 0;
  }
  let rule = recent.get(ruleId);
  if (!rule) recent.set(ruleId, (rule = { one: new Map(), json: new Map() }));
  const held = isOne ? rule.one : rule.json;
  if (!held.has(key)) recentHeld++;
  held.set(key, name);
  return name;
}
