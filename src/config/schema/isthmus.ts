/**
 * The two Isthmus kinds under `isthmus.dev/v1alpha1`.
 *
 * GatewayConfig is the part of Istio's MeshConfig that means something at
 * the edge (same field names where MeshConfig has one), plus edge-only
 * settings. RateLimitPolicy fills the gap Istio leaves to EnvoyFilter.
 */
import { z } from "zod";
import { Duration, PortNumber, UInt, WorkloadSelector } from "./common.ts";
import { HTTPRetry } from "./networking.ts";
import { Condition } from "./security.ts";

const HeaderFromSecret = z.strictObject({ name: z.string().min(1), secret: z.string().min(1) });

const ExtAuthzHttp = z.strictObject({
  service: z.string().min(1),
  port: PortNumber,
  timeout: Duration.optional(),
  pathPrefix: z.string().optional(),
  failOpen: z.boolean().optional(),
  statusOnError: z.string().optional(),
  includeRequestHeadersInCheck: z.array(z.string()).optional(),
  includeAdditionalHeadersInCheck: z.record(z.string(), z.string()).optional(),
  headersToUpstreamOnAllow: z.array(z.string()).optional(),
  headersToDownstreamOnDeny: z.array(z.string()).optional(),
  headersToDownstreamOnAllow: z.array(z.string()).optional(),
  includeRequestBodyInCheck: z
    .strictObject({
      maxRequestBytes: UInt.optional(),
      allowPartialMessage: z.boolean().optional(),
      packAsBytes: z.boolean().optional(),
    })
    .optional(),
});

const OtlpExporter = z.strictObject({
  /** OTLP/HTTP base URL; `/v1/traces`, `/v1/metrics`, `/v1/logs` are appended. */
  endpoint: z.string().url({ message: "expected an http(s) URL" }),
  protocol: z.enum(["http/protobuf", "http/json"]).optional(),
  headers: z.array(HeaderFromSecret).optional(),
  timeout: Duration.optional(),
  signals: z.array(z.enum(["traces", "metrics", "logs"])).optional(),
});

export const ExtensionProvider = z
  .strictObject({
    name: z.string().min(1),
    envoyExtAuthzHttp: ExtAuthzHttp.optional(),
    opentelemetry: OtlpExporter.optional(),
  })
  .superRefine((p, ctx) => {
    const kinds = [p.envoyExtAuthzHttp, p.opentelemetry].filter((v) => v !== undefined).length;
    if (kinds !== 1) {
      ctx.addIssue({ code: "custom", message: "expected exactly one of envoyExtAuthzHttp or opentelemetry" });
    }
  });

const LocalityRule = z.strictObject({
  /** Match on the Cloudflare location of the request (request.cf). */
  match: z.strictObject({
    colos: z.array(z.string()).optional(),
    countries: z.array(z.string()).optional(),
    continents: z.array(z.string()).optional(),
    regions: z.array(z.string()).optional(),
  }),
  /** The locality the request is treated as coming from, e.g. `aws/us-east-1/us-east-1a`. */
  locality: z.string().min(1),
});

const HealthCheck = z.strictObject({
  host: z.string().min(1),
  port: PortNumber.optional(),
  path: z.string().optional(),
  interval: Duration.optional(),
  timeout: Duration.optional(),
  expectedCodes: z.array(z.string()).optional(),
  healthyThreshold: UInt.optional(),
  unhealthyThreshold: UInt.optional(),
  headers: z.record(z.string(), z.string()).optional(),
});

