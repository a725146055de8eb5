/**
 * GatewayConfig → gateway-wide settings, with the documented defaults.
 */
import { durationMs } from "../duration.ts";
import { DEFAULT_SETTINGS } from "../defaults.ts";
import type { GatewaySettings, LocalityRuleDef, LocalitySettings } from "../snapshot.ts";
import type { GatewayConfigSpec } from "../schema/isthmus.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics, FieldPath } from "./diagnostics.ts";
import { compileRetry } from "./retries.ts";
import { configuredGatewayLabels } from "./security-targets.ts";
import { localityProblem } from "../../upstream/locality.ts";

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
  const fail = (path: FieldPath, message: string) => diag.error(config, path, message);
  const healthSync = spec.healthSyncInterval ? durationMs(spec.healthSyncInterval) : (d.healthSyncMs as number);
  if (healthSync < 500) fail(["spec", "healthSyncInterval"], "expected at least 500ms (each exchange is a Durable Object call per isolate)");
  const settings: GatewaySettings = {
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
      maxRetryBodyBytes: limits.maxRetryBodyBytes ?? d.limits.maxRetryBodyBytes,
    },
    adminPathPrefix: spec.admin?.pathPrefix ?? d.adminPathPrefix,
    defaultRetry: spec.defaultHttpRetryPolicy
      ? compileRetry(spec.defaultHttpRetryPolicy, ["spec", "defaultHttpRetryPolicy"], fail, (path, message) => diag.warn(config, path, message))
      : d.defaultRetry,
    healthSyncMs: healthSync,
  };
  const locality = compileLocality(spec.locality, fail);
  if (locality) settings.locality = locality;
  const labels = configuredGatewayLabels(spec.gatewayLabels);
  if (labels) settings.gatewayLabels = labels;
  const trusted = spec.gatewayTopology?.numTrustedProxies;
  if (trusted) settings.numTrustedProxies = trusted;
  const underscores = spec.headersWithUnderscoresAction;
  if (underscores && underscores !== "ALLOW") settings.headersWithUnderscoresAction = underscores;
  return settings;
}

/** GatewayConfig `locality`: Cloudflare location → the locality requests are treated as coming from. */
function compileLocality(spec: GatewayConfigSpec["locality"], fail: (path: FieldPath, message: string) => void): LocalitySettings | undefined {
  if (!spec) return undefined;
  const out: LocalitySettings = { rules: [] };
  spec.rules?.forEach((rule, i) => {
    const at: FieldPath = ["spec", "locality", "rules", i];
    const problem = localityProblem(rule.locality);
    if (problem) fail([...at, "locality"], problem);
    const def: LocalityRuleDef = { locality: rule.locality };
    const upper = (list: string[] | undefined) => (list && list.length > 0 ? list.map((v) => v.trim().toUpperCase()) : undefined);
    const colos = upper(rule.match.colos);
    const countries = upper(rule.match.countries);
    const continents = upper(rule.match.continents);
    const regions = upper(rule.match.regions);
    if (colos) def.colos = colos;
    if (countries) def.countries = countries;
    if (continents) def.continents = continents;
    if (regions) {
      regions.forEach((r, j) => {
        if (!/^[A-Z]{2}-[A-Z0-9]{1,3}$/.test(r)) fail([...at, "match", "regions", j], `expected an ISO 3166-2 code <country>-<region> such as US-TX, got "${r}"`);
      });
      def.regions = regions;
    }
    if (!colos && !countries && !continents && !regions) fail([...at, "match"], "expected at least one of colos, countries, continents or regions");
    out.rules.push(def);
  });
  if (spec.default !== undefined) {
    const problem = localityProblem(spec.default);
    if (problem) fail(["spec", "locality", "default"], problem);
    out.default = spec.default;
  }
  return out;
}
