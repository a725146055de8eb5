/**
 * Building blocks shared by every resource schema: Istio's string matchers,
 * durations, percentages, selectors and the Kubernetes object envelope.
 *
 * Every object schema is strict: an unknown field is an error, because in a
 * hand-written YAML file it is almost always a typo.
 */
import { z } from "zod";

import { DURATION_PATTERN } from "../duration.ts";

export { durationMs } from "../duration.ts";

/** A Go/Istio duration such as `5s`, `250ms`, `1m30s` or `1.5h`. */
export const Duration = z
  .string()
  .regex(DURATION_PATTERN, {
    message: "expected a duration such as 250ms, 5s, 1m or 1h30m",
  });

/** Istio's StringMatch: exactly one of exact, prefix or regex (RE2). */
export const StringMatch = z
  .strictObject({
    exact: z.string().optional(),
    prefix: z.string().optional(),
    regex: z.string().optional(),
  })
  .superRefine((m, ctx) => {
    const set = [m.exact, m.prefix, m.regex].filter((v) => v !== undefined).length;
    if (set > 1) {
      ctx.addIssue({ code: "custom", message: "expected exactly one of exact, prefix or regex" });
    }
  });
export type StringMatch = z.infer<typeof StringMatch>;

/** Istio's Percent message: `{value: 0..100}` with 0.0001 granularity. */
export const Percent = z.strictObject({
  value: z.number().min(0, { message: "expected a percentage between 0 and 100" }).max(100, {
    message: "expected a percentage between 0 and 100",
  }),
});

/** A non-negative integer (uint32 in the Istio protos). */
export const UInt = z.number().int({ message: "expected a whole number" }).min(0, {
  message: "expected a number >= 0",
});

/** A TCP/UDP port number. */
export const PortNumber = z
  .number()
  .int({ message: "expected a port number" })
  .min(1, { message: "expected a port number between 1 and 65535" })
  .max(65535, { message: "expected a port number between 1 and 65535" });

/** A label map, as in Kubernetes `matchLabels`. */
export const Labels = z.record(z.string(), z.string());

/** Istio's WorkloadSelector. */
export const WorkloadSelector = z.strictObject({ matchLabels: Labels.optional() });

/** Istio's PolicyTargetReference (Gateway API style `targetRef`). */
export const PolicyTargetReference = z.strictObject({
  group: z.string().optional(),
  kind: z.string(),
  name: z.string(),
  namespace: z.string().optional(),
});

/**
 * Kubernetes ObjectMeta. Only `name` and `namespace` mean anything to
 * Isthmus (plus the `istio.io/dry-run` annotation); the rest is accepted so
 * that `kubectl get ... -o yaml` output applies unchanged.
 */
export const ObjectMeta = z.strictObject({
  name: z
    .string({ message: "expected metadata.name" })
    .min(1, { message: "expected a non-empty metadata.name" }),
  namespace: z.string().min(1).optional(),
  labels: Labels.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().optional(),
  creationTimestamp: z.union([z.string(), z.null()]).optional(),
  deletionTimestamp: z.string().optional(),
  deletionGracePeriodSeconds: z.number().optional(),
  managedFields: z.array(z.unknown()).optional(),
  ownerReferences: z.array(z.unknown()).optional(),
  finalizers: z.array(z.string()).optional(),
  generateName: z.string().optional(),
  selfLink: z.string().optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMeta>;

/** Builds the schema of a whole resource (envelope + spec). */
export function resource<S extends z.ZodType>(spec: S) {
  return z.strictObject({
    apiVersion: z.string(),
    kind: z.string(),
    metadata: ObjectMeta,
    spec: spec,
    status: z.unknown().optional(),
  });
}
