#!/usr/bin/env node
// `npx fulfillment-ledger <command>`: runs src/cli/main.ts through tsx (a dependency), so it works from a clean
// clone after `npm ci`, without a build. The commands are documented in docs/audit-cli.md.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('../src/cli/main.ts');
await run(process.argv.slice(2));
