/**
 * Turns a Snapshot (plain JSON) into runtime objects: routes, route
 * indexes and lookup maps, once per snapshot version per isolate.
 *
 * A virtual host's routes and index are built the first time a
 * request reaches that host, and a regex is compiled the first time it is
 * evaluated; both are then kept for the life of the snapshot. A cold
 * isolate therefore pays for the hosts it serves, not for every host of a
 * large configuration (10,000 routes over 500 hosts), and no request ever
 * compiles the same thing twice. Every pattern was checked against RE2
 * when the CLI compiled the configuration. In the packed layout the CLI
 * stores (src/config/snapshot-packing.ts), a virtual host's routes and
 * rules are parsed from their JSON text at that same first request.
 */
import type { ClusterDef, DestinationDef, RouteDef, RuleDef, Snapshot, StringMatchDef } from "../config/snapshot.ts";
import type { RequestFacts } from "../gateway/facts.ts";
import { joinSnapshot, PACKED_FORMAT, READABLE_FORMATS, readPackedHost, type HostRoutes, type SnapshotHead, type StoredSnapshot } from "../config/snapshot-packing.ts";
import { hydrateSecurity, type RuntimeSecurity } from "../authz/hydrate.ts";
import { hydrateRateLimits, type RuntimeRateLimits } from "../ratelimit/hydrate.ts";
import { matchesRequest } from "./match.ts";
import { lazyRegex, type Regex } from "./regex.ts";
import { RouteIndex } from "./route-index.ts";
import { hydrateCors, type Cors } from "./cors.ts";
import { LocalityResolver } from "../upstream/locality.ts";
import { hydrateTelemetry, type RuntimeTelemetry, type TelemetryRuntime } from "../telemetry/hydrate.ts";

/** What the runtime offers besides the snapshot. */
export type HydrateOptions = TelemetryRuntime;

export interface Rule {
  def: RuleDef;
  /** The route action's destinations (none for a redirect or a direct response). */
  destinations: readonly DestinationDef[];
  /** The sum of their weights, for a weighted pick. */
  totalWeight: number;
  uriRegex?: Regex;
  cors?: Cors;
}

/**
 * A route of a virtual host: its definition as the snapshot holds it, its
 * place in the host's ordered list, and the rule it applies. Its
 * conditions are read from the definition when tested (src/routing/match.ts).
 */
export class Route {
  readonly def: RouteDef;
  /** Position in the virtual host's ordered route list. */
  readonly order: number;
  readonly rule: Rule;

  constructor(def: RouteDef, order: number, rule: Rule) {
    this.def = def;
    this.order = order;
    this.rule = rule;
  }

  /** The route's name (Envoy's ROUTE_NAME). */
  get name(): string {
    return this.def.name;
  }

  /** The uri condition that matched, for prefix rewrites. */
  get uri(): StringMatchDef | undefined {
    return this.def.match.uri;
  }

  /** True when the route's match holds for the request. */
  matches(facts: RequestFacts): boolean {
    return matchesRequest(this.def.match, facts);
  }
}

export interface VirtualHost {
  name: string;
  httpsRedirect: boolean;
  /** Built on first access. */
  readonly routes: Route[];
  /** Built on first access. */
  readonly index: RouteIndex;
  /** The definitions the routes are built from (read again from the snapshot when not built yet). */
  defs(): HostRoutes;
}

/**
 * A virtual host whose routes are hydrated when first needed. Once built,
 * it keeps the definitions it parsed and lets go of where it read them
 * (a packed host's JSON text), so a host costs its text until a request
 * reaches it and its objects after, never both.
 */
class LazyVirtualHost implements VirtualHost {
  readonly name: string;
  readonly httpsRedirect: boolean;
  private read: () => HostRoutes;
  /** Rules by their index in the compiled Snapshot, shared by every host. */
  private readonly shared: (Rule | undefined)[];
  private built?: { routes: Route[]; index: RouteIndex };

  constructor(name: string, httpsRedirect: boolean, read: () => HostRoutes, shared: (Rule | undefined)[]) {
    this.name = name;
    this.httpsRedirect = httpsRedirect;
    this.read = read;
    this.shared = shared;
  }

  get routes(): Route[] {
    return this.build().routes;
  }

  get index(): RouteIndex {
    return this.build().index;
  }

  defs(): HostRoutes {
    return this.read();
  }

  private build(): { routes: Route[]; index: RouteIndex } {
    if (this.built) return this.built;
    const defs = this.read();
    this.read = () => defs;
    const rule = (i: number): Rule => (this.shared[defs.ruleIds ? (defs.ruleIds[i] as number) : i] ??= hydrateRule(defs.rules[i] as RuleDef));
    const routes = defs.routes.map((r, order) => new Route(r, order, rule(r.rule)));
    this.built = { routes, index: new RouteIndex(defs.routes.map((r) => r.match)) };
    return this.built;
  }
}

