/** Entry kept at its historical path (quick start, test harness, benchmarks): the code is in runtime/main.ts. */
import "./runtime/main.js";
