/**
 * A strict reader of Prometheus's text exposition format (0.0.4), as
 * Prometheus parses a scrape: every line is a `# TYPE` line, a comment, or a
 * sample of a metric whose type came before it; label names and values,
 * escapes and sample values must be well formed. Anything else throws, so a
 * test that reads a scrape through it also checks the format.
 */

export interface Sample {
  /** The sample's name: a histogram's have `_bucket`, `_sum` or `_count` appended. */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  /** Metric (family) name → its `# TYPE`. */
  types: Map<string, string>;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parseScrape(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  if (text !== "" && !text.endsWith("\n")) throw new Error("a scrape ends with a line feed");
  for (const [i, line] of text.split("\n").entries()) {
    if (line === "") continue;
    const where = `line ${i + 1} (${JSON.stringify(line)})`;
    if (line.startsWith("#")) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (!type) continue;
      const [, name, kind] = type as unknown as [string, string, string];
      if (!METRIC_NAME.test(name) || !TYPES.has(kind)) throw new Error(`${where}: bad TYPE line`);
      if (types.has(name)) throw new Error(`${where}: a second TYPE for ${name}`);
      types.set(name, kind);
      continue;
    }
    const sample = parseSample(line, where);
    const family = familyOf(sample.name, types);
    if (!family) throw new Error(`${where}: sample of ${sample.name} before its TYPE line`);
    samples.push(sample);
  }
  return { types, samples };
}

function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && types.get(base) === "histogram") return base;
  }
  return undefined;
}

function parseSample(line: string, where: string): Sample {
  const nameEnd = line.search(/[{ ]/);
  if (nameEnd < 0) throw new Error(`${where}: no value`);
  const name = line.slice(0, nameEnd);
  if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
  const labels: Record<string, string> = {};
  let i = nameEnd;
  if (line[i] === "{") {
    i++;
    while (line[i] !== "}") {
      const eq = line.indexOf("=", i);
      const label = line.slice(i, eq);
      if (eq < 0 || !LABEL_NAME.test(label) || line[eq + 1] !== '"') throw new Error(`${where}: bad label at ${i}`);
      let value = "";
      let j = eq + 2;
      for (;;) {
        const c = line[j];
        if (c === undefined) throw new Error(`${where}: unterminated label value`);
        if (c === '"') break;
        if (c === "\\") {
          const next = line[j + 1];
          if (next === "\\") value += "\\";
          else if (next === '"') value += '"';
          else if (next === "n") value += "\n";
          else throw new Error(`${where}: bad escape \\${next}`);
          j += 2;
          continue;
        }
        value += c;
        j++;
      }
      if (label in labels) throw new Error(`${where}: label ${label} twice`);
      labels[label] = value;
      i = j + 1;
      if (line[i] === ",") i++;
      else if (line[i] !== "}") throw new Error(`${where}: expected , or } at ${i}`);
    }
    i++;
  }
  const rest = line.slice(i);
  const value = /^ (\S+)( -?\d+)?$/.exec(rest);
  if (!value) throw new Error(`${where}: bad value`);
  const text = value[1] as string;
  const number = text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : text === "NaN" ? NaN : Number(text);
  if (text !== "NaN" && Number.isNaN(number)) throw new Error(`${where}: bad value ${text}`);
  return { name, labels, value: number };
}

/** The samples named `name` whose labels include `labels`. */
export function samplesOf(scrape: Scrape, name: string, labels: Record<string, string> = {}): Sample[] {
  return scrape.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The sum of those samples' values (0 when there is none). */
export function total(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  return samplesOf(scrape, name, labels).reduce((n, s) => n + s.value, 0);
}
