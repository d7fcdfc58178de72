// Transitional, for one commit: the file moved to model/card.ts and is split next (model vs XML codec).
export * from "./model/card.js";
