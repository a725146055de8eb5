/**
 * Localities (`region/zone/subzone`, e.g. `aws/us-east-1/us-east-1a`) and
 * where a request comes from: GatewayConfig `locality` maps the request's
 * Cloudflare location (request.cf) to the locality the gateway acts as,
 * the way an Istio proxy has the locality of the node it runs on.
 */
import type { LocalityRuleDef, LocalitySettings } from "../config/snapshot.ts";

export interface Locality {
  region: string;
  zone: string;
  subzone: string;
}

const LOCALITY = /^[^/\s]+(\/[^/\s]*){0,2}$/;

/** Why a string is not a locality, or undefined when it is one. */
export function localityProblem(value: string): string | undefined {
  return LOCALITY.test(value) ? undefined : `expected a locality region[/zone[/subzone]] such as aws/us-east-1/us-east-1a, got "${value}"`;
}

/** Splits `region/zone/subzone`; missing parts are empty. */
export function parseLocality(value: string | undefined): Locality {
  const [region = "", zone = "", subzone = ""] = (value ?? "").split("/");
  return { region, zone, subzone };
}

/**
 * Istio's util.LocalityMatch: a pattern `region/zone/subzone` where `*`
 * matches anything and a missing zone or subzone matches any.
 *
 * @example
 * localityMatches("aws/*", parseLocality("aws/us-east-1/a")) // true
 */
export function localityMatches(pattern: string, locality: Locality): boolean {
  const rule = parseLocality(pattern);
  const region = rule.region === "*" || rule.region === locality.region;
  const zone = rule.zone === "*" || rule.zone === "" || rule.zone === locality.zone;
  const subzone = rule.subzone === "*" || rule.subzone === "" || rule.subzone === locality.subzone;
  return region && zone && subzone;
}

/** Istio's util.LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere. */
export function proximity(client: Locality, endpoint: Locality): 0 | 1 | 2 | 3 {
  if (client.region !== endpoint.region) return 3;
  if (client.zone !== endpoint.zone) return 2;
  if (client.subzone !== endpoint.subzone) return 1;
  return 0;
}

/** The parts of request.cf that locality rules read. */
export interface CfLocation {
  colo?: unknown;
  country?: unknown;
  continent?: unknown;
  regionCode?: unknown;
}

interface CompiledRule {
  colos?: Set<string>;
  countries?: Set<string>;
  continents?: Set<string>;
  regions?: Set<string>;
  locality: string;
}

/**
 * Maps request.cf to a locality string. Built once per snapshot.
 *
 * @example
 * const resolver = new LocalityResolver({ rules: [{ colos: ["FRA"], locality: "gcp/europe-west3" }] });
 * resolver.resolve({ colo: "FRA" }) // "gcp/europe-west3"
 */
export class LocalityResolver {
  private readonly rules: CompiledRule[];
  private readonly fallback: string | undefined;

  constructor(settings: LocalitySettings | undefined) {
    this.rules = (settings?.rules ?? []).map(compileRule);
    this.fallback = settings?.default;
  }

  /**
   * The locality of a request, reading its `cf` only when a rule needs it
   * (on Cloudflare `request.cf` is built for the request on first read).
   */
  resolveFor(request: { readonly cf?: unknown }): string | undefined {
    return this.rules.length > 0 ? this.resolve(request.cf as CfLocation | undefined) : this.fallback;
  }

  /** The locality of a request, or undefined when no rule matches and there is no default. */
  resolve(cf: CfLocation | undefined): string | undefined {
    if (this.rules.length > 0 && cf) {
      const colo = upper(cf.colo);
      const country = upper(cf.country);
      const continent = upper(cf.continent);
      const regionCode = upper(cf.regionCode);
      const region = country && regionCode ? `${country}-${regionCode}` : undefined;
      for (const rule of this.rules) {
        if (rule.colos && !(colo && rule.colos.has(colo))) continue;
        if (rule.countries && !(country && rule.countries.has(country))) continue;
        if (rule.continents && !(continent && rule.continents.has(continent))) continue;
        if (rule.regions && !(region && rule.regions.has(region))) continue;
        return rule.locality;
      }
    }
    return this.fallback;
  }
}

function compileRule(def: LocalityRuleDef): CompiledRule {
  const out: CompiledRule = { locality: def.locality };
  if (def.colos) out.colos = new Set(def.colos);
  if (def.countries) out.countries = new Set(def.countries);
  if (def.continents) out.continents = new Set(def.continents);
  if (def.regions) out.regions = new Set(def.regions);
  return out;
}

function upper(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value.toUpperCase() : undefined;
}
