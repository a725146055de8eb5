/**
 * telemetry.istio.io Telemetry, with every field of istio/api telemetry/v1.
 */
import { z } from "zod";
import { Duration, PolicyTargetReference, WorkloadSelector } from "./common.ts";

const ProviderRef = z.strictObject({ name: z.string().min(1) });
const WorkloadMode = z.enum(["CLIENT_AND_SERVER", "CLIENT", "SERVER"]);

const Tracing = z.strictObject({
  match: z.strictObject({ mode: WorkloadMode.optional() }).optional(),
  providers: z.array(ProviderRef).optional(),
  randomSamplingPercentage: z.number().min(0).max(100).optional(),
  disableSpanReporting: z.boolean().optional(),
  customTags: z
    .record(
      z.string(),
      z.strictObject({
        literal: z.strictObject({ value: z.string() }).optional(),
        environment: z.strictObject({ name: z.string(), defaultValue: z.string().optional() }).optional(),
        header: z.strictObject({ name: z.string(), defaultValue: z.string().optional() }).optional(),
      }),
    )
    .optional(),
  useRequestIdForTraceSampling: z.boolean().optional(),
  enableIstioTags: z.boolean().optional(),
});

const MetricSelector = z.strictObject({
  metric: z
    .enum(["ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE", "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"])
    .optional(),
  customMetric: z.string().optional(),
  mode: WorkloadMode.optional(),
});

const Metrics = z.strictObject({
  providers: z.array(ProviderRef).optional(),
  overrides: z
    .array(
      z.strictObject({
        match: MetricSelector.optional(),
        disabled: z.boolean().optional(),
        tagOverrides: z
          .record(z.string(), z.strictObject({ operation: z.enum(["UPSERT", "REMOVE"]).optional(), value: z.string().optional() }))
          .optional(),
      }),
    )
    .optional(),
  reportingInterval: Duration.optional(),
});

const AccessLogging = z.strictObject({
  match: z.strictObject({ mode: WorkloadMode.optional() }).optional(),
  providers: z.array(ProviderRef).optional(),
  disabled: z.boolean().optional(),
  filter: z.strictObject({ expression: z.string() }).optional(),
});

export const TelemetrySpec = z.strictObject({
  selector: WorkloadSelector.optional(),
  targetRef: PolicyTargetReference.optional(),
  targetRefs: z.array(PolicyTargetReference).optional(),
  tracing: z.array(Tracing).optional(),
  metrics: z.array(Metrics).optional(),
  accessLogging: z.array(AccessLogging).optional(),
});
export type TelemetrySpec = z.infer<typeof TelemetrySpec>;
