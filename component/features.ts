/** The feature modules a production cardlink runs, in attach order. */
import type { Feature } from "./context.js";

export function allFeatures(): Feature[] {
  return [];
}
