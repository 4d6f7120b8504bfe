// Baseline server for throughput: JSON-RPC over newline-delimited JSON with no framework. Each line is parsed
// and answered with the request's id and the same result the no-op plugin gives, one write per message.
const RESULT = { ok: true, detail: 'noop' };

let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  pending += chunk;
  let start = 0;
  for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n', start)) {
    const msg = JSON.parse(pending.slice(start, nl)) as { id: number };
    process.stdout.write(`${JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: RESULT })}\n`);
    start = nl + 1;
  }
  pending = pending.slice(start);
});
process.stdin.on('end', () => process.exit(0));
