// Snapshot directories laid out as vmm/src/migration/mod.rs lays them out: destination_url is
// file://<existing directory>, holding config.json (the VmConfig) and state.json (the VM state). The
// double's state.json carries its own model under a key the real VMM does not use, so a snapshot from
// one cannot be mistaken for a snapshot from the other.
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { osErrorMessage } from './errors.js';
import { isObject, type Json, type JsonObject } from './config.js';

export const SNAPSHOT_CONFIG_FILE = 'config.json';
export const SNAPSHOT_STATE_FILE = 'state.json';
const DOUBLE_KEY = 'cloud_hypervisor_contract_double';

export interface DoubleVmState {
  readonly deviceIds: readonly string[];
}

/** A failure with the message chain below the action ("Cannot send VM snapshot", ...). */
export class SnapshotError extends Error {
  constructor(readonly chain: readonly string[]) {
    super(chain.join(': '));
  }
}

/** url_to_path: only file:// URLs naming an existing directory. */
async function urlToPath(url: string, top: string, inner: string): Promise<string> {
  if (!url.startsWith('file://')) throw new SnapshotError([top, inner, `Could not extract path from URL: ${url}`]);
  const path = url.slice('file://'.length);
  const isDir = await stat(path).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new SnapshotError([top, inner, `Destination is not a directory: ${JSON.stringify(path)}`]);
  return path;
}

const SEND = ['Cannot send VM snapshot', 'Failed to send migratable component snapshot'] as const;
const RECEIVE = ['Cannot restore VM', 'Failed to receive migratable component'] as const;

export async function writeSnapshot(url: string, config: JsonObject, state: DoubleVmState): Promise<void> {
  const dir = await urlToPath(url, ...SEND);
  const write = async (file: string, text: string, what: string): Promise<void> => {
    // create_new: an existing snapshot is never overwritten.
    await writeFile(join(dir, file), text, { flag: 'wx' }).catch((e: unknown) => {
      throw new SnapshotError([...SEND, what, osErrorMessage(e)]);
    });
  };
  await write(SNAPSHOT_CONFIG_FILE, JSON.stringify(config), 'Error creating VM config snapshot file');
  await write(SNAPSHOT_STATE_FILE, JSON.stringify({ snapshots: {}, [DOUBLE_KEY]: state }), 'Error creating VM state snapshot file');
}

export interface ReadSnapshot {
  readonly config: Json;
  readonly state: DoubleVmState;
}

export async function readSnapshot(url: string): Promise<ReadSnapshot> {
  const dir = await urlToPath(url, ...RECEIVE);
  const read = async (file: string, what: string): Promise<Json> => {
    const text = await readFile(join(dir, file), 'utf8').catch((e: unknown) => {
      throw new SnapshotError([...RECEIVE, `Error opening ${what} snapshot file ${JSON.stringify(join(dir, file))}`, osErrorMessage(e)]);
    });
    try {
      return JSON.parse(text) as Json;
    } catch (e) {
      throw new SnapshotError([...RECEIVE, `Error deserialising ${what} snapshot`, String(e)]);
    }
  };
  const config = await read(SNAPSHOT_CONFIG_FILE, 'VM config');
  const state = await read(SNAPSHOT_STATE_FILE, 'VM state');
  const mine = isObject(state) ? state[DOUBLE_KEY] : undefined;
  if (!isObject(mine) || !Array.isArray(mine.deviceIds)) {
    throw new SnapshotError([...RECEIVE, 'The snapshot was not taken by the cloud-hypervisor contract double']);
  }
  return { config, state: { deviceIds: mine.deviceIds.filter((d): d is string => typeof d === 'string') } };
}
