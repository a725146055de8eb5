/**
 * Endpoint selection for one attempt, the "backend → endpoint" step of
 * the resolution chain: priority level (locality, health, overprovisioning
 * spill-over), panic mode, locality weights, previous hosts, then the
 * consistent-hash table or the load balancer.
 *
 * Priority plans and hash tables are built on first use and cached per
 * cluster definition (so per snapshot), keyed by client locality and by
 * the set of candidate endpoints; a request only looks them up.
 */
import type { ClusterDef, EndpointDef } from "../config/snapshot.ts";
import type { Balancer } from "../routing/balancer.ts";
import { buildMaglev, buildRing, type HashTable } from "./hash-ring.ts";
import { levelHealth, OVERPROVISIONING, planPriorities, priorityLoads, type EndpointGroup, type PriorityLevel, type PriorityPlan } from "./priority.ts";

export interface PickInput {
  cluster: ClusterDef;
  /** The request's locality (GatewayConfig `locality`), if any. */
  client: string | undefined;
  gatewayLabels: Record<string, string> | undefined;
  /** Whether the endpoint at this index may take traffic (not ejected, passing health checks). */
  healthy: (index: number) => boolean;
  /** The consistent-hash key; ignored unless the cluster hashes. */
  hash?: number;
  /** Endpoints earlier attempts went to (previous hosts), avoided when others are available. */
  exclude?: ReadonlySet<number>;
  /** Priority levels earlier attempts went to (retryRemoteLocalities). */
  excludeLevels?: ReadonlySet<number>;
  balancer: Balancer;
  random: () => number;
}

export interface Pick {
  index: number;
  endpoint: EndpointDef;
  level: number;
  /** The level was in panic: health was ignored. */
  panic: boolean;
}

interface ClusterCache {
  plans: Map<string, PriorityPlan>;
  tables: Map<string, HashTable>;
}

const caches = new WeakMap<ClusterDef, ClusterCache>();
const MAX_CACHED = 64;

function cacheOf(cluster: ClusterDef): ClusterCache {
  let c = caches.get(cluster);
  if (!c) {
    c = { plans: new Map(), tables: new Map() };
    caches.set(cluster, c);
  }
  return c;
}

/** The priority plan of a cluster for a client locality (cached). */
export function planFor(cluster: ClusterDef, client: string | undefined, gatewayLabels: Record<string, string> | undefined): PriorityPlan {
  const cache = cacheOf(cluster);
  const key = client ?? "";
  let plan = cache.plans.get(key);
  if (!plan) {
    if (cache.plans.size >= MAX_CACHED) cache.plans.clear();
    plan = planPriorities(cluster, client, gatewayLabels);
    cache.plans.set(key, plan);
  }
  return plan;
}

/**
 * Picks the endpoint for one attempt, or undefined when no endpoint may
 * take it (503 no healthy upstream).
 *
 * @example
 * const pick = pickEndpoint({ cluster, client: "aws/us-east-1/a", gatewayLabels: undefined, healthy: () => true, balancer, random: Math.random });
 */
