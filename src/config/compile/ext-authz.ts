/**
 * GatewayConfig `extensionProviders[].envoyExtAuthzHttp` → ExtAuthzDef,
 * with Istio's defaults (timeout 600s, statusOnError 403, failOpen false).
 * `includeAdditionalHeadersInCheck` values keep their command operators
 * (`%REQ(:authority)%`, …), expanded per check; one Isthmus cannot expand
 * is an error here (see authz/ext-authz/command-operators.ts).
 * The authorizer is a ServiceEntry host like any other origin; its
 * cluster is added to the snapshot so the gateway reaches it the same way.
 */
import { parseHeaderValue } from "../../authz/ext-authz/command-operators.ts";
import { durationMs } from "../duration.ts";
import type { ExtAuthzDef } from "../snapshot.ts";
import type { Resource } from "../validate.ts";
import type { Diagnostics } from "./diagnostics.ts";
import type { ServiceRegistry } from "./services.ts";

const DEFAULT_TIMEOUT_MS = 600_000;

export function compileExtAuthz(
  config: Resource<"GatewayConfig"> | undefined,
  rootNamespace: string,
  services: ServiceRegistry,
  diag: Diagnostics,
): Record<string, ExtAuthzDef> {
  const out: Record<string, ExtAuthzDef> = {};
  config?.spec.extensionProviders?.forEach((provider, i) => {
    const http = provider.envoyExtAuthzHttp;
    if (!http) return;
    const at = (...field: (string | number)[]) => ["spec", "extensionProviders", i, "envoyExtAuthzHttp", ...field];
    if (out[provider.name]) {
      diag.error(config, ["spec", "extensionProviders", i, "name"], `duplicate extension provider name "${provider.name}"`);
      return;
    }
    const service = services.resolve(http.service, rootNamespace);
    if (!service) {
      diag.error(config, at("service"), `expected a ServiceEntry host for the authorizer, got "${http.service}" (declare it with a ServiceEntry, as for any origin)`);
      return;
    }
    const port = services.selectPort(service, http.port);
    if (typeof port === "string") {
      diag.error(config, at("port"), port);
      return;
    }
    let statusOnError = 403;
    if (http.statusOnError !== undefined) {
      if (!/^\d{3}$/.test(http.statusOnError) || Number(http.statusOnError) < 200 || Number(http.statusOnError) > 599) {
        diag.error(config, at("statusOnError"), `expected an HTTP status code (200-599), got "${http.statusOnError}"`);
        return;
      }
      statusOnError = Number(http.statusOnError);
    }
    const pathPrefix = http.pathPrefix ?? "";
    if (pathPrefix && !pathPrefix.startsWith("/")) {
      diag.error(config, at("pathPrefix"), `expected a path starting with /, got "${pathPrefix}"`);
      return;
    }
    const additional = Object.entries(http.includeAdditionalHeadersInCheck ?? {});
    const formattable = additional.map(([name, value]) => checkHeaderValue(value, (reason) => diag.error(config, at("includeAdditionalHeadersInCheck", name), reason)));
    if (formattable.includes(false)) return;
    const cluster = services.cluster(service, port, undefined, http.service);
    const lower = (list: string[] | undefined) => (list ?? []).map((h) => h.toLowerCase());
    const def: ExtAuthzDef = {
      name: provider.name,
      cluster: cluster.name,
      service: http.service,
      timeoutMs: http.timeout ? durationMs(http.timeout) : DEFAULT_TIMEOUT_MS,
      pathPrefix,
      failOpen: http.failOpen ?? false,
      statusOnError,
      includeRequestHeaders: lower(http.includeRequestHeadersInCheck),
      additionalHeaders: additional.map(([k, v]) => [k.toLowerCase(), v]),
      headersToUpstreamOnAllow: lower(http.headersToUpstreamOnAllow),
      headersToDownstreamOnAllow: lower(http.headersToDownstreamOnAllow),
    };
    if (http.headersToDownstreamOnDeny) def.headersToDownstreamOnDeny = lower(http.headersToDownstreamOnDeny);
    const body = http.includeRequestBodyInCheck;
    if (body) {
      def.includeRequestBody = { maxBytes: body.maxRequestBytes ?? 8192, allowPartial: body.allowPartialMessage ?? false, packAsBytes: body.packAsBytes ?? false };
      if (body.packAsBytes) diag.warn(config, at("includeRequestBodyInCheck", "packAsBytes"), "packAsBytes only changes the gRPC check request; the HTTP check sends the body as is");
    }
    out[provider.name] = def;
  });
  return out;
}

/** True when Isthmus can format `value` per request; else reports why (an operator it does not expand, a lone `%`). */
function checkHeaderValue(value: string, report: (reason: string) => void): boolean {
  const parsed = parseHeaderValue(value);
  if (!parsed.ok) report(parsed.reason);
  return parsed.ok;
}
