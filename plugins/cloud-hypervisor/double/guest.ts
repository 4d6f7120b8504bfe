// The double's "guest": a real, idle child process, so pause is a real SIGSTOP, a dying guest is a
// real exit, and the VMM has real descendants that a supervisor can see and must clean up.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

// A real guest's vCPUs are threads of the VMM and die with it, SIGKILLed or not. The guest polls its
// parent for that; the VMM's pid comes as an argument because the VMM may already be gone by the time node
// has started the script. A paused (SIGSTOPped) guest cannot poll: started through util-linux's setpriv
// with a parent-death signal, the kernel SIGKILLs it when the VMM dies, stopped or not.
const GUEST_SCRIPT = `
const vmm = Number(process.argv[1]);
process.title = 'ch-double-guest';
const check = () => { if (process.ppid !== vmm) process.exit(0); };
check();
setInterval(check, 200);
`;

/** setpriv where util-linux has it (Debian's essential set); without it a paused guest outlives a SIGKILLed VMM. */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export class Guest {
  private readonly child: ChildProcess;
  private exited = false;
  private expected = false;

  private constructor(
    child: ChildProcess,
    onUnexpectedExit: (code: number | null, signal: NodeJS.Signals | null) => void,
  ) {
    this.child = child;
    child.on('exit', (code, signal) => {
      this.exited = true;
      if (!this.expected) onUnexpectedExit(code, signal);
    });
  }

  /** Resolves once the child runs, so a pid is never reported for a process that failed to start. */
  static start(onUnexpectedExit: (code: number | null, signal: NodeJS.Signals | null) => void): Promise<Guest> {
    const argv = [process.execPath, '-e', GUEST_SCRIPT, String(process.pid)];
    const withDeathSignal = SETPRIV ? [SETPRIV, '--pdeathsig', 'KILL', '--', ...argv] : argv;
    const child = spawn(withDeathSignal[0]!, withDeathSignal.slice(1), { stdio: 'ignore' });
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(new Guest(child, onUnexpectedExit)));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  pause(): void {
    if (!this.exited) this.child.kill('SIGSTOP');
  }

  resume(): void {
    if (!this.exited) this.child.kill('SIGCONT');
  }

  /** Stops the guest on the VMM's behalf; the exit is then not reported as the guest's own. */
  async stop(): Promise<void> {
    this.expected = true;
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    // A stopped process does not act on SIGTERM until continued; SIGKILL needs no cooperation.
    this.child.kill('SIGKILL');
    await gone;
  }
}
