import { connect, type Socket } from 'node:net';

/** Largest line the baselines' QMP reader keeps; QEMU's answers to the commands the bench sends and its events are far shorter. */
const MAX_QMP_LINE = 64 * 1024;

/**
 * The QEMU baselines' QMP client: one connection, one command at a time, the answer matched by id (events skipped),
 * as a controller that keeps its QMP connection open drives QEMU. Nothing else: the least a command can cost.
 * Answers come back unparsed (`return` as sent); the caller checks them against a schema.
 */
export class RawQmp {
  private buf = '';
  private waiting: { id: number; resolve: (ret: unknown) => void; reject: (e: Error) => void } | undefined;
  private nextId = 1;
  private greeted: Promise<void>;

  private constructor(private readonly sock: Socket) {
    let greet!: () => void;
    this.greeted = new Promise((r) => (greet = r));
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      this.buf += chunk;
      if (this.buf.length > MAX_QMP_LINE) {
        this.fail(new Error(`a QMP line longer than ${MAX_QMP_LINE} bytes`));
        this.sock.destroy();
        return;
      }
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        let msg: { QMP?: unknown; id?: unknown; return?: unknown; error?: { desc?: unknown } };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          continue;
        }
        if (typeof msg !== 'object' || msg === null) continue;
        if (msg.QMP !== undefined) greet();
        else if (this.waiting && msg.id === this.waiting.id) {
          const w = this.waiting;
          this.waiting = undefined;
          if (msg.error) w.reject(new Error(`QMP: ${String(msg.error.desc)}`));
          else w.resolve(msg.return);
        }
      }
    });
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('QMP connection closed')));
  }

  private fail(e: Error): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(e);
  }

  static async open(path: string): Promise<RawQmp> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path, () => resolve(s));
      s.once('error', reject);
    });
    const q = new RawQmp(sock);
    await q.greeted;
    await q.execute('qmp_capabilities');
    return q;
  }

  /** Sends one command and resolves with its `return`; one at a time. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      this.waiting = { id, resolve, reject };
      this.sock.write(`${JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id })}\n`);
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Retries a connect to a socket QEMU creates once it has parsed its command line. */
export async function openQmp(path: string, timeoutMs: number): Promise<RawQmp> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await RawQmp.open(path);
    } catch (err) {
      if (performance.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
