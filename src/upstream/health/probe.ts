/**
 * Active health checking, pure: whether a probe passed, and how the
 * result moves an endpoint between healthy and unhealthy with the
 * configured thresholds (consecutive passes to return, consecutive
 * failures to leave). Endpoints start healthy.
 */
import type { HealthCheckDef } from "../../config/snapshot.ts";

export interface TargetHealth {
  healthy: boolean;
  /** Consecutive passes while unhealthy / failures while healthy. */
  streak: number;
  checkedAt: number;
  /** The last probe's status code or error, for the admin view and logs. */
  last: string;
}

/** Whether a status is one of the expected codes. */
export function expectedStatus(status: number, ranges: HealthCheckDef["expectedCodes"]): boolean {
  return ranges.some(([lo, hi]) => status >= lo && status <= hi);
}

/**
 * The health after one probe.
 *
 * @example
 * nextHealth(undefined, false, "503", check, now) // still healthy until unhealthyThreshold failures in a row
 */
export function nextHealth(previous: TargetHealth | undefined, passed: boolean, last: string, check: Pick<HealthCheckDef, "healthyThreshold" | "unhealthyThreshold">, now: number): TargetHealth {
  const healthy = previous?.healthy ?? true;
  if (healthy === passed) return { healthy, streak: 0, checkedAt: now, last };
  const streak = (previous?.streak ?? 0) + 1;
  const threshold = healthy ? check.unhealthyThreshold : check.healthyThreshold;
  if (streak >= threshold) return { healthy: !healthy, streak: 0, checkedAt: now, last };
  return { healthy, streak, checkedAt: now, last };
}
