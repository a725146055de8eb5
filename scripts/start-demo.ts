/**
 * `npm start`: the bookinfo demo origins plus `isthmus dev` on the demo
 * configuration. Ctrl-C stops everything.
 */
import { startOrigins } from "../examples/bookinfo/origins.ts";
import { main } from "../src/cli/main.ts";
import { demoPort } from "./demo-port.ts";

const args = process.argv.slice(2);
const { port, given } = demoPort(args, process.env);
try {
  await startOrigins(`http://127.0.0.1:${port}`);
} catch (error) {
  console.error(`isthmus demo: could not start the bookinfo origins on ports 9080-9085: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
// Extra arguments go to `isthmus dev`, e.g. `npm start -- -f examples/telemetry/isthmus-telemetry.yaml --env-file ...`.
process.exit(await main(["dev", "-f", "examples/bookinfo/config", ...(given ? [] : ["--port", port]), ...args]));
