// Evaluates a corpus of JSONata cases with the reference implementation (the npm package
// `jsonata`, pinned in package.json to the version Step Functions implements) and prints one
// result per case as JSON. Used by crates/jsonata/tests/jsonata_oracle.rs.
//
// Input (stdin): {"inputs": {name: value}, "cases": [{"expr", "input"}]}.
// Output (stdout): [{"value": v} | {"undefined": true} | {"error": code, "message": text}].
'use strict';
const fs = require('fs');
const jsonata = require('jsonata');

async function run() {
  const corpus = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = [];
  for (const c of corpus.cases) {
    const input = corpus.inputs[c.input];
    try {
      const expr = jsonata(c.expr);
      const v = await expr.evaluate(input, { states: { input, context: corpus.context } });
      if (v === undefined) {
        out.push({ undefined: true });
      } else if (typeof v === 'function' || (v && (v._jsonata_lambda || v._jsonata_function))) {
        out.push({ function: true });
      } else {
        // Sequences are arrays with extra properties; JSON.stringify keeps only the items.
        out.push({ value: JSON.parse(JSON.stringify(v, (k, x) => (typeof x === 'function' ? undefined : x))) ?? null });
      }
    } catch (e) {
      out.push({ error: e.code || 'unknown', message: e.message || String(e) });
    }
  }
  process.stdout.write(JSON.stringify(out));
}
run().catch((e) => {
  process.stderr.write(String(e && e.stack || e));
  process.exit(2);
});
