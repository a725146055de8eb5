/**
 * `npm start`: the bookinfo demo origins plus `isthmus dev` on the demo
 * configuration. Ctrl-C stops everything.
 */
import { startOrigins } from "../examples/bookinfo/origins.ts";
import { main } from "../src/cli/main.ts";

const port = process.env.PORT ?? "8787";
try {
  await startOrigins(`http://127.0.0.1:${port}`);
} catch (error) {
  console.error(`isthmus demo: could not start the bookinfo origins on ports 9080-9085: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
// Extra arguments go to `isthmus dev`, e.g. `npm start -- -f examples/telemetry/isthmus-telemetry.yaml --env-file ...`.
process.exit(await main(["dev", "-f", "examples/bookinfo/config", "--port", port, ...process.argv.slice(2)]));
