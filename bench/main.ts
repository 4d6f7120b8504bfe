// npm run bench [-- --quick] [--json <file>] [--only roundtrip,throughput,...]
import { parseArgs } from 'node:util';
import { formatTable } from './report.js';
import { FIGURES, runBench, writeJson } from './run.js';

const { values } = parseArgs({
  options: {
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  console.log(
    [
      'usage: npm run bench -- [--quick] [--json <file>] [--only <ids>]',
      '  --quick        tiny configuration (seconds; proves the code runs, figures are not meaningful)',
      '  --json <file>  also write every raw number to <file>',
      `  --only <ids>   comma-separated figures to run: ${FIGURES.map((f) => f.id).join(', ')}`,
    ].join('\n'),
  );
  process.exit(0);
}

const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
const unknown = only?.filter((id) => !FIGURES.some((f) => f.id === id)) ?? [];
if (unknown.length) {
  console.error(`unknown figure(s): ${unknown.join(', ')}; known: ${FIGURES.map((f) => f.id).join(', ')}`);
  process.exit(2);
}

// Progress goes to stderr so that stdout holds only the table.
const report = await runBench({ quick: values.quick, only, log: (m) => console.error(m) });
console.log(formatTable(report));
if (values.json) {
  await writeJson(report, values.json);
  console.error(`wrote ${values.json}`);
}
