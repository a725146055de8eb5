/**
 * The stored form of a resource: what its author wrote, minus the
 * Kubernetes bookkeeping fields, so that two applies of the same YAML
 * compare equal in `isthmus diff`.
 */
import type { AnyResource } from "./validate.ts";

export interface CanonicalResource {
  id: string;
  file: string;
  line: number;
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: unknown;
}

const BOOKKEEPING_ANNOTATIONS = ["kubectl.kubernetes.io/last-applied-configuration"];

export function canonicalResource(r: AnyResource): CanonicalResource {
  const metadata: CanonicalResource["metadata"] = { name: r.name, namespace: r.namespace };
  if (r.metadata.labels && Object.keys(r.metadata.labels).length) metadata.labels = r.metadata.labels;
  const annotations = Object.fromEntries(Object.entries(r.metadata.annotations ?? {}).filter(([k]) => !BOOKKEEPING_ANNOTATIONS.includes(k)));
  if (Object.keys(annotations).length) metadata.annotations = annotations;
  return { id: r.id, file: r.file, line: r.line, apiVersion: r.apiVersion, kind: r.kind, metadata, spec: r.spec };
}
