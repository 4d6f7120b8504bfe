// Baseline server: bare vscode-jsonrpc with its default StreamMessageReader/StreamMessageWriter, answering
// every request with the result the no-op plugin gives.
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';

const RESULT = { ok: true, detail: 'noop' };
const connection = createMessageConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(process.stdout));
connection.onRequest(() => RESULT);
connection.onClose(() => process.exit(0));
process.stdin.on('end', () => process.exit(0));
connection.listen();
