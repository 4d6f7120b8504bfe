import * as z from 'zod';
import {
  ErrorData,
  errorCodeName,
  formatIssues,
  isMethodName,
  methods,
  notifications,
  toIssues,
  type NotificationName,
} from 'hvplug/protocol';

export type Direction = 'send' | 'receive';

/** One message as it crossed the wire, with who carried it and during which check. */
export interface WireRecord {
  /** Which plugin process: `main#1`, `aux#3`, ... */
  tag: string;
  direction: Direction;
  message: Record<string, unknown>;
  /** The check running when the message crossed. */
  check: string;
  at: number;
}

export interface WireViolation {
  tag: string;
  direction: Direction;
  check: string;
  what: string;
}

interface Outstanding {
  method: string;
  params: unknown;
}

const Id = z.union([z.number().int(), z.string()]);
const CancelParams = z.object({ id: Id });
const ErrorObject = z.object({ code: z.number().int(), message: z.string(), data: z.unknown().optional() });

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function notificationName(method: string): NotificationName | undefined {
  return Object.hasOwn(notifications, method) ? (method as NotificationName) : undefined;
}

/**
 * Sees every message between the suite and the plugins it runs, both directions, and holds each one to
 * the method table: params of requests and notifications, results of responses (matched to their
 * request by id), the data of typed errors, the JSON-RPC envelope itself.
 */
export class WireMonitor {
  readonly records: WireRecord[] = [];
  readonly violations: WireViolation[] = [];
  /** The check running now; stamped on every record. */
  check = 'setup';
  private readonly outstanding = new Map<string, Outstanding>();
  private readonly deliberate = new Set<string>();
  private readonly listeners = new Set<(r: WireRecord) => void>();

  /** The trace hook for one plugin process (PluginClient's `trace` option). */
  tracer(tag: string): (direction: Direction, message: unknown) => void {
    return (direction, message) => this.record(tag, direction, message);
  }

  /** Params the suite sends invalid on purpose (to see the plugin refuse them) are not the suite's own fault. */
  expectInvalid(method: string, params: unknown): void {
    this.deliberate.add(`${method} ${JSON.stringify(params)}`);
  }

  subscribe(listener: (r: WireRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The method and params of a request by id (the requests of one process). */
  requestOf(tag: string, id: unknown): Outstanding | undefined {
    return this.outstanding.get(`${tag} ${String(id)}`);
  }

  find(predicate: (r: WireRecord) => boolean, from = 0): WireRecord | undefined {
    for (let i = from; i < this.records.length; i++) {
      const r = this.records[i] as WireRecord;
      if (predicate(r)) return r;
    }
    return undefined;
  }

  /** Resolves with the first record (from index `from`) matching, or undefined after `ms`. */
  async waitFor(predicate: (r: WireRecord) => boolean, ms: number, from = 0): Promise<WireRecord | undefined> {
    const hit = this.find(predicate, from);
    if (hit) return hit;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        unsubscribe();
        resolve(undefined);
      }, ms);
      const unsubscribe = this.subscribe((r) => {
        if (!predicate(r)) return;
        clearTimeout(timer);
        unsubscribe();
        resolve(r);
      });
    });
  }

  private violation(tag: string, direction: Direction, what: string): void {
    this.violations.push({ tag, direction, check: this.check, what });
  }

  private record(tag: string, direction: Direction, raw: unknown): void {
    if (!isObject(raw)) {
      this.violation(tag, direction, `a message that is not a JSON object: ${JSON.stringify(raw)}`);
      return;
    }
    const r: WireRecord = { tag, direction, message: raw, check: this.check, at: Date.now() };
    this.records.push(r);
    this.validate(r);
    for (const l of [...this.listeners]) l(r);
  }

  private validate({ tag, direction, message: m }: WireRecord): void {
    const v = (what: string): void => this.violation(tag, direction, what);
    if (m.jsonrpc !== '2.0') v(`a message without "jsonrpc": "2.0": ${JSON.stringify(m).slice(0, 120)}`);
    const hasId = 'id' in m && m.id !== undefined;
    if (typeof m.method === 'string') {
      if (hasId) this.validateRequest(tag, direction, m.method, m.id, m.params, v);
      else this.validateNotification(direction, m.method, m.params, v);
      return;
    }
    if (!hasId) {
      v(`a message that is neither request, notification nor response: ${JSON.stringify(m).slice(0, 120)}`);
      return;
    }
    if (direction === 'receive') this.validateResponse(tag, m, v);
  }

  private validateRequest(tag: string, direction: Direction, method: string, id: unknown, params: unknown, v: (what: string) => void): void {
    if (direction === 'receive') {
      v(`a request from the plugin (${method}): the protocol has no plugin-to-host requests`);
      return;
    }
    if (!Id.safeParse(id).success) v(`${method}: request id ${JSON.stringify(id)} is neither a number nor a string`);
    this.outstanding.set(`${tag} ${String(id)}`, { method, params });
    if (this.deliberate.has(`${method} ${JSON.stringify(params)}`) || !isMethodName(method)) return;
    const parsed = methods[method].params.safeParse(params);
    if (!parsed.success) v(`${method} params: ${formatIssues(toIssues(parsed.error))}`);
  }

  private validateNotification(direction: Direction, method: string, params: unknown, v: (what: string) => void): void {
    if (method === '$/cancelRequest') {
      if (direction === 'receive') v('$/cancelRequest from the plugin: the plugin has no requests of its own to cancel');
      else if (!CancelParams.safeParse(params).success) v(`$/cancelRequest params ${JSON.stringify(params)}`);
      return;
    }
    const name = notificationName(method);
    if (!name) {
      v(`unknown notification ${method}`);
      return;
    }
    const spec = notifications[name];
    const expected = direction === 'send' ? 'host-to-plugin' : 'plugin-to-host';
    if (spec.direction !== expected) v(`${method} sent ${expected}, but it only travels ${spec.direction}`);
    const parsed = spec.params.safeParse(params);
    if (!parsed.success) v(`${method} params: ${formatIssues(toIssues(parsed.error))}`);
  }

  private validateResponse(tag: string, m: Record<string, unknown>, v: (what: string) => void): void {
    const request = this.requestOf(tag, m.id);
    if (!request) {
      v(`a response to request id ${JSON.stringify(m.id)}, which was never sent`);
      return;
    }
    const { method } = request;
    const hasResult = 'result' in m;
    if (hasResult === 'error' in m) {
      v(`${method} response (id ${String(m.id)}) must carry exactly one of result and error`);
      return;
    }
    if (hasResult) {
      if (!isMethodName(method)) return;
      const parsed = methods[method].result.safeParse(m.result);
      if (!parsed.success) v(`${method} result (id ${String(m.id)}): ${formatIssues(toIssues(parsed.error))}`);
      return;
    }
    const error = ErrorObject.safeParse(m.error);
    if (!error.success) {
      v(`${method} error (id ${String(m.id)}): ${formatIssues(toIssues(error.error))}`);
      return;
    }
    const name = errorCodeName(error.data.code);
    if (name && Object.hasOwn(ErrorData, name)) {
      const schema = ErrorData[name as keyof typeof ErrorData];
      const data = schema.safeParse(error.data.data);
      if (!data.success) v(`${method} ${name} error (id ${String(m.id)}): data: ${formatIssues(toIssues(data.error))}`);
    }
  }
}
