/**
 * A progress bar with rate and ETA (cli-progress) on stderr for long work, only when stderr is a terminal: a
 * script or a pipe gets no bar, and stdout (the command's output, JSON or an export) never carries one.
 */
import cliProgress from 'cli-progress';

export type ProgressBar = { update(done: number, total?: number): void; stop(): void };

const none: ProgressBar = { update: () => undefined, stop: () => undefined };

export function progressBar(enabled: boolean, label: string, unit = 'events'): ProgressBar {
  if (!enabled) return none;
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`,
      stream: process.stderr,
      etaBuffer: 50,
      fps: 5,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let begun = false;
  return {
    update(done, total) {
      const rate = Math.round(done / Math.max((Date.now() - started) / 1000, 0.001));
      if (!begun) {
        bar.start(total ?? done, done, { rate });
        begun = true;
      } else {
        if (total !== undefined) bar.setTotal(total);
        bar.update(done, { rate });
      }
    },
    stop() {
      if (begun) bar.stop();
    },
  };
}
