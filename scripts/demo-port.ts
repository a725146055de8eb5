/**
 * The port `npm start` serves the demo gateway on: `--port N` or
 * `--port=N` among the arguments passed on to `isthmus dev`, else `PORT`,
 * else 8787. The bookinfo origins call back through the gateway, so they
 * must be told the same port.
 *
 * @example
 * demoPort(["--port", "18787"], {}) // { port: "18787", given: true }
 * demoPort([], { PORT: "9000" }) // { port: "9000", given: false }
 */
export function demoPort(args: readonly string[], env: Record<string, string | undefined>): { port: string; given: boolean } {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg.startsWith("--port=")) return { port: arg.slice("--port=".length), given: true };
    if (arg === "--port" && args[i + 1] !== undefined) return { port: args[i + 1] as string, given: true };
  }
  return { port: env.PORT ?? "8787", given: false };
}
