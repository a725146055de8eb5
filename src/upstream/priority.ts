/**
 * Locality load balancing, pure: which endpoints form each priority level
 * for a request from a given locality (Istio's loadbalancer.go:
 * applyLocalityWeights, applyLocalityFailover, applyFailoverPriorities),
 * and how much traffic each level takes given its health (Envoy's
 * priority load with the overprovisioning factor 1.4).
 */
import type { ClusterDef, EndpointDef, LocalityLbDef } from "../config/snapshot.ts";
import { localityMatches, parseLocality, proximity, type Locality } from "./locality.ts";

/** Endpoints of one locality within a level, and the weight of that locality. */
export interface EndpointGroup {
  weight: number;
  /** Indices into the cluster's endpoints. */
  members: number[];
}

export interface PriorityLevel {
  /** One group per locality when locality weights apply, else a single group. */
  groups: EndpointGroup[];
  size: number;
}

export interface PriorityPlan {
  /** P0 first. Endpoints that `distribute` leaves out appear in no level. */
  levels: PriorityLevel[];
}

/** Envoy's default overprovisioning factor: a level keeps all its traffic until it is below ~72% healthy. */
export const OVERPROVISIONING = 1.4;

const REGION_LABEL = "topology.kubernetes.io/region";
const ZONE_LABEL = "topology.kubernetes.io/zone";
const SUBZONE_LABEL = "topology.istio.io/subzone";

interface Group {
  locality: string;
  priority: number;
  weight: number;
  members: number[];
}

/**
 * The priority levels of a cluster for requests from `client` (a locality
 * string, or undefined when the request's location maps to none).
 *
 * @example
 * planPriorities(cluster, "aws/us-east-1/us-east-1a", {})
 * // → { levels: [{ groups: [...same zone...] }, { groups: [...other clouds...] }] }
 */
export function planPriorities(cluster: ClusterDef, client: string | undefined, gatewayLabels: Record<string, string> | undefined): PriorityPlan {
  const setting = cluster.locality;
  const groups = groupByLocality(cluster.endpoints);
  if (!setting) return { levels: [level(groups, false)] };
  const clientLocality = client !== undefined ? parseLocality(client) : undefined;
  if (setting.distribute) {
    return { levels: [level(distribute(setting, groups, clientLocality), true)] };
  }
  let current = groups;
  const weighted = (setting.failoverRules?.length ?? 0) > 0 || (setting.failoverPriority?.length ?? 0) > 0;
  if (setting.failoverPriority?.length) {
    const proxyLabels: Record<string, string> = { ...gatewayLabels };
    if (clientLocality) Object.assign(proxyLabels, topologyLabels(clientLocality));
    if (Object.keys(proxyLabels).length > 0) current = byFailoverPriority(cluster.endpoints, current, setting.failoverPriority, proxyLabels);
  }
  if (clientLocality && (!setting.failoverPriority?.length || setting.failoverRules?.length)) {
    current = byProximity(current, clientLocality, setting.failoverRules ?? []);
  }
  const priorities = [...new Set(current.map((g) => g.priority))].sort((a, b) => a - b);
  return { levels: priorities.map((p) => level(current.filter((g) => g.priority === p), weighted)) };
}

function groupByLocality(endpoints: readonly EndpointDef[]): Group[] {
  const byName = new Map<string, Group>();
  endpoints.forEach((e, i) => {
    const name = e.locality ?? "";
    let g = byName.get(name);
    if (!g) {
      g = { locality: name, priority: 0, weight: 0, members: [] };
      byName.set(name, g);
    }
    g.members.push(i);
    g.weight += e.weight;
  });
  return [...byName.values()];
}

function level(groups: Group[], weighted: boolean): PriorityLevel {
  const size = groups.reduce((n, g) => n + g.members.length, 0);
  if (weighted) return { groups: groups.map((g) => ({ weight: g.weight, members: g.members })), size };
  const members = groups.flatMap((g) => g.members).sort((a, b) => a - b);
  return { groups: [{ weight: 1, members }], size };
}

/** applyLocalityWeights: the first `from` matching the client reweights localities; unlisted ones get nothing. */
function distribute(setting: LocalityLbDef, groups: Group[], client: Locality | undefined): Group[] {
  const rule = client ? setting.distribute?.find((d) => localityMatches(d.from, client)) : undefined;
  if (!rule) return groups;
  const unmatched = new Set(groups);
  const out: Group[] = [];
  for (const [pattern, weight] of rule.to) {
    const matched = [...unmatched].filter((g) => localityMatches(pattern, parseLocality(g.locality)));
    const total = matched.reduce((n, g) => n + g.weight, 0);
    for (const g of matched) {
      unmatched.delete(g);
      const w = Math.ceil((g.weight * weight) / total);
      if (w > 0) out.push({ ...g, weight: w });
    }
  }
  return out;
}