export const GatewayConfigSpec = z.strictObject({
  rootNamespace: z.string().min(1).optional(),
  configRefreshInterval: Duration.optional(),
  gatewayLabels: z.record(z.string(), z.string()).optional(),
  pathNormalization: z
    .strictObject({ normalization: z.enum(["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]).optional() })
    .optional(),
  outboundTrafficPolicy: z.strictObject({ mode: z.enum(["REGISTRY_ONLY", "ALLOW_ANY"]).optional() }).optional(),
  limits: z
    .strictObject({
      maxRequestHeadersKb: z.number().int().min(1).max(128).optional(),
      maxHeadersCount: z.number().int().min(1).optional(),
      maxUrlBytes: z.number().int().min(64).optional(),
      maxRequestBodyBytes: z.number().int().min(0).optional(),
      maxJwtBytes: z.number().int().min(256).optional(),
      maxMirrorBodyBytes: z.number().int().min(0).optional(),
      maxRetryBodyBytes: z.number().int().min(0).optional(),
    })
    .optional(),
  admin: z.strictObject({ pathPrefix: z.string().regex(/^\/[A-Za-z0-9._~-]+$/, { message: "expected a path such as /__isthmus" }).optional() }).optional(),
  connectTimeout: Duration.optional(),
  defaultHttpRetryPolicy: HTTPRetry.optional(),
  extensionProviders: z.array(ExtensionProvider).optional(),
  jwks: z
    .strictObject({
      refreshInterval: Duration.optional(),
      maxAge: Duration.optional(),
      unknownKidCooldown: Duration.optional(),
    })
    .optional(),
  peerCertificate: z
    .strictObject({
      principal: z.enum(["SUBJECT_DN", "SHA256_FINGERPRINT"]).optional(),
      forwardClientCert: z.enum(["NONE", "RFC9440"]).optional(),
    })
    .optional(),
  telemetry: z
    .strictObject({
      resourceAttributes: z.record(z.string(), z.string()).optional(),
      flushInterval: Duration.optional(),
      flushRequests: UInt.optional(),
      maxSeries: UInt.optional(),
      exportRetries: UInt.optional(),
      /** Trace context formats written upstream (OTEL_PROPAGATORS names); every format is read. */
      propagators: z.array(z.enum(["tracecontext", "b3", "b3multi"])).optional(),
    })
    .optional(),
  locality: z
    .strictObject({
      rules: z.array(LocalityRule).optional(),
      default: z.string().optional(),
    })
    .optional(),
  healthChecks: z.array(HealthCheck).optional(),
  /** How often each isolate exchanges outlier ejections and health-check results through the UpstreamHealth Durable Object. */
  healthSyncInterval: Duration.optional(),
  /** Istio's ProxyConfig `gatewayTopology`: how many proxies in front of the gateway append to X-Forwarded-For. */
  gatewayTopology: z.strictObject({ numTrustedProxies: UInt.optional() }).optional(),
  /** Envoy's HttpProtocolOptions `headers_with_underscores_action` for client request headers (Istio leaves it ALLOW). */
  headersWithUnderscoresAction: z.enum(["ALLOW", "DROP_HEADER", "REJECT_REQUEST"]).optional(),
  credentials: z
    .array(
      z.strictObject({
        /** DestinationRule `tls.credentialName` this entry serves. */
        credentialName: z.string().min(1),
        /** Name of the Worker `mtls_certificates` binding that presents the certificate. */
        binding: z.string().min(1),
      }),
    )
    .optional(),
});
export type GatewayConfigSpec = z.infer<typeof GatewayConfigSpec>;

/** `requests` per `unit`, with at most `burst` at once (default: `requests`). */
const RateLimit = z.strictObject({
  requests: UInt,
  unit: z.enum(["second", "minute", "hour", "day"]),
  burst: z.number().int({ message: "expected a whole number" }).min(1, { message: "expected a burst of at least 1" }).optional(),
});

const StringList = z.array(z.string()).optional();

export const RateLimitRule = z.strictObject({
  name: z.string().min(1),
  match: z
    .strictObject({
      hosts: StringList,
      notHosts: StringList,
      routes: StringList,
      notRoutes: StringList,
      methods: StringList,
      notMethods: StringList,
      paths: StringList,
      notPaths: StringList,
      ports: StringList,
      notPorts: StringList,
    })
    .optional(),
  when: z.array(Condition).optional(),
  key: z.array(z.string().min(1)).optional(),
  missingKey: z.enum(["SKIP", "SHARED"]).optional(),
  limits: z.array(RateLimit).min(1, { message: "expected at least one limit" }),
  overrides: z
    .array(
      z.strictObject({
        /** The key part the values are compared with (one of `key`); default the first. */
        part: z.string().min(1).optional(),
        values: z.array(z.string()).min(1, { message: "expected at least one value" }),
        limits: z.array(RateLimit).min(1, { message: "expected at least one limit" }),
      }),
    )
    .optional(),
  scope: z.enum(["GLOBAL", "LOCAL"]).optional(),
  mode: z.enum(["ENFORCE", "SHADOW"]).optional(),
  failureMode: z.enum(["OPEN", "CLOSED"]).optional(),
  decisionTimeout: Duration.optional(),
  algorithm: z.enum(["TOKEN_BUCKET", "GCRA"]).optional(),
  lease: z.strictObject({ enabled: z.boolean().optional(), size: UInt.optional(), ttl: Duration.optional() }).optional(),
});
export type RateLimitRule = z.infer<typeof RateLimitRule>;

export const RateLimitPolicySpec = z.strictObject({
  selector: WorkloadSelector.optional(),
  rules: z.array(RateLimitRule).optional(),
  responseHeaders: z
    .strictObject({
      format: z.enum(["NONE", "IETF", "DRAFT_VERSION_03"]).optional(),
      onAllowed: z.boolean().optional(),
    })
    .optional(),
});
export type RateLimitPolicySpec = z.infer<typeof RateLimitPolicySpec>;
