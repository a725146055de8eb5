/**
 * A real Prometheus server (Debian's package, installed when missing as
 * the benchmark installs nginx) that scrapes given targets every second,
 * asked through its HTTP API: what it stored, and the state of its targets.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { ensureDebianPackage } from "../../bench/debian.ts";
import { stopProc } from "../../bench/processes.ts";
import { freePort } from "./gateway.ts";

export interface ScrapeTarget {
  job: string;
  /** host:port */
  address: string;
  path: string;
}

export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export interface PrometheusServer {
  url: string;
  /** An instant query (`/api/v1/query`), its vector as numbers. */
  query(expr: string): Promise<PromSample[]>;
  /** The scrape targets as Prometheus reports them (`/api/v1/targets`). */
  targets(): Promise<{ labels: Record<string, string>; health: string; lastError: string; lastScrape: string }[]>;
  /** Asks `expr` until `accept` holds (or throws after `timeoutMs`, with the last answer). */
  waitFor(expr: string, accept: (samples: PromSample[]) => boolean, timeoutMs?: number): Promise<PromSample[]>;
  close(): Promise<void>;
}

export async function startPrometheus(targets: ScrapeTarget[]): Promise<PrometheusServer> {
  const binary = ensureDebianPackage("prometheus", "prometheus", (s) => console.log(s));
  if (!binary) throw new Error("this test runs a real Prometheus: install Debian's prometheus package (apt-get install prometheus)");
  const dir = mkdtempSync(join(tmpdir(), "prometheus-"));
  const jobs = targets.map(
    (t) => `- job_name: ${t.job}
  scrape_interval: 1s
  scrape_timeout: 1s
  metrics_path: ${t.path}
  static_configs: [{targets: ["${t.address}"]}]`,
  );
  writeFileSync(join(dir, "prometheus.yml"), `global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n${jobs.join("\n")}\n`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let output = "";
  const child: ChildProcess = spawn(binary, [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`Prometheus ${path}: ${body.error ?? res.status}`);
    return body.data;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${output}`);
    const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`prometheus did not become ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }

  const query = async (expr: string): Promise<PromSample[]> => {
    const data = await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  return {
    url,
    query,
    targets: async () => (await api<{ activeTargets: { labels: Record<string, string>; health: string; lastError: string; lastScrape: string }[] }>("/api/v1/targets")).activeTargets,
    async waitFor(expr, accept, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      let last: PromSample[] = [];
      while (Date.now() < until) {
        last = await query(expr);
        if (accept(last)) return last;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`Prometheus: ${expr} did not reach the expected value; last answer ${JSON.stringify(last)}`);
    },
    async close() {
      await stopProc({ child, output: () => output });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
