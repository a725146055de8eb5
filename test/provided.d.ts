// Values the unit project's global setup provides (test/unit/setup/origin.ts).
export {};

declare module "vitest" {
  export interface ProvidedContext {
    originPort: number;
  }
}
