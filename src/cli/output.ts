/**
 * How the CLI talks: problems one per line on stderr, results on stdout.
 */
import { formatProblem, type Problem } from "../config/problems.ts";

export function printProblems(problems: readonly Problem[]): void {
  for (const p of problems) console.error(formatProblem(p));
}

export function summary(problems: readonly Problem[]): { errors: number; warnings: number } {
  return {
    errors: problems.filter((p) => p.severity === "error").length,
    warnings: problems.filter((p) => p.severity === "warning").length,
  };
}

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
