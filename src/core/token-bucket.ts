import { monotonicMs } from '../proc/index.js';

/** `burst` at once, `rate` a second sustained: what a plugin may make the host do before the rest is refused. */
export class TokenBucket {
  private tokens: number;
  private last = monotonicMs();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  take(): boolean {
    if (this.tokens < 1) {
      const now = monotonicMs();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      if (this.tokens < 1) return false;
    }
    this.tokens--;
    return true;
  }
}
