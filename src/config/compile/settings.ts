/**
 * GatewayConfig → gateway-wide settings, with the documented defaults.
 */
import { durationMs } from "../duration.ts";
import { DEFAULT_SETTINGS } from "../defaults.ts";
import type { GatewaySettings } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics } from "./diagnostics.ts";

export function compileSettings(configs: Resource<"GatewayConfig">[], diag: Diagnostics): GatewaySettings {
  const [config, ...extra] = configs;
  for (const other of extra) {
    diag.error(other, ["metadata", "name"], `only one GatewayConfig is allowed; ${config?.id} is defined at ${config?.file}:${config?.line}`);
  }
  if (!config) return structuredClone(DEFAULT_SETTINGS);
  const spec = config.spec;
  const d = DEFAULT_SETTINGS;
  const limits = spec.limits ?? {};
  const refresh = spec.configRefreshInterval ? durationMs(spec.configRefreshInterval) : d.configRefreshMs;
  if (refresh < 1000) diag.error(config, ["spec", "configRefreshInterval"], "expected at least 1s (each check is a KV read)");
  return {
    rootNamespace: spec.rootNamespace ?? d.rootNamespace,
    configRefreshMs: refresh,
    pathNormalization: spec.pathNormalization?.normalization ?? d.pathNormalization,
    outboundTrafficPolicy: spec.outboundTrafficPolicy?.mode ?? d.outboundTrafficPolicy,
    limits: {
      maxRequestHeadersBytes: limits.maxRequestHeadersKb !== undefined ? limits.maxRequestHeadersKb * 1024 : d.limits.maxRequestHeadersBytes,
      maxHeadersCount: limits.maxHeadersCount ?? d.limits.maxHeadersCount,
      maxUrlBytes: limits.maxUrlBytes ?? d.limits.maxUrlBytes,
      maxRequestBodyBytes: limits.maxRequestBodyBytes ?? d.limits.maxRequestBodyBytes,
      maxJwtBytes: limits.maxJwtBytes ?? d.limits.maxJwtBytes,
      maxMirrorBodyBytes: limits.maxMirrorBodyBytes ?? d.limits.maxMirrorBodyBytes,
    },
    adminPathPrefix: spec.admin?.pathPrefix ?? d.adminPathPrefix,
  };
}
