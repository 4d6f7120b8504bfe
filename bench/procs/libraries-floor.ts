// The floor under a plugin's cold start: node started from a snapshot that holds the library every SDK plugin
// carries (zod/mini with zod's English locale, as the protocol configures it; the SDK speaks JSON-RPC and logs
// without a library) and nothing of hvplug. It writes one byte to stdout when it starts and exits; the time to that
// byte is what no plugin built on it can start under.
import { startupSnapshot } from 'node:v8';
import * as z from 'zod/mini';
import { en } from 'zod/locales';

z.config(en());

// Referenced so that the bundle keeps the library and the snapshot holds it evaluated, as a plugin's does.
const kept = [z.object({ ready: z.boolean() })];

function ready(): void {
  process.stdout.write(String(kept.length), () => process.exit(0));
}

if (startupSnapshot.isBuildingSnapshot()) startupSnapshot.setDeserializeMainFunction(ready);
else ready();
