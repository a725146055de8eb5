/**
 * Gateway-wide defaults, used when GatewayConfig (or a field of it) is
 * absent. Kept free of the schema library so the Worker bundle stays small.
 */
import type { GatewaySettings } from "./snapshot.ts";
import { ISTIO_DEFAULT_RETRY } from "../upstream/retry-on.ts";

/** Defaults used when GatewayConfig (or a field of it) is absent. Documented in docs/CONFIG.md. */
export const DEFAULT_SETTINGS: GatewaySettings = {
  rootNamespace: "istio-system",
  configRefreshMs: 5_000,
  pathNormalization: "DECODE_AND_MERGE_SLASHES",
  outboundTrafficPolicy: "REGISTRY_ONLY",
  limits: {
    maxRequestHeadersBytes: 60 * 1024,
    maxHeadersCount: 100,
    maxUrlBytes: 16 * 1024,
    maxRequestBodyBytes: 100 * 1024 * 1024,
    maxJwtBytes: 8 * 1024,
    maxMirrorBodyBytes: 1024 * 1024,
    maxRetryBodyBytes: 64 * 1024,
  },
  adminPathPrefix: "/__isthmus",
  defaultRetry: ISTIO_DEFAULT_RETRY,
  healthSyncMs: 2_000,
};

