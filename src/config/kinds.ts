/**
 * The kinds Isthmus reads, with their API groups and versions, and the
 * Istio kinds it recognises but ignores at the edge.
 */
import type { z } from "zod";
import {
  DestinationRuleSpec,
  GatewaySpec,
  ServiceEntrySpec,
  VirtualServiceSpec,
} from "./schema/networking.ts";
import { AuthorizationPolicySpec, PeerAuthenticationSpec, RequestAuthenticationSpec } from "./schema/security.ts";
import { TelemetrySpec } from "./schema/telemetry.ts";
import { GatewayConfigSpec, RateLimitPolicySpec } from "./schema/isthmus.ts";
import { EnvoyFilterSpec } from "./schema/envoy-filter.ts";

export interface KindInfo {
  group: string;
  versions: readonly string[];
  spec: z.ZodType;
}

const NETWORKING = ["v1", "v1beta1", "v1alpha3"] as const;
const SECURITY = ["v1", "v1beta1"] as const;

export const KINDS = {
  VirtualService: { group: "networking.istio.io", versions: NETWORKING, spec: VirtualServiceSpec },
  DestinationRule: { group: "networking.istio.io", versions: NETWORKING, spec: DestinationRuleSpec },
  ServiceEntry: { group: "networking.istio.io", versions: NETWORKING, spec: ServiceEntrySpec },
  Gateway: { group: "networking.istio.io", versions: NETWORKING, spec: GatewaySpec },
  RequestAuthentication: { group: "security.istio.io", versions: SECURITY, spec: RequestAuthenticationSpec },
  AuthorizationPolicy: { group: "security.istio.io", versions: SECURITY, spec: AuthorizationPolicySpec },
  PeerAuthentication: { group: "security.istio.io", versions: SECURITY, spec: PeerAuthenticationSpec },
  Telemetry: { group: "telemetry.istio.io", versions: ["v1", "v1alpha1"], spec: TelemetrySpec },
  GatewayConfig: { group: "isthmus.dev", versions: ["v1alpha1"], spec: GatewayConfigSpec },
  RateLimitPolicy: { group: "isthmus.dev", versions: ["v1alpha1"], spec: RateLimitPolicySpec },
  /** Read only for its local_ratelimit patches; every other patch is ignored with a warning. */
  EnvoyFilter: { group: "networking.istio.io", versions: ["v1alpha3"], spec: EnvoyFilterSpec },
} as const satisfies Record<string, KindInfo>;

export type Kind = keyof typeof KINDS;

export function isKind(kind: string): kind is Kind {
  return Object.hasOwn(KINDS, kind);
}

/** Istio kinds that configure in-mesh proxies and mean nothing at the edge. */
export const IGNORED_ISTIO_KINDS: Record<string, string> = {
  Sidecar: "Sidecar configures in-mesh sidecar proxies; an edge gateway has none",
  WorkloadEntry: "WorkloadEntry registers in-mesh workloads; list edge origins as ServiceEntry endpoints instead",
  WorkloadGroup: "WorkloadGroup templates in-mesh workloads; list edge origins as ServiceEntry endpoints instead",
  ProxyConfig: "ProxyConfig tunes Envoy proxies, which Isthmus does not run",
  WasmPlugin: "WasmPlugin loads Envoy Wasm extensions, which Isthmus cannot run",
};
