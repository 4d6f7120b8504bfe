// Baseline server for the round trip: every byte read from stdin is written back to stdout as it came, so a
// round trip costs two pipe writes, two wake-ups and nothing else.
process.stdin.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
});
process.stdin.on('end', () => process.exit(0));
