import { existsSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import type { Methods } from 'hvplug/protocol';
import { expect, expectRejection, type CheckDef } from '../check.js';
import type { Fixture } from '../fixture.js';
import type { GatedMethod } from '../method-cases.js';

/** The methods the table marks idempotent. */
type IdempotentMethod = { [M in GatedMethod]: Methods[M] extends { idempotent: true } ? M : never }[GatedMethod];

interface Repeat {
  title: string;
  needs: readonly GatedMethod[];
  run(fx: Fixture): Promise<void>;
}

const MiB = 1 << 20;

/** One scenario per idempotent method: marking another method idempotent without one fails the typecheck. */
const REPEATS: Record<IdempotentMethod, Repeat> = {
  'vm/stop': {
    title: 'vm/stop of a stopped VM succeeds and leaves it stopped',
    needs: ['vm/create', 'vm/start'],
    run: async (fx) => {
      const vm = await fx.vmIn('stopped');
      const again = await vm.stop({ graceMs: 2_000 }, fx.opts('vm/stop'));
      expect(again.status === 'stopped', `the second vm/stop answered status ${again.status}`);
    },
  },
  'vm/delete': {
    title: 'vm/delete of a deleted VM, and of one that never existed, succeeds',
    needs: ['vm/create'],
    run: async (fx) => {
      const vm = await fx.vmIn('created');
      await vm.delete(undefined, fx.opts('vm/delete'));
      await fx.raw('vm/delete', { vmId: vm.id });
      await fx.raw('vm/delete', { vmId: fx.newVmId() });
      if (fx.advertised('vm/info')) await expectRejection(fx.raw('vm/info', { vmId: vm.id }), 'VmNotFound', 'vm/info after two deletes');
    },
  },
  'image/ensure': {
    title: 'image/ensure of an existing image succeeds with created: false and leaves it as it was',
    needs: [],
    run: async (fx) => {
      const path = fx.path('twice.img');
      fx.defer(`image ${path}`, () => rm(path, { force: true }));
      const first = await fx.hv.ensureImage({ path, format: 'raw', sizeBytes: MiB }, fx.opts('image/ensure'));
      expect(first.created, 'the first image/ensure answered created: false');
      const second = await fx.hv.ensureImage({ path, format: 'raw', sizeBytes: MiB }, fx.opts('image/ensure'));
      expect(!second.created, 'the second image/ensure answered created: true');
      expect((await stat(path)).size === MiB, 'the second image/ensure changed the image size');
    },
  },
  'image/delete': {
    title: 'image/delete of a missing image succeeds',
    needs: [],
    run: async (fx) => {
      const path = await fx.imageFile('twice-deleted.img', MiB);
      await fx.hv.deleteImage({ path }, fx.opts('image/delete'));
      expect(!existsSync(path), `image/delete left ${path} in place`);
      await fx.hv.deleteImage({ path }, fx.opts('image/delete'));
      await fx.hv.deleteImage({ path: fx.path('never-existed.img') }, fx.opts('image/delete'));
    },
  },
};

export function idempotencyChecks(): CheckDef[] {
  return (Object.keys(REPEATS) as IdempotentMethod[]).map((method) => {
    const r = REPEATS[method];
    return {
      id: `idempotency.${method}`,
      title: r.title,
      verifies: `${method} is idempotent (the method table says so): repeating it in the state it leads to succeeds without effect.`,
      needs: [method, ...r.needs],
      run: (fx) => r.run(fx),
    };
  });
}