/**
 * applyFailoverPriorities: an endpoint's priority is how many leading
 * labels it shares with the gateway (all: 0 … none: N); `label=value`
 * compares with the given value instead of the gateway's.
 */
function byFailoverPriority(endpoints: readonly EndpointDef[], groups: Group[], labels: string[], proxyLabels: Record<string, string>): Group[] {
  const parsed = labels.map((l) => {
    const eq = l.indexOf("=");
    return eq < 0 ? { name: l, value: proxyLabels[l] } : { name: l.slice(0, eq), value: l.slice(eq + 1) };
  });
  const out: Group[] = [];
  for (const g of groups) {
    const byPriority = new Map<number, Group>();
    for (const i of g.members) {
      const e = endpoints[i] as EndpointDef;
      const own = { ...e.labels, ...topologyLabels(parseLocality(e.locality)) };
      let priority = 0;
      for (let j = 0; j < parsed.length; j++) {
        const p = parsed[j] as { name: string; value: string | undefined };
        if (p.value !== own[p.name]) {
          priority = parsed.length - j;
          break;
        }
      }
      let sub = byPriority.get(priority);
      if (!sub) {
        sub = { locality: g.locality, priority, weight: 0, members: [] };
        byPriority.set(priority, sub);
      }
      sub.members.push(i);
      sub.weight += e.weight;
    }
    out.push(...byPriority.values());
  }
  return compact(out);
}

/**
 * applyLocalityFailover: proximity to the client (subzone, zone, region,
 * elsewhere), where `failover` rules push the regions they do not name
 * behind the one they do.
 */
function byProximity(groups: Group[], client: Locality, rules: { from: string; to: string }[]): Group[] {
  const out = groups.map((g) => {
    const own = parseLocality(g.locality);
    let p: number = proximity(client, own);
    if (p === 3) {
      const rule = rules.find((r) => r.from === client.region);
      if (rule && own.region !== rule.to) p = 4;
    }
    return { ...g, priority: g.priority * 5 + p };
  });
  return compact(out);
}

function compact(groups: Group[]): Group[] {
  const order = [...new Set(groups.map((g) => g.priority))].sort((a, b) => a - b);
  return groups.map((g) => ({ ...g, priority: order.indexOf(g.priority) }));
}

function topologyLabels(l: Locality): Record<string, string> {
  const out: Record<string, string> = {};
  if (l.region) out[REGION_LABEL] = l.region;
  if (l.zone) out[ZONE_LABEL] = l.zone;
  if (l.subzone) out[SUBZONE_LABEL] = l.subzone;
  return out;
}

/** A level's availability in percent: min(100, ⌊140 × healthy / total⌋), as Envoy computes it. */
export function levelHealth(healthy: number, total: number): number {
  if (total === 0) return 0;
  return Math.min(100, Math.floor((OVERPROVISIONING * 100 * healthy) / total));
}

/**
 * Envoy's priority load: each level takes as much of the traffic as its
 * availability allows, highest priority first; when the levels together
 * are below 100 the loads are scaled up. When nothing is available anywhere
 * ("total panic", Envoy's recalculateLoadInTotalPanic) the traffic is split
 * by the levels' endpoint counts, `sizes` (P0 takes everything without
 * them), and panic mode decides what happens inside each level.
 *
 * @example
 * priorityLoads([70, 100]) // → { loads: [70, 30], total: 100 }
 * priorityLoads([0, 0], [3, 1]) // → { loads: [75, 25], total: 0 }
 */
export function priorityLoads(health: readonly number[], sizes?: readonly number[]): { loads: number[]; total: number } {
  const total = Math.min(100, health.reduce((a, b) => a + b, 0));
  const loads = health.map(() => 0);
  if (total === 0) {
    const hosts = sizes?.reduce((a, b) => a + b, 0) ?? 0;
    if (hosts === 0) {
      if (loads.length > 0) loads[0] = 100;
      return { loads, total };
    }
    let left = 100;
    let firstNonEmpty = -1;
    (sizes as readonly number[]).forEach((n, i) => {
      if (firstNonEmpty < 0 && n > 0) firstNonEmpty = i;
      loads[i] = Math.floor((100 * n) / hosts);
      left -= loads[i] as number;
    });
    loads[firstNonEmpty] = (loads[firstNonEmpty] ?? 0) + left;
    return { loads, total };
  }
  let remaining = 100;
  let first = -1;
  health.forEach((h, i) => {
    if (first < 0 && h > 0) first = i;
    const load = Math.min(remaining, Math.floor((h * 100) / total));
    loads[i] = load;
    remaining -= load;
  });
  if (remaining > 0 && first >= 0) loads[first] = (loads[first] ?? 0) + remaining;
  return { loads, total };
}
