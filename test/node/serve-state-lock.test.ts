/**
 * One `isthmus serve` per state directory (src/cli/serve/state-lock.ts):
 * two over one directory would each run every Durable Object over the same
 * SQLite files, so a GLOBAL limit would admit more than its limit.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { lockStateDir } from "../../src/cli/serve/state-lock.ts";

let dir = "";
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("lockStateDir", () => {
  it("refuses a directory another live serve holds, takes over one a dead process left, and releases its own", () => {
    dir = mkdtempSync(join(tmpdir(), "isthmus-lock-"));
    const file = join(dir, "serve.pid");
    writeFileSync(file, "4242\n");
    expect(() => lockStateDir(dir, 7, (pid) => pid === 4242)).toThrow(/is in use by isthmus serve \(pid 4242\); one state directory serves one process/);
    const release = lockStateDir(dir, 7, () => false);
    expect(readFileSync(file, "utf8")).toBe("7\n");
    // Held by this process now: a second serve is refused.
    expect(() => lockStateDir(dir, 8, (pid) => pid === 7)).toThrow(/pid 7/);
    release();
    expect(existsSync(file)).toBe(false);
  });
});
