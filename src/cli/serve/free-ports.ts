/**
 * Checks that the ports `isthmus serve` will give workerd are free, so a
 * port in use is reported with the flag that chose it before anything is
 * applied (workerd itself names only its socket: `Socket "health": bind():
 * Address already in use`).
 */
import { createServer } from "node:net";
import { CliError } from "../files.ts";

/**
 * Throws a CliError naming the flag and address of the first port another
 * process already listens on (ports are tried one at a time, each closed
 * again at once).
 *
 * @example
 * await assertPortsFree("127.0.0.1", [["--port", 8080], ["--health-port", 15021]]);
 */
export async function assertPortsFree(ip: string, ports: readonly (readonly [string, number | undefined])[]): Promise<void> {
  for (const [flag, port] of ports) {
    if (port === undefined) continue;
    const problem = await tryListen(ip, port);
    if (problem) throw new CliError(`${flag} ${port}: cannot listen on ${ip.includes(":") ? `[${ip}]` : ip}:${port}: ${problem}`, 2);
  }
}

function tryListen(ip: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "EADDRINUSE" ? "the address is already in use (EADDRINUSE)" : error.message));
    server.listen({ host: ip, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}
