/**
 * networking.istio.io EnvoyFilter. Isthmus runs no Envoy, so patches mean
 * nothing at the edge — except the local rate limit filter
 * (`envoy.filters.http.local_ratelimit`), which is translated into LOCAL
 * rate-limit rules (src/config/compile/envoy-filter.ts).
 *
 * Unlike the other kinds this schema is loose: a patch carries Envoy's own
 * configuration, and an EnvoyFilter that does not concern the edge must
 * keep applying with a warning, as it did before it was read at all.
 */
import { z } from "zod";
import { Labels, PolicyTargetReference } from "./common.ts";

export const EnvoyConfigPatch = z.looseObject({
  applyTo: z.string().optional(),
  match: z.unknown().optional(),
  patch: z.unknown().optional(),
});

export const EnvoyFilterSpec = z.looseObject({
  workloadSelector: z.looseObject({ labels: Labels.optional() }).optional(),
  targetRefs: z.array(PolicyTargetReference).optional(),
  configPatches: z.array(EnvoyConfigPatch).optional(),
  priority: z.number().int().optional(),
});
export type EnvoyFilterSpec = z.infer<typeof EnvoyFilterSpec>;
