/**
 * The probe scheduler of the UpstreamHealth alarm, pure (the clock and the
 * probe are passed in). A rolling pool: at most `concurrency` probes in
 * flight, a free slot taken at once by the next due probe, and each probe
 * due again `intervalMs` after its own start, so one check's slow or
 * hanging endpoints neither hold back another check's probes nor stretch
 * its own interval by the time a whole round took.
 *
 * A check never holds every slot while there are others: it may take
 * `concurrency - 1` at most, so the other checks always have one, and a
 * free slot goes to the due probe whose check has the fewest in flight.
 *
 * One call is bounded: no probe starts later than `budgetMs` after it
 * began, and it returns once the probes in flight have ended (each has its
 * timeout). It also returns as soon as nothing is in flight: the caller
 * sets the alarm for the next due time rather than keeping the object busy.
 */

/** One endpoint of one check, over one transport. */
export interface PoolProbe {
  /** The probe's health key, unique in the list. */
  key: string;
  /** The check it belongs to (an index). */
  check: number;
  intervalMs: number;
}

/** The probes and their due times as they are now (a configuration may change during a call). */
export interface PoolQueue<P extends PoolProbe> {
  probes: readonly P[];
  /** Next start time per probe key; a probe without one is due now. Updated as probes start. */
  due: Record<string, number>;
}

export interface PoolClock {
  now(): number;
  /** Resolves after `ms`. */
  wait(ms: number): Promise<void>;
}

export interface PoolLimits {
  /** Probes in flight at once. */
  concurrency: number;
  /** No probe starts later than this after the call began. */
  budgetMs: number;
}

/**
 * Runs the probes that are due, and those that come due while others are
 * in flight, as a rolling pool. `queue` is asked again each time a probe
 * ends or comes due (it may reload the configuration).
 *
 * @example
 * await runProbes(() => ({ probes, due }), (p) => probe(p), { now: Date.now, wait: (ms) => scheduler.wait(ms) }, { concurrency: 5, budgetMs: 30_000 });
 * // then: setAlarm(nextDue(probes, due, Date.now()))
 */
export async function runProbes<P extends PoolProbe>(queue: () => PoolQueue<P> | Promise<PoolQueue<P>>, run: (probe: P) => Promise<void>, clock: PoolClock, limits: PoolLimits): Promise<void> {
  const started = clock.now();
  const inFlight = new Map<string, Promise<void>>();
  const perCheck = new Map<number, number>();
  for (;;) {
    const { probes, due } = await queue();
    const now = clock.now();
    const open = now - started < limits.budgetMs;
    if (open) {
      for (const probe of pickDue(probes, due, inFlight, perCheck, now, limits.concurrency)) {
        due[probe.key] = now + probe.intervalMs;
        perCheck.set(probe.check, (perCheck.get(probe.check) ?? 0) + 1);
        const done = run(probe)
          .catch(() => {})
          .finally(() => {
            inFlight.delete(probe.key);
            perCheck.set(probe.check, (perCheck.get(probe.check) ?? 1) - 1);
          });
        inFlight.set(probe.key, done);
      }
    }
    if (inFlight.size === 0) return;
    // Wake for the next probe coming due only when a slot is free for it (else a finishing probe wakes us)
    // and it is within the budget; probes already due but held back wait for a slot too.
    const next = open && inFlight.size < limits.concurrency ? nextDue(probes, due, now, inFlight) : undefined;
    const waits: Promise<void>[] = [...inFlight.values()];
    if (next !== undefined && next - started < limits.budgetMs) waits.push(clock.wait(next - now));
    await Promise.race(waits);
  }
}

/**
 * The earliest due time after `now` of a probe not in flight, or undefined
 * when there is none.
 *
 * @example
 * nextDue(probes, { a: 1_000, b: 2_000 }, 1_500) // 2_000
 */
export function nextDue(probes: readonly PoolProbe[], due: Record<string, number>, now: number, inFlight?: ReadonlyMap<string, unknown>): number | undefined {
  let next: number | undefined;
  for (const p of probes) {
    if (inFlight?.has(p.key)) continue;
    const at = due[p.key] ?? now;
    if (at > now && (next === undefined || at < next)) next = at;
  }
  return next;
}

/** The due probes to start now, in the order they take the free slots. */
function pickDue<P extends PoolProbe>(probes: readonly P[], due: Record<string, number>, inFlight: ReadonlyMap<string, unknown>, perCheck: Map<number, number>, now: number, concurrency: number): P[] {
  const free = concurrency - inFlight.size;
  if (free <= 0) return [];
  const ready = probes.filter((p) => !inFlight.has(p.key) && (due[p.key] ?? now) <= now);
  if (ready.length === 0) return [];
  // Earliest due first; the sort is stable, so list order breaks ties.
  ready.sort((a, b) => (due[a.key] ?? now) - (due[b.key] ?? now));
  const checks = new Set(probes.map((p) => p.check)).size;
  const cap = checks > 1 ? Math.max(1, concurrency - 1) : concurrency;
  const counts = new Map(perCheck);
  const picked: P[] = [];
  const taken = new Set<P>();
  while (picked.length < free) {
    let best: P | undefined;
    for (const p of ready) {
      if (taken.has(p)) continue;
      const n = counts.get(p.check) ?? 0;
      if (n >= cap) continue;
      if (best === undefined || n < (counts.get(best.check) ?? 0)) best = p;
    }
    if (best === undefined) break;
    taken.add(best);
    picked.push(best);
    counts.set(best.check, (counts.get(best.check) ?? 0) + 1);
  }
  return picked;
}
