/** Prints the durable-insert rate of a directory: `npx tsx bench/support/fsync-probe.ts /tmp`. */
import { durableInsertsPerSecond } from './limits.js';

for (const dir of process.argv.slice(2)) console.log(`${dir}: ${durableInsertsPerSecond(dir)} durable inserts/s`);
