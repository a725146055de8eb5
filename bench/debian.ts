/**
 * Programs from Debian's packages that the benchmark and the tests run for
 * real (nginx as a contender, Prometheus as a scraper): found where Debian
 * installs them, else installed with apt-get, as on a fresh CI machine.
 */
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";

/** The program's path (Debian's /usr/sbin or /usr/bin, /usr/local, else the PATH), or undefined. */
export function debianBinary(program: string): string | undefined {
  for (const dir of ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]) if (existsSync(`${dir}/${program}`)) return `${dir}/${program}`;
  const which = spawnSync("sh", ["-c", `command -v ${program}`], { encoding: "utf8" });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : undefined;
}

/**
 * The program, installing its Debian package when it is missing
 * (`apt-get install -y PACKAGE`, after `apt-get update` if that fails).
 * Returns undefined when it still cannot be found (no root, no registry).
 */
export function ensureDebianPackage(pkg: string, program: string, log: (s: string) => void): string | undefined {
  const found = debianBinary(program);
  if (found) return found;
  log(`${program} is not installed; installing the Debian package (apt-get install -y ${pkg})`);
  const install = () => spawnSync("apt-get", ["install", "-y", "--no-install-recommends", pkg], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (install().status !== 0) {
    spawnSync("apt-get", ["update"], { stdio: "ignore" });
    install();
  }
  return debianBinary(program);
}
