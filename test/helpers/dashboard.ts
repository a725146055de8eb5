/**
 * Reading the Grafana dashboard of examples/telemetry: the metric names and
 * labels its PromQL uses, checked against what the gateway reports.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { ISTHMUS_METRIC, ISTIO_LABELS, ISTIO_METRIC_NAMES } from "../../src/telemetry/metric-names.ts";

export const DASHBOARD_PATH = resolve(import.meta.dirname, "../../examples/telemetry/grafana-dashboard.json");

export interface Dashboard {
  schemaVersion: number;
  panels: { id: number; type: string; title: string; datasource?: { uid: string }; targets?: { expr: string; legendFormat?: string }[] }[];
  templating: { list: { name: string; type: string; query: string | { query: string } }[] };
}

export function readDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, "utf8")) as Dashboard;
}

/** Every PromQL expression of the dashboard (panel targets and query variables), with its legend. */
export function dashboardQueries(d: Dashboard = readDashboard()): { where: string; expr: string; legend: string }[] {
  return [
    ...d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr, legend: t.legendFormat ?? "" }))),
    ...d.templating.list.filter((v) => v.type === "query").map((v) => ({ where: `variable ${v.name}`, expr: typeof v.query === "string" ? v.query : v.query.query, legend: "" })),
  ];
}

/** The metric names (as Prometheus shows them) an expression uses. */
export function metricsIn(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b((?:istio|isthmus)_[a-z_]+)\b/g)].map((m) => m[1] as string))];
}

/** The gateway's metric name behind a Prometheus name (histogram series lose _bucket/_sum/_count). */
export function baseName(promName: string): string {
  const base = promName.replace(/_(bucket|sum|count)$/, "");
  return base !== promName && HISTOGRAMS.has(base) ? base : promName;
}

export const HISTOGRAMS = new Set<string>([ISTIO_METRIC_NAMES.REQUEST_DURATION, ISTIO_METRIC_NAMES.REQUEST_SIZE, ISTIO_METRIC_NAMES.RESPONSE_SIZE]);

/**
 * The attributes the gateway sets on each of its own metrics
 * (src/telemetry/telemetry.ts and exporter.ts; the folded-series count has none).
 */
export const ISTHMUS_LABELS: Record<string, readonly string[]> = {
  [ISTHMUS_METRIC.rateLimitDecisions]: ["rule", "scope", "mode", "outcome", "source"],
  [ISTHMUS_METRIC.retries]: ["upstream_cluster"],
  [ISTHMUS_METRIC.outlierEjections]: ["upstream_cluster", "endpoint", "reason"],
  [ISTHMUS_METRIC.mirrors]: ["upstream_cluster", "outcome", "response_code"],
  [ISTHMUS_METRIC.jwksFetches]: ["source", "outcome"],
  [ISTHMUS_METRIC.configVersion]: ["version"],
  [ISTHMUS_METRIC.foldedSeries]: [],
  [ISTHMUS_METRIC.dropped]: ["signal", "provider"],
};

/** Labels a query may use on a metric as Prometheus shows it (histogram series by their _bucket/_sum/_count names). */
export function labelsOf(promName: string): Set<string> | undefined {
  const base = baseName(promName);
  let labels: readonly string[] | undefined;
  if (Object.values(ISTIO_METRIC_NAMES).includes(base)) labels = ISTIO_LABELS;
  else labels = ISTHMUS_LABELS[base];
  if (!labels) return undefined;
  return new Set([...labels, ...(promName.endsWith("_bucket") ? ["le"] : [])]);
}

/**
 * Problems with one PromQL expression of the dashboard: metric names the
 * gateway does not report, and labels (matchers, `by`/`without`, label_values,
 * legend) that are not on every metric of the expression.
 */
export function queryProblems(expr: string, legend = ""): string[] {
  const problems: string[] = [];
  const metrics = metricsIn(expr);
  if (metrics.length === 0) problems.push(`no Istio or Isthmus metric in ${expr}`);
  const allowed: Set<string>[] = [];
  for (const name of metrics) {
    const labels = labelsOf(name);
    if (labels) allowed.push(labels);
    else problems.push(`${name} is not a metric the gateway reports (src/telemetry/metric-names.ts)`);
  }
  const used = new Set<string>();
  for (const m of expr.matchAll(/\{([^}]*)\}/g)) {
    for (const l of (m[1] as string).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) used.add(l[1] as string);
  }
  for (const m of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) {
    for (const l of (m[1] as string).split(",")) if (l.trim()) used.add(l.trim());
  }
  for (const m of expr.matchAll(/label_values\([^,]+,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)/g)) used.add(m[1] as string);
  for (const m of legend.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) used.add(m[1] as string);
  for (const label of used) {
    if (!allowed.every((set) => set.has(label))) problems.push(`label ${label} is not set on ${metrics.join(", ")}`);
  }
  // Istio's gateway dashboards select the gateway's own reports.
  for (const m of expr.matchAll(/\b(istio_[a-z_]+)\{([^}]*)\}/g)) {
    if (!/reporter="source"/.test(m[2] as string)) problems.push(`${m[1]} without reporter="source" in ${expr}`);
  }
  return problems;
}

