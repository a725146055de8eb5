/**
 * Compiles validated resources into one Snapshot.
 *
 * @example
 * const { snapshot, problems } = await compile(resources);
 */
import { SNAPSHOT_FORMAT, type Snapshot } from "../snapshot.ts";
import type { Problem } from "../problems.ts";
import { hasErrors } from "../problems.ts";
import type { AnyResource, Resource } from "../validate.ts";
import type { Kind } from "../kinds.ts";
import { Diagnostics } from "./diagnostics.ts";
import { ServiceRegistry } from "./services.ts";
import { compileSecurity } from "./security.ts";
import { compileRateLimits } from "./rate-limit.ts";
import { compileTelemetry } from "./telemetry.ts";
import { compileSettings } from "./settings.ts";
import { compileGatewayUpstreams } from "./health-checks.ts";
import { buildVirtualHosts } from "./virtual-hosts.ts";
import { gatewayLabels } from "./security-targets.ts";
import { contentVersion } from "./version.ts";

export interface CompileResult {
  /** Absent when any problem is an error. */
  snapshot?: Snapshot;
  problems: Problem[];
}

export async function compile(resources: readonly AnyResource[]): Promise<CompileResult> {
  const diag = new Diagnostics();
  const of = <K extends Kind>(kind: K) => resources.filter((r) => r.kind === kind) as unknown as Resource<K>[];

  const settings = compileSettings(of("GatewayConfig"), diag);
  const gatewayConfig = of("GatewayConfig")[0];
  const edge = { labels: gatewayLabels(gatewayConfig, of("Gateway")), namespace: gatewayConfig?.namespace ?? settings.rootNamespace };
  const services = new ServiceRegistry(of("ServiceEntry"), of("DestinationRule"), diag, gatewayConfig?.spec.credentials, { gateway: edge.namespace, root: settings.rootNamespace });
  const { hosts, virtualHosts, rules } = buildVirtualHosts(of("VirtualService"), of("Gateway"), gatewayConfig?.spec.gatewayLabels, services, diag, edge);
  const security = compileSecurity(
    {
      requestAuthentications: of("RequestAuthentication"),
      authorizationPolicies: of("AuthorizationPolicy"),
      peerAuthentications: of("PeerAuthentication"),
      gatewayConfig,
      gateways: of("Gateway"),
      rootNamespace: settings.rootNamespace,
      services,
    },
    diag,
  );
  if (gatewayConfig) compileGatewayUpstreams(gatewayConfig, settings, services, diag);

  const rateLimits = compileRateLimits(
    {
      policies: of("RateLimitPolicy"),
      envoyFilters: of("EnvoyFilter"),
      gatewayConfig,
      gateways: of("Gateway"),
      rootNamespace: settings.rootNamespace,
      services,
      routeNames: new Set(virtualHosts.flatMap((vh) => vh.routes.map((r) => r.name)).filter((n) => n !== "")),
    },
    diag,
  );

  const telemetry = compileTelemetry(
    { telemetries: of("Telemetry"), gatewayConfig, gateways: of("Gateway"), rootNamespace: settings.rootNamespace, services },
    diag,
  );

  if (hasErrors(diag.problems)) return { problems: diag.problems };

  const body: Omit<Snapshot, "version"> = {
    format: SNAPSHOT_FORMAT,
    settings,
    hosts,
    virtualHosts,
    rules,
    clusters: sortKeys(services.clusters),
    resources: resources.map((r) => r.id).sort(),
  };
  if (security) body.security = security;
  if (rateLimits) body.rateLimits = rateLimits;
  if (telemetry) body.telemetry = telemetry;
  const version = await contentVersion(body);
  return { snapshot: { ...body, version }, problems: diag.problems };
}

function sortKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
