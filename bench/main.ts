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

// Every process the bench starts, hvplug's and its baselines, gets node as it comes: a preload option of this
// machine (NODE_EXTRA_CA_CERTS parses a CA bundle in every node: ~30 ms and ~1.6 MiB each here) would move the
// baselines and hvplug's processes by different amounts depending on how many processes each side has.
for (const name of ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS']) {
  if (process.env[name] === undefined) continue;
  console.error(`bench: ${name} is set here; the processes the bench starts run without it`);
  delete process.env[name];
}

// Progress goes to stderr so that stdout holds only the table.
const report = await runBench({ quick: values.quick, only, log: (m) => console.error(m) });
console.log(formatTable(report));
if (values.json) {
  await writeJson(report, values.json);
  console.error(`wrote ${values.json}`);
}
