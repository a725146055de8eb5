/**
 * security.istio.io kinds: RequestAuthentication, AuthorizationPolicy and
 * PeerAuthentication, with every field of istio/api security/v1beta1.
 */
import { z } from "zod";
import { Duration, PolicyTargetReference, WorkloadSelector } from "./common.ts";

const targeting = {
  selector: WorkloadSelector.optional(),
  targetRef: PolicyTargetReference.optional(),
  targetRefs: z.array(PolicyTargetReference).optional(),
};

export const JWTRule = z
  .strictObject({
    /** Optional since Istio 1.27 when jwksUri (or jwks) is set: tokens from any issuer are then accepted. */
    issuer: z.string().min(1, { message: "expected a non-empty issuer" }).optional(),
    audiences: z.array(z.string()).optional(),
    jwksUri: z.string().optional(),
    jwks: z.string().optional(),
    fromHeaders: z.array(z.strictObject({ name: z.string().min(1), prefix: z.string().optional() })).optional(),
    fromParams: z.array(z.string().min(1)).optional(),
    fromCookies: z.array(z.string().min(1)).optional(),
    outputPayloadToHeader: z.string().optional(),
    forwardOriginalToken: z.boolean().optional(),
    outputClaimToHeaders: z.array(z.strictObject({ header: z.string().min(1), claim: z.string().min(1) })).optional(),
    timeout: Duration.optional(),
    spaceDelimitedClaims: z.array(z.string().min(1)).optional(),
  })
  .superRefine((rule, ctx) => {
    if (rule.jwks !== undefined && rule.jwksUri !== undefined) {
      ctx.addIssue({ code: "custom", message: "expected only one of jwksUri and jwks" });
    }
    if (rule.issuer === undefined && rule.jwks === undefined && rule.jwksUri === undefined) {
      ctx.addIssue({ code: "custom", message: "expected an issuer, or jwksUri when the rule accepts any issuer" });
    }
  });
export type JWTRule = z.infer<typeof JWTRule>;

export const RequestAuthenticationSpec = z.strictObject({
  ...targeting,
  jwtRules: z.array(JWTRule).optional(),
});
export type RequestAuthenticationSpec = z.infer<typeof RequestAuthenticationSpec>;

const strings = z.array(z.string()).optional();

export const Source = z.strictObject({
  principals: strings,
  notPrincipals: strings,
  requestPrincipals: strings,
  notRequestPrincipals: strings,
  namespaces: strings,
  notNamespaces: strings,
  serviceAccounts: strings,
  notServiceAccounts: strings,
  ipBlocks: strings,
  notIpBlocks: strings,
  remoteIpBlocks: strings,
  notRemoteIpBlocks: strings,
});

export const Operation = z.strictObject({
  hosts: strings,
  notHosts: strings,
  ports: strings,
  notPorts: strings,
  methods: strings,
  notMethods: strings,
  paths: strings,
  notPaths: strings,
});

export const Condition = z
  .strictObject({
    key: z.string().min(1, { message: "expected a condition key" }),
    values: strings,
    notValues: strings,
  })
  .superRefine((c, ctx) => {
    if (!c.values?.length && !c.notValues?.length) {
      ctx.addIssue({ code: "custom", message: "expected at least one of values or notValues" });
    }
  });

export const Rule = z.strictObject({
  from: z.array(z.strictObject({ source: Source.optional() })).optional(),
  to: z.array(z.strictObject({ operation: Operation.optional() })).optional(),
  when: z.array(Condition).optional(),
});
export type Rule = z.infer<typeof Rule>;

export const AuthorizationPolicySpec = z.strictObject({
  ...targeting,
  rules: z.array(Rule).optional(),
  action: z.enum(["ALLOW", "DENY", "AUDIT", "CUSTOM"]).optional(),
  provider: z.strictObject({ name: z.string().min(1) }).optional(),
});
export type AuthorizationPolicySpec = z.infer<typeof AuthorizationPolicySpec>;

const MutualTLSMode = z.enum(["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]);

export const PeerAuthenticationSpec = z.strictObject({
  selector: WorkloadSelector.optional(),
  mtls: z.strictObject({ mode: MutualTLSMode.optional() }).optional(),
  portLevelMtls: z.record(z.string().regex(/^\d+$/, { message: "expected a port number" }), z.strictObject({ mode: MutualTLSMode.optional() })).optional(),
});
export type PeerAuthenticationSpec = z.infer<typeof PeerAuthenticationSpec>;
