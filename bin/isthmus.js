#!/usr/bin/env node
// The isthmus CLI. It needs Node.js 22.12 or later (as wrangler does); the
// project's devDependency `node@22` provides it under `npx isthmus` and
// `npm run`.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  console.error(
    `isthmus: Node.js ${process.versions.node} is too old; Node.js 22.12 or later is required.\n` +
      "Run it through npm so the project's Node 22 is used: `npx isthmus ...` or `npm start`.",
  );
  process.exit(1);
}
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
