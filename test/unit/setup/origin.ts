/**
 * Global setup of the workerd test project: a real Node origin the Worker
 * under test can forward to (127.0.0.1:<port>, provided as `originPort`).
 * It answers with a JSON echo of the request, so a test inside workerd
 * sees what the upstream received.
 */
import type { TestProject } from "vitest/node";
import { startOrigin } from "../../helpers/origin.ts";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const origin = await startOrigin("unit-origin");
  project.provide("originPort", origin.port);
  return () => origin.close();
}
