/**
 * Decides which hosts the edge serves and with which routes:
 *
 * - With no Gateway resources, every VirtualService applies to its hosts.
 * - With Gateways, a VirtualService applies when its `gateways` names one of
 *   them, for the hosts it shares with that Gateway's servers (Istio's
 *   host intersection, honouring the `namespace/host` form).
 * - A Gateway whose selector GatewayConfig `gatewayLabels` does not cover is
 *   left out with a warning, as is a VirtualService bound only to such
 *   Gateways.
 * - Several VirtualServices for one host merge oldest first (creation
 *   time, then name, then namespace): their rules keep their own order, and
 *   catch-all routes move to the end (Istio's gateway merge).
 * - A MESH_EXTERNAL ServiceEntry host (Istio's default location) that no
 *   VirtualService covers gets Istio's default route to that service, which
 *   is how the edge serves egress. MESH_INTERNAL hosts are origins behind
 *   the gateway: only VirtualService routes reach them.
 */
import type { HostTable, RouteDef, RuleDef, VirtualHostDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics } from "./diagnostics.ts";
import { configuredGatewayLabels } from "./security-targets.ts";
import { expandShortName, hostMatches, intersectHosts, specificity } from "./hosts.ts";
import { matchesEveryRequest, reachableRules } from "./catch-all.ts";
import { compileHttpRules, type CompiledRule, type EdgeWorkload } from "./rules.ts";
import { MESH_GATEWAY, resolveGatewayName } from "./gateway-names.ts";
import { byCreationTime } from "./creation-order.ts";
import { Delegates, isDelegate } from "./delegates.ts";
import type { Service, ServiceRegistry } from "./services.ts";

interface ServerBinding {
  gateway: Resource<"Gateway">;
  /** Namespace part of the server host (`*` for any). */
  namespace: string;
  host: string;
  httpsRedirect: boolean;
}

interface HostEntry {
  rules: CompiledRule[];
  httpsRedirect: boolean;
}

export interface VirtualHostsResult {
  hosts: HostTable;
  virtualHosts: VirtualHostDef[];
  rules: RuleDef[];
}

export function buildVirtualHosts(
  virtualServices: Resource<"VirtualService">[],
  gateways: Resource<"Gateway">[],
  gatewayLabels: Record<string, string> | undefined,
  services: ServiceRegistry,
  diag: Diagnostics,
  edge: EdgeWorkload,
): VirtualHostsResult {
  const applied = selectedGateways(gateways, configuredGatewayLabels(gatewayLabels), diag);
  const servers = applied.flatMap((g) => bindings(g, diag));
  const byHost = new Map<string, HostEntry>();
  const entry = (host: string): HostEntry => {
    let e = byHost.get(host);
    if (!e) {
      e = { rules: [], httpsRedirect: false };
      byHost.set(host, e);
    }
    return e;
  };

  // A VirtualService without hosts is a delegate: it applies only through the roots that delegate to it.
  const delegates = new Delegates(virtualServices, diag);
  // Istio merges a host's VirtualServices oldest first, ties broken by name, then namespace.
  const ordered = virtualServices.filter((vs) => !isDelegate(vs)).sort(byCreationTime);

  for (const vs of ordered) {
    const hosts = edgeHosts(vs, gateways, applied, servers, diag);
    if (hosts.length === 0) continue;
    const compiled = compileHttpRules(vs, services, diag, edge, delegates);
    for (const { host, httpsRedirect, through } of hosts) {
      const e = entry(host);
      e.httpsRedirect ||= httpsRedirect;
      // match.gateways: a match block only applies through the gateways it names.
      const bound = gateways.length === 0 ? compiled : compiled.map((rule) => throughGateways(rule, through));
      e.rules.push(...reachableRules(bound));
    }
  }

  delegates.reportUnused();

  // Istio's default route for ServiceEntry hosts no VirtualService covers.
  for (const service of services.all()) {
    if (service.resource.spec.location === "MESH_INTERNAL") continue;
    if ([...byHost.keys()].some((h) => hostMatches(h, service.host))) continue;
    const rules = defaultRoutes(service, services);
    const e = entry(service.host);
    e.rules.push(...rules);
  }

  const rules: RuleDef[] = [];
  const ruleIndexOf = new Map<RuleDef, number>();
  const virtualHosts: VirtualHostDef[] = [];
  const hostTable: HostTable = { exact: {}, suffix: [], prefix: [] };
  const names = [...byHost.keys()].sort((a, b) => specificity(b) - specificity(a) || a.localeCompare(b));
  for (const name of names) {
    const e = byHost.get(name) as HostEntry;
    // Istio's SortVHostRoutes works on routes (one per match block): catch-all
    // routes (of any port's table) move to the end, every other route keeps its place.
    const all = e.rules.flatMap((compiled) => compiled.routes.map((route) => ({ compiled, route, catchAll: matchesEveryRequest(route.match) })));
    const routes: RouteDef[] = [];
    for (const { compiled, route } of [...all.filter((r) => !r.catchAll), ...all.filter((r) => r.catchAll)]) {
      let ruleIndex = ruleIndexOf.get(compiled.rule);
      if (ruleIndex === undefined) {
        ruleIndex = rules.push(compiled.rule) - 1;
        ruleIndexOf.set(compiled.rule, ruleIndex);
      }
      routes.push({ name: route.name, rule: ruleIndex, match: route.match });
    }
    const vhost = virtualHosts.push({ name, httpsRedirect: e.httpsRedirect, routes }) - 1;
    if (name === "*") hostTable.any = vhost;
    else if (name.startsWith("*.")) hostTable.suffix.push([name.slice(1), vhost]);
    else if (name.endsWith(".*")) hostTable.prefix.push([name.slice(0, -1), vhost]);
    else hostTable.exact[name] = vhost;
  }
  hostTable.suffix.sort((a, b) => b[0].length - a[0].length);
  hostTable.prefix.sort((a, b) => b[0].length - a[0].length);
  return { hosts: hostTable, virtualHosts, rules };
}