export interface HostIndex {
  exact: Map<string, number>;
  /** `.example.com` → virtual host, for `*.example.com`. */
  suffix: Map<string, number>;
  /** `api.` → virtual host, for `api.*`. */
  prefix: Map<string, number>;
  any?: number;
}

export interface RuntimeSnapshot {
  version: string;
  /** The snapshot less its virtual hosts' routes and rules (`compiledSnapshot` gives it whole). */
  snapshot: SnapshotHead;
  hosts: HostIndex;
  virtualHosts: VirtualHost[];
  clusters: Map<string, ClusterDef>;
  /** Authentication and authorization (src/authz); absent when none is configured. */
  security?: RuntimeSecurity;
  /** request.cf → the locality the gateway acts as for that request. */
  locality: LocalityResolver;
  /** Rate limits (src/ratelimit); absent when none is configured. */
  rateLimits?: RuntimeRateLimits;
  /** Telemetry plans (src/telemetry); absent when nothing is reported. */
  telemetry?: RuntimeTelemetry;
}

export class SnapshotFormatError extends Error {
  constructor(found: unknown) {
    super(`snapshot format ${String(found)} is not supported by this gateway build (it reads formats ${READABLE_FORMATS.join(" and ")}); redeploy the Worker or re-apply with a matching CLI`);
    this.name = "SnapshotFormatError";
  }
}

/**
 * The Snapshot as the isolate serves it. `offers` says what this runtime
 * offers besides the snapshot (a Prometheus endpoint under `isthmus serve`).
 */
export function hydrate(snapshot: StoredSnapshot, offers: HydrateOptions = {}): RuntimeSnapshot {
  if (!READABLE_FORMATS.includes(snapshot.format)) throw new SnapshotFormatError(snapshot.format);
  // One Rule per rule of the snapshot, shared by every route and host that uses it.
  const rules: (Rule | undefined)[] = [];
  let head: SnapshotHead;
  let virtualHosts: VirtualHost[];
  if (snapshot.format === PACKED_FORMAT) {
    const { virtualHosts: packed, ...rest } = snapshot;
    head = rest;
    virtualHosts = packed.map((vh) => new LazyVirtualHost(vh.name, vh.httpsRedirect, () => ({ ...readPackedHost(vh), ruleIds: vh.ruleIds }), rules));
  } else {
    const { virtualHosts: defs, rules: ruleDefs, ...rest } = snapshot;
    head = rest;
    virtualHosts = defs.map((vh) => new LazyVirtualHost(vh.name, vh.httpsRedirect, () => ({ routes: vh.routes, rules: ruleDefs }), rules));
  }
  const hosts: HostIndex = {
    exact: new Map(Object.entries(snapshot.hosts.exact)),
    suffix: new Map(snapshot.hosts.suffix),
    prefix: new Map(snapshot.hosts.prefix),
  };
  if (snapshot.hosts.any !== undefined) hosts.any = snapshot.hosts.any;
  const runtime: RuntimeSnapshot = {
    version: snapshot.version,
    snapshot: head,
    hosts,
    virtualHosts,
    clusters: new Map(Object.entries(snapshot.clusters)),
    locality: new LocalityResolver(snapshot.settings.locality),
  };
  if (snapshot.security) runtime.security = hydrateSecurity(snapshot.security);
  if (snapshot.rateLimits) runtime.rateLimits = hydrateRateLimits(snapshot.rateLimits);
  if (snapshot.telemetry) {
    const telemetry = hydrateTelemetry(snapshot.telemetry, offers);
    if (telemetry) runtime.telemetry = telemetry;
  }
  return runtime;
}

/** The compiled Snapshot a runtime serves, whatever layout it was stored in (the admin `/config`). */
export function compiledSnapshot(runtime: RuntimeSnapshot): Snapshot {
  return joinSnapshot(runtime.snapshot, runtime.virtualHosts.map((vh) => ({ name: vh.name, httpsRedirect: vh.httpsRedirect, routes: () => vh.defs() })));
}

function hydrateRule(def: RuleDef): Rule {
  const destinations = def.action.type === "route" ? def.action.destinations : [];
  let total = 0;
  for (const d of destinations) total += d.weight;
  const rule: Rule = { def, destinations, totalWeight: total };
  if (def.rewrite?.uriRegex) rule.uriRegex = lazyRegex(def.rewrite.uriRegex.match);
  if (def.cors) rule.cors = hydrateCors(def.cors);
  return rule;
}
