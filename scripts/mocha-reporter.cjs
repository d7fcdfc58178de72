// mocha's spec reporter plus one plain closing line ("N passed, N failed, N skipped") that CI reads.
"use strict";
const Mocha = require("mocha");
const { EVENT_RUN_END } = Mocha.Runner.constants;

class SpecWithTotals extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats;
      // The ejabberd pass of scripts/test.sh says so: "tests:" stays the main run's line.
      const label = process.env.CARDLINK_TEST_SERVER === "ejabberd" ? "tests on ejabberd" : "tests";
      process.stdout.write(`\n${label}: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped\n`);
    });
  }
}

module.exports = SpecWithTotals;
