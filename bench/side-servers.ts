/**
 * The servers every benchmark contender points at: the 1 KiB JSON upstream
 * and the OTLP sink, pinned to the generator core, and the JWKS server
 * (bench/idp.ts) in the harness's own process. Shared by `npm run bench`
 * and `npm run bench:profile`.
 */
import type { BenchEnv } from "./contenders.ts";
import { startBenchIdp, type BenchIdp } from "./idp.ts";
import { startPinned, stopProc, waitForOutput } from "./processes.ts";

export interface SideServers {
  env: BenchEnv;
  idp: BenchIdp;
  /** The pid of the upstream process (for the "direct" contender's CPU time). */
  upstreamPid: number;
  /** Stops the sink, the JWKS server and the upstream. */
  stop(): Promise<void>;
}

/**
 * Starts the upstream, the OTLP sink and the JWKS server.
 *
 * @example
 * const side = await startSideServers("0");
 * try { ... side.env.upstreamPort ... } finally { await side.stop(); }
 */
export async function startSideServers(genCpu: string): Promise<SideServers> {
  const node = process.execPath;
  const upstream = startPinned(genCpu, node, ["bench/upstream.ts", "0"]);
  const upstreamPort = Number((await waitForOutput(upstream, /listening (\d+)/, 10_000))[1]);
  const sink = startPinned(genCpu, node, ["bench/otlp-sink.ts", "0"]);
  const otlpEndpoint = `http://127.0.0.1:${(await waitForOutput(sink, /listening (\d+)/, 10_000))[1]}`;
  const idp = await startBenchIdp();
  return {
    env: { upstreamPort, idp, otlpEndpoint },
    idp,
    upstreamPid: upstream.child.pid as number,
    async stop() {
      await stopProc(sink);
      await idp.close();
      await stopProc(upstream);
    },
  };
}
