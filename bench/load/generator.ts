/**
 * The load generator: open-loop at a fixed rate, latency measured from
 * each request's intended send time (so a stall in the system under test
 * shows up in the latency of every request scheduled during it: no
 * coordinated omission), or closed-loop with N connections for the
 * saturation run. The generator never busy-waits; it wakes on timers and
 * sends every request whose time has come.
 */
import { performance } from "node:perf_hooks";
import { Connection, type Completion } from "./connection.ts";

export interface Target {
  port: number;
  /** Prebuilt request bytes, sent in rotation. */
  requests: Buffer[];
}

export interface RunResult {
  /** Latencies in ms of the requests that completed with any HTTP status. */
  latencies: Float64Array;
  sent: number;
  completed: number;
  /** Responses with a status other than 200. */
  non200: number;
  /** Connection failures and requests still unanswered at the end. */
  failed: number;
  /** Wall time of the measured window, ms. */
  elapsedMs: number;
}

export interface OpenLoopOptions {
  rate: number;
  durationMs: number;
  /** Connections opened before the run (more are opened when all are busy, up to maxConnections). */
  connections: number;
  maxConnections: number;
  /** How long to wait for stragglers after the last send. */
  drainMs?: number;
}

export async function openLoop(target: Target, opts: OpenLoopOptions): Promise<RunResult> {
  const total = Math.round((opts.rate * opts.durationMs) / 1000);
  const interval = 1000 / opts.rate;
  const latencies = new Float64Array(total);
  let completed = 0;
  let non200 = 0;
  let failed = 0;
  let sent = 0;
  const idle: Connection[] = [];
  const all: Connection[] = [];
  const queue: number[] = [];

  const open = async (): Promise<Connection> => {
    const c = new Connection(target.port);
    all.push(c);
    await c.ready;
    return c;
  };
  for (let i = 0; i < opts.connections; i++) idle.push(await open());

  let start = 0;
  let opening = 0;
  const dispatch = (conn: Connection, intended: number, seq: number) => {
    sent++;
    conn.send(target.requests[seq % target.requests.length] as Buffer, (c: Completion) => {
      if (c.failed) failed++;
      else {
        latencies[completed++] = performance.now() - intended;
        if (c.status !== 200) non200++;
      }
      release(conn);
    });
  };
  const release = (conn: Connection) => {
    const next = queue.shift();
    if (!conn.usable) {
      if (next !== undefined) queue.unshift(next);
      grow();
      return;
    }
    if (next !== undefined) dispatch(conn, start + next * interval, next);
    else idle.push(conn);
  };
  const grow = () => {
    if (queue.length === 0 || all.filter((c) => c.usable).length + opening >= opts.maxConnections) return;
    opening++;
    open().then(
      (c) => {
        opening--;
        release(c);
      },
      () => {
        opening--;
        failed++;
        queue.shift();
      },
    );
  };

  let seq = 0;
  await new Promise<void>((resolve) => {
    start = performance.now();
    const tick = () => {
      const now = performance.now();
      while (seq < total && start + seq * interval <= now) {
        const conn = idle.pop();
        if (conn && conn.usable) dispatch(conn, start + seq * interval, seq);
        else {
          queue.push(seq);
          grow();
        }
        seq++;
      }
      if (seq >= total) resolve();
      else setTimeout(tick, Math.max(0, start + seq * interval - performance.now()));
    };
    tick();
  });
  const sendEnd = performance.now();
  const drainUntil = sendEnd + (opts.drainMs ?? 5_000);
  while (completed + failed < total && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  const unanswered = total - completed - failed;
  for (const c of all) c.close();
  return { latencies: latencies.subarray(0, completed), sent, completed, non200, failed: failed + unanswered, elapsedMs: sendEnd - start };
}

export interface ClosedLoopOptions {
  connections: number;
  durationMs: number;
  /** Send exactly this many requests (ending early only when `durationMs` runs out). */
  count?: number;
}

/** Each connection sends its next request as soon as the previous response is complete. */
export async function closedLoop(target: Target, opts: ClosedLoopOptions): Promise<RunResult> {
  const conns: Connection[] = [];
  for (let i = 0; i < opts.connections; i++) {
    const c = new Connection(target.port);
    await c.ready;
    conns.push(c);
  }
  const samples: number[] = [];
  let non200 = 0;
  let failed = 0;
  let sent = 0;
  let seq = 0;
  const start = performance.now();
  const end = start + opts.durationMs;
  await Promise.all(
    conns.map(
      (conn) =>
        new Promise<void>((resolve) => {
          const next = () => {
            const t = performance.now();
            if (t >= end || !conn.usable || sent === opts.count) return resolve();
            sent++;
            conn.send(target.requests[seq++ % target.requests.length] as Buffer, (c) => {
              if (c.failed) {
                failed++;
                return resolve();
              }
              samples.push(performance.now() - t);
              if (c.status !== 200) non200++;
              next();
            });
          };
          next();
        }),
    ),
  );
  const elapsedMs = performance.now() - start;
  for (const c of conns) c.close();
  return { latencies: Float64Array.from(samples), sent, completed: samples.length, non200, failed, elapsedMs };
}

/** Percentiles (0–100) of a set of latencies, in ms. */
export function percentiles(latencies: Float64Array, ps: number[]): number[] {
  const sorted = Float64Array.from(latencies).sort();
  return ps.map((p) => {
    if (sorted.length === 0) return NaN;
    const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[rank] as number;
  });
}
