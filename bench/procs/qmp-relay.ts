// The least an out-of-process controller can add to a QMP command: a process that relays bytes, unread, between
// a client and QEMU. It listens on the unix socket argv[2] and joins each connection to QEMU's QMP socket argv[3].
// Figure 5b drives raw QMP through it: one process hop each way, as the host → plugin → QEMU path has.
import { connect, createServer } from 'node:net';

const [listenAt, qmpAt] = process.argv.slice(2);
if (!listenAt || !qmpAt) {
  process.stderr.write('usage: qmp-relay <listen socket> <QMP socket>\n');
  process.exit(2);
}
const server = createServer((client) => {
  const qemu = connect(qmpAt);
  client.pipe(qemu);
  qemu.pipe(client);
  const end = (): void => {
    client.destroy();
    qemu.destroy();
  };
  client.on('error', end).on('close', end);
  qemu.on('error', end).on('close', end);
});
// Ready once listening: the bench waits for this line before it connects.
server.listen(listenAt, () => process.stdout.write('listening\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
