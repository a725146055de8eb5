/**
 * Endpoint selection within a cluster (the "concrete backend → endpoint"
 * step): LEAST_REQUEST (Envoy's default: the less busy of two weighted
 * random picks), ROUND_ROBIN (smooth weighted) and RANDOM (weighted).
 * State (in-flight counts, round-robin position) is per isolate, as
 * Envoy's is per proxy.
 */
import type { ClusterDef, EndpointDef } from "../config/snapshot.ts";

export interface EndpointState {
  active: number;
}

export class Balancer {
  private readonly state = new Map<string, EndpointState>();
  private readonly rrCurrent = new Map<string, number[]>();
  /** The state of an endpoint definition, for the cluster it was asked for (a new snapshot's endpoints find theirs by address). */
  private readonly byEndpoint = new WeakMap<EndpointDef, { cluster: string; state: EndpointState }>();
  private readonly random: () => number;

  constructor(random: () => number = Math.random) {
    this.random = random;
  }

  /** Picks an endpoint from `endpoints` (already filtered for health). */
  pick(cluster: ClusterDef, endpoints: readonly EndpointDef[]): EndpointDef | undefined {
    if (endpoints.length === 0) return undefined;
    if (endpoints.length === 1) return endpoints[0];
    switch (cluster.loadBalancer) {
      case "RANDOM":
        return this.weightedRandom(endpoints);
      case "ROUND_ROBIN":
        return this.roundRobin(cluster.name, endpoints);
      case "LEAST_REQUEST": {
        const a = this.weightedRandom(endpoints) as EndpointDef;
        const b = this.weightedRandom(endpoints) as EndpointDef;
        return this.load(cluster.name, a) <= this.load(cluster.name, b) ? a : b;
      }
    }
  }

  /** Marks a request as in flight to `endpoint`; call the returned function when it ends. */
  begin(cluster: ClusterDef, endpoint: EndpointDef): () => void {
    const s = this.stateOf(cluster.name, endpoint);
    s.active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      s.active--;
    };
  }

  private load(cluster: string, endpoint: EndpointDef): number {
    return this.stateOf(cluster, endpoint).active / endpoint.weight;
  }

  private stateOf(cluster: string, endpoint: EndpointDef): EndpointState {
    // By the definition first: the text key is built once per endpoint of a snapshot, not per request.
    const known = this.byEndpoint.get(endpoint);
    if (known !== undefined && known.cluster === cluster) return known.state;
    const key = `${cluster}|${endpoint.address}:${endpoint.port}`;
    let s = this.state.get(key);
    if (!s) {
      s = { active: 0 };
      this.state.set(key, s);
    }
    this.byEndpoint.set(endpoint, { cluster, state: s });
    return s;
  }

  private weightedRandom(endpoints: readonly EndpointDef[]): EndpointDef | undefined {
    let total = 0;
    for (const e of endpoints) total += e.weight;
    let target = this.random() * total;
    for (const e of endpoints) {
      target -= e.weight;
      if (target < 0) return e;
    }
    return endpoints[endpoints.length - 1];
  }

  /** Nginx's smooth weighted round robin: an even spread that honours weights. */
  private roundRobin(cluster: string, endpoints: readonly EndpointDef[]): EndpointDef | undefined {
    const key = `${cluster}|${endpoints.length}`;
    let current = this.rrCurrent.get(key);
    if (!current) {
      current = endpoints.map(() => 0);
      this.rrCurrent.set(key, current);
    }
    let total = 0;
    let best = 0;
    endpoints.forEach((e, i) => {
      total += e.weight;
      current[i] = (current[i] ?? 0) + e.weight;
      if ((current[i] ?? 0) > (current[best] ?? 0)) best = i;
    });
    current[best] = (current[best] ?? 0) - total;
    return endpoints[best];
  }
}
