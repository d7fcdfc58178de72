/**
 * What other features (features/admin) may use of userdata (docs/REDESIGN.md §1.1: only through api.ts): the
 * export document, its ad-hoc answer, and the logged, counted erasure.
 */
export {
  EXPORT_FORMAT,
  buildExport,
  deleteAccount,
  exportStep,
  isEmptyExport,
  redactToken,
  type DeleteResult,
  type ExportDoc,
} from "./export.js";
export { eraseAccount } from "./index.js";