/**
 * The Gateways this edge serves: every one when GatewayConfig `gatewayLabels`
 * is unset (or `{}`), else those whose every `selector` label is among them.
 * A Gateway left out is reported on its selector, since its servers then
 * serve nothing here.
 */
function selectedGateways(gateways: Resource<"Gateway">[], gatewayLabels: Record<string, string> | undefined, diag: Diagnostics): Resource<"Gateway">[] {
  if (!gatewayLabels) return gateways;
  const configured = labelList(gatewayLabels);
  return gateways.filter((g) => {
    const missing = Object.entries(g.spec.selector ?? {}).filter(([k, v]) => gatewayLabels[k] !== v);
    if (missing.length === 0) return true;
    diag.warn(
      g,
      ["spec", "selector"],
      `not selected by GatewayConfig gatewayLabels (${configured}): selector ${missing.length === 1 ? "label" : "labels"} ${labelList(Object.fromEntries(missing))} ${missing.length === 1 ? "is" : "are"} not among them; its servers are not served (add the labels to gatewayLabels, or change the selector, to serve them)`,
    );
    return false;
  });
}

/** `k=v, k2=v2`, for messages. */
function labelList(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/** The rule's match blocks that apply through one of these gateways (all of them when none names a gateway). */
function throughGateways(rule: CompiledRule, through: ReadonlySet<string>): CompiledRule {
  const routes = rule.routes.filter((r) => !r.gateways || r.gateways.some((g) => through.has(g)));
  return routes.length === rule.routes.length ? rule : { ...rule, routes };
}

function bindings(gateway: Resource<"Gateway">, diag: Diagnostics): ServerBinding[] {
  const out: ServerBinding[] = [];
  gateway.spec.servers?.forEach((server, i) => {
    server.hosts.forEach((raw, j) => {
      const slash = raw.indexOf("/");
      let namespace = "*";
      let host = raw;
      if (slash >= 0) {
        namespace = raw.slice(0, slash);
        host = raw.slice(slash + 1);
        if (namespace === ".") namespace = gateway.namespace;
        if (!namespace || !host) {
          diag.error(gateway, ["spec", "servers", i, "hosts", j], `expected "host" or "namespace/host", got "${raw}"`);
          return;
        }
      }
      out.push({ gateway, namespace, host: host.toLowerCase(), httpsRedirect: server.tls?.httpsRedirect === true });
    });
  });
  return out;
}

/** The hosts a VirtualService serves at the edge, after Gateway binding. */
function edgeHosts(
  vs: Resource<"VirtualService">,
  allGateways: Resource<"Gateway">[],
  applied: Resource<"Gateway">[],
  servers: ServerBinding[],
  diag: Diagnostics,
): { host: string; httpsRedirect: boolean; through: Set<string> }[] {
  const vsHosts = (vs.spec.hosts ?? []).map((h) => expandShortName(h, vs.namespace));
  // A VirtualService with no routes at all is refused by its schema (as Istio's webhook does);
  // one with only tcp or tls routes serves nothing here.
  if (!(vs.spec.http?.length)) return [];
  if (allGateways.length === 0) return vsHosts.map((host) => ({ host, httpsRedirect: false, through: new Set<string>() }));

  const refs = vs.spec.gateways ?? [];
  if (refs.length === 0 || refs.every((r) => r === MESH_GATEWAY)) {
    diag.warn(vs, ["spec", "gateways"], "not bound to a Gateway (no gateways means mesh only); ignored at the edge");
    return [];
  }
  const bound: Resource<"Gateway">[] = [];
  const unselected: string[] = [];
  const named = (g: Resource<"Gateway">, ref: string) => `${g.namespace}/${g.name}` === ref;
  refs.forEach((raw, i) => {
    if (raw === MESH_GATEWAY) return;
    const ref = resolveGatewayName(raw, vs.namespace);
    const gateway = applied.find((g) => named(g, ref));
    if (gateway) bound.push(gateway);
    else if (allGateways.some((g) => named(g, ref))) unselected.push(ref);
    else diag.warn(vs, ["spec", "gateways", i], `no Gateway ${ref}${raw.includes(".") ? ` (from "${raw}")` : ""} is defined; this binding is ignored`);
  });
  if (bound.length === 0 && unselected.length > 0) {
    diag.warn(vs, ["spec", "gateways"], `bound only to Gateways GatewayConfig gatewayLabels does not select (${unselected.join(", ")}); ignored at the edge`);
  }

  const out = new Map<string, { httpsRedirect: boolean; through: Set<string> }>();
  for (const server of servers) {
    if (!bound.includes(server.gateway)) continue;
    if (server.namespace !== "*" && server.namespace !== vs.namespace) continue;
    for (const host of vsHosts) {
      const shared = intersectHosts(host, server.host);
      if (!shared) continue;
      const e = out.get(shared) ?? { httpsRedirect: false, through: new Set<string>() };
      e.httpsRedirect ||= server.httpsRedirect;
      e.through.add(`${server.gateway.namespace}/${server.gateway.name}`);
      out.set(shared, e);
    }
  }
  if (bound.length > 0 && out.size === 0) {
    diag.warn(vs, ["spec", "hosts"], `none of these hosts is served by Gateway ${bound.map((g) => `${g.namespace}/${g.name}`).join(", ")}; ignored at the edge`);
  }
  return [...out].map(([host, e]) => ({ host, ...e }));
}

/**
 * Istio's default route for a service with no VirtualService: every
 * request for the host goes to the service, on the port the client used
 * (or the only port). The client says which in its Host header
 * (`api.example.com:8443`): that port chooses a destination, it grants
 * nothing, unlike the listener's port that policies compare.
 */
function defaultRoutes(service: Service, services: ServiceRegistry): CompiledRule[] {
  const ports = service.ports;
  return ports.map((port, i) => {
    const cluster = services.cluster(service, port, undefined, service.host);
    const rule: RuleDef = {
      source: service.resource.id,
      index: i,
      action: { type: "route", destinations: [{ host: service.host, port: port.number, cluster: cluster.name, weight: 100 }] },
    };
    const match = ports.length === 1 ? {} : { hostPort: port.number };
    return { rule, routes: [{ name: "", match }] };
  });
}
