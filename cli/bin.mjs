#!/usr/bin/env node
// The `fti` command. The project runs its TypeScript through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
