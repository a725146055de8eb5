/**
 * Go/Istio durations (`250ms`, `5s`, `1m30s`) in milliseconds.
 */

/** A Go/Istio duration such as `5s`, `250ms`, `1m30s` or `1.5h`. */
export const DURATION_PATTERN = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

/** Converts a validated duration string to milliseconds. */
export function durationMs(value: string): number {
  const units: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    µs: 1e-3,
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
  };
  let total = 0;
  for (const part of value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(part[1]) * (units[part[2] as string] ?? 0);
  }
  return total;
}

