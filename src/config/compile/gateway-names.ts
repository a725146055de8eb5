/**
 * Gateway references in a VirtualService (`spec.gateways`,
 * `http[].match[].gateways`) as Istio resolves them (resolveGatewayName in
 * pilot/pkg/model/virtualservice.go).
 */

/** The reserved name of the sidecars of the mesh; never a Gateway. */
export const MESH_GATEWAY = "mesh";

/**
 * Resolves a gateway reference written in a VirtualService of `namespace`
 * to `namespace/name`:
 *
 * - `name` → `<namespace>/name`
 * - `./name` → `<namespace>/name`
 * - `ns/name` → unchanged
 * - `name.ns` and the legacy FQDN `name.ns.svc.cluster.local` → `ns/name`
 * - `mesh` → `mesh`
 *
 * @example
 * resolveGatewayName("./public", "shop") // "shop/public"
 * resolveGatewayName("public.edge.svc.cluster.local", "shop") // "edge/public"
 * resolveGatewayName("mesh", "shop") // "mesh"
 */
export function resolveGatewayName(ref: string, namespace: string): string {
  if (ref === MESH_GATEWAY) return ref;
  const slash = ref.indexOf("/");
  if (slash >= 0) return ref.slice(0, slash) === "." ? `${namespace}/${ref.slice(slash + 1)}` : ref;
  const dot = ref.indexOf(".");
  if (dot < 0) return `${namespace}/${ref}`;
  // Istio's backward compatibility for the FQDN form: the second label is the namespace.
  const rest = ref.slice(dot + 1);
  const end = rest.indexOf(".");
  return `${end < 0 ? rest : rest.slice(0, end)}/${ref.slice(0, dot)}`;
}