export function pickEndpoint(input: PickInput): Pick | undefined {
  const { cluster, healthy, random } = input;
  const plan = planFor(cluster, input.client, input.gatewayLabels);
  const levels = plan.levels;
  if (levels.length === 0) return undefined;
  // Loops, and no arrays for the common shapes (one level, one locality, every endpoint healthy):
  // this runs once per attempt of every request.
  let levelIndex = 0;
  let total: number;
  let healthyInLevel: number;
  if (levels.length === 1) {
    // One level takes all the traffic, available or not (excludeLevels never leaves no level, so it never applies here).
    healthyInLevel = healthyIn(levels[0] as PriorityLevel, healthy);
    total = Math.min(100, levelHealth(healthyInLevel, (levels[0] as PriorityLevel).size));
    random(); // the level draw below, made all the same: one number per pick whatever the plan
  } else {
    const healthyCounts = levels.map((l) => healthyIn(l, healthy));
    let health = levels.map((l, i) => levelHealth(healthyCounts[i] as number, l.size));
    const excluded = input.excludeLevels;
    const excluding = excluded !== undefined && excluded.size > 0 && levels.some((_, i) => !excluded.has(i));
    if (excluding) health = health.map((h, i) => (excluded.has(i) ? 0 : h));
    // With nothing healthy anywhere, Envoy splits the traffic by the levels' sizes (total panic); excluded levels take none.
    const sizes = health.every((h) => h === 0) ? levels.map((l, i) => (excluding && excluded.has(i) ? 0 : l.size)) : undefined;
    const loads = priorityLoads(health, sizes);
    total = loads.total;
    levelIndex = drawIndex(loads.loads, random() * 100);
    healthyInLevel = healthyCounts[levelIndex] as number;
  }
  const level = levels[levelIndex] as PriorityLevel;
  const threshold = cluster.panicThreshold ?? 50;
  const healthyPercent = level.size === 0 ? 0 : (100 * healthyInLevel) / level.size;
  const panic = total < 100 && healthyPercent < threshold;

  let members: readonly number[];
  if (cluster.consistentHash || level.groups.length === 1) {
    // Every member is usable in panic or when all are healthy: the level's own list, in order.
    if (level.groups.length === 1 && (panic || healthyInLevel === level.size)) members = (level.groups[0] as EndpointGroup).members;
    else members = usableMembers(level, panic ? undefined : healthy);
  } else {
    members = pickGroup(level, healthy, panic, random);
  }
  if (members.length === 0) return undefined;

  const exclude = input.exclude;
  const fresh = exclude && exclude.size > 0 ? members.filter((m) => !exclude.has(m)) : members;
  let index: number;
  if (cluster.consistentHash) {
    const table = tableFor(cluster, members);
    const hash = input.hash ?? Math.floor(random() * 0x1_0000_0000);
    const skip = exclude && exclude.size > 0 && fresh.length > 0 ? (m: number) => exclude.has(members[m] as number) : undefined;
    index = members[table.pick(hash, skip)] as number;
  } else {
    const pool = fresh.length > 0 ? fresh : members;
    // The balancer returns a lone candidate as it is.
    if (pool.length === 1) index = pool[0] as number;
    else {
      const candidates: EndpointDef[] = [];
      for (const m of pool) candidates.push(cluster.endpoints[m] as EndpointDef);
      index = cluster.endpoints.indexOf(input.balancer.pick(cluster, candidates) as EndpointDef);
    }
  }
  return { index, endpoint: cluster.endpoints[index] as EndpointDef, level: levelIndex, panic };
}

/** How many of a level's endpoints may take traffic. */
function healthyIn(level: PriorityLevel, healthy: (i: number) => boolean): number {
  let n = 0;
  for (const group of level.groups) for (const m of group.members) if (healthy(m)) n++;
  return n;
}

/** A level's members in order, only the healthy ones when `healthy` is given. */
function usableMembers(level: PriorityLevel, healthy: ((i: number) => boolean) | undefined): number[] {
  const out: number[] = [];
  for (const group of level.groups) for (const m of group.members) if (!healthy || healthy(m)) out.push(m);
  return out;
}

/** Envoy's locality-weighted choice: weight × availability (weight alone in panic), then the locality's usable hosts. */
function pickGroup(level: PriorityLevel, healthy: (i: number) => boolean, panic: boolean, random: () => number): number[] {
  const usable = level.groups.map((g) => (panic ? g.members : g.members.filter(healthy)));
  const weights = level.groups.map((g, i) => {
    if (panic) return g.weight;
    const n = (usable[i] as number[]).length;
    return n === 0 ? 0 : g.weight * Math.min(1, (OVERPROVISIONING * n) / g.members.length);
  });
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return [];
  return usable[drawIndex(weights, random() * sum)] as number[];
}

function drawIndex(weights: readonly number[], target: number): number {
  let last = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] as number;
    if (w <= 0) continue;
    last = i;
    if (target < w) return i;
    target -= w;
  }
  return last;
}

function tableFor(cluster: ClusterDef, members: readonly number[]): HashTable {
  const cache = cacheOf(cluster);
  const key = members.join(",");
  let table = cache.tables.get(key);
  if (!table) {
    if (cache.tables.size >= MAX_CACHED) cache.tables.clear();
    const hash = cluster.consistentHash;
    const entries = members.map((m) => {
      const e = cluster.endpoints[m] as EndpointDef;
      return { key: `${e.address}:${e.port}`, weight: e.weight };
    });
    const reference = cluster.endpoints.reduce((n, e) => n + e.weight, 0);
    table = hash?.algorithm === "MAGLEV" ? buildMaglev(entries, hash.size) : buildRing(entries, hash?.size ?? 1024, reference);
    cache.tables.set(key, table);
  }
  return table;
}
