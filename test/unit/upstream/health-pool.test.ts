/**
 * The UpstreamHealth alarm's probe scheduler (src/upstream/health/pool.ts)
 * on a virtual clock: probes "take" time by waiting on it, and the clock
 * jumps to the next timer once everything else has settled, so the times
 * asserted are exact.
 */
import { describe, expect, it } from "vitest";
import { nextDue, runProbes, type PoolProbe } from "../../../src/upstream/health/pool.ts";

class VirtualClock {
  t = 0;
  private timers: { at: number; resolve: () => void }[] = [];
  readonly now = (): number => this.t;
  readonly wait = (ms: number): Promise<void> => new Promise((resolve) => this.timers.push({ at: this.t + Math.max(0, ms), resolve }));

  /** Runs `work` to the end, moving the clock from timer to timer whenever nothing else can run. */
  async run(work: Promise<void>): Promise<void> {
    let done = false;
    void work.then(() => (done = true));
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (done) return;
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers.shift();
      if (!next) throw new Error("stuck: nothing in flight and no timer");
      this.t = next.at;
      next.resolve();
    }
  }
}

interface Probe extends PoolProbe {
  /** How long the probe takes (a hanging endpoint: its timeout). */
  takesMs: number;
}

const probes = (check: number, n: number, intervalMs: number, takesMs: number, name = `c${check}`): Probe[] =>
  Array.from({ length: n }, (_, i) => ({ key: `${name}-${i}`, check, intervalMs, takesMs }));

/**
 * Runs the pool as the alarm does until `untilMs` (one call, then the alarm set for the next due
 * time, again and again) and records each probe's start times and the most in flight at once.
 */
async function simulate(list: Probe[], untilMs: number, budgetMs = untilMs, concurrency = 5) {
  const clock = new VirtualClock();
  const due: Record<string, number> = {};
  const starts: Record<string, number[]> = {};
  let inFlight = 0;
  let most = 0;
  const run = async (p: Probe) => {
    (starts[p.key] ??= []).push(clock.now());
    most = Math.max(most, ++inFlight);
    await clock.wait(p.takesMs);
    inFlight--;
  };
  const alarms = async () => {
    for (;;) {
      await runProbes(() => ({ probes: list, due }), run, clock, { concurrency, budgetMs });
      const next = list.some((p) => (due[p.key] ?? clock.t) <= clock.t) ? clock.t : nextDue(list, due, clock.t);
      if (next === undefined || next >= untilMs) return;
      await clock.wait(next - clock.t);
    }
  };
  await clock.run(alarms());
  return { starts, most, endedAt: clock.t, due };
}

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - (times[i] as number));

describe("the health-check probe pool", () => {
  it("probes another check on time while one check's ten endpoints hang until their timeout", async () => {
    // The audit's case: 'slow' has 10 endpoints hanging for 900 ms, 'fast' 1 endpoint, both every 1 s.
    const { starts, most } = await simulate([...probes(0, 10, 1_000, 900, "slow"), ...probes(1, 1, 1_000, 5, "fast")], 9_500);
    expect(starts["fast-0"]?.[0]).toBe(0);
    expect(gaps(starts["fast-0"] ?? [])).toEqual(Array(9).fill(1_000));
    expect(most).toBe(5);
  });

  it("schedules each probe from its own start, not from the end of a round", async () => {
    const { starts } = await simulate(probes(0, 3, 1_000, 300), 4_500);
    for (const key of ["c0-0", "c0-1", "c0-2"]) expect(starts[key]).toEqual([0, 1_000, 2_000, 3_000, 4_000]);
  });

  it("refills a slot as soon as a probe ends (rolling), and a check alone may use every slot", async () => {
    // Probes of 100, 200, ..., 700 ms: the sixth starts when the first ends, the seventh when the second does.
    const list = Array.from({ length: 7 }, (_, i) => ({ key: `p${i}`, check: 0, intervalMs: 10_000, takesMs: 100 * (i + 1) }));
    const { starts, most } = await simulate(list, 1_000);
    expect(list.map((p) => starts[p.key]?.[0])).toEqual([0, 0, 0, 0, 0, 100, 200]);
    expect(most).toBe(5);
  });

  it("keeps a slot for the other checks: one check holds at most four while another exists", async () => {
    let most = 0;
    let held = 0;
    const clock = new VirtualClock();
    const list = [...probes(0, 10, 1_000, 900), ...probes(1, 1, 60_000, 5)];
    const run = async (p: Probe) => {
      if (p.check === 0) most = Math.max(most, ++held);
      await clock.wait(p.takesMs);
      if (p.check === 0) held--;
    };
    await clock.run(runProbes(() => ({ probes: list, due: {} }), run, clock, { concurrency: 5, budgetMs: 3_000 }));
    expect(most).toBe(4);
  });

  it("starts nothing after its budget, returns once the probes in flight end, and leaves the next due times", async () => {
    // Probes that take their whole interval keep the call busy; the budget ends it.
    const clock = new VirtualClock();
    const list = probes(0, 2, 1_000, 1_000);
    const due: Record<string, number> = {};
    const starts: number[] = [];
    const run = async (p: Probe) => {
      if (p.key === "c0-0") starts.push(clock.now());
      await clock.wait(p.takesMs);
    };
    await clock.run(runProbes(() => ({ probes: list, due }), run, clock, { concurrency: 5, budgetMs: 2_500 }));
    expect(starts).toEqual([0, 1_000, 2_000]);
    expect(clock.t).toBe(3_000);
    expect(due).toEqual({ "c0-0": 3_000, "c0-1": 3_000 });
  });

  it("returns as soon as nothing is in flight, for the alarm to be set at the next due time", async () => {
    const clock = new VirtualClock();
    const list = probes(0, 1, 1_000, 300);
    const due: Record<string, number> = {};
    await clock.run(runProbes(() => ({ probes: list, due }), (p) => clock.wait(p.takesMs), clock, { concurrency: 5, budgetMs: 30_000 }));
    expect(clock.t).toBe(300);
    expect(nextDue(list, due, clock.t)).toBe(1_000);
    await clock.run(runProbes(() => ({ probes: [] as Probe[], due: {} }), (p) => clock.wait(p.takesMs), clock, { concurrency: 5, budgetMs: 30_000 }));
    expect(clock.t).toBe(300);
  });
});
