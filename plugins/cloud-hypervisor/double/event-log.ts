// Writes events the way event_monitor/src/lib.rs does: serde_json::to_string_pretty of
// {timestamp: Duration since the monitor started, source, event, properties: map | null}, then "\n\n".
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';

export type EventProperties = Readonly<Record<string, string>>;

export interface EventSink {
  emit(source: string, event: string, properties?: EventProperties): void;
  close(): Promise<void>;
}

/** `--event-monitor path=<file>` truncates like the real one; `fd=<n>` writes to an inherited descriptor. */
export type EventTarget = { readonly path: string } | { readonly fd: number };

function duration(startNs: bigint): { secs: number; nanos: number } {
  const elapsed = process.hrtime.bigint() - startNs;
  return { secs: Number(elapsed / 1_000_000_000n), nanos: Number(elapsed % 1_000_000_000n) };
}

function render(startNs: bigint, source: string, event: string, properties?: EventProperties): string {
  // JSON.stringify with two spaces matches serde_json's pretty printer for these flat shapes.
  return `${JSON.stringify({ timestamp: duration(startNs), source, event, properties: properties ?? null }, null, 2)}\n\n`;
}

/** Pipes and sockets go through a libuv stream so a full pipe waits instead of failing with EAGAIN. */
function streamSink(fd: number, startNs: bigint): EventSink {
  const socket = new Socket({ fd, readable: false, writable: true });
  // The real monitor ignores write errors (`.ok()`): a reader that went away must not stop the VMM.
  socket.on('error', () => undefined);
  return {
    emit: (source, event, properties) => void socket.write(render(startNs, source, event, properties)),
    close: () => new Promise((resolve) => socket.end(() => resolve())),
  };
}

function fileSink(fd: number, startNs: bigint, ownsFd: boolean): EventSink {
  return {
    emit: (source, event, properties) => {
      try {
        writeSync(fd, render(startNs, source, event, properties));
      } catch {
        // Same as the real monitor: a failed write is dropped, the VMM carries on.
      }
    },
    close: async () => {
      if (ownsFd) closeSync(fd);
    },
  };
}

export function openEventSink(target: EventTarget | undefined): EventSink {
  const startNs = process.hrtime.bigint();
  if (!target) return { emit: () => undefined, close: async () => undefined };
  if ('path' in target) return fileSink(openSync(target.path, 'w'), startNs, true);
  const stat = fstatSync(target.fd);
  return stat.isFIFO() || stat.isSocket() ? streamSink(target.fd, startNs) : fileSink(target.fd, startNs, false);
}
