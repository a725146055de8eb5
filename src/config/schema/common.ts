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

const UNIT_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;

/**
 * A duration that matches DURATION_PATTERN in whole nanoseconds, exactly
 * (floating point would make `1.1s` 1100.0000000000002 ms). Fractions finer
 * than a nanosecond are dropped, as Go's time.ParseDuration drops them.
 *
 * @example
 * durationNs("1.5ms5us"); // 1505000n
 */
export function durationNs(value: string): bigint {
  let total = 0n;
  for (const part of value.matchAll(/(\d+)(?:\.(\d+))?(ns|us|µs|ms|s|m|h)/g)) {
    const unit = UNIT_NS[part[3] ?? ""] ?? 0n;
    total += BigInt(part[1] ?? "0") * unit;
    const fraction = part[2];
    if (fraction) total += (BigInt(fraction) * unit) / 10n ** BigInt(fraction.length);
  }
  return total;
}

/**
 * A duration Istio checks with ValidateDuration (pkg/config/validation/agent):
 * at least 1ms ("duration must be greater than 1ms") and whole milliseconds
 * ("only durations to ms precision are supported"). A route `timeout: 0.5ns`
 * would otherwise time out every request.
 */
export const ProxyDuration = Duration.superRefine((value, ctx) => {
  if (!DURATION_PATTERN.test(value)) return;
  const ns = durationNs(value);
  if (ns < NS_PER_MS) ctx.addIssue({ code: "custom", message: `expected a duration of at least 1ms, got ${value}` });
  else if (ns % NS_PER_MS !== 0n) {
    ctx.addIssue({ code: "custom", message: `expected whole milliseconds (Istio supports durations only to ms precision), got ${value}` });
  }
});

/** A ProxyDuration that may also be `0s`, where Istio documents 0 as "disabled" (connection pool idle timeouts). */
export const ProxyDurationOrZero = Duration.superRefine((value, ctx) => {
  if (!DURATION_PATTERN.test(value)) return;
  const ns = durationNs(value);
  if (ns === 0n) return;
  if (ns < NS_PER_MS) ctx.addIssue({ code: "custom", message: `expected 0s (disabled) or a duration of at least 1ms, got ${value}` });
  else if (ns % NS_PER_MS !== 0n) {
    ctx.addIssue({ code: "custom", message: `expected whole milliseconds (Istio supports durations only to ms precision), got ${value}` });
  }
});

/**
 * A duration in whole seconds, at least 1s: Istio's CORS maxAge check
 * (ValidateDuration, then "max_age duration is accurate only to seconds precision").
 */
export const SecondsDuration = Duration.superRefine((value, ctx) => {
  if (!DURATION_PATTERN.test(value)) return;
  const ns = durationNs(value);
  if (ns < NS_PER_S || ns % NS_PER_S !== 0n) {
    ctx.addIssue({ code: "custom", message: `expected whole seconds of at least 1s, such as 60s or 24h (accurate only to seconds), got ${value}` });
  }
});

/** Kubernetes' DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, at most 63 characters. */
export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(value);
}

/** Kubernetes' DNS-1123 subdomain: DNS-1123 labels joined by '.', at most 253 characters. */
export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(value);
}

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
  // Kubernetes refuses a custom resource whose name is not a DNS-1123 subdomain or whose namespace
  // is not a DNS-1123 label; here a "/" in either would also make two resources look like one.
  name: z
    .string({ message: "expected metadata.name" })
    .min(1, { message: "expected a non-empty metadata.name" })
    .superRefine((name, ctx) => {
      if (name !== "" && !isDns1123Subdomain(name)) {
        ctx.addIssue({ code: "custom", message: `expected a name of lowercase letters, digits, '-' and '.' (a DNS-1123 subdomain, starting and ending with a letter or digit), got ${JSON.stringify(name)}` });
      }
    }),
  namespace: z
    .string()
    .min(1)
    .superRefine((namespace, ctx) => {
      if (namespace !== "" && !isDns1123Label(namespace)) {
        ctx.addIssue({ code: "custom", message: `expected a namespace of lowercase letters, digits and '-' (a DNS-1123 label, at most 63 characters), got ${JSON.stringify(namespace)}` });
      }
    })
    .optional(),
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
